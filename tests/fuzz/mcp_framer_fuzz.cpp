// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the MCP framer and limit checker (mcp_framer.h, mcp_json.h), which see every
// byte a client or server sends before anything is parsed. Checks:
//  - the framer's memory stays bounded by the line limit, whatever the chunking;
//  - the scanner agrees with nlohmann::json on what is JSON (differential), fed whole or in
//    pieces, and what it accepts under limits really is within them;
//  - the envelope it captures (id, method, result/error) is what a parser sees;
//  - id recovery never returns an id that is not a valid JSON-RPC id.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "mcp_framer.h"
#include "mcp_json.h"

using namespace mcpwarden;
using nlohmann::json;

#define CHECK(cond) \
    do {            \
        if (!(cond)) std::abort(); \
    } while (0)

namespace {

struct Figures {
    std::size_t depth = 0, string_bytes = 0, array_length = 0;
};

void measure(const json& j, std::size_t depth, Figures& f) {
    if (j.is_object() || j.is_array()) {
        f.depth = std::max(f.depth, depth + 1);
        if (j.is_array()) f.array_length = std::max(f.array_length, j.size());
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (j.is_object()) f.string_bytes = std::max(f.string_bytes, it.key().size());
            measure(it.value(), depth + 1, f);
        }
    } else if (j.is_string()) {
        f.string_bytes = std::max(f.string_bytes, j.get_ref<const std::string&>().size());
    }
}

void check_line(std::string_view line, const JsonLimits& limits, std::uint32_t split_seed) {
    JsonScanner whole(limits);
    whole.feed(line);
    JsonViolation v = whole.finish();

    // Fed in pieces: the same answer.
    JsonScanner pieces(limits);
    std::size_t off = 0, step = 1 + split_seed % 7;
    while (off < line.size()) {
        std::size_t n = std::min(step, line.size() - off);
        pieces.feed(line.substr(off, n));
        off += n;
        step = 1 + (step * 5 + 3) % 11;
    }
    CHECK(pieces.finish() == v);

    // Without limits, the scanner and nlohmann agree on what is JSON. (Only lines the scanner
    // bounded in depth are handed to the recursive parser.)
    JsonScanner free_scan(JsonLimits{256, 0, 0});
    free_scan.feed(line);
    JsonViolation fv = free_scan.finish();
    if (fv == JsonViolation::depth) return;
    if (line.find('\0') != std::string_view::npos) {
        // No JSON text holds a raw NUL (nlohmann stops reading at one, so it is no referee here).
        CHECK(fv != JsonViolation::none);
        return;
    }
    bool parser_accepts = json::accept(line);
    if (fv == JsonViolation::none && !parser_accepts) {
        // Valid JSON that nlohmann cannot hold: a number beyond a double (1e999). The proxy
        // treats that as unparseable where it must parse (tested in the session target).
        try {
            json unused = json::parse(line);
            (void)unused;
        } catch (const json::out_of_range& e) {
            if (e.id == 406) return;
        } catch (...) {
        }
        std::abort();
    }
    CHECK((fv == JsonViolation::none) == parser_accepts);
    if (fv != JsonViolation::none) {
        CHECK(v == JsonViolation::syntax || v == JsonViolation::utf8 || v == fv ||
              v == JsonViolation::depth || v == JsonViolation::string_bytes || v == JsonViolation::array_length);
        return;
    }
    json j = json::parse(line);
    Figures f;
    measure(j, 0, f);
    if (v == JsonViolation::none) {
        if (limits.max_depth) CHECK(f.depth <= limits.max_depth);
        if (limits.max_string_bytes) CHECK(f.string_bytes <= limits.max_string_bytes);
        if (limits.max_array_length) CHECK(f.array_length <= limits.max_array_length);
    } else {
        CHECK(v == JsonViolation::depth || v == JsonViolation::string_bytes || v == JsonViolation::array_length);
        CHECK(whole.observed() > whole.limit());
    }
    // The envelope is what the parser sees.
    const JsonEnvelope& env = free_scan.envelope();
    CHECK(env.is_object == j.is_object());
    if (!j.is_object()) return;
    CHECK(env.has_id == j.contains("id"));
    CHECK(env.has_method == j.contains("method"));
    CHECK(env.has_result == j.contains("result"));
    CHECK(env.has_error == j.contains("error"));
    if (env.has_id && !env.id_too_long) CHECK(json::parse(env.id) == j["id"]);
    if (env.method_is_string) CHECK(j["method"].is_string() && j["method"].get<std::string>() == env.method);
    if (j.contains("method") && j["method"].is_string() && j["method"].get_ref<const std::string&>().size() <= 256 &&
        j["method"].get_ref<const std::string&>().find('\0') == std::string::npos)
        CHECK(env.method_is_string);
}

void check_recovery(std::string_view text) {
    for (const auto& id : {recover_id(text), recover_id_from_tail(text)}) {
        if (!id) continue;
        auto c = canonical_id(*id);
        CHECK(c.has_value());
        json j = json::parse(*id);
        CHECK(j.is_string() || j.is_number_integer());
    }
}

struct Sink : LineFramer::Sink {
    std::function<void(std::string_view)> on_line;
    std::uint64_t oversized_bytes = 0;
    std::size_t max = 0;
    void line(std::string_view t) override {
        CHECK(t.size() <= max);
        CHECK(t.find('\n') == std::string_view::npos);
        on_line(t);
    }
    void oversized(const LineFramer::Oversized& o) override {
        CHECK(o.bytes > max);
        CHECK(o.head.size() <= LineFramer::kKeep && o.tail.size() <= LineFramer::kKeep);
        check_recovery(o.head);
        check_recovery(o.tail);
        oversized_bytes += o.bytes;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    // Header: line limit, limits, chunking.
    std::size_t max_line = 16 + (data[0] | (data[1] << 8)) % 4096;
    JsonLimits limits{static_cast<std::uint32_t>(data[2] % 12), static_cast<std::uint64_t>(data[3] % 40),
                      static_cast<std::uint64_t>((data[2] >> 4) % 9)};
    std::uint32_t seed = data[1];
    std::string_view input(reinterpret_cast<const char*>(data + 4), size - 4);

    LineFramer framer(max_line);
    Sink sink;
    sink.max = max_line;
    std::size_t lines = 0;
    sink.on_line = [&](std::string_view line) {
        ++lines;
        check_line(line, limits, seed + static_cast<std::uint32_t>(lines));
        check_recovery(line);
    };
    std::size_t off = 0, step = 1 + seed % 97;
    while (off < input.size()) {
        std::size_t n = std::min(step, input.size() - off);
        framer.feed(input.substr(off, n), sink);
        CHECK(framer.buffered() <= max_line + 1 + 2 * (LineFramer::kKeep + 1));
        off += n;
        step = 1 + (step * 31 + 7) % 257;
    }
    framer.finish(sink);
    // The whole input as one document too (JSON without newlines is one line).
    if (input.find('\n') == std::string_view::npos) check_line(input, limits, seed);
    return 0;
}
