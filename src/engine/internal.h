/* Engine internals shared between its files; not part of the public API. */
#ifndef SBX_INTERNAL_H
#define SBX_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "cgroup.h"
#include "gpu.h"
#include "util.h"
#include "sbx/engine.h"

#define SBX_MAX_VOLUMES 64
#define SBX_MAX_EXEC_MSG (1u << 20) /* argv+env+paths of one exec request */
#define SBX_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" /* of every command */
#define SBX_USER_NAME_MAX 32        /* spec->user_name, as useradd allows */

struct sbx_engine {
    char run_dir[SBX_SHORT_PATH_MAX];   /* /run/sbx */
    char lock_dir[SBX_SHORT_PATH_MAX];  /* <run_dir>/sandboxes: one flock'd file per live sandbox */
    char image_dir[SBX_SHORT_PATH_MAX];
    char stage_dir[SBX_SHORT_PATH_MAX]; /* mount point for assembling a root (per mount ns) */
    char layer_dir[SBX_SHORT_PATH_MAX]; /* mount point for a layer tmpfs (per mount ns) */
    char empty_dir[SBX_SHORT_PATH_MAX]; /* empty lower layer for on-disk host-image layers */
    char etc_mask[SBX_SHORT_PATH_MAX];  /* lower layer over host /etc: hides secrets, adds users */
    char etc_view_dir[SBX_SHORT_PATH_MAX]; /* <run_dir>/etc-view: the masks' overlays, shared (image.c) */
    char cg_name[64];
    char cg_fs[SBX_SHORT_PATH_MAX];
    char gpu_root[SBX_SHORT_PATH_MAX];  /* GPU discovery reads below it ("/") */
    char gpu_lock_dir[SBX_SHORT_PATH_MAX]; /* <run_dir>/gpus: one flock'd file per GPU in use */
    char netns_dir[SBX_SHORT_PATH_MAX]; /* <run_dir>/netns: idle network namespaces (netns.c) */
    int netns_pool;           /* how many it may hold; 0: none */
    uint32_t uid_base, uid_count;
    sbx_cg_layout cg;
    int favor_dynmods; /* 0 on, -errno why not, 1 left alone on request */
    int init_exe_fd;   /* O_PATH fd of sbx_engine_config.init_exe, or -1 */
    char *init_env[8]; /* its environment: the sanitizers' settings only */
    char init_env_buf[2048];
};

/* ---- engine.c: sbx_engine_open in two steps ---- */
/* The engine from its configuration alone (checked; nothing made yet). */
int sbx_engine_alloc(const sbx_engine_config *cfg, sbx_engine **out, sbx_err *err);
/* Then: the run dir, the cgroup layout, the sweep of leftovers. */
int sbx_engine_start(sbx_engine *eng, const sbx_engine_config *cfg, sbx_err *err);

/* ---- image.c ---- */
enum { SBX_IMAGE_HOST = 1, SBX_IMAGE_DIR = 2 };
/* Resolves spec->image into a kind and (for SBX_IMAGE_DIR) a directory. */
int sbx_image_resolve(const sbx_engine *eng, const char *image, int *kind, char *dir, size_t dirlen,
                      sbx_err *err);
/* Makes sure the /etc mask for the uid-1000 account named user_name is
 * current with the host's /etc, and puts its directory in dir: eng->etc_mask
 * for "user", a sibling "<etc_mask>.u-<name>" for another name. 1 if this
 * call rebuilt it, 0 if it was current, -1 with err set. */
int sbx_etc_mask_ensure(const sbx_engine *eng, const char *user_name, char *dir, size_t dirlen, sbx_err *err);
/* A new mount of the shared view of the mask in dir (made or remade as
 * needed; remake: the mask was just rebuilt), read-only, nosuid, nodev,
 * not attached anywhere: its fd, or -errno (the caller mounts its own
 * overlay instead). */
int sbx_etc_view_clone(const sbx_engine *eng, const char *mask, bool remake);
/* Unmounts and removes every view (sbx prune); how many were mounted. */
int sbx_etc_view_drop(const sbx_engine *eng);
/* Removes the masks that rebuilds replaced once no live sandbox can be
 * reading them (after a rebuild, and by sbx prune). */
void sbx_etc_masks_gc(const sbx_engine *eng);

