// SPDX-License-Identifier: Apache-2.0
#include "yaml_doc.h"

#include <yaml.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <unordered_map>

namespace mcpwarden {

namespace {

bool null_text(std::string_view s) {
    return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

YamlScalarStyle style_of(yaml_scalar_style_t s) {
    switch (s) {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE: return YamlScalarStyle::single_quoted;
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE: return YamlScalarStyle::double_quoted;
        case YAML_LITERAL_SCALAR_STYLE: return YamlScalarStyle::literal;
        case YAML_FOLDED_SCALAR_STYLE: return YamlScalarStyle::folded;
        default: return YamlScalarStyle::plain;
    }
}

std::string position(const yaml_mark_t& m) {
    return std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// Line and column (1-based, in characters) of a byte offset: libyaml's reader errors (bad
// UTF-8, control characters) carry only the offset.
void locate(std::string_view text, std::size_t offset, YamlProblem* p) {
    offset = std::min(offset, text.size());
    p->line = 1;
    p->column = 1;
    for (std::size_t i = 0; i < offset; ++i) {
        if (text[i] == '\n') {
            ++p->line;
            p->column = 1;
        } else if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
            ++p->column;
        }
    }
}

// Deletes an initialised parser.
struct ParserGuard {
    yaml_parser_t* parser;
    ~ParserGuard() { yaml_parser_delete(parser); }
};

struct Event {
    yaml_event_t e{};
    bool held = false;
    ~Event() { reset(); }
    void reset() {
        if (held) yaml_event_delete(&e);
        held = false;
    }
};

}  // namespace

// Turns libyaml's events into a YamlDocument; nothing recurses (open collections are a stack).
class YamlReader {
public:
    explicit YamlReader(std::string_view text) : text_(text) {}

    std::optional<YamlDocument> read(YamlProblem* problem) {
        yaml_parser_t parser;
        if (!yaml_parser_initialize(&parser)) return fail(problem, 1, 1, "out of memory");
        ParserGuard guard{&parser};
        yaml_parser_set_input_string(
            &parser, reinterpret_cast<const unsigned char*>(text_.data()), text_.size());
        int documents = 0;
        Event ev;
        for (;;) {
            ev.reset();
            if (!yaml_parser_parse(&parser, &ev.e)) return syntax_error(parser, problem);
            ev.held = true;
            const yaml_event_t& e = ev.e;
            const yaml_mark_t& m = e.start_mark;
            switch (e.type) {
                case YAML_STREAM_END_EVENT:
                    unforce_last_newline(m);
                    finish();
                    return std::move(doc_);
                case YAML_DOCUMENT_START_EVENT:
                    if (++documents > 1) {
                        return fail(problem, m,
                                    "a second YAML document starts here; the file must hold one "
                                    "document (remove this '---' and what follows it)");
                    }
                    break;
                case YAML_SCALAR_EVENT: {
                    auto& s = e.data.scalar;
                    bool missing = false;
                    YamlNode& n = make(empty_value_mark(parser, e, &missing), s.tag != nullptr);
                    if (missing) missing_.push_back(&n);
                    n.text_.assign(reinterpret_cast<const char*>(s.value), s.length);
                    n.style_ = style_of(s.style);
                    bool is_null = n.style_ == YamlScalarStyle::plain && !n.tagged_ &&
                                   null_text(n.text_);
                    // yaml-cpp read a document of only a tag ("!x") as empty, not as "".
                    if (open_.empty() && n.style_ == YamlScalarStyle::plain && n.text_.empty())
                        is_null = true;
                    n.kind_ = is_null ? YamlNode::Kind::null : YamlNode::Kind::scalar;
                    if (s.anchor) anchors_[anchor_name(s.anchor)] = &n;
                    add(n);
                    break;
                }
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT: {
                    bool seq = e.type == YAML_SEQUENCE_START_EVENT;
                    if (open_.size() >= static_cast<std::size_t>(kYamlMaxDepth)) {
                        return fail(problem, m,
                                    "nesting deeper than " + std::to_string(kYamlMaxDepth) +
                                        " levels of lists and mappings");
                    }
                    const yaml_char_t* anchor =
                        seq ? e.data.sequence_start.anchor : e.data.mapping_start.anchor;
                    const yaml_char_t* tag =
                        seq ? e.data.sequence_start.tag : e.data.mapping_start.tag;
                    YamlNode& n = make(m, tag != nullptr);
                    n.kind_ = seq ? YamlNode::Kind::sequence : YamlNode::Kind::mapping;
                    n.children_.first = pending_.size();
                    std::string name = anchor ? anchor_name(anchor) : std::string();
                    // Open: an alias to it from inside would make a cycle.
                    if (anchor) anchors_[name] = nullptr;
                    open_.push_back({&n, std::move(name)});
                    break;
                }
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT: {
                    Open o = std::move(open_.back());
                    open_.pop_back();
                    close(*o.node);
                    if (!o.anchor.empty()) anchors_[o.anchor] = o.node;
                    add(*o.node);
                    break;
                }
                case YAML_ALIAS_EVENT: {
                    std::string name = anchor_name(e.data.alias.anchor);
                    auto it = anchors_.find(name);
                    if (it == anchors_.end()) {
                        return fail(problem, m,
                                    "alias *" + name + " names no anchor (&" + name +
                                        " must come before it)");
                    }
                    if (it->second == nullptr) {
                        return fail(problem, m,
                                    "alias *" + name + " is inside the node anchored &" + name +
                                        " (a cycle)");
                    }
                    const YamlNode& target = *it->second;
                    alias_nodes_ = sat_add(alias_nodes_, target.expanded_);
                    if (alias_nodes_ > std::max<std::uint64_t>(kYamlMaxAliasNodes, doc_.nodes_)) {
                        return fail(problem, m,
                                    "aliases expand the document by more than " +
                                        std::to_string(std::max<std::uint64_t>(
                                            kYamlMaxAliasNodes, doc_.nodes_)) +
                                        " nodes; write the values out instead");
                    }
                    add(target);
                    break;
                }
                default:  // STREAM_START, DOCUMENT_END
                    break;
            }
        }
    }

private:
    struct Open {
        YamlNode* node;
        std::string anchor;  // empty = none
    };

