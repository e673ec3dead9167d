// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "cgroup.h"

using namespace mcpwarden;

TEST(CgroupLayout, HybridHost) {
    auto l = CgroupLayout::parse(
        "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n"
        "31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory\n"
        "32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:12 - cgroup cgroup rw,pids\n"
        "33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:13 - cgroup cgroup rw,cpu,cpuacct\n",
        "12:pids:/\n4:memory:/jobs/a1\n3:cpu,cpuacct:/\n0::/\n");
    EXPECT_EQ(l.unified_mount, "/sys/fs/cgroup/unified");
    EXPECT_EQ(l.v1_memory_mount, "/sys/fs/cgroup/memory");
    EXPECT_EQ(l.v1_pids_mount, "/sys/fs/cgroup/pids");
    EXPECT_EQ(l.v1_cpu_mount, "/sys/fs/cgroup/cpu,cpuacct");
    EXPECT_EQ(l.own_memory, "/jobs/a1");
    EXPECT_EQ(l.own_unified, "/");
}

TEST(CgroupLayout, PureV2Host) {
    auto l = CgroupLayout::parse(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        "0::/system.slice/mcpwarden.service\n");
    EXPECT_EQ(l.unified_mount, "/sys/fs/cgroup");
    EXPECT_TRUE(l.v1_memory_mount.empty());
    EXPECT_EQ(l.own_unified, "/system.slice/mcpwarden.service");
}

TEST(CgroupLayout, NoCgroup2IsRefused) {
    auto l = CgroupLayout::parse("31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
                                 "4:memory:/\n");
    EXPECT_THROW(plan_cgroups(l, ""), std::exception);
}
