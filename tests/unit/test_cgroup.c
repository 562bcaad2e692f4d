/* cgroup: detection from mountinfo samples, creation plans for v1 and v2,
 * keyed-file parsing, applying against a fake tree (failure and rollback
 * paths), sweep, and, as root on a host with cgroups, a real round trip. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "cgroup_internal.h"
#include "t.h"
#include "util.h"

/* This build machine: v1 for everything we use, a cgroup2 with hugetlb. */
static const char *hybrid_mountinfo =
    "22 1 0:20 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n"
    "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
    "24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "31 24 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

static const char *v2_mountinfo =
    "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "26 25 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "27 26 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:3 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";

static const char *comount_mountinfo =
    "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
    "30 1 0:26 / /sys/fs/cgroup rw shared:4 - tmpfs tmpfs ro,mode=755\n"
    "31 30 0:27 / /sys/fs/cgroup/systemd rw shared:5 - cgroup cgroup rw,xattr,name=systemd\n"
    "32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:6 - cgroup cgroup rw,cpu,cpuacct\n"
    "33 30 0:29 / /sys/fs/cgroup/cpuset rw shared:7 - cgroup cgroup rw,cpuset\n"
    "34 30 0:30 / /sys/fs/cgroup/my\\040memory rw shared:8 - cgroup cgroup rw,memory\n";

static const char *none_mountinfo = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                                    "2 1 0:5 / /proc rw - proc proc rw\n";

static void check_ctl(const sbx_cg_layout *l, int c, int ver, const char *mount, const char *what)
{
    static const char *const vn[] = {"none", "v1", "v2"};
    T_OK(l->ver[c] == ver, "%s: %s is %s (got %d)", what, sbx_cg_ctl_name(c), vn[ver], l->ver[c]);
    T_STREQ(l->mount[c], mount, "%s: %s mount", what, sbx_cg_ctl_name(c));
}

