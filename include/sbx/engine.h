/* libsbx: the isolation engine.
 *
 * A sandbox is described by an sbx_spec, created with sbx_sandbox_create(),
 * used with sbx_sandbox_exec() (any number of times), and removed with
 * sbx_sandbox_destroy(). Every function reports failure through an sbx_err
 * whose message names what was wrong and, for bad input, what is allowed.
 */
#ifndef SBX_ENGINE_H
#define SBX_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error classes; the CLI maps SBX_E_INVALID/SBX_E_NOTFOUND to exit 125. */
enum sbx_errcode {
    SBX_OK = 0,
    SBX_E_INVALID = 1, /* bad input: flag, value, volume, spec */
    SBX_E_NOTFOUND = 2, /* image, host path, sandbox not found */
    SBX_E_SYSTEM = 3,   /* a syscall failed on the host */
    SBX_E_LIMIT = 4,    /* a configured limit refuses the request */
    SBX_E_TIMEOUT = 5,  /* a deadline passed (client calls: the execution was stopped) */
};

typedef struct sbx_err {
    int code;       /* enum sbx_errcode */
    int sys_errno;  /* errno when code == SBX_E_SYSTEM, else 0 */
    char msg[512];
} sbx_err;

/* ---- engine ------------------------------------------------------------ */

typedef struct sbx_engine_config {
    const char *run_dir;     /* locks and derived layers; default /run/sbx */
    const char *image_dir;   /* named images: <image_dir>/<name>/; default /var/lib/sbx/images */
    const char *cgroup_name; /* parent cgroup under each hierarchy; default "sbx" */
    const char *cgroup_fs;   /* cgroup mount root; default /sys/fs/cgroup (tests point elsewhere) */
    uint32_t uid_base;       /* host uid/gid that root inside maps to; default 1000000000 */
    uint32_t uid_count;      /* ids mapped; default 65536 */
    bool keep_cgroup_mount;  /* do not set "favordynmods" on the cgroup2 mount
                                (see cgroup.h: it makes each launch ~10 ms faster
                                on hosts that migrate tasks between cgroups) */
    const char *gpu_root;    /* where GPU discovery looks (proc/driver/nvidia, dev, etc/ld.so.cache,
                                lib dirs); default "/" (tests point at a fake tree) */
    const char *init_exe;    /* NULL: a sandbox's init is a copy of the creating process (right
                                for a small one, the `sbx` CLI). Else the `sbx` binary of the same
                                build, which the sandbox's first process re-executes as host root
                                right after the clone: a big creator (the server) would otherwise
                                leave every init a copy-on-write image of its whole memory, which
                                the OOM killer counts (it would kill init, the whole sandbox, before
                                the process that ate the memory) and which holds its secrets. */
    int netns_pool;          /* idle network namespaces kept in <run_dir>/netns for reuse by the
                                next sandboxes (each ~50 KiB of kernel memory; one is reused only if
                                its last sandbox left no trace in it). 0: $SBX_NETNS_POOL if set,
                                else 8; negative: none */
} sbx_engine_config;

typedef struct sbx_engine sbx_engine;

/* Opens the engine: detects cgroup controllers, prepares run_dir, and
 * removes leftovers (cgroups, layers) of sandboxes whose owner died. */
int sbx_engine_open(const sbx_engine_config *cfg, sbx_engine **out, sbx_err *err);
/* The default sbx_engine_config.init_exe: $SBX_INIT_EXE if set, else the
 * `sbx` beside the running binary (`sbx-server`'s). 0 or -1 with err set. */
int sbx_default_init_exe(char *buf, size_t len, sbx_err *err);
/* The argument with which init_exe is re-executed (argv[1]). The program's
 * main hands such a command line to sbx_sandbox_child_exec before anything
 * else; it never returns. */
