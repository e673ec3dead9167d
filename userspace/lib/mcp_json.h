// SPDX-License-Identifier: Apache-2.0
// The JSON limit checker of the MCP proxy: one pass over the raw bytes of a message that
// validates JSON syntax and UTF-8 and enforces the input limits (nesting depth, string bytes,
// array length) *before* anything is parsed into a tree, with memory bounded by the depth
// limit. On the way it notes the JSON-RPC envelope (id, method, result/error) of a top-level
// object, which is all the proxy needs to route most messages without parsing them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mcpwarden {

struct JsonLimits {
    std::uint32_t max_depth = 0;         // containers nested; 0 = no limit
    std::uint64_t max_string_bytes = 0;  // decoded UTF-8 bytes of one string (keys too); 0 = none
    std::uint64_t max_array_length = 0;  // elements of one array; 0 = none
};

enum class JsonViolation {
    none,
    syntax,        // not JSON (reason() says what)
    utf8,          // a string holds bytes that are not UTF-8 (or a lone surrogate escape)
    depth,         // nested deeper than max_depth
    string_bytes,  // a string longer than max_string_bytes
    array_length,  // an array with more than max_array_length elements
};

std::string_view to_string(JsonViolation v);

// What the scanner learnt about a top-level object's JSON-RPC members (the last occurrence of
// a duplicated member wins, as in every JSON parser the peers use).
struct JsonEnvelope {
    bool is_object = false;
    bool has_id = false, has_method = false, has_result = false, has_error = false;
    std::string id;      // raw JSON text of "id" (at most kMaxIdBytes; longer = id_too_long)
    bool id_too_long = false;
    std::string method;  // decoded "method" when it is a string of at most kMaxMethodBytes
    bool method_is_string = false;
    static constexpr std::size_t kMaxIdBytes = 1024;
    static constexpr std::size_t kMaxMethodBytes = 256;
};

// A resumable scanner: feed() the bytes of one document in as many pieces as they come, then
// finish(). Memory: the container stack (bounded by max_depth) and the small envelope fields.
class JsonScanner {
public:
    explicit JsonScanner(JsonLimits limits = {});
    void reset();
    // Scans more bytes; false once the document is known to be invalid or over a limit.
    bool feed(std::string_view bytes);
    // End of the document. Returns the first violation found (none = valid and within limits).
    JsonViolation finish();

    JsonViolation violation() const { return violation_; }
    std::uint64_t offset() const { return offset_; }      // where the violation was found
    std::uint64_t observed() const { return observed_; }  // depth, string bytes or array length
    std::uint64_t limit() const;                          // the limit it broke
    const char* reason() const { return reason_; }        // for syntax and utf8 violations
    const JsonEnvelope& envelope() const { return env_; }

private:
    enum class State : std::uint8_t;
    enum class Member : std::uint8_t { other, id, method, result, error };
    struct Frame {
        bool is_array;
        std::uint64_t count;
    };

    bool fail(JsonViolation v, const char* reason, std::uint64_t observed = 0);
    bool begin_value(char c);
    void end_value();
    void end_string();
    void push_codepoint(std::uint32_t cp);
    void capture(const char* p, std::size_t n);

    JsonLimits limits_;
    State state_;
    std::vector<Frame> stack_;
    JsonViolation violation_ = JsonViolation::none;
    const char* reason_ = "";
    std::uint64_t offset_ = 0, observed_ = 0;
    bool done_ = false;  // the top-level value is complete

    // Current string.
    bool in_key_ = false;
    std::uint64_t str_bytes_ = 0;
    std::uint32_t utf8_need_ = 0;  // continuation bytes still expected
    std::uint8_t utf8_lo_ = 0x80, utf8_hi_ = 0xBF;  // range of the next continuation byte
    std::uint32_t hex_left_ = 0, hex_value_ = 0;
    std::uint32_t high_surrogate_ = 0;  // waiting for "\uDC00".."\uDFFF"
    // Number and literal tokens.
    std::uint8_t num_state_ = 0;
    const char* literal_ = nullptr;

    // Envelope capture (top-level object members only).
    JsonEnvelope env_;
    std::string key_;          // decoded key at depth 1 (first kMaxKey bytes)
    bool key_long_ = false;
    Member member_ = Member::other;
    bool capturing_id_ = false, capturing_method_ = false;
    std::string id_buf_, method_buf_;
    bool id_buf_long_ = false, method_long_ = false, method_string_ = false;
};

// Recovers the raw "id" of a JSON-RPC request from text the scanner rejected (over a limit, so
// the text up to the violation was JSON) or from the head and tail of a line too long to keep.
// Returns the raw JSON of the id only when it is a string or an integer, as JSON-RPC allows.
std::optional<std::string> recover_id(std::string_view text);
struct RecoveredEnvelope {
    std::optional<std::string> id;
    bool has_id = false, has_method = false, has_result = false, has_error = false;
};
RecoveredEnvelope recover_envelope(std::string_view text);
std::optional<std::string> recover_id_from_tail(std::string_view tail);

// A canonical text for an id (string or integer) so "\u0041" and "A" are the same request;
// nullopt when raw is not a valid id.
std::optional<std::string> canonical_id(std::string_view raw);

}  // namespace mcpwarden

namespace mcpwarden {

// Editing a valid JSON document in place, so that everything around an edit keeps the bytes
// and key order its writer gave it (a re-serialisation would sort keys and reformat numbers).
// Every function expects text that is valid JSON (the scanner said so); offsets are bytes.
struct JsonSpan {
    std::size_t begin = 0, end = 0;  // [begin, end)
};
// The value that starts at or after `pos` (whitespace skipped).
JsonSpan json_value_at(std::string_view text, std::size_t pos);
// Member `key` of the object `object` (the last one when it is duplicated); nullopt when absent
// or when `object` is not an object.
std::optional<JsonSpan> json_member(std::string_view text, JsonSpan object, std::string_view key);
// The elements of the array `array` (empty when it is not an array).
std::vector<JsonSpan> json_elements(std::string_view text, JsonSpan array);

}  // namespace mcpwarden