    static std::string anchor_name(const yaml_char_t* a) {
        return std::string(reinterpret_cast<const char*>(a));
    }
    static std::uint64_t sat_add(std::uint64_t a, std::uint64_t b) {
        return a + b < a ? UINT64_MAX : a + b;
    }

    // A missing value ("key:", "-" with nothing after it) is an empty plain scalar that libyaml
    // places right after the ':' or '-'. It is placed at the next token instead (the next key,
    // item or the dedent), as yaml-cpp did, so that policy errors keep their positions. libyaml
    // peeked at that token to decide the value was missing: it is the head of its queue.
    static const yaml_mark_t& empty_value_mark(const yaml_parser_t& p, const yaml_event_t& e,
                                               bool* missing) {
        const auto& s = e.data.scalar;
        *missing = s.length == 0 && s.style == YAML_PLAIN_SCALAR_STYLE && !s.tag && !s.anchor &&
                   e.start_mark.index == e.end_mark.index && p.token_available &&
                   p.tokens.head != p.tokens.tail;
        return *missing ? p.tokens.head->start_mark : e.start_mark;
    }

    // At the end of a text without a final line break, libyaml moves its position to the start
    // of a line after the last, yaml-cpp to the start of the last line. A missing value at the
    // very end ("limits:" as the last line) keeps yaml-cpp's position, on a line that exists.
    void unforce_last_newline(const yaml_mark_t& end) {
        auto ends_with = [&](std::string_view suffix) {
            return text_.size() >= suffix.size() &&
                   text_.compare(text_.size() - suffix.size(), suffix.size(), suffix) == 0;
        };
        bool forced = !text_.empty() && end.column == 0 && !ends_with("\n") && !ends_with("\r") &&
                      !ends_with("\xC2\x85") && !ends_with("\xE2\x80\xA8") &&
                      !ends_with("\xE2\x80\xA9");
        if (!forced) return;
        for (YamlNode* n : missing_) {
            if (n->line_ == static_cast<int>(end.line) + 1 && n->column_ == 1) --n->line_;
        }
    }