#define SBX_CHILD_EXEC_ARG "--sbx-sandbox-init"
void sbx_sandbox_child_exec(int argc, char **argv) __attribute__((noreturn));
void sbx_engine_close(sbx_engine *eng);
/* Drops what the engine keeps between sandboxes: the idle network
 * namespaces, the shared /etc views (*views gets how many; sandboxes keep
 * their mounts of them, the next ones make new views), the replaced /etc
 * masks no live sandbox reads, and the parent cgroups (<mount>/<name>) if
 * no sandbox is in them.
 * *busy gets the namespaces in use by live sandboxes (they stay). The
 * number of namespaces dropped, or -1 with err set. */
int sbx_engine_prune(sbx_engine *eng, int *busy, int *views, sbx_err *err);
/* One line per controller, e.g. "memory: v1 /sys/fs/cgroup/memory", then
 * the uid map, run dir and the GPUs found ("gpu      none found (why)"). */
int sbx_engine_describe(const sbx_engine *eng, char *buf, size_t len);

/* ---- sandbox spec ------------------------------------------------------ */

typedef struct sbx_volume {
    const char *host;  /* existing host path */
    const char *guest; /* absolute path inside the sandbox, no ".." */
    bool readonly;
} sbx_volume;

typedef struct sbx_spec {
    const char *id;       /* [A-Za-z0-9_.-]{1,63}; NULL: generated */
    const char *image;    /* "host" (default), an image name, or a directory */
    const char *hostname; /* default "sbx" */
    const char *user_name;/* name of the uid-1000 account: passwd/group entry and home
                             /home/<name>; [a-z_][a-z0-9_-]{0,31}, not "root"; NULL: "user" */
    double cpus;          /* fractional cores as CFS quota; 0 = unlimited */
    uint64_t memory_mib;  /* hard limit, no swap; 0 = unlimited */
    uint64_t pids;        /* 0 = unlimited */
    uint64_t disk_mib;    /* writable layer size; 0 = SBX_DEFAULT_DISK_MIB */
    const char *layer_dir;/* NULL: tmpfs layer (throwaway). Else the writable layer is kept
                             on disk across sandboxes, as an ext4 image <layer_dir>/layer.img
                             of disk_mib (fixed when first made) on a loop device */
    bool track_cpu;       /* account cpu time in cgroups even without a cpu limit
                             (for sbx_sandbox_stats); costs ~0.2 ms per launch on v1 */
    const sbx_volume *volumes;
    size_t n_volumes;
    const char *gpu;      /* NULL/"": no GPU at all. "all" (shared with other "all" sandboxes), a
                             count "2" or indices "0,2" / "device=1" (held exclusively); see docs/gpu.md */
    bool one_shot;        /* the caller runs one command and destroys the sandbox right after
                             (sbx run): create does not wait for init's ready report (a setup
                             failure is reported by the first exec), and destroy waits only for
                             init's death, not for the kernel's teardown of the mounts: a process
                             forked at the first exec holds the mount namespace, drops it, and
                             removes the cgroups and lock meanwhile. Without gpu and layer_dir
                             only; else destroy works as usual */
} sbx_spec;

#define SBX_DEFAULT_DISK_MIB 1024
#define SBX_USER_UID 1000

/* Parses "HOST:GUEST[:ro|:rw]" into v (pointers into buf, which is
 * modified). Checks syntax only; sbx_sandbox_create checks existence. */
int sbx_volume_parse(char *buf, sbx_volume *v, sbx_err *err);
/* Checks the syntax of a spec's gpu value (not whether the host has them). */
int sbx_gpu_spec_check(const char *gpu, sbx_err *err);

/* ---- sandboxes --------------------------------------------------------- */

typedef struct sbx_sandbox sbx_sandbox;

int sbx_sandbox_create(sbx_engine *eng, const sbx_spec *spec, sbx_sandbox **out, sbx_err *err);
/* sbx_engine_open, then sbx_sandbox_create of spec, as one call: for a
 * throwaway sandbox on the host image, its first process is cloned before
 * the engine opens and builds the base of its root meanwhile (`sbx run`:
 * ~0.1 ms sooner). On failure both are NULL and err says why. */
