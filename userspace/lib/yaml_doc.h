// SPDX-License-Identifier: Apache-2.0
// A YAML document read into a small tree of our own (scalars, sequences, mappings, each with its
// line and column), on top of libyaml's event parser. It replaces yaml-cpp for policies: a
// 100,000-rule policy (5 MB) reads in tens of milliseconds instead of a second.
//
// What the reader accepts, and why (policies may be untrusted input):
//   - one document per text: a second document ("---" after the first) is an error at its
//     start, rather than being silently ignored;
//   - anchors and aliases are resolved: an alias shares the anchored node (its line and column
//     are the anchor's). An alias to an undefined anchor, or to a node that contains the alias
//     itself, is an error. So that a small text cannot stand for a huge tree ("billion laughs"),
//     the nodes aliases add (counted as if copied) may not exceed kYamlMaxAliasNodes or the
//     number of nodes written, whichever is larger;
//   - nesting is bounded (kYamlMaxDepth levels of sequences and mappings), and nothing here
//     recurses, so deep input cannot overflow the stack;
//   - duplicate keys are kept, in order: the caller decides (the policy checker reports them);
//   - a plain scalar "", "~", "null", "Null" or "NULL" without a tag is a null node, as in
//     yaml-cpp and YAML 1.2's core schema; quoted or tagged, it is a scalar.
//   - a missing value ("key:" or "-" with nothing after it) is a null node placed at the next
//     token (the next key or item, or where the indentation drops), where yaml-cpp placed it,
//     so that policy errors kept their positions when the reader changed.
// YAML syntax errors (libyaml's, including tabs used for indentation and invalid UTF-8) come
// back with the line and column where libyaml found the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mcpwarden {

inline constexpr int kYamlMaxDepth = 100;
inline constexpr std::uint64_t kYamlMaxAliasNodes = 1000000;

class YamlNode;

struct YamlEntry {
    const YamlNode* key;
    const YamlNode* value;
};

enum class YamlScalarStyle : std::uint8_t { plain, single_quoted, double_quoted, literal, folded };

class YamlNode {
public:
    enum class Kind : std::uint8_t { null, scalar, sequence, mapping };

    Kind kind() const { return kind_; }
    bool is_null() const { return kind_ == Kind::null; }
    bool is_scalar() const { return kind_ == Kind::scalar; }
    bool is_sequence() const { return kind_ == Kind::sequence; }
    bool is_mapping() const { return kind_ == Kind::mapping; }

    // A scalar's text; a null's as written ("", "~", "null"); empty for collections.
    const std::string& text() const { return text_; }
    YamlScalarStyle style() const { return style_; }
    bool quoted() const {
        return style_ == YamlScalarStyle::single_quoted || style_ == YamlScalarStyle::double_quoted;
    }
    bool tagged() const { return tagged_; }  // written with a tag (!!str, !foo)

    int line() const { return line_; }  // 1-based
    int column() const { return column_; }  // 1-based, in characters

    // A sequence's items; empty for anything else.
    std::span<const YamlNode* const> items() const {
        if (!is_sequence()) return {};
        return {children_.items, count_};
    }
    // A mapping's entries in document order, duplicate keys included; empty for anything else.
    std::span<const YamlEntry> entries() const {
        if (!is_mapping()) return {};
        return {children_.entries, count_};
    }
    std::size_t size() const { return count_; }  // items or entries

private:
    friend class YamlReader;
    // 64 bytes: a 100,000-rule policy has half a million nodes.
    std::string text_;
    std::uint64_t expanded_ = 1;  // nodes of this subtree with aliases counted as copies
    union {
        std::size_t first;  // while reading: where the children start in the reader's lists
        const YamlNode* const* items;
        const YamlEntry* entries;
    } children_{0};
    std::uint32_t count_ = 0;
    int line_ = 1;
    int column_ = 1;
    Kind kind_ = Kind::null;
    YamlScalarStyle style_ = YamlScalarStyle::plain;
    bool tagged_ = false;
};

// Owns the nodes; movable (nodes keep their addresses), not copyable.
class YamlDocument {
public:
    YamlDocument() = default;
    YamlDocument(YamlDocument&&) = default;
    YamlDocument& operator=(YamlDocument&&) = default;
    YamlDocument(const YamlDocument&) = delete;
    YamlDocument& operator=(const YamlDocument&) = delete;

    // The root: a null node at 1:1 when the text holds no document (empty, only comments).
    const YamlNode& root() const { return root_ ? *root_ : empty_; }
    std::size_t node_count() const { return nodes_; }  // nodes written (aliases share)

private:
    friend class YamlReader;
    // Blocks that never move their nodes, growing from 32 to 4096 nodes (a deque's blocks hold
    // only 8 of them).
    struct Block {
        std::unique_ptr<YamlNode[]> nodes;
        std::size_t used = 0;
        std::size_t capacity = 0;
    };
    std::vector<Block> blocks_;
    std::size_t nodes_ = 0;
    std::vector<const YamlNode*> items_;
    std::vector<YamlEntry> entries_;
    const YamlNode* root_ = nullptr;
    YamlNode empty_;
};

struct YamlProblem {
    int line = 1;    // 1-based
    int column = 1;  // 1-based
    std::string message;  // "did not find expected key (while parsing a block mapping at 2:3)"
};

// Reads text holding at most one YAML document. On a problem returns nullopt and, if problem
// is given, fills it in with the position.
std::optional<YamlDocument> read_yaml(std::string_view text, YamlProblem* problem = nullptr);

}  // namespace mcpwarden
