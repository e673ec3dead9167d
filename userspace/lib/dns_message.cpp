// SPDX-License-Identifier: Apache-2.0
#include "dns_message.h"

#include <algorithm>
#include <cctype>

namespace mcpwarden {
namespace {

class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> wire) : w_(wire) {}
    bool u8(std::uint8_t& v) {
        if (pos_ + 1 > w_.size()) return false;
        v = w_[pos_++];
        return true;
    }
    bool u16(std::uint16_t& v) {
        if (pos_ + 2 > w_.size()) return false;
        v = static_cast<std::uint16_t>((w_[pos_] << 8) | w_[pos_ + 1]);
        pos_ += 2;
        return true;
    }
    bool u32(std::uint32_t& v) {
        if (pos_ + 4 > w_.size()) return false;
        v = (std::uint32_t(w_[pos_]) << 24) | (std::uint32_t(w_[pos_ + 1]) << 16) |
            (std::uint32_t(w_[pos_ + 2]) << 8) | w_[pos_ + 3];
        pos_ += 4;
        return true;
    }
    bool skip(size_t n) {
        if (pos_ + n > w_.size()) return false;
        pos_ += n;
        return true;
    }
    // A possibly compressed name; lower-cased, dot-separated, no trailing dot.
    bool name(std::string& out, std::string* why) {
        out.clear();
        size_t p = pos_;
        bool jumped = false;
        int jumps = 0;
        size_t total = 0;
        for (;;) {
            if (p >= w_.size()) return fail(why, "name runs past the end");
            std::uint8_t len = w_[p];
            if ((len & 0xc0) == 0xc0) {
                if (p + 1 >= w_.size()) return fail(why, "truncated compression pointer");
                size_t target = (std::size_t(len & 0x3f) << 8) | w_[p + 1];
                if (target >= p) return fail(why, "compression pointer does not point backwards");
                if (++jumps > 64) return fail(why, "compression loop");
                if (!jumped) pos_ = p + 2;
                jumped = true;
                p = target;
                continue;
            }
            if (len & 0xc0) return fail(why, "unsupported label type");
            if (len == 0) {
                if (!jumped) pos_ = p + 1;
                return true;
            }
            if (p + 1 + len > w_.size()) return fail(why, "label runs past the end");
            total += len + 1;
            if (total > 255) return fail(why, "name longer than 255 bytes");
            if (!out.empty()) out += '.';
            for (size_t i = 0; i < len; ++i) {
                char c = static_cast<char>(w_[p + 1 + i]);
                out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            p += 1 + len;
        }
    }
    size_t pos() const { return pos_; }
    static bool fail(std::string* why, const char* text) {
        if (why) *why = text;
        return false;
    }

private:
    std::span<const std::uint8_t> w_;
    size_t pos_ = 0;
};

}  // namespace

std::optional<DnsMessage> parse_dns(std::span<const std::uint8_t> wire, std::string* why) {
    Reader r(wire);
    DnsMessage m;
    std::uint16_t qd, an, ns, ar;
    if (!r.u16(m.id) || !r.u16(m.flags) || !r.u16(qd) || !r.u16(an) || !r.u16(ns) || !r.u16(ar)) {
        Reader::fail(why, "shorter than a DNS header");
        return std::nullopt;
    }
    if (qd > 16 || an > 512 || ns > 512 || ar > 512) {
        Reader::fail(why, "implausible record counts");
        return std::nullopt;
    }
    for (int i = 0; i < qd; ++i) {
        DnsQuestion q;
        if (!r.name(q.name, why) || !r.u16(q.qtype) || !r.u16(q.qclass)) {
            if (why && why->empty()) *why = "truncated question";
            return std::nullopt;
        }
        m.questions.push_back(std::move(q));
    }
    int records = an + ns + ar;
    for (int i = 0; i < records; ++i) {
        DnsRecord rec;
        std::uint16_t rdlen;
        if (!r.name(rec.name, why) || !r.u16(rec.type) || !r.u16(rec.rclass) || !r.u32(rec.ttl) || !r.u16(rdlen)) {
            if (why && why->empty()) *why = "truncated record";
            return std::nullopt;
        }
        size_t start = r.pos();
        if (start + rdlen > wire.size()) {
            Reader::fail(why, "record data runs past the end");
            return std::nullopt;
        }
        if (i < an) {
            if (rec.type == dns::kTypeA || rec.type == dns::kTypeAaaa) {
                size_t want = rec.type == dns::kTypeA ? 4 : 16;
                if (rdlen != want) {
                    Reader::fail(why, "address record of the wrong length");
                    return std::nullopt;
                }
                rec.address.assign(wire.begin() + start, wire.begin() + start + rdlen);
            } else if (rec.type == dns::kTypeCname) {
                Reader sub(wire);
                sub.skip(start);
                if (!sub.name(rec.target, why) || sub.pos() > start + rdlen) {
                    if (why && why->empty()) *why = "bad CNAME target";
                    return std::nullopt;
                }
            }
            m.answers.push_back(std::move(rec));
        }
        r.skip(rdlen);
    }
    return m;
}