int sbx_engine_open_run(const sbx_engine_config *cfg, const sbx_spec *spec, sbx_engine **eng,
                        sbx_sandbox **sb, sbx_err *err);
const char *sbx_sandbox_id(const sbx_sandbox *sb);
pid_t sbx_sandbox_pid(const sbx_sandbox *sb); /* host pid of the sandbox init */
/* Kills every process of the sandbox, removes its cgroups and layer (a
 * layer_dir is kept). Safe on NULL. */
void sbx_sandbox_destroy(sbx_sandbox *sb);

/* ---- layer image pool ----------------------------------------------------
 * Ready ext4 layer images for spec.layer_dir, kept in pool_dir (on the
 * same filesystem as the layer dirs): a first start whose layer has no
 * image yet takes one by rename instead of running mkfs on its path. */

/* Ready images of disk_mib in pool_dir. */
int sbx_layer_pool_count(const char *pool_dir, uint64_t disk_mib);
/* Makes one more (seconds at worst: run it off any request path). */
int sbx_layer_pool_add(const char *pool_dir, uint64_t disk_mib, sbx_err *err);
/* Moves a ready image of disk_mib to <layer_dir>/layer.img unless that
 * exists: 1 if it did, 0 if not (none ready, or the layer has one). */
int sbx_layer_pool_claim(const char *pool_dir, uint64_t disk_mib, const char *layer_dir);
/* Removes pool_dir and everything in it (ready and half-made images). */
void sbx_layer_pool_clear(const char *pool_dir);

typedef struct sbx_stats {
    uint64_t cpu_usec;     /* cpu time of all processes so far */
    uint64_t memory_bytes; /* current usage */
    uint64_t memory_peak;  /* high-water mark (0 if the kernel cannot say) */
    uint64_t oom_kills;    /* processes the kernel killed at the memory limit */
    uint64_t pids;         /* processes now */
} sbx_stats;

int sbx_sandbox_stats(const sbx_sandbox *sb, sbx_stats *st, sbx_err *err);

enum sbx_stream { SBX_STDOUT = 1, SBX_STDERR = 2 };
typedef void (*sbx_output_cb)(void *ud, int stream, const char *data, size_t len);

typedef struct sbx_exec_spec {
    char *const *argv;      /* argv[0] is looked up in PATH when it has no '/' */
    char *const *env;       /* extra KEY=VALUE entries, override defaults */
    const char *workdir;    /* default: the user's home */
    const char *user;       /* uid 1000 (default; "user" or the spec's user_name), "root",
                               or a numeric uid */
    int stdin_fd;           /* -1: /dev/null */
    int stdout_fd;          /* -1: captured (and streamed to on_output) */
    int stderr_fd;          /* -1: captured (and streamed to on_output) */
    size_t capture_max;     /* bytes kept per captured stream; 0 = 1 MiB */
    uint64_t timeout_ms;    /* 0 = none */
    bool kill_on_timeout;   /* timeout destroys the whole sandbox (sbx run) */
    int signal_fd;          /* -1: none; when readable, an int signal number is read
                               from it and sent to the command's process group */
    sbx_output_cb on_output;
    void *ud;
} sbx_exec_spec;

typedef struct sbx_exec_result {
    int exit_code;          /* valid when signal == 0 */
    int signal;             /* terminating signal, 0 if it exited */
    bool timed_out;
    bool oom_killed;        /* the kernel's OOM killer fired in this sandbox during the run */
    int exec_errno;         /* non-zero: the command could not be started ... */
    char exec_error[256];   /* ... and why, e.g. "'foo': not found in PATH" */
    char *out, *err;        /* captured streams, NUL-terminated; free with sbx_exec_result_free */
    size_t out_len, err_len;
    bool out_truncated, err_truncated;
    uint64_t wall_usec;
    uint64_t cpu_usec;      /* cpu time used by the run */
    uint64_t memory_peak;   /* peak memory of the run, bytes */
} sbx_exec_result;

