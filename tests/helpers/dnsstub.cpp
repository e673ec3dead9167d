// SPDX-License-Identifier: Apache-2.0
// A tiny authoritative DNS server for tests, on UDP and TCP.
//
//   dnsstub ADDR PORT TTL RECORD...
//     NAME=IPV4          A record (NAME may be *.zone: matches one label, not the apex)
//     NAME=>TARGET       CNAME
//     *=IPV4             every name (a stand-in "public resolver" that answers anything)
// Unknown names get NXDOMAIN; AAAA queries for known names get an empty NOERROR answer.
// Prints "ready" on stdout once it listens.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

std::map<std::string, std::string> a_records, cnames;
std::string catch_all;
unsigned ttl = 60;

bool read_name(const std::vector<unsigned char>& m, size_t& p, std::string& out) {
    out.clear();
    while (p < m.size() && m[p] != 0) {
        size_t len = m[p];
        if (len > 63 || p + 1 + len > m.size()) return false;
        if (!out.empty()) out += '.';
        for (size_t i = 0; i < len; ++i) out += static_cast<char>(tolower(m[p + 1 + i]));
        p += 1 + len;
    }
    if (p >= m.size()) return false;
    ++p;
    return true;
}

void put_name(std::vector<unsigned char>& out, const std::string& name) {
    size_t start = 0;
    while (start < name.size()) {
        size_t dot = name.find('.', start);
        if (dot == std::string::npos) dot = name.size();
        out.push_back(static_cast<unsigned char>(dot - start));
        out.insert(out.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    out.push_back(0);
}

void put16(std::vector<unsigned char>& o, unsigned v) {
    o.push_back(static_cast<unsigned char>(v >> 8));
    o.push_back(static_cast<unsigned char>(v));
}

std::string lookup_a(const std::string& name) {
    if (!catch_all.empty()) return catch_all;
    if (auto it = a_records.find(name); it != a_records.end()) return it->second;
    auto dot = name.find('.');
    if (dot != std::string::npos) {
        // append, not "*" + substr(): GCC 12 at -O3 warns -Wrestrict on the latter (PR 105329)
        if (auto it = a_records.find(std::string("*").append(name, dot)); it != a_records.end()) return it->second;
    }
    return "";
}

std::vector<unsigned char> answer(const std::vector<unsigned char>& q) {
    if (q.size() < 12) return {};
    size_t p = 12;
    std::string qname;
    if (!read_name(q, p, qname) || p + 4 > q.size()) return {};
    unsigned qtype = (q[p] << 8) | q[p + 1];
    std::vector<unsigned char> out(q.begin(), q.begin() + static_cast<long>(p + 4));
    out[2] = 0x84 | (q[2] & 0x01);  // QR, AA, keep RD
    out[3] = 0x80;
    out[4] = 0;
    out[5] = 1;
    std::vector<std::pair<std::string, std::string>> chain;  // (owner, cname target)
    std::string name = qname;
    for (int i = 0; i < 8 && cnames.count(name); ++i) {
        chain.push_back({name, cnames[name]});
        name = cnames[name];
    }
    std::string ip = lookup_a(name);
    if (ip.empty() && chain.empty()) {
        out[3] = 0x83;  // NXDOMAIN
        return out;
    }
    unsigned count = 0;
    for (const auto& [owner, target] : chain) {
        put_name(out, owner);
        put16(out, 5);
        put16(out, 1);
        put16(out, ttl >> 16);
        put16(out, ttl & 0xffff);
        std::vector<unsigned char> rd;
        put_name(rd, target);
        put16(out, static_cast<unsigned>(rd.size()));
        out.insert(out.end(), rd.begin(), rd.end());
        ++count;
    }
    if (qtype == 1 && !ip.empty()) {
        put_name(out, name);
        put16(out, 1);
        put16(out, 1);
        put16(out, ttl >> 16);
        put16(out, ttl & 0xffff);
        put16(out, 4);
        in_addr a{};
        inet_pton(AF_INET, ip.c_str(), &a);
        auto* b = reinterpret_cast<unsigned char*>(&a);
        out.insert(out.end(), b, b + 4);
        ++count;
    }
    out[6] = static_cast<unsigned char>(count >> 8);
    out[7] = static_cast<unsigned char>(count);
    return out;
}

void serve_tcp_client(int c) {
    for (;;) {
        unsigned char len[2];
        if (recv(c, len, 2, MSG_WAITALL) != 2) break;
        std::vector<unsigned char> q((len[0] << 8) | len[1]);
        if (recv(c, q.data(), q.size(), MSG_WAITALL) != static_cast<ssize_t>(q.size())) break;
        auto a = answer(q);
        std::vector<unsigned char> out;
        put16(out, static_cast<unsigned>(a.size()));
        out.insert(out.end(), a.begin(), a.end());
        if (send(c, out.data(), out.size(), 0) < 0) break;
    }
    close(c);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) return 2;
    ttl = static_cast<unsigned>(std::atoi(argv[3]));
    for (int i = 4; i < argc; ++i) {
        std::string r = argv[i];
        auto arrow = r.find("=>");
        if (arrow != std::string::npos) {
            cnames[r.substr(0, arrow)] = r.substr(arrow + 2);
        } else if (r.rfind("*=", 0) == 0) {
            catch_all = r.substr(2);
        } else {
            a_records[r.substr(0, r.find('='))] = r.substr(r.find('=') + 1);
        }
    }
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
    inet_pton(AF_INET, argv[1], &sa.sin_addr);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    int t = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || bind(t, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        listen(t, 16) != 0) {
        perror("dnsstub: bind");
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    for (;;) {
        pollfd fds[2] = {{u, POLLIN, 0}, {t, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0) continue;
        if (fds[0].revents & POLLIN) {
            std::vector<unsigned char> q(4096);
            sockaddr_storage from{};
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(u, q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
            if (n > 0) {
                q.resize(static_cast<size_t>(n));
                auto a = answer(q);
                if (!a.empty()) sendto(u, a.data(), a.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
            }
        }
        if (fds[1].revents & POLLIN) {
            int c = accept(t, nullptr, nullptr);
            if (c >= 0) std::thread(serve_tcp_client, c).detach();
        }
    }
}