static void test_detect(void)
{
    sbx_cg_layout l;

    T_OK(sbx_cg_detect_text(hybrid_mountinfo, "hugetlb\n", &l) == 0, "hybrid: parses");
    check_ctl(&l, SBX_CG_MEMORY, SBX_CG_V1, "/sys/fs/cgroup/memory", "hybrid");
    check_ctl(&l, SBX_CG_CPU, SBX_CG_V1, "/sys/fs/cgroup/cpu", "hybrid");
    check_ctl(&l, SBX_CG_CPUACCT, SBX_CG_V1, "/sys/fs/cgroup/cpuacct", "hybrid");
    check_ctl(&l, SBX_CG_PIDS, SBX_CG_V1, "/sys/fs/cgroup/pids", "hybrid");
    T_STREQ(l.v2_mount, "/sys/fs/cgroup/unified", "hybrid: v2 mount");

    T_OK(sbx_cg_detect_text(v2_mountinfo, "cpuset cpu io memory hugetlb pids rdma misc\n", &l) == 0,
         "v2: parses");
    check_ctl(&l, SBX_CG_MEMORY, SBX_CG_V2, "/sys/fs/cgroup", "v2");
    check_ctl(&l, SBX_CG_CPU, SBX_CG_V2, "/sys/fs/cgroup", "v2");
    check_ctl(&l, SBX_CG_CPUACCT, SBX_CG_V2, "/sys/fs/cgroup", "v2 (cpuacct follows cpu)");
    check_ctl(&l, SBX_CG_PIDS, SBX_CG_V2, "/sys/fs/cgroup", "v2");
    T_STREQ(l.v2_mount, "/sys/fs/cgroup", "v2: v2 mount");

    sbx_cg_detect_text(v2_mountinfo, "memory pids", &l);
    check_ctl(&l, SBX_CG_CPU, SBX_CG_NONE, "", "v2 without cpu");
    check_ctl(&l, SBX_CG_CPUACCT, SBX_CG_NONE, "", "v2 without cpu");
    check_ctl(&l, SBX_CG_PIDS, SBX_CG_V2, "/sys/fs/cgroup", "v2 without cpu");

    sbx_cg_detect_text(v2_mountinfo, NULL, &l);
    T_OK(l.ver[SBX_CG_MEMORY] == SBX_CG_NONE, "v2 with no controllers text: memory none");

    T_OK(sbx_cg_detect_text(comount_mountinfo, NULL, &l) == 0, "co-mounted: parses");
    check_ctl(&l, SBX_CG_CPU, SBX_CG_V1, "/sys/fs/cgroup/cpu,cpuacct", "co-mounted");
    check_ctl(&l, SBX_CG_CPUACCT, SBX_CG_V1, "/sys/fs/cgroup/cpu,cpuacct", "co-mounted");
    check_ctl(&l, SBX_CG_MEMORY, SBX_CG_V1, "/sys/fs/cgroup/my memory", "co-mounted (\\040 unescaped)");
    check_ctl(&l, SBX_CG_PIDS, SBX_CG_NONE, "", "co-mounted (cpuset is not cpu)");
    T_STREQ(l.v2_mount, "", "co-mounted: no v2");

    /* Mixed: cpu on v1, memory and pids on v2. */
    char mixed[1024];
    snprintf(mixed, sizeof(mixed), "%s%s", comount_mountinfo,
             "40 30 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
    sbx_cg_detect_text(mixed, "memory pids", &l);
    check_ctl(&l, SBX_CG_MEMORY, SBX_CG_V1, "/sys/fs/cgroup/my memory", "mixed: v1 wins");
    check_ctl(&l, SBX_CG_PIDS, SBX_CG_V2, "/sys/fs/cgroup/unified", "mixed");
    check_ctl(&l, SBX_CG_CPUACCT, SBX_CG_V1, "/sys/fs/cgroup/cpu,cpuacct", "mixed");

    T_OK(sbx_cg_detect_text(none_mountinfo, "", &l) == 0, "none: parses");
    for (int c = 0; c < SBX_CG_NCTL; c++)
        check_ctl(&l, c, SBX_CG_NONE, "", "none");
    T_STREQ(l.v2_mount, "", "none: no v2");
    T_OK(sbx_cg_detect_text("", NULL, &l) == 0 && l.ver[SBX_CG_MEMORY] == SBX_CG_NONE, "empty text");

    sbx_err err = {0};
    T_OK(sbx_cg_detect("/sys/fs/cgroup", &l, &err) == 0, "detect on this host%s", err.msg[0] ? err.msg : "");
    for (int c = 0; c < SBX_CG_NCTL; c++)
        printf("#   %s: v%d %s\n", sbx_cg_ctl_name(c), l.ver[c], l.mount[c]);
    T_OK(sbx_cg_detect("/nonexistent/cgroupfs", &l, &err) == 0 && l.ver[SBX_CG_MEMORY] == SBX_CG_NONE &&
             l.ver[SBX_CG_CPU] == SBX_CG_NONE && !l.v2_mount[0],
         "detect counts only mounts under cgroup_fs");
}

/* One line per op: "mkdir[+] PATH" (+: may exist), "write[?] PATH=VALUE" (?: optional). */
static void plan_lines(const sbx_cg_plan *p, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < p->n && n < cap; i++) {
        const sbx_cg_op *op = &p->ops[i];
        int w = op->kind == SBX_CG_OP_MKDIR
                    ? snprintf(buf + n, cap - n, "mkdir%s %s\n", op->exist_ok ? "+" : "", op->path)
                    : snprintf(buf + n, cap - n, "write%s %s=%s\n", op->optional ? "?" : "", op->path,
                               op->value);
        if (w > 0)
            n += (size_t)w;
    }
}

static sbx_cg_plan plan; /* large: keep off the stack */
static char got[16384];

