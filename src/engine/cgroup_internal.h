/* cgroup internals: what cgroup.c (common logic) shares with the
 * version-specific files cgroup_v1.c and cgroup_v2.c. */
#ifndef SBX_CGROUP_INTERNAL_H
#define SBX_CGROUP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include "cgroup.h"

/* CFS period used on both versions (the kernel's default). */
#define SBX_CG_PERIOD_US 100000u

/* ---- cgroup.c ---- */
/* Append a step to the plan: 0, -ENOSPC when full, -ENAMETOOLONG. */
int sbx_cg_plan_mkdir(sbx_cg_plan *plan, const char *dir, bool exist_ok);
int sbx_cg_plan_write(sbx_cg_plan *plan, const char *dir, const char *file, const char *value,
                      bool optional);
/* CFS quota in microseconds per period for fractional cpus (min 1000). */
uint64_t sbx_cg_cpu_quota(double cpus);
/* Read <dir>/<file> as one number, or the value of `key` in it. 0 or -errno. */
int sbx_cg_read_u64(const char *dir, const char *file, uint64_t *out);
int sbx_cg_read_keyed(const char *dir, const char *file, const char *key, uint64_t *out);

/* ---- cgroup_cache.c: the file's content (the unit test edits it) ---- */
#define SBX_CG_CACHE_MAGIC 0x73626367u /* "sbcg" */
/* What a layout rests on: if any of it changes, detect again. */
struct sbx_cg_ids {
    uint64_t mntns; /* inode of /proc/self/ns/mnt */
    uint64_t dev[SBX_CG_NCTL + 2], ino[SBX_CG_NCTL + 2]; /* each mount; then the v2 mount; then cgroup_fs */
    int64_t fs_mtime_sec, fs_mtime_nsec;                 /* of cgroup_fs */
    char v2_controllers[1024];
};
struct sbx_cg_cache {
    uint32_t magic, size; /* size: this struct's, so a build with another layout never reads it */
    struct sbx_cg_ids ids;
    int favor; /* sbx_cg_favor_dynmods's result; 1: not tried (kept on request) */
    char cgroup_fs[SBX_BASE_PATH_MAX];
    sbx_cg_layout lay;
};

/* ---- cgroup_v1.c ---- */
int sbx_cg_v1_plan_limits(int ctl, const char *dir, const sbx_cg_limits *lim, sbx_cg_plan *plan);
/* Adds what controller ctl accounts to st. 0 or -errno of a required file. */
int sbx_cg_v1_stats(int ctl, const char *dir, sbx_cg_stats *st);

/* ---- cgroup_v2.c ---- */
/* Steps that create the v2 sandbox dir `dir` (= <v2 mount>/<name>/<id>)
 * with the controllers delegated down to it. */
int sbx_cg_v2_plan_dir(const sbx_cg_layout *lay, const char *dir, sbx_cg_plan *plan);
int sbx_cg_v2_plan_limits(int ctl, const char *dir, const sbx_cg_limits *lim, sbx_cg_plan *plan);
int sbx_cg_v2_stats(int ctl, const char *dir, sbx_cg_stats *st);
/* Writes "1" to cgroup.kill: 0, or -errno (-ENOENT: kernel < 5.14). */
int sbx_cg_v2_kill(const char *dir);

#endif
