// SPDX-License-Identifier: Apache-2.0
// Parsing of the quantities a policy and the command line speak in.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mcpwarden {

// "64M", "512Mi", "1G", "1.5GiB", "4096" (bytes). Decimal suffixes (k, M, G, T) are powers of
// 1000 only when written kB/MB/GB/TB; bare K/M/G/T and Ki/Mi/Gi/Ti are powers of 1024 (what
// people mean by "64M" of memory). Returns nullopt and sets *why on error.
std::optional<std::uint64_t> parse_size(std::string_view text, std::string* why = nullptr);

// "1s", "500ms", "10m", "1h", "1.5s", "2m30s". A bare number is seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text,
                                                        std::string* why = nullptr);

// CPU cores: "1", "0.5", "1.25", "250m" (millicores). Returns millicores.
std::optional<std::uint32_t> parse_cpu(std::string_view text, std::string* why = nullptr);

std::string format_size(std::uint64_t bytes);
std::string format_duration(std::chrono::milliseconds d);

}  // namespace mcpwarden