static void test_plans(void)
{
    sbx_cg_layout v2, v1, co, mixed;
    sbx_cg_detect_text(v2_mountinfo, "cpuset cpu io memory hugetlb pids rdma misc\n", &v2);
    sbx_cg_detect_text(hybrid_mountinfo, "hugetlb\n", &v1);
    sbx_cg_detect_text(comount_mountinfo, NULL, &co);
    char mixed_text[1024];
    snprintf(mixed_text, sizeof(mixed_text), "%s%s", comount_mountinfo,
             "40 30 0:40 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
    sbx_cg_detect_text(mixed_text, "memory pids", &mixed);

    sbx_cg_limits lim = {.cpus = 0.5, .memory_bytes = 64u << 20, .pids = 10};
    T_OK(sbx_cg_plan_create(&v2, "sbx", "abc", &lim, &plan) == 0, "v2 plan");
    plan_lines(&plan, got, sizeof(got));
    T_STREQ(got,
            "write? /sys/fs/cgroup/cgroup.subtree_control=+memory +cpu +pids\n"
            "mkdir+ /sys/fs/cgroup/sbx\n"
            "write /sys/fs/cgroup/sbx/cgroup.subtree_control=+memory +cpu +pids\n"
            "mkdir /sys/fs/cgroup/sbx/abc\n"
            "write /sys/fs/cgroup/sbx/abc/memory.max=67108864\n"
            "write? /sys/fs/cgroup/sbx/abc/memory.swap.max=0\n"
            "write /sys/fs/cgroup/sbx/abc/cpu.max=50000 100000\n"
            "write /sys/fs/cgroup/sbx/abc/pids.max=10\n",
            "v2 plan ops");

    lim = (sbx_cg_limits){.cpus = 1.5, .memory_bytes = 1u << 30, .pids = 100};
    T_OK(sbx_cg_plan_create(&v1, "sbx", "abc", &lim, &plan) == 0, "v1 plan");
    plan_lines(&plan, got, sizeof(got));
    T_STREQ(got,
            "mkdir+ /sys/fs/cgroup/memory/sbx\n"
            "mkdir /sys/fs/cgroup/memory/sbx/abc\n"
            "mkdir+ /sys/fs/cgroup/cpu/sbx\n"
            "mkdir /sys/fs/cgroup/cpu/sbx/abc\n"
            "mkdir+ /sys/fs/cgroup/cpuacct/sbx\n"
            "mkdir /sys/fs/cgroup/cpuacct/sbx/abc\n"
            "mkdir+ /sys/fs/cgroup/pids/sbx\n"
            "mkdir /sys/fs/cgroup/pids/sbx/abc\n"
            "write /sys/fs/cgroup/memory/sbx/abc/memory.limit_in_bytes=1073741824\n"
            "write? /sys/fs/cgroup/memory/sbx/abc/memory.memsw.limit_in_bytes=1073741824\n"
            "write? /sys/fs/cgroup/memory/sbx/abc/memory.swappiness=0\n"
            "write /sys/fs/cgroup/cpu/sbx/abc/cpu.cfs_period_us=100000\n"
            "write /sys/fs/cgroup/cpu/sbx/abc/cpu.cfs_quota_us=150000\n"
            "write /sys/fs/cgroup/pids/sbx/abc/pids.max=100\n",
            "v1 plan ops (memsw after limit)");

    lim = (sbx_cg_limits){.cpus = 0.001};
    T_OK(sbx_cg_plan_create(&co, "sbx", "x1", &lim, &plan) == 0, "co-mounted plan");
    plan_lines(&plan, got, sizeof(got));
    T_STREQ(got,
            "mkdir+ /sys/fs/cgroup/my memory/sbx\n"
            "mkdir /sys/fs/cgroup/my memory/sbx/x1\n"
            "mkdir+ /sys/fs/cgroup/cpu,cpuacct/sbx\n"
            "mkdir /sys/fs/cgroup/cpu,cpuacct/sbx/x1\n"
            "write /sys/fs/cgroup/cpu,cpuacct/sbx/x1/cpu.cfs_period_us=100000\n"
            "write /sys/fs/cgroup/cpu,cpuacct/sbx/x1/cpu.cfs_quota_us=1000\n",
            "co-mounted plan: one dir for cpu,cpuacct; quota min 1000");

    lim = (sbx_cg_limits){.cpus = 2, .memory_bytes = 4096, .pids = 5};
    T_OK(sbx_cg_plan_create(&mixed, "sbx", "m", &lim, &plan) == 0, "mixed plan");
    plan_lines(&plan, got, sizeof(got));
    T_STREQ(got,
            "mkdir+ /sys/fs/cgroup/my memory/sbx\n"
            "mkdir /sys/fs/cgroup/my memory/sbx/m\n"
            "mkdir+ /sys/fs/cgroup/cpu,cpuacct/sbx\n"
            "mkdir /sys/fs/cgroup/cpu,cpuacct/sbx/m\n"
            "write? /sys/fs/cgroup/unified/cgroup.subtree_control=+pids\n"
            "mkdir+ /sys/fs/cgroup/unified/sbx\n"
            "write /sys/fs/cgroup/unified/sbx/cgroup.subtree_control=+pids\n"
            "mkdir /sys/fs/cgroup/unified/sbx/m\n"
            "write /sys/fs/cgroup/my memory/sbx/m/memory.limit_in_bytes=4096\n"
            "write? /sys/fs/cgroup/my memory/sbx/m/memory.memsw.limit_in_bytes=4096\n"
            "write? /sys/fs/cgroup/my memory/sbx/m/memory.swappiness=0\n"
            "write /sys/fs/cgroup/cpu,cpuacct/sbx/m/cpu.cfs_period_us=100000\n"
            "write /sys/fs/cgroup/cpu,cpuacct/sbx/m/cpu.cfs_quota_us=200000\n"
            "write /sys/fs/cgroup/unified/sbx/m/pids.max=5\n",
            "mixed v1/v2 plan");

    lim = (sbx_cg_limits){0};
    sbx_cg_plan_create(&v2, "sbx", "z", &lim, &plan);
    plan_lines(&plan, got, sizeof(got));
    T_STREQ(got,
            "write? /sys/fs/cgroup/cgroup.subtree_control=+memory +cpu +pids\n"
            "mkdir+ /sys/fs/cgroup/sbx\n"
            "write /sys/fs/cgroup/sbx/cgroup.subtree_control=+memory +cpu +pids\n"
            "mkdir /sys/fs/cgroup/sbx/z\n",
            "v2 zero limits: no limit writes");
    sbx_cg_plan_create(&v1, "sbx", "z", &lim, &plan);
    int writes = 0;
    for (int i = 0; i < plan.n; i++)
        writes += plan.ops[i].kind == SBX_CG_OP_WRITE;
    T_OK(plan.n == 8 && writes == 0, "v1 zero limits: 8 mkdirs, no writes (n=%d writes=%d)", plan.n, writes);

    sbx_cg_layout none;
    sbx_cg_detect_text(none_mountinfo, NULL, &none);
    lim = (sbx_cg_limits){.cpus = 1, .memory_bytes = 1, .pids = 1};
    T_OK(sbx_cg_plan_create(&none, "sbx", "z", &lim, &plan) == 0 && plan.n == 0, "no cgroups: empty plan");

    lim = (sbx_cg_limits){.cpus = 0.333};
    sbx_cg_plan_create(&v2, "sbx", "r", &lim, &plan);
    T_STREQ(plan.n ? plan.ops[plan.n - 1].value : "", "33300 100000", "cpus 0.333 rounds to 33300");
    lim = (sbx_cg_limits){.cpus = -1};
    T_OK(sbx_cg_plan_create(&v2, "sbx", "r", &lim, &plan) == -EINVAL, "negative cpus refused");
    lim = (sbx_cg_limits){0};
    T_OK(sbx_cg_plan_create(&v2, "sbx", "../etc", &lim, &plan) == -EINVAL, "bad id refused");
    T_OK(sbx_cg_plan_create(&v2, "a/b", "x", &lim, &plan) == -EINVAL, "bad name refused");
}

static void test_parse(void)
{
    uint64_t v = 99;
    const char *events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
    T_OK(sbx_cg_parse_keyed(events, "oom_kill", &v) == 0 && v == 2, "memory.events oom_kill = 2 (%llu)",
         (unsigned long long)v);
    T_OK(sbx_cg_parse_keyed(events, "oom", &v) == 0 && v == 3, "memory.events oom = 3 (not oom_kill)");
    const char *cpustat = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 0";
    T_OK(sbx_cg_parse_keyed(cpustat, "usage_usec", &v) == 0 && v == 123456, "cpu.stat usage_usec");
    T_OK(sbx_cg_parse_keyed(cpustat, "nr_periods", &v) == 0 && v == 0, "last line without newline");
    const char *oomctl = "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n";
    T_OK(sbx_cg_parse_keyed(oomctl, "oom_kill", &v) == 0 && v == 5, "v1 oom_control oom_kill = 5");
    T_OK(sbx_cg_parse_keyed("oom_kill_disable 0\nunder_oom 0\n", "oom_kill", &v) == -ENOENT,
         "missing key (prefix of another) -> ENOENT");
    T_OK(sbx_cg_parse_keyed("", "oom_kill", &v) < 0, "empty text -> error");
    T_OK(sbx_cg_parse_keyed("oom_kill x\n", "oom_kill", &v) < 0, "non-numeric -> error");
}

static bool exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static bool live_b(const char *id, void *ud)
{
    (*(int *)ud)++;
    return strcmp(id, "b") == 0;
}

/* A plain directory standing in for a v2 mount: creation fails where a real
 * cgroupfs would have interface files, which exercises errors and rollback. */
static void test_fake_v2(void)
{
    char tmp[] = "/tmp/sbx-cgtest-XXXXXX", p[PATH_MAX], want[PATH_MAX + 128];
    if (!mkdtemp(tmp)) {
        T_OK(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    sbx_cg_layout lay = {0};
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        lay.ver[c] = SBX_CG_V2;
        strcpy(lay.mount[c], tmp);
    }
    strcpy(lay.v2_mount, tmp);
    sbx_cg_limits lim = {.cpus = 1, .memory_bytes = 64u << 20, .pids = 10};
    sbx_cgroup cg;
    sbx_err err = {0};

    T_OK(sbx_cg_create(&lay, "sbx", "t1", &lim, &cg, &err) == -1, "fake: create fails without cgroupfs files");
    sbx_pathf(want, sizeof(want),
             "cgroup: write '+memory +cpu +pids' to %s/sbx/cgroup.subtree_control: No such file or directory",
             tmp);
    T_STREQ(err.msg, want, "fake: error names file and value");
    T_OK(err.code == SBX_E_SYSTEM && err.sys_errno == ENOENT, "fake: error code");
    sbx_pathf(p, sizeof(p), "%s/sbx", tmp);
    T_OK(!exists(p) && cg.ndirs == 0, "fake: rollback removed the parent it made");
    T_OK(sbx_cg_destroy(&cg, NULL) == 0, "fake: destroy after failed create is a no-op");

    /* Give the parent its subtree_control; now the limit write fails. */
    mkdir(p, 0755);
    sbx_pathf(p, sizeof(p), "%s/sbx/cgroup.subtree_control", tmp);
    close(open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    T_OK(sbx_cg_create(&lay, "sbx", "t1", &lim, &cg, &err) == -1, "fake: create fails at memory.max");
    sbx_pathf(want, sizeof(want), "cgroup: write '67108864' to %s/sbx/t1/memory.max: No such file or directory",
             tmp);
    T_STREQ(err.msg, want, "fake: memory.max error");
    char buf[128] = "";
    sbx_read_file(p, buf, sizeof(buf), NULL);
    T_STREQ(buf, "+memory +cpu +pids", "fake: parent subtree_control written");
    sbx_pathf(p, sizeof(p), "%s/sbx/t1", tmp);
    T_OK(!exists(p), "fake: rollback removed the sandbox dir");
    sbx_pathf(p, sizeof(p), "%s/sbx", tmp);
    T_OK(exists(p), "fake: pre-existing parent kept");

    /* Zero limits get as far as opening cgroup.procs. */
    lim = (sbx_cg_limits){0};
    T_OK(sbx_cg_create(&lay, "sbx", "t2", &lim, &cg, &err) == -1, "fake: create fails at cgroup.procs");
    sbx_pathf(want, sizeof(want), "cgroup: open %s/sbx/t2/cgroup.procs: No such file or directory", tmp);
    T_STREQ(err.msg, want, "fake: cgroup.procs error");
    sbx_pathf(p, sizeof(p), "%s/sbx/t2", tmp);
    T_OK(!exists(p), "fake: sandbox dir removed after open failure");

    /* An existing sandbox dir is an error, and is left alone. */
    sbx_pathf(p, sizeof(p), "%s/sbx/t3", tmp);
    mkdir(p, 0755);
    T_OK(sbx_cg_create(&lay, "sbx", "t3", &lim, &cg, &err) == -1, "fake: existing sandbox dir refused");
    sbx_pathf(want, sizeof(want), "cgroup: mkdir %s/sbx/t3: File exists", tmp);
    T_STREQ(err.msg, want, "fake: EEXIST error");
    T_OK(exists(p), "fake: existing sandbox dir not removed");
    sbx_cg_destroy(&cg, NULL);
    T_OK(exists(p), "fake: destroy after EEXIST leaves the other dir alone");
    rmdir(p);

    /* Sweep: a and c are dead, b lives; the file in sbx/ is not an id. */
    const char *ids[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        sbx_pathf(p, sizeof(p), "%s/sbx/%s", tmp, ids[i]);
        mkdir(p, 0755);
    }
    int calls = 0;
    int n = sbx_cg_sweep(&lay, "sbx", live_b, &calls);
    T_OK(n == 2 && calls == 3, "fake sweep: removed 2 (got %d), asked about 3 (got %d)", n, calls);
    sbx_pathf(p, sizeof(p), "%s/sbx/a", tmp);
    T_OK(!exists(p), "fake sweep: a removed");
    sbx_pathf(p, sizeof(p), "%s/sbx/b", tmp);
    T_OK(exists(p), "fake sweep: live b kept");
    rmdir(p);
    calls = 0;
    T_OK(sbx_cg_sweep(&lay, "sbx", live_b, &calls) == 0 && calls == 0, "fake sweep: nothing left");

    sbx_pathf(p, sizeof(p), "%s/sbx/cgroup.subtree_control", tmp);
    unlink(p);
    sbx_pathf(p, sizeof(p), "%s/sbx", tmp);
    rmdir(p);
    int rr = rmdir(tmp);
    T_OK(rr == 0, "fake: temp tree clean (%s)", rr ? strerror(errno) : "ok");
}

static bool file_is(const char *dir, const char *file, const char *want)
{
    char p[PATH_MAX], buf[256];
    if (sbx_pathf(p, sizeof(p), "%s/%s", dir, file) < 0 || sbx_read_file(p, buf, sizeof(buf), NULL) < 0)
        return false;
    buf[strcspn(buf, "\n")] = '\0';
    if (strcmp(buf, want) != 0)
        printf("#   %s: got '%s', want '%s'\n", p, buf, want);
    return strcmp(buf, want) == 0;
}

static bool never_live(const char *id, void *ud)
{
    return false;
}

/* Child: join, use some memory and cpu, fork up to 15 sleepers (the pids
 * limit of 10 stops it at 9), report the count, wait to be killed. */
static void child_main(const sbx_cgroup *cg, int wfd)
{
    if (sbx_cg_join_self(cg) < 0)
        _exit(2);
    size_t sz = 4u << 20;
    char *mem = malloc(sz);
    if (!mem)
        _exit(3);
    memset(mem, 1, sz);
    uint64_t t0 = sbx_now_usec();
    volatile unsigned spin = 0;
    while (sbx_now_usec() - t0 < 30000)
        spin++;
    unsigned char forked = 0;
    for (int i = 0; i < 15; i++) {
        pid_t p = fork();
        if (p == 0) {
            for (;;)
                pause();
        }
        if (p > 0)
            forked++;
    }
    if (write(wfd, &forked, 1) != 1)
        _exit(4);
    for (;;)
        pause();
}

static bool read_cache(const char *path, struct sbx_cg_cache *c)
{
    size_t n = 0;
    return sbx_read_file(path, (char *)c, sizeof(*c) + 1, &n) == 0 && n == sizeof(*c);
}

/* The layout cache: written on a miss, believed while the cgroup root is
 * unchanged, detected anew once it changes. A fake cgroup root (an empty
 * dir: no hierarchy under it) stands in; a marker put into the cached
 * layout shows whether it was believed. */
static void test_cache(void)
{
    char dir[] = "/tmp/sbx-cgcache.XXXXXX", fs[PATH_MAX], cache[PATH_MAX], sub[PATH_MAX + 4];
    if (!mkdtemp(dir)) {
        T_OK(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    snprintf(fs, sizeof(fs), "%s/cgroup", dir);
    snprintf(cache, sizeof(cache), "%s/cgroup-layout", dir);
    snprintf(sub, sizeof(sub), "%s/new", fs);
    mkdir(fs, 0755);
    sbx_cg_layout lay;
    sbx_err err = {0};
    int favor = 0;
    struct sbx_cg_cache *c = malloc(sizeof(*c) + 1);
    T_OK(sbx_cg_detect_cached(fs, cache, false, &lay, &favor, &err) == 0, "cache: first detect (%s)", err.msg);
    T_OK(read_cache(cache, c) && c->magic == SBX_CG_CACHE_MAGIC && strcmp(c->cgroup_fs, fs) == 0,
         "cache: written on a miss, for its cgroup root");
    T_OK(lay.ver[SBX_CG_MEMORY] == SBX_CG_NONE && favor == -ENOENT, "cache: nothing under the fake root");

    snprintf(c->lay.v2_opts, sizeof(c->lay.v2_opts), "marker");
    int fd = open(cache, O_WRONLY | O_TRUNC);
    T_OK(fd >= 0 && write(fd, c, sizeof(*c)) == (ssize_t)sizeof(*c), "cache: marker written");
    if (fd >= 0)
        close(fd);
    T_OK(sbx_cg_detect_cached(fs, cache, false, &lay, &favor, &err) == 0 && strcmp(lay.v2_opts, "marker") == 0,
         "cache: believed while the cgroup root is unchanged");
    T_OK(sbx_cg_detect_cached(fs, cache, true, &lay, &favor, &err) == 0 && favor == 1,
         "cache: keep_mount reports favordynmods left alone");

    /* A hierarchy mounted under the root needs a new dir there. */
    mkdir(sub, 0755);
    T_OK(sbx_cg_detect_cached(fs, cache, false, &lay, &favor, &err) == 0 && strcmp(lay.v2_opts, "marker") != 0,
         "cache: detected again once the cgroup root changed");
    T_OK(read_cache(cache, c) && strcmp(c->lay.v2_opts, "marker") != 0, "cache: ... and rewritten");
    /* Another cgroup root never reads this one's cache. */
    snprintf(c->lay.v2_opts, sizeof(c->lay.v2_opts), "marker");
    fd = open(cache, O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        T_OK(write(fd, c, sizeof(*c)) == (ssize_t)sizeof(*c), "cache: marker written again");
        close(fd);
    }
    T_OK(sbx_cg_detect_cached(sub, cache, false, &lay, &favor, &err) == 0 && strcmp(lay.v2_opts, "marker") != 0,
         "cache: not believed for another cgroup root");
    /* Garbage is a miss, not an error. */
    fd = open(cache, O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        T_OK(write(fd, "junk", 4) == 4, "cache: junk written");
        close(fd);
    }
    T_OK(sbx_cg_detect_cached(fs, cache, false, &lay, &favor, &err) == 0 && read_cache(cache, c) &&
             c->magic == SBX_CG_CACHE_MAGIC,
         "cache: a damaged cache is replaced");
    free(c);
    rmdir(sub);
    unlink(cache);
    rmdir(fs);
    rmdir(dir);
}

static void test_real(void)
{
    sbx_cg_layout lay;
    sbx_err err = {0};
    if (geteuid() != 0 || sbx_cg_detect("/sys/fs/cgroup", &lay, &err) < 0 ||
        lay.ver[SBX_CG_MEMORY] == SBX_CG_NONE || lay.ver[SBX_CG_PIDS] == SBX_CG_NONE ||
        lay.ver[SBX_CG_CPU] == SBX_CG_NONE) {
        printf("ok - # SKIP real cgroups (needs root and memory, cpu, pids controllers)\n");
        return;
    }
    char name[64];
    snprintf(name, sizeof(name), "sbx-unittest-%d", (int)getpid());
    sbx_cg_limits lim = {.cpus = 0.5, .memory_bytes = 64u << 20, .pids = 10};
    sbx_cgroup cg, cg2;

    int r = sbx_cg_create(&lay, name, "t1", &lim, &cg, &err);
    if (r < 0 && (err.sys_errno == EROFS || err.sys_errno == EACCES || err.sys_errno == EPERM)) {
        printf("ok - # SKIP real cgroups not writable here: %s\n", err.msg);
        return;
    }
    T_OK(r == 0, "real: create %s/t1: %s", name, r ? err.msg : "ok");
    if (r == 0) {
        int dm = cg.dir_of[SBX_CG_MEMORY], dc = cg.dir_of[SBX_CG_CPU], dp = cg.dir_of[SBX_CG_PIDS];
        if (cg.ver[SBX_CG_MEMORY] == SBX_CG_V1) {
            T_OK(file_is(cg.dir[dm], "memory.limit_in_bytes", "67108864"), "real v1: memory limit");
            char p[PATH_MAX];
            sbx_pathf(p, sizeof(p), "%s/memory.memsw.limit_in_bytes", cg.dir[dm]);
            T_OK(!exists(p) || file_is(cg.dir[dm], "memory.memsw.limit_in_bytes", "67108864"),
                 "real v1: memsw limit (when present)");
        } else {
            T_OK(file_is(cg.dir[dm], "memory.max", "67108864"), "real v2: memory.max");
        }
        if (cg.ver[SBX_CG_CPU] == SBX_CG_V1)
            T_OK(file_is(cg.dir[dc], "cpu.cfs_quota_us", "50000") &&
                     file_is(cg.dir[dc], "cpu.cfs_period_us", "100000"),
                 "real v1: cpu quota");
        else
            T_OK(file_is(cg.dir[dc], "cpu.max", "50000 100000"), "real v2: cpu.max");
        T_OK(file_is(cg.dir[dp], "pids.max", "10"), "real: pids.max");

        T_OK(sbx_cg_create(&lay, name, "t1", &lim, &cg2, &err) == -1 && err.sys_errno == EEXIST,
             "real: second create of the same id refused (%s)", err.msg);
        T_OK(access(cg.dir[0], F_OK) == 0, "real: first sandbox's dir survives the refused create");

        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
            T_OK(0, "pipe: %s", strerror(errno));
        } else {
            pid_t pid = fork();
            if (pid == 0) {
                close(pfd[0]);
                child_main(&cg, pfd[1]);
            }
            close(pfd[1]);
            sbx_cg_close_fds(&cg);
            unsigned char forked = 0;
            ssize_t n = pid > 0 ? read(pfd[0], &forked, 1) : -1;
            close(pfd[0]);
            T_OK(n == 1, "real: child joined and reported");
            T_OK(forked == 9, "real: pids limit 10 let the child fork 9 (got %u)", forked);
            sbx_cg_stats st;
            T_OK(sbx_cg_stats_read(&cg, &st) == 0, "real: stats read");
            printf("#   cpu_usec=%llu memory=%llu peak=%llu oom=%llu pids=%llu\n",
                   (unsigned long long)st.cpu_usec, (unsigned long long)st.memory_bytes,
                   (unsigned long long)st.memory_peak, (unsigned long long)st.oom_kills,
                   (unsigned long long)st.pids);
            T_OK(st.pids == 10, "real: stats pids == 10 (%llu)", (unsigned long long)st.pids);
            T_OK(st.memory_bytes >= (4u << 20), "real: stats memory >= 4 MiB");
            T_OK(st.memory_peak >= st.memory_bytes || st.memory_peak == 0, "real: peak >= current");
            T_OK(st.cpu_usec >= 10000 || lay.ver[SBX_CG_CPUACCT] == SBX_CG_NONE, "real: cpu >= 10ms");
            T_OK(st.oom_kills == 0, "real: no oom kills");

            T_OK(sbx_cg_kill_all(&cg) == 0, "real: kill_all emptied the cgroups");
            int status = 0;
            T_OK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) &&
                     WTERMSIG(status) == SIGKILL,
                 "real: child died of SIGKILL");
            while (waitpid(-1, NULL, 0) > 0) /* orphaned grandchildren: we are their subreaper */
                ;
            sbx_cg_stats_read(&cg, &st);
            T_OK(st.pids == 0, "real: no processes left (%llu)", (unsigned long long)st.pids);
        }
    }
    /* Cleanup runs on every path. */
    sbx_cg_kill_all(&cg);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    err.msg[0] = '\0';
    r = sbx_cg_destroy(&cg, &err);
    T_OK(r == 0, "real: destroy%s%s", r ? ": " : "", r ? err.msg : "");
    T_OK(sbx_cg_destroy(&cg, &err) == 0, "real: destroy is idempotent");
    sbx_cg_stats st;
    T_OK(sbx_cg_stats_read(&cg, &st) == 0 && st.pids == 0 && st.memory_bytes == 0,
         "real: stats after destroy are zero");
    sbx_cg_sweep(&lay, name, never_live, NULL); /* safety net */
    /* The shared parent stays for the next sandbox; sbx prune's call
     * removes it once it is empty. */
    bool kept = false;
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        char p[PATH_MAX];
        sbx_pathf(p, sizeof(p), "%s/%s", lay.mount[c], name);
        kept |= lay.ver[c] != SBX_CG_NONE && exists(p);
    }
    T_OK(kept, "real: the parent %s stays after its last sandbox", name);
    sbx_cg_remove_parents(&lay, name);
    bool gone = true;
    for (int c = 0; c < SBX_CG_NCTL; c++) {
        char p[PATH_MAX];
        sbx_pathf(p, sizeof(p), "%s/%s", lay.mount[c], name);
        if (lay.ver[c] != SBX_CG_NONE && exists(p)) {
            printf("#   left behind: %s\n", p);
            gone = false;
        }
    }
    T_OK(gone, "real: remove_parents removes it: no %s dir left in any hierarchy", name);

    /* Sweep on real cgroups: a dead leftover with a process in it. */
    lim = (sbx_cg_limits){0};
    if (sbx_cg_create(&lay, name, "dead", &lim, &cg, &err) == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            if (sbx_cg_join_self(&cg) < 0)
                _exit(2);
            for (;;)
                pause();
        }
        sbx_cg_close_fds(&cg);
        sbx_cg_stats st2 = {0};
        for (int i = 0; i < 1000 && st2.pids == 0; i++) {
            usleep(1000);
            sbx_cg_stats_read(&cg, &st2);
        }
        T_OK(st2.pids == 1, "real sweep: leftover has a process");
        T_OK(sbx_cg_sweep(&lay, name, never_live, NULL) == 1, "real sweep: removed 1");
        int status = 0;
        T_OK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFSIGNALED(status), "real sweep: process killed");
        T_OK(access(cg.dir[0], F_OK) < 0, "real sweep: dir gone");
        sbx_cg_kill_all(&cg);
        sbx_cg_destroy(&cg, NULL);
        sbx_cg_sweep(&lay, name, never_live, NULL);
        sbx_cg_remove_parents(&lay, name);
    } else {
        T_OK(0, "real sweep: create: %s", err.msg);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* forked children must not repeat buffered output */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    test_detect();
    test_plans();
    test_parse();
    test_fake_v2();
    test_cache();
    test_real();
    T_DONE();
}
