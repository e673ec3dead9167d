// SPDX-License-Identifier: Apache-2.0
// The BPF decision function itself, run through its raw_tp test entry with
// bpf_prog_test_run (sock_addr programs cannot be test-run), over the shared decision table.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>

#include "../common/decision_cases.h"
#include "egress.skel.h"
#include "egress_compiler.h"
#include "harness.h"
#include "policy.h"

using namespace mcpwarden;

namespace {

class BpfDecide : public harness::KernelTest {
protected:
    void SetUp() override {
        harness::KernelTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        skel_.reset(egress__open());
        ASSERT_TRUE(skel_);
        ASSERT_EQ(egress__load(skel_.get()), 0) << "the BPF object must load on this kernel";
    }

    void install(const CompiledEgress& c) {
        for (const auto& [k, v] : c.v4)
            ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.rules4), &k, &v, BPF_ANY), 0);
        for (const auto& [k, v] : c.v6)
            ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.rules6), &k, &v, BPF_ANY), 0);
        for (const auto& [k, v] : c.portsets)
            ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel_->maps.portsets), &k, &v, BPF_ANY), 0);
    }

    // Runs the kernel's decide() for one destination; returns {allow, rule}.
    std::pair<bool, std::uint32_t> run(std::uint64_t policy, const char* address, std::uint16_t port,
                                       Protocol proto) {
        std::uint64_t args[6] = {policy, 0, 0, 0, port, proto == Protocol::udp ? 1u : 0u};
        unsigned char a[16] = {};
        if (inet_pton(AF_INET, address, a) == 1) {
            args[1] = 4;
        } else {
            EXPECT_EQ(inet_pton(AF_INET6, address, a), 1) << address;
            args[1] = 6;
        }
        std::memcpy(&args[2], a, 8);
        std::memcpy(&args[3], a + 8, 8);
        LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = args, .ctx_size_in = sizeof args);
        int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.mw_test_decide), &opts);
        EXPECT_EQ(err, 0);
        return {opts.retval != 0, skel_->bss->test_result_rule};
    }

    std::unique_ptr<egress, void (*)(egress*)> skel_{nullptr, egress__destroy};
};

}  // namespace

TEST_F(BpfDecide, DecisionTableMatchesTheModel) {
    Policy p = parse_policy(cases::kPolicy, "table.yaml");
    auto compiled = compile_egress(p.egress, 42);
    install(compiled);
    for (const auto& c : cases::table()) {
        auto [allow, rule] = run(42, c.address, c.port, c.protocol);
        EXPECT_EQ(allow, c.allow) << c.address << ":" << c.port << "/" << to_string(c.protocol);
        auto model = decide(compiled, *parse_address(c.address), c.port, c.protocol);
        EXPECT_EQ(rule, model.rule) << c.address << ":" << c.port << " kernel says "
                                    << describe_rule(compiled, rule) << ", model "
                                    << describe_rule(compiled, model.rule);
    }
}

TEST_F(BpfDecide, PoliciesAreIsolated) {
    Policy p = parse_policy(cases::kPolicy, "table.yaml");
    install(compile_egress(p.egress, 42));
    // Policy 43 has no rules at all: everything policy 42 allows is denied for it.
    for (const auto& c : cases::table()) {
        EXPECT_FALSE(run(43, c.address, c.port, c.protocol).first) << c.address;
    }
    // Nor does a policy id that shares a prefix with 42 see its rules.
    EXPECT_FALSE(run(42ull << 32, "10.9.9.9", 443, Protocol::tcp).first);
}
