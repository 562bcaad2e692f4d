/* cgroup v2: one unified hierarchy; controllers must be delegated down
 * through each parent's cgroup.subtree_control before a child has them. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgroup_internal.h"
#include "util.h"

/* "+memory +cpu +pids", limited to the controllers served by v2.
 * cpuacct is not a v2 controller (cpu.stat always has usage). */
static void v2_enable_list(const sbx_cg_layout *lay, char *buf, size_t cap)
{
    static const int ctls[] = {SBX_CG_MEMORY, SBX_CG_CPU, SBX_CG_PIDS};
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < SBX_ARRAY_LEN(ctls); i++) {
        if (lay->ver[ctls[i]] != SBX_CG_V2)
            continue;
        int w = snprintf(buf + n, cap - n, "%s+%s", n ? " " : "", sbx_cg_ctl_name(ctls[i]));
        if (w > 0 && (size_t)w < cap - n)
            n += (size_t)w;
    }
}

int sbx_cg_v2_plan_dir(const sbx_cg_layout *lay, const char *dir, sbx_cg_plan *plan)
{
    char parent[PATH_MAX], enable[64];
    const char *slash = strrchr(dir, '/');
    if (!slash || (size_t)(slash - dir) >= sizeof(parent))
        return -EINVAL;
    memcpy(parent, dir, (size_t)(slash - dir));
    parent[slash - dir] = '\0';
    v2_enable_list(lay, enable, sizeof(enable));

    int r = 0;
    if (enable[0]) {
        /* The root usually delegates already (systemd does); where it
         * cannot (a namespace root holding processes: EBUSY) the parent's
         * write below reports the real problem. */
        r = sbx_cg_plan_write(plan, lay->v2_mount, "cgroup.subtree_control", enable, true);
    }
    if (!r)
        r = sbx_cg_plan_mkdir(plan, parent, true);
    if (!r && enable[0])
        r = sbx_cg_plan_write(plan, parent, "cgroup.subtree_control", enable, false);
    if (!r)
        r = sbx_cg_plan_mkdir(plan, dir, false);
    return r;
}

int sbx_cg_v2_plan_limits(int ctl, const char *dir, const sbx_cg_limits *lim, sbx_cg_plan *plan)
{
    char v[48];
    int r = 0;

    switch (ctl) {
    case SBX_CG_MEMORY:
        if (!lim->memory_bytes)
            return 0;
        snprintf(v, sizeof(v), "%" PRIu64, lim->memory_bytes);
        r = sbx_cg_plan_write(plan, dir, "memory.max", v, false);
        /* No swap; the file is missing when swap accounting is off. */
        if (!r)
            r = sbx_cg_plan_write(plan, dir, "memory.swap.max", "0", true);
        return r;
    case SBX_CG_CPU:
        if (lim->cpus <= 0)
            return 0;
        snprintf(v, sizeof(v), "%" PRIu64 " %u", sbx_cg_cpu_quota(lim->cpus), SBX_CG_PERIOD_US);
        return sbx_cg_plan_write(plan, dir, "cpu.max", v, false);
    case SBX_CG_PIDS:
        if (!lim->pids)
            return 0;
        snprintf(v, sizeof(v), "%" PRIu64, lim->pids);
        return sbx_cg_plan_write(plan, dir, "pids.max", v, false);
    default:
        return 0;
    }
}

int sbx_cg_v2_stats(int ctl, const char *dir, sbx_cg_stats *st)
{
    int r = 0;

    switch (ctl) {
    case SBX_CG_MEMORY:
        r = sbx_cg_read_u64(dir, "memory.current", &st->memory_bytes);
        if (sbx_cg_read_u64(dir, "memory.peak", &st->memory_peak) < 0)
            st->memory_peak = 0; /* before 5.19 */
        if (sbx_cg_read_keyed(dir, "memory.events", "oom_kill", &st->oom_kills) < 0)
            st->oom_kills = 0;
        return r;
    case SBX_CG_CPUACCT: /* follows cpu on v2 */
        return sbx_cg_read_keyed(dir, "cpu.stat", "usage_usec", &st->cpu_usec);
    case SBX_CG_PIDS:
        return sbx_cg_read_u64(dir, "pids.current", &st->pids);
    default:
        return 0;
    }
}

int sbx_cg_v2_kill(const char *dir)
{
    char path[PATH_MAX];
    int r = sbx_pathf(path, sizeof(path), "%s/cgroup.kill", dir);
    return r ? r : sbx_write_str(path, "1");
}