/* ---- netns.c: a sandbox's network namespace, new or reused ---- */
typedef struct sbx_netns {
    int fd;      /* the namespace; -1: none */
    int slot_fd; /* taken from the pool: its slot's state file, flock'd; else -1 */
    int slot;
} sbx_netns;
/* Host, before the child needs it: an idle namespace from the pool, or a
 * new one (with ip_unprivileged_port_start 0; lo is the child's to bring
 * up). 0 or -errno with *what set. */
int sbx_netns_get(const sbx_engine *eng, sbx_netns *ns, const char **what);
/* Once every process of the sandbox is gone: back to the pool (dir, at
 * most max idle) if nothing of the sandbox shows in it, else dropped.
 * Closes ns's fds. Safe in the reaper (no malloc). */
void sbx_netns_put(const char *dir, int max, sbx_netns *ns);
/* Drops every idle namespace in dir; *busy gets those claimed. The number
 * dropped, or -errno. */
int sbx_netns_drain(const char *dir, int *busy);
/* Child: brings up lo in the current network namespace (if it is not up). */
int sbx_net_lo_up(void);

/* ---- layer.c ---- */
/* Parent: opens (making it on first use) the ext4 image of an on-disk
 * layer, sized `bytes`. */
int sbx_layer_prepare(const char *dir, uint64_t bytes, int *img_fd, sbx_err *err);
/* Child: attaches the image to a loop device and mounts it at mnt. 0 or -errno. */
int sbx_layer_attach(int img_fd, const char *mnt);

/* ---- rootfs.c ---- */
/* Everything the child needs to build the root, computed by the parent so
 * the child runs without allocating (it may be a fork of a threaded server). */
typedef struct sbx_rootfs_plan {
    int image_kind;
    char etc_mask[SBX_SHORT_PATH_MAX];
    char stage[SBX_SHORT_PATH_MAX];
    char layer_mnt[SBX_SHORT_PATH_MAX];
    char empty_dir[SBX_SHORT_PATH_MAX];
    int layer_img_fd;          /* on-disk layer: its ext4 image, else -1 */
    int etc_view_fd;           /* host image: the shared /etc view's clone, else -1 */
    uint64_t disk_bytes;
    uint32_t uid_base, uid_count;
    char user_home[64];        /* "home/<name>" of the uid-1000 account, relative to the root */
    char hostname[65];
    const sbx_gpu_plan *gpu;   /* NULL: no GPU; else its own mapping, like this plan */
    /* Paths from users, after the short fields above (the default
     * launch touches only the first byte of each). */
    char image_dir[PATH_MAX];
    char layer_dir[PATH_MAX];  /* "" = tmpfs layer */
    int nvol;
    struct sbx_plan_volume {
        char host[PATH_MAX];
        char guest[PATH_MAX];
        bool ro;
        bool is_dir;
    } vol[SBX_MAX_VOLUMES];
} sbx_rootfs_plan;

/* Checks volumes and fills plan->vol (sorted parents first). */
int sbx_rootfs_plan_volumes(sbx_rootfs_plan *plan, const sbx_volume *v, size_t n, sbx_err *err);
/* Child side, in the new mount+pid namespaces, still host root: builds the
 * root at plan->stage (the rest of it, if base_built). On failure returns
 * -errno and names the step in *what. Allocates nothing. */
int sbx_rootfs_build(const sbx_rootfs_plan *plan, bool base_built, const char **what);
/* A throwaway root on the host image only (the image kind, the stage, the
 * owner, the size and the user's home of the plan): what needs nothing of
 * the image, so a child cloned before its plan can build it meanwhile:
 * the root tmpfs, its skeleton, /dev and /proc. */
int sbx_rootfs_build_base(const sbx_rootfs_plan *plan, const char **what);
/* Then: pivots into it (the old root stays stacked on the new one). */
int sbx_rootfs_enter(const sbx_rootfs_plan *plan, const char **what);
/* Then: starts the detach of the old root in a helper task; its pid, 0 if
 * done here, or -errno. Until sbx_rootfs_finish, look up only paths below
 * / (and make no user namespace: the kernel counts us as chrooted). */
pid_t sbx_rootfs_detach(void);
/* Waits for that detach and enters /. 0 or -errno with *what set. */
int sbx_rootfs_finish(pid_t detacher, const char **what);
/* Devices cgroup rules for the standard /dev nodes build_dev makes (and
 * devpts), appended to out after *n; -1 if cap is exceeded. */
