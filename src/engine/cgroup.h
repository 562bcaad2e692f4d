/* cgroups: per-controller detection (v1 or v2), limits, stats, kill, removal.
 *
 * Controllers are detected one by one: a host may run memory on v1 and
 * hugetlb on v2 (this build machine does), or everything on v2 (most
 * production hosts). Each sandbox gets one directory per distinct hierarchy
 * it uses: <mount>/<cgroup_name>/<id>.
 *
 * Creation is planned first, as a list of mkdir/write steps computed from
 * paths and limits alone (sbx_cg_plan_create), then applied. The plan is
 * what the unit tests check for v1 and v2 against fake trees.
 */
#ifndef SBX_CGROUP_H
#define SBX_CGROUP_H

#include <limits.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "sbx/engine.h"
#include "util.h"

/* devices: the v1 controller, or on v2 (no such controller there) a
 * BPF_PROG_TYPE_CGROUP_DEVICE program on the sandbox's cgroup2 dir. Only
 * GPU sandboxes use it (see sbx_cg_limits.devices). */
enum sbx_cg_ctl { SBX_CG_MEMORY, SBX_CG_CPU, SBX_CG_CPUACCT, SBX_CG_PIDS, SBX_CG_DEVICES, SBX_CG_NCTL };
enum sbx_cg_ver { SBX_CG_NONE = 0, SBX_CG_V1 = 1, SBX_CG_V2 = 2 };

typedef struct sbx_cg_layout {
    int ver[SBX_CG_NCTL];              /* enum sbx_cg_ver per controller */
    char mount[SBX_CG_NCTL][SBX_BASE_PATH_MAX]; /* hierarchy mount point serving it */
    char v2_mount[SBX_BASE_PATH_MAX];           /* "" when no cgroup2 is mounted */
    char v2_opts[256];                 /* its super options, e.g. "rw,nsdelegate" */
} sbx_cg_layout;

/* Pure: from the text of /proc/self/mountinfo and the content of the v2
 * root's cgroup.controllers (NULL/"" when none), fill the layout.
 * cpuacct on v2 is served by cpu.stat, so it follows cpu there; devices
 * is v2 wherever a cgroup2 is mounted and no v1 hierarchy has it. */
int sbx_cg_detect_text(const char *mountinfo, const char *v2_controllers, sbx_cg_layout *out);
/* Reads <cgroup_fs>/... and /proc/self/mountinfo. cgroup_fs only filters
 * which mounts count (those below it), so tests can use a fake tree. */
int sbx_cg_detect(const char *cgroup_fs, sbx_cg_layout *out, sbx_err *err);
const char *sbx_cg_ctl_name(int ctl);

/* Moving a task into a cgroup takes the kernel's global threadgroup rwsem
 * for writing, which waits for an RCU grace period (~10-20 ms) unless the
 * hierarchy is mounted with "favordynmods". That one option, set on the
 * cgroup2 mount (it is global: v1 migrations benefit too), is what a host
 * that creates sandboxes all day wants. Reconfigures the superblock
 * keeping its other options; mount flags are untouched. 0: on (now or
 * already), -errno: not possible (no cgroup2 mount, kernel < 6.0, ...). */
int sbx_cg_favor_dynmods(sbx_cg_layout *lay);
/* cgroup_cache.c: sbx_cg_detect, then sbx_cg_favor_dynmods unless
 * keep_mount (*favor: its result, or 1), remembered in cache_path and
 * taken from there while the mounts it rests on are unchanged. */
int sbx_cg_detect_cached(const char *cgroup_fs, const char *cache_path, bool keep_mount, sbx_cg_layout *out,
                         int *favor, sbx_err *err);

typedef struct sbx_cg_limits {
    double cpus;           /* 0 = no quota */
    uint64_t memory_bytes; /* 0 = no limit */
    uint64_t pids;         /* 0 = no limit */
    bool devices;          /* also a devices cgroup, to be restricted with
                              sbx_cg_restrict_devices once the root is built */
    bool no_cpu;           /* leave the cpu and cpuacct hierarchies out: nothing to
                              limit or account there (each v1 one joined is a migration) */
} sbx_cg_limits;

enum sbx_cg_op_kind { SBX_CG_OP_MKDIR, SBX_CG_OP_WRITE };
typedef struct sbx_cg_op {
    int kind;
    bool optional;       /* failure is tolerated (e.g. memsw without swap accounting) */
    bool exist_ok;       /* MKDIR: an existing dir is fine (the shared <name> parent) */
    char path[SBX_SHORT_PATH_MAX];
    char value[64];      /* for WRITE */
} sbx_cg_op;

#define SBX_CG_MAX_OPS 48
typedef struct sbx_cg_plan {
    sbx_cg_op ops[SBX_CG_MAX_OPS];
    int n;
} sbx_cg_plan;

/* Pure: the steps that create cgroup <name>/<id> with limits. */
int sbx_cg_plan_create(const sbx_cg_layout *lay, const char *name, const char *id,
                       const sbx_cg_limits *lim, sbx_cg_plan *plan);