    YamlNode& make(const yaml_mark_t& m, bool tagged) {
        auto& blocks = doc_.blocks_;
        if (blocks.empty() || blocks.back().used == blocks.back().capacity) {
            std::size_t capacity = blocks.size() < 7 ? std::size_t{32} << blocks.size() : 4096;
            blocks.push_back({std::make_unique<YamlNode[]>(capacity), 0, capacity});
        }
        YamlNode& n = blocks.back().nodes[blocks.back().used++];
        ++doc_.nodes_;
        n.line_ = static_cast<int>(m.line) + 1;
        n.column_ = static_cast<int>(m.column) + 1;
        n.tagged_ = tagged;
        return n;
    }

    // A finished node goes to its parent (or becomes the root).
    void add(const YamlNode& n) {
        if (open_.empty()) {
            doc_.root_ = &n;
            return;
        }
        open_.back().node->expanded_ = sat_add(open_.back().node->expanded_, n.expanded_);
        pending_.push_back(&n);
    }

    // Moves a collection's children from the pending stack into the document's lists.
    void close(YamlNode& n) {
        auto begin = pending_.begin() + static_cast<std::ptrdiff_t>(n.children_.first);
        if (n.kind_ == YamlNode::Kind::sequence) {
            n.children_.first = doc_.items_.size();
            n.count_ = static_cast<std::uint32_t>(pending_.end() - begin);
            doc_.items_.insert(doc_.items_.end(), begin, pending_.end());
        } else {
            n.children_.first = doc_.entries_.size();
            n.count_ = static_cast<std::uint32_t>((pending_.end() - begin) / 2);
            // Compare distances: it + 1 past the end (or on an empty, null-backed vector) is
            // undefined behaviour (UBSan, found by fuzzing).
            for (auto it = begin; pending_.end() - it >= 2; it += 2)
                doc_.entries_.push_back({*it, *(it + 1)});
        }
        pending_.erase(begin, pending_.end());
    }

    // The lists stop growing: point every collection at its children.
    void finish() {
        for (auto& block : doc_.blocks_) {
            for (std::size_t i = 0; i < block.used; ++i) {
                YamlNode& n = block.nodes[i];
                std::size_t first = n.children_.first;
                if (n.is_sequence()) n.children_.items = doc_.items_.data() + first;
                if (n.is_mapping()) n.children_.entries = doc_.entries_.data() + first;
            }
        }
    }

    std::nullopt_t fail(YamlProblem* p, int line, int column, std::string message) {
        if (p) *p = {line, column, std::move(message)};
        return std::nullopt;
    }
    std::nullopt_t fail(YamlProblem* p, const yaml_mark_t& m, std::string message) {
        return fail(p, static_cast<int>(m.line) + 1, static_cast<int>(m.column) + 1,
                    std::move(message));
    }

    std::nullopt_t syntax_error(const yaml_parser_t& ps, YamlProblem* p) {
        if (!p) return std::nullopt;
        std::string message = ps.problem ? ps.problem : "invalid YAML";
        if (ps.error == YAML_MEMORY_ERROR) return fail(p, 1, 1, "out of memory");
        if (ps.error == YAML_READER_ERROR) {
            if (ps.problem_value != -1) {
                char hex[16];
                std::snprintf(hex, sizeof hex, " (#x%X)", static_cast<unsigned>(ps.problem_value));
                message += hex;
            }
            locate(text_, ps.problem_offset, p);
            p->message = std::move(message);
            return std::nullopt;
        }
        if (ps.context) {
            message += std::string(" (") + ps.context + " at " + position(ps.context_mark) + ")";
        }
        fail(p, ps.problem_mark, std::move(message));
        // At the end of a text without a final line break libyaml counts one more line: point
        // at the end of the last line instead.
        YamlProblem end;
        locate(text_, text_.size(), &end);
        if (p->line > end.line) {
            p->line = end.line;
            p->column = end.column;
        }
        return std::nullopt;
    }

    std::string_view text_;
    YamlDocument doc_;
    std::vector<Open> open_;
    std::vector<const YamlNode*> pending_;  // children of the open collections, in order
    std::unordered_map<std::string, const YamlNode*> anchors_;  // nullptr = still open
    std::uint64_t alias_nodes_ = 0;
    std::vector<YamlNode*> missing_;  // missing values, placed at the next token
};

std::optional<YamlDocument> read_yaml(std::string_view text, YamlProblem* problem) {
    return YamlReader(text).read(problem);
}

}  // namespace mcpwarden
