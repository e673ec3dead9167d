// SPDX-License-Identifier: Apache-2.0
#include "mcp_json.h"

#include <array>
#include <cstring>

#include <nlohmann/json.hpp>

namespace mcpwarden {

std::string_view to_string(JsonViolation v) {
    switch (v) {
        case JsonViolation::none: return "none";
        case JsonViolation::syntax: return "syntax";
        case JsonViolation::utf8: return "utf8";
        case JsonViolation::depth: return "depth";
        case JsonViolation::string_bytes: return "string_bytes";
        case JsonViolation::array_length: return "array_length";
    }
    return "syntax";
}

enum class JsonScanner::State : std::uint8_t {
    value,         // a value must come
    value_or_end,  // after '[': a value or ']'
    key_or_end,    // after '{': a key or '}'
    key,           // after ',' in an object: a key
    colon,
    after_value,   // ',' or the closer (or only whitespace after the top-level value)
    string,
    escape,
    hex,
    low_backslash,  // after a high surrogate escape: "\" of the low one
    low_u,          // ... then "u"
    number,
    literal,
};

namespace {

constexpr std::size_t kMaxKeyCapture = 64;

// Bytes a string may hold as they are, without escaping or UTF-8 decoding.
constexpr std::array<bool, 256> make_plain() {
    std::array<bool, 256> t{};
    for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
    return t;
}
constexpr auto kPlain = make_plain();

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The decoded text of a raw JSON string token (quotes included), or nullopt.
std::optional<std::string> decode_string(std::string_view raw) {
    if (raw.size() < 2 || raw.front() != '"' || raw.back() != '"') return std::nullopt;
    if (raw.find('\\') == std::string_view::npos) return std::string(raw.substr(1, raw.size() - 2));
    try {
        auto j = nlohmann::json::parse(raw);
        if (j.is_string()) return j.get<std::string>();
    } catch (const nlohmann::json::exception&) {
    }
    return std::nullopt;
}

}  // namespace

JsonScanner::JsonScanner(JsonLimits limits) : limits_(limits) { reset(); }

void JsonScanner::reset() {
    state_ = State::value;
    stack_.clear();
    violation_ = JsonViolation::none;
    reason_ = "";
    offset_ = observed_ = 0;
    done_ = false;
    in_key_ = false;
    str_bytes_ = 0;
    utf8_need_ = 0;
    hex_left_ = hex_value_ = high_surrogate_ = 0;
    num_state_ = 0;
    literal_ = nullptr;
    env_ = JsonEnvelope{};
    key_.clear();
    key_long_ = false;
    member_ = Member::other;
    capturing_id_ = capturing_method_ = false;
    id_buf_.clear();
    method_buf_.clear();
    id_buf_long_ = method_long_ = method_string_ = false;
}

std::uint64_t JsonScanner::limit() const {
    switch (violation_) {
        case JsonViolation::depth: return limits_.max_depth;
        case JsonViolation::string_bytes: return limits_.max_string_bytes;
        case JsonViolation::array_length: return limits_.max_array_length;
        default: return 0;
    }
}

bool JsonScanner::fail(JsonViolation v, const char* reason, std::uint64_t observed) {
    if (violation_ == JsonViolation::none) {
        violation_ = v;
        reason_ = reason;
        observed_ = observed;
    }
    return false;
}

void JsonScanner::capture(const char* p, std::size_t n) {
    if (capturing_id_) {
        if (id_buf_.size() + n > JsonEnvelope::kMaxIdBytes) id_buf_long_ = true;
        else id_buf_.append(p, n);
    }
    if (capturing_method_) {
        if (method_buf_.size() + n > JsonEnvelope::kMaxMethodBytes + 2) method_long_ = true;
        else method_buf_.append(p, n);
    }
    if (in_key_ && stack_.size() == 1) {
        if (key_.size() + n > kMaxKeyCapture) key_long_ = true;
        else key_.append(p, n);
    }
}

bool JsonScanner::begin_value(char c) {
    if (!stack_.empty() && stack_.back().is_array) {
        auto& count = stack_.back().count;
        ++count;
        if (limits_.max_array_length && count > limits_.max_array_length)
            return fail(JsonViolation::array_length, "array too long", count);
    }
    if (stack_.empty() && c == '{') env_.is_object = true;
    if (stack_.size() == 1 && !stack_.back().is_array) {
        switch (member_) {
            case Member::id:
                env_.has_id = true;
                capturing_id_ = true;
                id_buf_.clear();
                id_buf_long_ = false;
                break;
            case Member::method:
                env_.has_method = true;
                capturing_method_ = true;
                method_buf_.clear();
                method_long_ = false;
                method_string_ = c == '"';
                break;
            case Member::result: env_.has_result = true; break;
            case Member::error: env_.has_error = true; break;
            case Member::other: break;
        }
        capture(&c, 1);
    }
    switch (c) {
        case '{':
        case '[':
            if (limits_.max_depth && stack_.size() + 1 > limits_.max_depth)
                return fail(JsonViolation::depth, "nested too deeply", stack_.size() + 1);
            stack_.push_back({c == '[', 0});
            state_ = c == '[' ? State::value_or_end : State::key_or_end;
            return true;
        case '"':
            in_key_ = false;
            str_bytes_ = 0;
            state_ = State::string;
            return true;
        case 't': literal_ = "rue"; state_ = State::literal; return true;
        case 'f': literal_ = "alse"; state_ = State::literal; return true;
        case 'n': literal_ = "ull"; state_ = State::literal; return true;
        default:
            if (c == '-' || is_digit(c)) {
                num_state_ = c == '-' ? 0 : c == '0' ? 1 : 2;
                state_ = State::number;
                return true;
            }
            return fail(JsonViolation::syntax, "expected a value");
    }
}

void JsonScanner::end_value() {
    if (stack_.size() == 1 && (capturing_id_ || capturing_method_)) {
        if (capturing_id_) {
            env_.id = id_buf_long_ ? std::string() : id_buf_;
            env_.id_too_long = id_buf_long_;
        }
        if (capturing_method_) {
            env_.method.clear();
            env_.method_is_string = false;
            if (method_string_ && !method_long_) {
                if (auto m = decode_string(method_buf_)) {
                    env_.method = *m;
                    env_.method_is_string = true;
                }
            }
        }
        capturing_id_ = capturing_method_ = false;
    }
    if (stack_.empty()) done_ = true;
    state_ = State::after_value;
}

void JsonScanner::end_string() {
    if (limits_.max_string_bytes && str_bytes_ > limits_.max_string_bytes) {
        fail(JsonViolation::string_bytes, "string too long", str_bytes_);
        return;
    }
    if (in_key_) {
        if (stack_.size() == 1) {
            member_ = Member::other;
            if (!key_long_) {
                auto k = decode_string(key_);
                if (k == "id") member_ = Member::id;
                else if (k == "method") member_ = Member::method;
                else if (k == "result") member_ = Member::result;
                else if (k == "error") member_ = Member::error;
            }
            key_.clear();
            key_long_ = false;
        }
        in_key_ = false;
        state_ = State::colon;
        return;
    }
    end_value();
}

void JsonScanner::push_codepoint(std::uint32_t cp) {
    str_bytes_ += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

bool JsonScanner::feed(std::string_view bytes) {
    if (violation_ != JsonViolation::none) return false;
    const char* p = bytes.data();
    const std::size_t n = bytes.size();
    std::size_t i = 0;
    while (i < n) {
        if (state_ == State::string && utf8_need_ == 0) {
            // Fast path: a run of plain ASCII inside a string, eight bytes at a time while no
            // byte is a control character, '"', '\\' or non-ASCII.
            std::size_t start = i;
            while (i + 8 <= n) {
                std::uint64_t w;
                std::memcpy(&w, p + i, 8);
                constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
                std::uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
                std::uint64_t special = ((w - ones * 0x20) | (quote - ones) | (backslash - ones) | w) & highs;
                // (w - 0x20..) sets a high bit for bytes below 0x20; (x - 0x01..) for zero bytes
                // of x; w itself for bytes >= 0x80. Borrows only cause false alarms, which the
                // byte loop below settles.
                if (special) break;
                i += 8;
            }
            while (i < n && kPlain[static_cast<unsigned char>(p[i])]) ++i;
            if (i > start) {
                str_bytes_ += i - start;
                if (capturing_id_ || capturing_method_ || in_key_) capture(p + start, i - start);
                offset_ += i - start;
                continue;
            }
        }
        char c = p[i];
        auto uc = static_cast<unsigned char>(c);
        if (capturing_id_ || capturing_method_ || (in_key_ && state_ != State::key && state_ != State::key_or_end))
            capture(&c, 1);
        bool reprocess = false;
        switch (state_) {
            case State::value:
            case State::value_or_end:
                if (is_ws(c)) break;
                if (c == ']' && state_ == State::value_or_end) {
                    stack_.pop_back();
                    end_value();
                    break;
                }
                if (!begin_value(c)) goto out;
                break;
            case State::key_or_end:
            case State::key:
                if (is_ws(c)) break;
                if (c == '}' && state_ == State::key_or_end) {
                    stack_.pop_back();
                    end_value();
                    break;
                }
                if (c != '"') {
                    fail(JsonViolation::syntax, "expected a member name");
                    goto out;
                }
                in_key_ = true;
                str_bytes_ = 0;
                if (stack_.size() == 1) capture(&c, 1);
                state_ = State::string;
                break;
            case State::colon:
                if (is_ws(c)) break;
                if (c != ':') {
                    fail(JsonViolation::syntax, "expected ':'");
                    goto out;
                }
                state_ = State::value;
                break;
            case State::after_value:
                if (is_ws(c)) break;
                if (stack_.empty()) {
                    fail(JsonViolation::syntax, "text after the JSON value");
                    goto out;
                }
                if (c == ',') {
                    state_ = stack_.back().is_array ? State::value : State::key;
                } else if (c == (stack_.back().is_array ? ']' : '}')) {
                    stack_.pop_back();
                    end_value();
                } else {
                    fail(JsonViolation::syntax, stack_.back().is_array ? "expected ',' or ']'" : "expected ',' or '}'");
                    goto out;
                }
                break;
            case State::string:
                if (utf8_need_ > 0) {
                    if (uc < utf8_lo_ || uc > utf8_hi_) {
                        fail(JsonViolation::utf8, "invalid UTF-8 in a string");
                        goto out;
                    }
                    --utf8_need_;
                    utf8_lo_ = 0x80;
                    utf8_hi_ = 0xBF;
                    ++str_bytes_;
                } else if (c == '"') {
                    end_string();
                    if (violation_ != JsonViolation::none) goto out;
                } else if (c == '\\') {
                    state_ = State::escape;
                } else if (uc < 0x20) {
                    fail(JsonViolation::syntax, "control character in a string");
                    goto out;
                } else if (uc >= 0x80) {
                    if (uc >= 0xC2 && uc <= 0xDF) { utf8_need_ = 1; }
                    else if (uc == 0xE0) { utf8_need_ = 2; utf8_lo_ = 0xA0; }
                    else if (uc == 0xED) { utf8_need_ = 2; utf8_hi_ = 0x9F; }
                    else if (uc >= 0xE1 && uc <= 0xEF) { utf8_need_ = 2; }
                    else if (uc == 0xF0) { utf8_need_ = 3; utf8_lo_ = 0x90; }
                    else if (uc >= 0xF1 && uc <= 0xF3) { utf8_need_ = 3; }
                    else if (uc == 0xF4) { utf8_need_ = 3; utf8_hi_ = 0x8F; }
                    else {
                        fail(JsonViolation::utf8, "invalid UTF-8 in a string");
                        goto out;
                    }
                    ++str_bytes_;
                } else {
                    ++str_bytes_;
                }
                break;
            case State::escape:
                switch (c) {
                    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                        ++str_bytes_;
                        state_ = State::string;
                        break;
                    case 'u':
                        hex_left_ = 4;
                        hex_value_ = 0;
                        state_ = State::hex;
                        break;
                    default:
                        fail(JsonViolation::syntax, "invalid escape in a string");
                        goto out;
                }
                break;
            case State::hex: {
                int d = hex_digit(c);
                if (d < 0) {
                    fail(JsonViolation::syntax, "invalid \\u escape in a string");
                    goto out;
                }
                hex_value_ = hex_value_ * 16 + static_cast<std::uint32_t>(d);
                if (--hex_left_ > 0) break;
                std::uint32_t cp = hex_value_;
                state_ = State::string;
                if (high_surrogate_) {
                    if (cp < 0xDC00 || cp > 0xDFFF) {
                        fail(JsonViolation::utf8, "a high surrogate escape without its low surrogate");
                        goto out;
                    }
                    high_surrogate_ = 0;
                    push_codepoint(0x10000);
                } else if (cp >= 0xD800 && cp <= 0xDBFF) {
                    high_surrogate_ = cp;
                    state_ = State::low_backslash;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail(JsonViolation::utf8, "a low surrogate escape without its high surrogate");
                    goto out;
                } else {
                    push_codepoint(cp);
                }
                break;
            }
            case State::low_backslash:
                if (c != '\\') {
                    fail(JsonViolation::utf8, "a high surrogate escape without its low surrogate");
                    goto out;
                }
                state_ = State::low_u;
                break;
            case State::low_u:
                if (c != 'u') {
                    fail(JsonViolation::utf8, "a high surrogate escape without its low surrogate");
                    goto out;
                }
                hex_left_ = 4;
                hex_value_ = 0;
                state_ = State::hex;
                break;
            case State::number: {
                bool digit = is_digit(c);
                switch (num_state_) {
                    case 0: if (digit) { num_state_ = c == '0' ? 1 : 2; break; }
                            fail(JsonViolation::syntax, "invalid number"); goto out;
                    case 1: if (c == '.') num_state_ = 3;
                            else if (c == 'e' || c == 'E') num_state_ = 5;
                            else if (digit) { fail(JsonViolation::syntax, "invalid number (leading zero)"); goto out; }
                            else reprocess = true;
                            break;
                    case 2: if (digit) break;
                            if (c == '.') num_state_ = 3;
                            else if (c == 'e' || c == 'E') num_state_ = 5;
                            else reprocess = true;
                            break;
                    case 3: if (digit) { num_state_ = 4; break; }
                            fail(JsonViolation::syntax, "invalid number"); goto out;
                    case 4: if (digit) break;
                            if (c == 'e' || c == 'E') num_state_ = 5;
                            else reprocess = true;
                            break;
                    case 5: if (c == '+' || c == '-') { num_state_ = 6; break; }
                            if (digit) { num_state_ = 7; break; }
                            fail(JsonViolation::syntax, "invalid number"); goto out;
                    case 6: if (digit) { num_state_ = 7; break; }
                            fail(JsonViolation::syntax, "invalid number"); goto out;
                    case 7: if (digit) break;
                            reprocess = true;
                            break;
                }
                if (reprocess) {
                    // The byte after a number is not part of it.
                    if (capturing_id_ && !id_buf_.empty() && !id_buf_long_) id_buf_.pop_back();
                    if (capturing_method_ && !method_buf_.empty() && !method_long_) method_buf_.pop_back();
                    end_value();
                    continue;  // same byte again, in after_value
                }
                break;
            }
            case State::literal:
                if (c != *literal_) {
                    fail(JsonViolation::syntax, "invalid literal");
                    goto out;
                }
                if (*++literal_ == '\0') end_value();
                break;
        }
        ++i;
        ++offset_;
    }
    return true;
out:
    return false;
}

JsonViolation JsonScanner::finish() {
    if (violation_ != JsonViolation::none) return violation_;
    if (state_ == State::number && (num_state_ == 1 || num_state_ == 2 || num_state_ == 4 || num_state_ == 7))
        end_value();
    if (!done_) {
        fail(JsonViolation::syntax, stack_.empty() && state_ == State::value ? "empty message" : "unexpected end of the message");
    }
    return violation_;
}

std::optional<std::string> canonical_id(std::string_view raw) {
    if (raw.empty() || raw.size() > JsonEnvelope::kMaxIdBytes) return std::nullopt;
    bool digits = raw.size() <= 18 && (raw == "0" || (raw[0] >= '1' && raw[0] <= '9'));
    for (char c : raw) digits = digits && is_digit(c);
    if (digits) return std::string(raw);
    if (raw.size() >= 2 && raw.front() == '"' && raw.back() == '"') {
        bool simple = true;
        for (std::size_t i = 1; i + 1 < raw.size() && simple; ++i) {
            auto c = static_cast<unsigned char>(raw[i]);
            simple = c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
        }
        if (simple) return std::string(raw);
    }
    try {
        auto j = nlohmann::json::parse(raw);
        if (j.is_string() || j.is_number_integer()) return j.dump();
    } catch (const nlohmann::json::exception&) {
    }
    return std::nullopt;
}

std::optional<std::string> recover_id(std::string_view text) { return recover_envelope(text).id; }

RecoveredEnvelope recover_envelope(std::string_view text) {
    // A forgiving walk: depth, strings, and the members of the top-level object. It does not
    // validate; it only has to find `"id": <string or integer>` and the other members at depth 1.
    RecoveredEnvelope out;
    std::optional<std::string>& found = out.id;
    int depth = 0;
    bool expect_key = false;
    std::size_t i = 0, n = text.size();
    auto read_string = [&](std::size_t from) -> std::size_t {  // index after the closing quote
        std::size_t j = from + 1;
        while (j < n) {
            if (text[j] == '\\') j += 2;
            else if (text[j] == '"') return j + 1;
            else ++j;
        }
        return std::string_view::npos;
    };
    auto skip_ws = [&](std::size_t j) {
        while (j < n && is_ws(text[j])) ++j;
        return j;
    };
    while (i < n) {
        char c = text[i];
        if (c == '"') {
            std::size_t end = read_string(i);
            if (end == std::string_view::npos) break;
            if (depth == 1 && expect_key) {
                expect_key = false;
                auto key = decode_string(text.substr(i, end - i));
                std::size_t j = skip_ws(end);
                if (j < n && text[j] == ':') {
                    j = skip_ws(j + 1);
                    if (key == "id") out.has_id = true;
                    if (key == "method") out.has_method = true;
                    if (key == "result") out.has_result = true;
                    if (key == "error") out.has_error = true;
                    if (key == "id" && j < n) {
                        std::size_t vend = j;
                        if (text[j] == '"') vend = read_string(j);
                        else
                            while (vend < n && (is_digit(text[vend]) || text[vend] == '-' || text[vend] == '+' ||
                                                text[vend] == '.' || text[vend] == 'e' || text[vend] == 'E'))
                                ++vend;
                        if (vend != std::string_view::npos && vend > j) {
                            if (auto id = canonical_id(text.substr(j, vend - j))) found = std::string(text.substr(j, vend - j));
                        }
                    }
                    i = j;
                    continue;
                }
            }
            i = end;
            continue;
        }
        if (c == '{' || c == '[') {
            ++depth;
            expect_key = depth == 1 && c == '{';
        } else if (c == '}' || c == ']') {
            --depth;
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        }
        ++i;
    }
    return out;
}

std::optional<std::string> recover_id_from_tail(std::string_view t) {
    // Walks the last members of the top-level object backwards from its closing brace:
    // ..., "key": scalar, "id": 7 }  -- as serialisers that put "id" last (the TypeScript SDK)
    // write it. Only scalar members can be stepped over; a container ends the walk.
    std::size_t j = t.size();
    auto skip_ws = [&] {
        while (j > 0 && is_ws(t[j - 1])) --j;
    };
    auto back_string = [&]() -> std::optional<std::string_view> {  // t[j-1] is a closing quote
        if (j < 2) return std::nullopt;
        std::size_t end = j;
        std::size_t k = j - 1;
        while (k > 0) {
            --k;
            if (t[k] != '"') continue;
            std::size_t bs = 0;
            while (k >= bs + 1 && t[k - bs - 1] == '\\') ++bs;
            if (bs % 2 == 0) {
                j = k;
                return t.substr(k, end - k);
            }
        }
        return std::nullopt;
    };
    skip_ws();
    if (j == 0 || t[j - 1] != '}') return std::nullopt;
    --j;
    for (int members = 0; members < 16; ++members) {
        skip_ws();
        if (j == 0) return std::nullopt;
        std::string_view value;
        if (t[j - 1] == '"') {
            auto s = back_string();
            if (!s) return std::nullopt;
            value = *s;
        } else {
            std::size_t end = j;
            while (j > 0 && (is_digit(t[j - 1]) || t[j - 1] == '-' || t[j - 1] == '+' || t[j - 1] == '.' ||
                             (t[j - 1] >= 'a' && t[j - 1] <= 'z') || t[j - 1] == 'E'))
                --j;
            if (j == end) return std::nullopt;
            value = t.substr(j, end - j);
        }
        skip_ws();
        if (j == 0 || t[j - 1] != ':') return std::nullopt;
        --j;
        skip_ws();
        if (j == 0 || t[j - 1] != '"') return std::nullopt;
        auto key = back_string();
        if (!key) return std::nullopt;
        if (decode_string(*key) == "id") {
            if (canonical_id(value)) return std::string(value);
            return std::nullopt;
        }
        skip_ws();
        if (j == 0 || t[j - 1] != ',') return std::nullopt;
        --j;
    }
    return std::nullopt;
}

}  // namespace mcpwarden

namespace mcpwarden {

namespace {

bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::size_t skip_ws(std::string_view t, std::size_t i) {
    while (i < t.size() && json_ws(t[i])) ++i;
    return i;
}

// Past the closing quote of the string whose opening quote is at i.
std::size_t string_end(std::string_view t, std::size_t i) {
    for (++i; i < t.size(); ++i) {
        if (t[i] == '\\') ++i;
        else if (t[i] == '"') return i + 1;
    }
    return t.size();
}

}  // namespace

JsonSpan json_value_at(std::string_view t, std::size_t pos) {
    std::size_t i = skip_ws(t, pos);
    JsonSpan s{i, i};
    if (i >= t.size()) return s;
    if (t[i] == '"') {
        s.end = string_end(t, i);
        return s;
    }
    if (t[i] == '{' || t[i] == '[') {
        std::size_t depth = 0;
        for (; i < t.size(); ++i) {
            char c = t[i];
            if (c == '"') {
                i = string_end(t, i) - 1;
            } else if (c == '{' || c == '[') {
                ++depth;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                s.end = i + 1;
                return s;
            }
        }
        s.end = t.size();
        return s;
    }
    while (i < t.size() && !json_ws(t[i]) && t[i] != ',' && t[i] != '}' && t[i] != ']') ++i;
    s.end = i;
    return s;
}

std::optional<JsonSpan> json_member(std::string_view t, JsonSpan object, std::string_view key) {
    if (object.end <= object.begin || t[object.begin] != '{') return std::nullopt;
    std::optional<JsonSpan> found;
    std::size_t i = object.begin + 1;
    for (;;) {
        i = skip_ws(t, i);
        if (i >= object.end || t[i] != '"') return found;
        JsonSpan k = json_value_at(t, i);
        std::string_view raw = t.substr(k.begin + 1, k.end - k.begin - 2);
        bool match = raw == key;
        if (!match && raw.find('\\') != std::string_view::npos) {
            auto decoded = nlohmann::json::parse(t.substr(k.begin, k.end - k.begin), nullptr, false);
            match = decoded.is_string() && decoded.get_ref<const std::string&>() == key;
        }
        i = skip_ws(t, k.end) + 1;  // past ':'
        JsonSpan v = json_value_at(t, i);
        if (match) found = v;
        i = skip_ws(t, v.end);
        if (i >= object.end || t[i] != ',') return found;
        ++i;
    }
}

std::vector<JsonSpan> json_elements(std::string_view t, JsonSpan array) {
    std::vector<JsonSpan> out;
    if (array.end <= array.begin || t[array.begin] != '[') return out;
    std::size_t i = skip_ws(t, array.begin + 1);
    if (i < array.end && t[i] == ']') return out;
    for (;;) {
        JsonSpan v = json_value_at(t, i);
        out.push_back(v);
        i = skip_ws(t, v.end);
        if (i >= array.end || t[i] != ',') return out;
        ++i;
    }
}

}  // namespace mcpwarden