#define SBX_CG_MAX_DIRS SBX_CG_NCTL
typedef struct sbx_cgroup {
    int ndirs;
    char dir[SBX_CG_MAX_DIRS][SBX_SHORT_PATH_MAX]; /* distinct cgroup dirs of this sandbox */
    int procs_fd[SBX_CG_MAX_DIRS];         /* open cgroup.procs, for joining from the child */
    int dir_of[SBX_CG_NCTL];               /* index into dir[] per controller, -1 if unused */
    int ver[SBX_CG_NCTL];
} sbx_cgroup;

/* The <mount>/<name> parents of all sandboxes' cgroups are made by the
 * first sandbox and stay: making the parent memory cgroup again for every
 * launch, and removing it after, cost ~0.04 ms of each and ~0.02 ms of
 * the next. sbx prune removes them (this, on each distinct hierarchy):
 * the number removed; one with live sandboxes stays (EBUSY). */
int sbx_cg_remove_parents(const sbx_cg_layout *lay, const char *name);

/* Plans and applies creation; on failure removes what it made. */
int sbx_cg_create(const sbx_cg_layout *lay, const char *name, const char *id,
                  const sbx_cg_limits *lim, sbx_cgroup *cg, sbx_err *err);
/* Async-signal-safe: moves the calling process into every cgroup of cg
 * (writes "0" to each procs_fd). Returns 0 or -errno. Used by the child
 * right after clone, before it runs anything. */
int sbx_cg_join_self(const sbx_cgroup *cg);
/* Moves process pid (0: the caller) into every cgroup of cg. */
int sbx_cg_join_pid(const sbx_cgroup *cg, pid_t pid);
/* Closes the procs fds (the parent does it after the child joined). */
void sbx_cg_close_fds(sbx_cgroup *cg);

typedef struct sbx_cg_stats {
    uint64_t cpu_usec, memory_bytes, memory_peak, oom_kills, pids;
} sbx_cg_stats;

/* Pure parsers, unit-tested: value of `key` in "key value\n" lines
 * (memory.events, memory.stat, cpu.stat, v1 memory.oom_control). */
int sbx_cg_parse_keyed(const char *text, const char *key, uint64_t *out);

int sbx_cg_stats_read(const sbx_cgroup *cg, sbx_cg_stats *st);
/* SIGKILLs every process in the sandbox's cgroups (cgroup.kill on v2 when
 * the kernel has it, else a procs sweep until empty). */
int sbx_cg_kill_all(const sbx_cgroup *cg);
/* SIGKILLs, from the host, the process group whose leader has pid
 * `ns_pgid` in the sandbox's pid namespace (a command started by init
 * leads its own session). Init shares the sandbox's cpu quota with the
 * command, so a fork bomb can starve it for minutes; the host is not
 * starved. 0, -ESRCH (no such leader left) or -errno. */
int sbx_cg_kill_group(const sbx_cgroup *cg, pid_t ns_pgid);
/* Removes the cgroup dirs (retrying while the kernel drains them) and the
 * parent <name> dir when it became empty. Closes fds. */
int sbx_cg_destroy(sbx_cgroup *cg, sbx_err *err);

/* ---- device access ---- */
enum { SBX_CG_DEV_MKNOD = 1, SBX_CG_DEV_READ = 2, SBX_CG_DEV_WRITE = 4 }; /* the kernel's bits */
typedef struct sbx_cg_dev_rule {
    char type;       /* 'c' or 'b' */
    int major, minor; /* -1: any */
    unsigned access; /* SBX_CG_DEV_* */
} sbx_cg_dev_rule;

/* Pure: the v1 writes that allow exactly the rules in dir: "a" to
 * devices.deny, then one devices.allow line per rule ("c 195:0 rw"). */
int sbx_cg_v1_plan_devices(const char *dir, const sbx_cg_dev_rule *rules, int n, sbx_cg_plan *plan);
/* Pure: a BPF_PROG_TYPE_CGROUP_DEVICE program that returns 1 (allow) for
 * an access any rule covers and 0 otherwise. Returns the instruction
 * count, or -ENOSPC when cap is too small. */
int sbx_cg_v2_device_prog(const sbx_cg_dev_rule *rules, int n, struct bpf_insn *out, int cap);
/* Loads prog and attaches it to cgroup2 dir (BPF_F_ALLOW_MULTI: every
 * program on the path must allow). 0 or -1 with err (the verifier's log
 * when it refuses). */
int sbx_cg_v2_attach_device_prog(const char *dir, const struct bpf_insn *prog, int n, sbx_err *err);
/* Restricts the sandbox's devices cgroup (created with lim.devices) to
 * the rules: v1 lines or the v2 program. */
int sbx_cg_restrict_devices(const sbx_cgroup *cg, const sbx_cg_dev_rule *rules, int n, sbx_err *err);

/* Leftovers: for each <mount>/<name>/<id> whose id is_live() says is dead,
 * kill what is in it and remove it. Returns how many were removed. */
int sbx_cg_sweep(const sbx_cg_layout *lay, const char *name, bool (*is_live)(const char *id, void *ud),
                 void *ud);

#endif