std::vector<std::uint8_t> dns_error_reply(std::span<const std::uint8_t> query, std::uint8_t rcode) {
    std::vector<std::uint8_t> out;
    if (query.size() < 12) return out;
    // Header + the first question, copied as asked.
    Reader r(query);
    r.skip(12);
    std::uint16_t qd = static_cast<std::uint16_t>((query[4] << 8) | query[5]);
    size_t end = 12;
    if (qd >= 1) {
        std::string name;
        std::uint16_t t, c;
        if (r.name(name, nullptr) && r.u16(t) && r.u16(c)) end = r.pos();
    }
    out.assign(query.begin(), query.begin() + end);
    std::uint16_t flags = static_cast<std::uint16_t>((query[2] << 8) | query[3]);
    flags = static_cast<std::uint16_t>((flags & 0x7900) | dns::kFlagQr | 0x0080 /* RA */ | rcode);
    out[2] = static_cast<std::uint8_t>(flags >> 8);
    out[3] = static_cast<std::uint8_t>(flags);
    out[4] = 0;
    out[5] = end > 12 ? 1 : 0;
    for (int i = 6; i < 12; ++i) out[i] = 0;
    return out;
}

std::vector<DnsAddress> dns_addresses_for(const DnsMessage& m, const std::string& qname) {
    std::vector<std::pair<std::string, std::uint32_t>> names{{qname, 0xffffffffu}};
    for (int round = 0; round < 16; ++round) {
        bool grew = false;
        for (const auto& rec : m.answers) {
            if (rec.type != dns::kTypeCname) continue;
            for (size_t i = 0; i < names.size(); ++i) {
                if (rec.name != names[i].first) continue;
                bool known = std::any_of(names.begin(), names.end(), [&](const auto& n) { return n.first == rec.target; });
                if (!known) {
                    names.push_back({rec.target, std::min(names[i].second, rec.ttl)});
                    grew = true;
                }
            }
        }
        if (!grew) break;
    }
    std::vector<DnsAddress> out;
    for (const auto& rec : m.answers) {
        if (rec.address.empty()) continue;
        for (const auto& [n, ttl] : names) {
            if (rec.name == n) out.push_back({rec.address, std::min(ttl, rec.ttl)});
        }
    }
    return out;
}

std::vector<std::uint8_t> dns_make_query(std::uint16_t id, const std::string& name, std::uint16_t qtype) {
    std::vector<std::uint8_t> q{static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t start = 0;
    while (start <= name.size() && !name.empty()) {
        size_t dot = name.find('.', start);
        if (dot == std::string::npos) dot = name.size();
        q.push_back(static_cast<std::uint8_t>(dot - start));
        q.insert(q.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    q.push_back(0);
    q.push_back(static_cast<std::uint8_t>(qtype >> 8));
    q.push_back(static_cast<std::uint8_t>(qtype));
    q.push_back(0);
    q.push_back(1);
    return q;
}

}  // namespace mcpwarden
