// SPDX-License-Identifier: Apache-2.0
// Admission control of the agent: a cap on sandboxes running at once (overall and per policy),
// a cap on what one client holds (running plus queued) and a bounded FIFO wait queue with a
// timeout. Pure bookkeeping (the caller passes the time),
// so it is unit-tested without processes. Nothing is dropped silently: every request is
// admitted at once, queued (and later admitted or expired), or refused as busy.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mcpwarden {

class Admission {
public:
    using Clock = std::chrono::steady_clock;
    using Ticket = std::uint64_t;
    using Client = std::int64_t;  // a uid; kNoClient is under no per-client cap (root)
    static constexpr Client kNoClient = -1;

    struct Config {
        std::size_t max_total = 64;
        std::size_t max_per_policy = 0;  // 0 = only max_total
        std::size_t queue_length = 64;
        std::chrono::milliseconds queue_timeout{30000};
        std::size_t max_per_client = 0;  // running plus queued of one client; 0 = no cap
    };
    // client_busy: that client holds max_per_client already (nothing else is looked at).
    enum class Verdict { admitted, queued, busy, client_busy };

    explicit Admission(Config config) : config_(config) {}

    // A new request: admitted when a slot is free (and nobody queued could take it first),
    // queued while the queue has room, busy otherwise.
    Verdict request(Ticket ticket, const std::string& policy, Clock::time_point now, Client client = kNoClient);
    // A sandbox that already runs (adopted from a previous agent): it holds a slot whatever the
    // caps say (its client's share too), and is released like any admitted one.
    void adopt(const std::string& policy, Ticket ticket = 0, Client client = kNoClient);
    // An admitted sandbox ended: its slot (and its client's share) is free. Returns the queued
    // tickets admitted now, in their order.
    std::vector<Ticket> release(const std::string& policy, Ticket ticket = 0);
    // Queued tickets whose wait passed `now` (they leave the queue: answer them busy).
    std::vector<Ticket> expire(Clock::time_point now);
    // A queued request whose client went away. False when the ticket is not queued.
    bool cancel(Ticket ticket);
    // When the first queued ticket expires.
    std::optional<Clock::time_point> next_deadline() const;

    std::size_t running() const { return running_; }
    std::size_t running(const std::string& policy) const;
    std::size_t queued() const { return queue_.size(); }
    std::size_t held_by(Client client) const;  // running plus queued
    std::size_t position(Ticket ticket) const;  // 1-based place in the queue; 0 = not queued
    const Config& config() const { return config_; }

private:
    struct Waiting {
        Ticket ticket;
        std::string policy;
        Clock::time_point deadline;
    };
    bool fits(const std::string& policy) const;
    void take(const std::string& policy);
    void count_for(Ticket ticket, Client client);
    void uncount(Ticket ticket);

    Config config_;
    std::size_t running_ = 0;
    std::map<std::string, std::size_t> per_policy_;
    std::deque<Waiting> queue_;
    std::map<Ticket, Client> client_of_;  // tickets counted in a client's share
    std::map<Client, std::size_t> held_;
};

}  // namespace mcpwarden
