// SPDX-License-Identifier: Apache-2.0
#include "agent_admission.h"

#include <algorithm>

namespace mcpwarden {

bool Admission::fits(const std::string& policy) const {
    if (running_ >= config_.max_total) return false;
    return config_.max_per_policy == 0 || running(policy) < config_.max_per_policy;
}

void Admission::take(const std::string& policy) {
    ++running_;
    ++per_policy_[policy];
}

std::size_t Admission::running(const std::string& policy) const {
    auto it = per_policy_.find(policy);
    return it == per_policy_.end() ? 0 : it->second;
}

void Admission::count_for(Ticket ticket, Client client) {
    if (client == kNoClient) return;
    client_of_[ticket] = client;
    ++held_[client];
}

void Admission::uncount(Ticket ticket) {
    auto it = client_of_.find(ticket);
    if (it == client_of_.end()) return;
    auto h = held_.find(it->second);
    if (h != held_.end() && --h->second == 0) held_.erase(h);
    client_of_.erase(it);
}

std::size_t Admission::held_by(Client client) const {
    auto it = held_.find(client);
    return it == held_.end() ? 0 : it->second;
}

void Admission::adopt(const std::string& policy, Ticket ticket, Client client) {
    take(policy);
    count_for(ticket, client);
}

Admission::Verdict Admission::request(Ticket ticket, const std::string& policy, Clock::time_point now, Client client) {
    // One client's share is checked first: past it, nothing it asks waits in the queue either,
    // so one client can neither take every slot nor fill the queue.
    if (client != kNoClient && config_.max_per_client > 0 && held_by(client) >= config_.max_per_client)
        return Verdict::client_busy;
    // A waiting request of the same policy (or, under the overall cap, any) goes first.
    bool ahead = std::any_of(queue_.begin(), queue_.end(), [&](const Waiting& w) {
        return config_.max_per_policy == 0 || w.policy == policy || running_ >= config_.max_total;
    });
    if (!ahead && fits(policy)) {
        take(policy);
        count_for(ticket, client);
        return Verdict::admitted;
    }
    if (queue_.size() >= config_.queue_length) return Verdict::busy;
    queue_.push_back({ticket, policy, now + config_.queue_timeout});
    count_for(ticket, client);
    return Verdict::queued;
}

std::vector<Admission::Ticket> Admission::release(const std::string& policy, Ticket ticket) {
    uncount(ticket);
    if (running_ > 0) --running_;
    auto it = per_policy_.find(policy);
    if (it != per_policy_.end() && --it->second == 0) per_policy_.erase(it);
    std::vector<Ticket> admitted;
    for (auto w = queue_.begin(); w != queue_.end() && running_ < config_.max_total;) {
        if (fits(w->policy)) {
            take(w->policy);
            admitted.push_back(w->ticket);
            w = queue_.erase(w);
        } else {
            ++w;
        }
    }
    return admitted;
}

std::vector<Admission::Ticket> Admission::expire(Clock::time_point now) {
    std::vector<Ticket> out;
    for (auto w = queue_.begin(); w != queue_.end();) {
        if (w->deadline <= now) {
            out.push_back(w->ticket);
            uncount(w->ticket);
            w = queue_.erase(w);
        } else {
            ++w;
        }
    }
    return out;
}

bool Admission::cancel(Ticket ticket) {
    auto w = std::find_if(queue_.begin(), queue_.end(), [&](const Waiting& x) { return x.ticket == ticket; });
    if (w == queue_.end()) return false;
    uncount(ticket);
    queue_.erase(w);
    return true;
}

std::optional<Admission::Clock::time_point> Admission::next_deadline() const {
    std::optional<Clock::time_point> out;
    for (const auto& w : queue_)
        if (!out || w.deadline < *out) out = w.deadline;
    return out;
}

std::size_t Admission::position(Ticket ticket) const {
    for (std::size_t i = 0; i < queue_.size(); ++i)
        if (queue_[i].ticket == ticket) return i + 1;
    return 0;
}

}  // namespace mcpwarden