int sbx_sandbox_exec(sbx_sandbox *sb, const sbx_exec_spec *xs, sbx_exec_result *res, sbx_err *err);
void sbx_exec_result_free(sbx_exec_result *res);

/* ---- long-running processes (REPLs, interactive commands) -------------- */

typedef struct sbx_proc sbx_proc;

#define SBX_SPAWN_MAX_EXTRA 4

typedef struct sbx_spawn_spec {
    char *const *argv;      /* as for sbx_exec_spec */
    char *const *env;
    const char *workdir;
    const char *user;
    int stdin_fd;           /* -1: a pipe; its write end is sbx_proc_fd(p, 0) */
    int stdout_fd;          /* -1: a pipe; its read end is sbx_proc_fd(p, 1) */
    int stderr_fd;          /* -1: a pipe; its read end is sbx_proc_fd(p, 2) */
    const int *extra_fds;   /* handed to the process as fds 3, 4, ... */
    int n_extra;            /* at most SBX_SPAWN_MAX_EXTRA */
} sbx_spawn_spec;

/* Starts a process and returns once it runs (or could not start: then -1
 * with err, e.g. command not found, err->sys_errno ENOENT). It has its own
 * process group; the host-side pipe ends are non-blocking. */
int sbx_sandbox_spawn(sbx_sandbox *sb, const sbx_spawn_spec *ss, sbx_proc **out, sbx_err *err);
pid_t sbx_proc_pid(const sbx_proc *p);          /* pid inside the sandbox */
int sbx_proc_fd(const sbx_proc *p, int which);   /* 0, 1, 2: host end of a stdio pipe, or -1 */
void sbx_proc_close_fd(sbx_proc *p, int which); /* e.g. close stdin to send EOF */
/* Readable when the process has exited (or the sandbox died); then call
 * sbx_proc_wait. For poll loops. */
int sbx_proc_status_fd(const sbx_proc *p);
/* Sends sig to the process's group. */
int sbx_proc_signal(sbx_proc *p, int sig);
/* Waits up to timeout_ms (-1: forever) for the exit: 1 with *status as
 * from wait(2), 0 if still running, -1 if the sandbox is gone. */
int sbx_proc_wait(sbx_proc *p, int timeout_ms, int *status);
/* Kills the process group if still running, closes everything. NULL ok. */
void sbx_proc_free(sbx_proc *p);

/* ---- files, as a sandbox user sees them -------------------------------- */
/* Each call runs inside the sandbox with the credentials of `user` (NULL:
 * uid 1000, as for exec), so path resolution (symlinks, "..", mounts) is confined to the
 * sandbox and permissions are the sandbox's own. A relative path is taken
 * from the user's home. Failures set err->sys_errno (ENOENT, EACCES, ...). */
enum {
    SBX_FS_MKDIRS = 1,   /* create missing parent directories (0755) */
    SBX_FS_EXIST_OK = 2, /* mkdir: an existing directory is not an error */
};
/* Opens path with open(2) flags and returns an fd the host may use. For
 * reading or writing only regular files and directories are allowed
 * (O_PATH opens anything), so the sandbox cannot stall the host with a
 * FIFO or device. */
int sbx_sandbox_open(sbx_sandbox *sb, const char *path, int flags, unsigned mode, const char *user, unsigned fsflags,
                     sbx_err *err);
int sbx_sandbox_mkdir(sbx_sandbox *sb, const char *path, unsigned mode, const char *user, unsigned fsflags,
                      sbx_err *err);
int sbx_sandbox_rename(sbx_sandbox *sb, const char *from, const char *to, const char *user, unsigned fsflags,
                       sbx_err *err);
/* Removes a file, or a directory with everything in it. */
int sbx_sandbox_remove(sbx_sandbox *sb, const char *path, const char *user, sbx_err *err);
/* A host uid/gid (as fstat on a returned fd reports it) as the sandbox
 * sees it; 65534 (nobody) when unmapped. */
uint32_t sbx_sandbox_guest_id(const sbx_sandbox *sb, uint32_t host_id);

#ifdef __cplusplus
}
#endif
#endif