int sbx_rootfs_dev_rules(sbx_cg_dev_rule *out, int *n, int cap);

/* Credentials for the calling thread only, by raw syscall: libc's
 * wrappers signal every thread libc knows of, and a process cloned from a
 * threaded host still lists threads that do not exist in it (deadlock). */
int sbx_become(uint32_t uid, uint32_t gid);

/* ---- init.c: the sandbox's pid 1 ---- */
/* Messages on the control socket (SOCK_SEQPACKET). */
enum {
    SBX_MSG_NETNS = 1,   /* host -> child: the network and user ns to enter (2 fds) */
    SBX_MSG_USERNS,      /* child -> host (GPU sandboxes): root built, restrict the devices */
    SBX_MSG_MAPPED,      /* host -> child: devices restricted */
    SBX_MSG_READY,       /* child -> host: init loop running */
    SBX_MSG_ERROR,       /* child -> host: setup failed (text follows) */
    SBX_MSG_EXEC,        /* host -> init: start a command (fds attached) */
    SBX_MSG_STARTED,     /* init -> host (exec channel): pid or exec errno */
    SBX_MSG_EXIT,        /* init -> host (exec channel): wait status */
    SBX_MSG_SIGNAL,      /* host -> init: signal an exec's process group */
    SBX_MSG_FSOP,        /* host -> init: a file operation as a user (channel fd attached) */
    SBX_MSG_FSRES,       /* init's helper -> host (channel): errno, maybe an fd */
    SBX_MSG_CGROUPS,     /* host -> child: lock held (fd), cgroups made and joined */
    SBX_MSG_PLAN,        /* host -> early child: its rootfs plan, and that plan's fds */
};

struct sbx_msg_hdr {
    uint32_t type;
    uint32_t len;  /* bytes after the header */
};

/* PLAN: this, then the plan's bytes up to its last volume; the fds that
 * flags name are attached, in this order. */
struct sbx_msg_plan {
    struct sbx_msg_hdr h;
    uint32_t flags;
    uint32_t plan_len;
};
/* ONE_SHOT: init ends with its one command, so the plan's mapping may
 * stay (unmapping it cost ~8 us of the launch's critical path). */
enum { SBX_PLAN_ETC_VIEW_FD = 1, SBX_PLAN_LAYER_IMG_FD = 2, SBX_PLAN_ONE_SHOT = 4 };

struct sbx_msg_error {
    struct sbx_msg_hdr h;
    int32_t err;
    char text[240];
};

/* EXEC payload follows the header: fixed part, then strings. Attached fds
 * (SCM_RIGHTS), in order: exec channel, stdin, stdout, stderr (any of the
 * stdio may be absent, per flags). */
struct sbx_msg_exec {
    struct sbx_msg_hdr h;
    uint64_t exec_id;
    uint32_t uid, gid;
    uint32_t flags;
    uint32_t argc, envc;
    /* then: workdir\0 argv[0]\0 ... env[0]\0 ... */
};
/* SBX_EXEC_LAST: a one_shot sandbox's command; init exits as soon as it
 * has reported its exit, ending the sandbox (the host would kill it next,
 * a round trip later). */
/* SBX_EXEC_QUIET: no STARTED unless the command could not start; its
 * EXIT is all the host waits for (sbx_sandbox_exec of a one_shot
 * sandbox). Telling the host at the exec would wake it, and init, on the
 * command's CPU, right as the command starts (~0.03 ms here). */
enum { SBX_EXEC_STDIN = 1, SBX_EXEC_STDOUT = 2, SBX_EXEC_STDERR = 4, SBX_EXEC_LAST = 8, SBX_EXEC_QUIET = 16 };
/* Bits 8-11 of flags: number of extra fds (after stdio), which become
 * fds 3.. of the command. */
#define SBX_EXEC_EXTRA_SHIFT 8
#define SBX_EXEC_EXTRA_MASK 0xfu

struct sbx_msg_started {
    struct sbx_msg_hdr h;
    int32_t pid;        /* pid inside the sandbox, or 0 */
    int32_t err;        /* errno if the command could not start */
    int32_t stage;      /* which step failed (enum sbx_exec_stage) */
};
enum { SBX_STAGE_NONE = 0, SBX_STAGE_WORKDIR, SBX_STAGE_USER, SBX_STAGE_EXEC, SBX_STAGE_FORK };

struct sbx_msg_exit {
    struct sbx_msg_hdr h;
    int32_t status;     /* as from wait4 */
    uint64_t cpu_usec;
    uint64_t maxrss_kib;
};

struct sbx_msg_signal {
    struct sbx_msg_hdr h;
    uint64_t exec_id;
    int32_t sig;
};

/* FSOP payload: fixed part, then path\0 [path2\0]. */
struct sbx_msg_fsop {
    struct sbx_msg_hdr h;
    uint32_t op;        /* enum below */
    uint32_t uid, gid;
    int32_t oflags;     /* open(2) flags for SBX_FSOP_OPEN */
    uint32_t mode;
    uint32_t fsflags;   /* SBX_FS_* */
    uint32_t npaths;
};
enum { SBX_FSOP_OPEN = 1, SBX_FSOP_MKDIR, SBX_FSOP_RENAME, SBX_FSOP_REMOVE };

struct sbx_msg_fsres {
    struct sbx_msg_hdr h;
    int32_t err;        /* 0 or errno */
};

/* Runs forever as pid 1 of the sandbox, serving exec requests on ctl_fd.
 * Never returns. */
void sbx_init_main(int ctl_fd) __attribute__((noreturn));

/* ---- sandbox.c ---- */
struct sbx_sandbox {
    sbx_engine *eng;
    char id[64];
    pid_t init_pid;
    int ctl_fd;
    int lock_fd;
    char lock_path[SBX_SHORT_PATH_MAX];
    bool has_cg;
    sbx_cgroup cg;
    pthread_mutex_t send_lock; /* one EXEC/SIGNAL message at a time on ctl_fd */
    uint64_t next_exec;
    uint64_t oom_seen;         /* OOM kills already reported */
    uint32_t uid_base, uid_count;
    sbx_gpu_lease gpu;         /* GPUs held (none: n == 0) */
    char **env;                /* defaults for every command (the GPU variables); NULL: none */
    char user_name[SBX_USER_NAME_MAX + 1]; /* the uid-1000 account */
    char user_home[SBX_USER_NAME_MAX + 8]; /* "/home/<user_name>" */
    bool dead;
    bool one_shot;             /* spec->one_shot: its command is SBX_EXEC_LAST */
    bool reap_wanted;          /* spec->one_shot, until the reaper is started */
    int reaper_go;             /* reaper's socket: a byte means "destroy"; -1: no reaper */
    bool ready_pending;        /* one_shot: init's READY (or ERROR) not read yet */
    sbx_netns netns;           /* its network namespace, held until it is gone */
};

/* sandbox.c: forks the reaper of a one_shot sandbox (best effort: without
 * one, destroy waits as usual). */
void sbx_reaper_start(sbx_sandbox *sb);
/* sandbox.c: for a one_shot sandbox whose init is gone before it was
 * heard from: fills err with why its setup failed and returns -1; 0 if
 * setup had succeeded (or was waited for). */
int sbx_setup_failed(sbx_sandbox *sb, sbx_err *err);

/* exec.c: credentials, home and name of a "user" argument in sb. */
int sbx_parse_user(const sbx_sandbox *sb, const char *user, uint32_t *uid, uint32_t *gid, const char **home,
                   const char **name, sbx_err *err);
/* sandbox.c: a name usable for the uid-1000 account. */
bool sbx_valid_user_name(const char *s);

/* Sends one message with optional fds (at most 8); 0 or -errno. */
int sbx_msg_send(int fd, const void *msg, size_t len, const int *fds, int nfds);
/* Receives one message into buf (cap bytes); returns length, 0 on EOF, -errno.
 * Up to *nfds fds (others are closed), close-on-exec; *nfds gets how many. */
ssize_t sbx_msg_recv(int fd, void *buf, size_t cap, int *fds, int *nfds);
/* The same, the message gathered from or scattered to several buffers. */
struct iovec;
int sbx_msg_sendv(int fd, const struct iovec *iov, int niov, const int *fds, int nfds);
ssize_t sbx_msg_recvv(int fd, struct iovec *iov, int niov, int *fds, int *nfds);

#endif
