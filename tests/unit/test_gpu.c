/* GPU sandboxes without a GPU: request syntax, discovery and mount plans
 * against fake driver trees (proc, dev nodes, loader cache, libraries) made
 * in a temp dir, reservation with real locks, the devices cgroup rules as
 * v1 lines and v2 BPF instructions, and, as root where the host has them,
 * both device controllers really refusing a node outside the rules. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "gpu.h"
#include "internal.h"
#include "ldcache.h"
#include "seccomp_policy.h"
#include "t.h"
#include "util.h"

#define SKIP(...)                         \
    do {                                  \
        printf("ok - # SKIP ");           \
        printf(__VA_ARGS__);              \
        printf("\n");                     \
    } while (0)

static char root[48]; /* the fake tree of the current case (a short temp path) */
static char real_root[PATH_MAX];
static sbx_gpu_plan plan;   /* large: off the stack */
static char got[16384];

/* ---- building fake trees ------------------------------------------------- */

static void mk(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    sbx_mkdir_p(p, 0755);
}

static void put(const char *rel, const void *data, size_t len, mode_t mode)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len)
        printf("# cannot write %s: %s\n", p, strerror(errno));
    if (fd >= 0)
        close(fd);
    chmod(p, mode);
}

static void put_str(const char *rel, const char *s)
{
    put(rel, s, strlen(s), 0644);
}

/* The first 20 bytes of an ELF shared object: class, data, machine. */
static void put_elf(const char *rel, int class64, int machine)
{
    unsigned char h[64] = {0x7f, 'E', 'L', 'F', (unsigned char)(class64 ? 2 : 1), 1, 1};
    h[16] = 3; /* ET_DYN */
    h[18] = (unsigned char)(machine & 0xff);
    h[19] = (unsigned char)(machine >> 8);
    put(rel, h, sizeof(h), 0644);
}

static void lnk(const char *target, const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s%s", root, rel);
    if (symlink(target, p) < 0)
        printf("# cannot link %s: %s\n", p, strerror(errno));
}

static void node(const char *name, unsigned maj, unsigned min, mode_t mode)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/dev/%s", root, name);
    if (mknod(p, S_IFCHR | mode, makedev(maj, min)) < 0)
        printf("# cannot mknod %s: %s\n", p, strerror(errno));
    chmod(p, mode);
}

static void gpu_info(const char *bus, const char *model, int minor, const char *excluded)
{
    char rel[256], text[512];
    snprintf(rel, sizeof(rel), "/proc/driver/nvidia/gpus/%s", bus);
    mk(rel);
    snprintf(text, sizeof(text),
             "Model: \t\t %s\nIRQ:   \t\t 142\nGPU UUID: \t GPU-%08d-1111-2222-3333-444444444444\n"
             "Video BIOS: \t ??.??.??.??.??\nBus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\n"
             "Bus Location: \t %s\nDevice Minor: \t %d\nGPU Excluded:\t %s\n",
             model, minor, bus, minor, excluded);
    snprintf(rel, sizeof(rel), "/proc/driver/nvidia/gpus/%s/information", bus);
    put_str(rel, text);
}

/* A loader cache in glibc's new format: header, entries, strings (offsets
 * from the header). */
struct cache_ent {
    int32_t flags;
    const char *key, *path;
};
static void put_ldcache(const char *rel, const struct cache_ent *e, int n, bool old_prefix)
{
    static unsigned char buf[8192];
    size_t pre = old_prefix ? 16 : 0; /* an old table with 0 entries first */
    size_t hdr = 48, strings = hdr + (size_t)n * 24, off = strings;
    memset(buf, 0, sizeof(buf));
    if (old_prefix)
        memcpy(buf, "ld.so-1.7.0", 11);
    unsigned char *h = buf + pre;
    memcpy(h, "glibc-ld.so.cache1.1", 20);
    uint32_t v = (uint32_t)n;
    memcpy(h + 20, &v, 4);
    for (int i = 0; i < n; i++) {
        unsigned char *ent = h + hdr + (size_t)i * 24;
        uint32_t k = (uint32_t)off;
        memcpy(ent, &e[i].flags, 4);
        memcpy(ent + 4, &k, 4);
        memcpy(h + off, e[i].key, strlen(e[i].key) + 1);
        off += strlen(e[i].key) + 1;
        k = (uint32_t)off;
        memcpy(ent + 8, &k, 4);
        memcpy(h + off, e[i].path, strlen(e[i].path) + 1);
        off += strlen(e[i].path) + 1;
    }
    v = (uint32_t)(off - strings);
    memcpy(h + 24, &v, 4);
    put(rel, buf, pre + off, 0644);
}

static void new_root(void)
{
    snprintf(root, sizeof(root), "/tmp/sbx-gputest-XXXXXX");
    if (!mkdtemp(root))
        printf("# mkdtemp: %s\n", strerror(errno));
    chmod(root, 0755);
    if (!realpath(root, real_root))
        snprintf(real_root, sizeof(real_root), "%s", root);
}

static void rm_root(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", root);
}

#define DRV "550.54.15"
#define LIB "/usr/lib/x86_64-linux-gnu"

/* A host as a .run or distribution install leaves it: two GPUs (created
 * out of bus order), one excluded, libraries with soname links, a stale
 * library of an older driver, CUDA toolkit and container-toolkit libraries
 * that are not the driver's, nvidia-smi. */
static void standard_tree(void)
{
    new_root();
    mk("/dev");
    mk(LIB);
    mk("/usr/bin");
    mk("/etc");
    gpu_info("0000:41:00.0", "NVIDIA H100 80GB HBM3", 1, "No");
    gpu_info("0000:01:00.0", "NVIDIA H100 80GB HBM3", 0, "No");
    gpu_info("0000:81:00.0", "NVIDIA A2", 2, "Yes");
    put_str("/proc/driver/nvidia/version",
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  " DRV "  Tue Mar  5 22:23:56 UTC 2024\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n");
    node("nvidia0", 195, 0, 0666);
    node("nvidia1", 195, 1, 0666);
    node("nvidia2", 195, 2, 0666);
    node("nvidiactl", 195, 255, 0666);
    node("nvidia-uvm", 510, 0, 0666);
    node("nvidia-uvm-tools", 510, 1, 0666);
    static const char *const libs[] = {"libcuda", "libnvidia-ml", "libnvidia-ptxjitcompiler", "libnvidia-nvvm",
                                       "libcudadebugger", "libnvcuvid", "libnvidia-encode"};
    static const char *const sonames[] = {"1", "1", "1", "4", "1", "1", "1"};
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        char f[256], l[256], t[256];
        snprintf(f, sizeof(f), LIB "/%s.so." DRV, libs[i]);
        put_elf(f, 1, 62);
        snprintf(l, sizeof(l), LIB "/%s.so.%s", libs[i], sonames[i]);
        snprintf(t, sizeof(t), "%s.so." DRV, libs[i]);
        lnk(t, l);
    }
    lnk("libcuda.so.1", LIB "/libcuda.so");
    put_elf(LIB "/libcuda.so.535.104.05", 1, 62);          /* a stale driver */
    put_elf(LIB "/libcudart.so.12.4.127", 1, 62);          /* the CUDA toolkit's */
    lnk("libcudart.so.12.4.127", LIB "/libcudart.so.12");
    put_elf(LIB "/libnvidia-container.so.1.14.6", 1, 62);  /* the container toolkit's */
    put_str("/usr/bin/nvidia-smi", "#!/bin/sh\n");
    chmod((snprintf(got, sizeof(got), "%s/usr/bin/nvidia-smi", root), got), 0755);
    put_str("/usr/bin/nvidia-debugdump", "not executable\n");
}

/* One line per item, host paths relative to the fake root. */
static void plan_text(const sbx_gpu_plan *p, char *buf, size_t cap)
{
    size_t n = 0, rl = strlen(real_root);
#define OUT(...) n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__)
    buf[0] = '\0';
    OUT("gpus");
    for (int i = 0; i < p->ngpu; i++)
        OUT(" %d", p->index[i]);
    OUT("\n");
    for (int i = 0; i < p->nnodes; i++)
        OUT("node %s %u:%u\n", p->node[i].name, p->node[i].major, p->node[i].minor);
    for (int i = 0; i < p->nlibs; i++)
        OUT("lib %s <- %s\n", p->lib[i].name,
            strncmp(p->lib[i].host, real_root, rl) == 0 ? p->lib[i].host + rl : p->lib[i].host);
    for (int i = 0; i < p->nlinks; i++)
        OUT("link %s -> %s\n", p->link[i].name, p->link[i].target);
    for (int i = 0; i < p->nbins; i++)
        OUT("bin %s <- %s\n", p->bin[i].name,
            strncmp(p->bin[i].host, real_root, rl) == 0 ? p->bin[i].host + rl : p->bin[i].host);
    for (int i = 0; i < p->nenv; i++)
        OUT("env %s\n", p->env[i]);
#undef OUT
}

/* ---- request syntax -------------------------------------------------------- */

static void test_parse(void)
{
    sbx_gpu_request r;
    sbx_err err = {0};
    T_OK(sbx_gpu_parse(NULL, &r, &err) == 0 && r.kind == SBX_GPU_NONE, "parse: NULL is no GPU");
    T_OK(sbx_gpu_parse("", &r, &err) == 0 && r.kind == SBX_GPU_NONE, "parse: \"\" is no GPU");
    T_OK(sbx_gpu_parse("all", &r, &err) == 0 && r.kind == SBX_GPU_ALL, "parse: all");
    T_OK(sbx_gpu_parse("2", &r, &err) == 0 && r.kind == SBX_GPU_COUNT && r.count == 2, "parse: count 2");
    T_OK(sbx_gpu_parse("0,2", &r, &err) == 0 && r.kind == SBX_GPU_INDICES && r.n == 2 && r.index[0] == 0 &&
             r.index[1] == 2,
         "parse: indices 0,2");
    T_OK(sbx_gpu_parse("device=1", &r, &err) == 0 && r.kind == SBX_GPU_INDICES && r.n == 1 && r.index[0] == 1,
         "parse: device=1 is index 1");
    T_OK(sbx_gpu_parse("device=3,1", &r, &err) == 0 && r.n == 2 && r.index[0] == 3 && r.index[1] == 1,
         "parse: device=3,1");

    static const struct { const char *spec, *msg; } bad[] = {
        {"0", "gpu '0' is invalid: a count must be at least 1 (for the GPU with index 0 write device=0; no GPU: "
              "leave gpu out)"},
        {"abc", "gpu 'abc' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {"ALL", "gpu 'ALL' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {"-1", "gpu '-1' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {"1.5", "gpu '1.5' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {" 1", "gpu ' 1' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {"33", "gpu '33' is invalid: a count must be 1 to 32"},
        {"0,0", "gpu '0,0' is invalid: it names GPU 0 twice"},
        {"device=2,2", "gpu 'device=2,2' is invalid: it names GPU 2 twice"},
        {"1,", "gpu '1,' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {",1", "gpu ',1' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or device=1)"},
        {"device=", "gpu 'device=' is invalid (allowed: all, a count such as 1, or device indices such as 0,2 or "
                    "device=1)"},
        {"0,x", "gpu '0,x' is invalid: 'x' is not a device index (allowed: all, a count such as 1, or device indices "
                "such as 0,2 or device=1)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        int rc = sbx_gpu_parse(bad[i].spec, &r, &err);
        T_OK(rc == -1 && err.code == SBX_E_INVALID, "parse: '%s' refused as invalid", bad[i].spec);
        T_STREQ(err.msg, bad[i].msg, "parse: message for '%s'", bad[i].spec);
    }
    T_OK(sbx_gpu_spec_check("device=0", &err) == 0 && sbx_gpu_spec_check("x", &err) == -1,
         "sbx_gpu_spec_check (public) agrees");
}

/* ---- discovery -------------------------------------------------------------- */

static void test_discover(void)
{
    sbx_gpu_host host;
    sbx_err err = {0};
    char want[1024];

    new_root();
    T_OK(sbx_gpu_discover(root, &host, &err) == -1 && err.code == SBX_E_NOTFOUND, "no driver: refused");
    snprintf(want, sizeof(want), "no NVIDIA driver loaded: %s/proc/driver/nvidia/gpus does not exist", root);
    T_STREQ(err.msg, want, "no driver: message names the missing directory");
    mk("/proc/driver/nvidia/gpus");
    T_OK(sbx_gpu_discover(root, &host, &err) == -1 && err.code == SBX_E_NOTFOUND, "no GPU: refused");
    snprintf(want, sizeof(want), "the NVIDIA driver is loaded but lists no usable GPU in %s/proc/driver/nvidia/gpus",
             root);
    T_STREQ(err.msg, want, "no GPU: message");
    gpu_info("0000:03:00.0", "NVIDIA A2", 3, "Yes");
    T_OK(sbx_gpu_discover(root, &host, &err) == -1, "only an excluded GPU: no usable GPU");
    mk("/proc/driver/nvidia/gpus/0000:04:00.0");
    put_str("/proc/driver/nvidia/gpus/0000:04:00.0/information", "Model: \t NVIDIA T4\n");
    T_OK(sbx_gpu_discover(root, &host, &err) == -1 &&
             strstr(err.msg, "cannot read the device minor of GPU 0000:04:00.0"),
         "information without Device Minor: refused (%s)", err.msg);
    rm_root();

    standard_tree();
    T_OK(sbx_gpu_discover(root, &host, &err) == 0, "standard tree: discovered (%s)", err.msg);
    T_OK(host.n == 2, "standard tree: 2 GPUs, the excluded one skipped (got %d)", host.n);
    T_STREQ(host.version, DRV, "driver version from /proc/driver/nvidia/version");
    T_OK(host.gpu[0].index == 0 && host.gpu[0].minor == 0 && strcmp(host.gpu[0].bus, "0000:01:00.0") == 0 &&
             host.gpu[1].index == 1 && host.gpu[1].minor == 1 && strcmp(host.gpu[1].bus, "0000:41:00.0") == 0,
         "GPUs in PCI bus order with their minors");
    T_STREQ(host.gpu[0].model, "NVIDIA H100 80GB HBM3", "model");
    T_STREQ(host.gpu[1].uuid, "GPU-00000001-1111-2222-3333-444444444444", "uuid");
    /* The open kernel module words its version line differently. */
    put_str("/proc/driver/nvidia/version",
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  (dvs-builder@U16)\n");
    sbx_gpu_discover(root, &host, &err);
    T_STREQ(host.version, "570.86.15", "open kernel module version line");
    rm_root();
}

static void test_plans(void)
{
    sbx_err err = {0};
    standard_tree();

    T_OK(sbx_gpu_plan_for(root, "all", &plan, &err) == 0, "plan all (%s)", err.msg);
    plan_text(&plan, got, sizeof(got));
    T_STREQ(got,
            "gpus 0 1\n"
            "node nvidia0 195:0\n"
            "node nvidia1 195:1\n"
            "node nvidiactl 195:255\n"
            "node nvidia-uvm 510:0\n"
            "node nvidia-uvm-tools 510:1\n"
            "lib libcuda.so." DRV " <- " LIB "/libcuda.so." DRV "\n"
            "lib libcudadebugger.so." DRV " <- " LIB "/libcudadebugger.so." DRV "\n"
            "lib libnvcuvid.so." DRV " <- " LIB "/libnvcuvid.so." DRV "\n"
            "lib libnvidia-encode.so." DRV " <- " LIB "/libnvidia-encode.so." DRV "\n"
            "lib libnvidia-ml.so." DRV " <- " LIB "/libnvidia-ml.so." DRV "\n"
            "lib libnvidia-nvvm.so." DRV " <- " LIB "/libnvidia-nvvm.so." DRV "\n"
            "lib libnvidia-ptxjitcompiler.so." DRV " <- " LIB "/libnvidia-ptxjitcompiler.so." DRV "\n"
            "link libcuda.so -> libcuda.so." DRV "\n"
            "link libcuda.so.1 -> libcuda.so." DRV "\n"
            "link libcudadebugger.so.1 -> libcudadebugger.so." DRV "\n"
            "link libnvcuvid.so.1 -> libnvcuvid.so." DRV "\n"
            "link libnvidia-encode.so.1 -> libnvidia-encode.so." DRV "\n"
            "link libnvidia-ml.so.1 -> libnvidia-ml.so." DRV "\n"
            "link libnvidia-nvvm.so.4 -> libnvidia-nvvm.so." DRV "\n"
            "link libnvidia-ptxjitcompiler.so.1 -> libnvidia-ptxjitcompiler.so." DRV "\n"
            "bin nvidia-smi <- /usr/bin/nvidia-smi\n"
            "env NVIDIA_VISIBLE_DEVICES=0,1\n"
            "env CUDA_VISIBLE_DEVICES=0,1\n"
            "env LD_LIBRARY_PATH=/run/sbx-gpu/lib\n"
            "env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/sbx-gpu/bin\n",
            "plan all: both GPUs' nodes, control nodes, the driver's libraries of its version only (no stale "
            "535, no libcudart, no libnvidia-container), links, nvidia-smi (not the non-executable debugdump), env");

    T_OK(sbx_gpu_plan_for(root, "1", &plan, &err) == 0, "plan count 1");
    plan_text(&plan, got, sizeof(got));
    T_OK(strncmp(got, "gpus 0\nnode nvidia0 195:0\nnode nvidiactl 195:255\n", 49) == 0 && !strstr(got, "nvidia1 ") &&
             strstr(got, "env NVIDIA_VISIBLE_DEVICES=0\nenv CUDA_VISIBLE_DEVICES=0\n"),
         "plan count 1: the lowest index, its node only");

    T_OK(sbx_gpu_plan_for(root, "device=1", &plan, &err) == 0, "plan device=1");
    plan_text(&plan, got, sizeof(got));
    T_OK(strncmp(got, "gpus 1\nnode nvidia1 195:1\nnode nvidiactl 195:255\n", 49) == 0 && !strstr(got, "nvidia0 ") &&
             strstr(got, "env NVIDIA_VISIBLE_DEVICES=1\nenv CUDA_VISIBLE_DEVICES=0\n"),
         "plan device=1: host index 1 is CUDA device 0 inside");

    T_OK(sbx_gpu_plan_for(root, "1,0", &plan, &err) == 0 && plan.ngpu == 2 && plan.index[0] == 0 &&
             plan.index[1] == 1 && strcmp(plan.env[0], "NVIDIA_VISIBLE_DEVICES=0,1") == 0,
         "plan 1,0: indices sorted");

    /* What the host cannot satisfy. */
    static const struct { const char *spec; int code; const char *msg; } bad[] = {
        {"3", SBX_E_LIMIT, "gpu '3': 3 GPUs asked for, but this host has 2 (indices 0-1)"},
        {"device=2", SBX_E_NOTFOUND, "gpu 'device=2': there is no GPU 2 (this host has 2: indices 0-1)"},
        {"0,5", SBX_E_NOTFOUND, "gpu '0,5': there is no GPU 5 (this host has 2: indices 0-1)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        T_OK(sbx_gpu_plan_for(root, bad[i].spec, &plan, &err) == -1 && err.code == bad[i].code,
             "plan '%s' refused (code %d)", bad[i].spec, err.code);
        T_STREQ(err.msg, bad[i].msg, "plan '%s': message", bad[i].spec);
    }

    /* Nodes: optional ones may be missing, required ones not; modes. */
    char p[PATH_MAX], want[1024];
    snprintf(p, sizeof(p), "%s/dev/nvidia-uvm-tools", root);
    unlink(p);
    T_OK(sbx_gpu_plan_for(root, "1", &plan, &err) == 0 && plan.nnodes == 3, "no nvidia-uvm-tools: fine (optional)");
    node("nvidia-modeset", 195, 254, 0666);
    T_OK(sbx_gpu_plan_for(root, "1", &plan, &err) == 0 && plan.nnodes == 4 &&
             strcmp(plan.node[3].name, "nvidia-modeset") == 0,
         "nvidia-modeset taken where present");
    snprintf(p, sizeof(p), "%s/dev/nvidia-uvm", root);
    unlink(p);
    T_OK(sbx_gpu_plan_for(root, "1", &plan, &err) == -1 && err.code == SBX_E_NOTFOUND, "no nvidia-uvm: refused");
    snprintf(want, sizeof(want),
             "GPU device node %s/dev/nvidia-uvm: No such file or directory (CUDA needs the nvidia-uvm module and its "
             "node: nvidia-modprobe -u -c=0 loads and creates both)",
             root);
    T_STREQ(err.msg, want, "no nvidia-uvm: message with the remedy");
    node("nvidia-uvm", 510, 0, 0666);
    snprintf(p, sizeof(p), "%s/dev/nvidia1", root);
    unlink(p);
    T_OK(sbx_gpu_plan_for(root, "device=1", &plan, &err) == -1 && strstr(err.msg, "/dev/nvidia1: No such file") &&
             strstr(err.msg, "nvidia-modprobe -c=1"),
         "a granted GPU's node missing: refused (%s)", err.msg);
    T_OK(sbx_gpu_plan_for(root, "device=0", &plan, &err) == 0, "another GPU's missing node does not matter");
    node("nvidia1", 195, 1, 0660);
    T_OK(sbx_gpu_plan_for(root, "device=1", &plan, &err) == -1 && err.code == SBX_E_INVALID &&
             strstr(err.msg, "has mode 0660, but sandboxes run as unprivileged host uids"),
         "a node not usable by all: refused (%s)", err.msg);
    snprintf(p, sizeof(p), "%s/dev/nvidiactl", root);
    unlink(p);
    put_str("/dev/nvidiactl", "");
    T_OK(sbx_gpu_plan_for(root, "device=0", &plan, &err) == -1 && strstr(err.msg, "is not a character device"),
         "nvidiactl not a device: refused");
    rm_root();
}

struct libc_find {
    int entries;
    char libc[PATH_MAX];
};

static int find_libc(void *ud, int32_t flags, const char *key, const char *path)
{
    struct libc_find *lf = ud;
    lf->entries++;
    if (strcmp(key, "libc.so.6") == 0 && (flags & SBX_LDCACHE_ABI_MASK) == SBX_LDCACHE_NATIVE)
        snprintf(lf->libc, sizeof(lf->libc), "%s", path);
    return 0;
}

static void test_libraries(void)
{
    sbx_err err = {0};
    /* Debian's packaging: the libraries under nvidia/current, reached
     * through absolute links via /etc/alternatives; the loader cache
     * points at the links. An i386 copy in the cache is not ours, and an
     * entry in a directory nobody scans is found through the cache alone. */
    new_root();
    mk("/dev");
    gpu_info("0000:01:00.0", "NVIDIA L4", 0, "No");
    put_str("/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12\n");
    node("nvidia0", 195, 0, 0666);
    node("nvidiactl", 195, 255, 0666);
    node("nvidia-uvm", 510, 0, 0666);
    mk(LIB "/nvidia/current");
    mk("/usr/lib/i386-linux-gnu/nvidia/current");
    mk("/etc/alternatives");
    mk("/opt/nv/lib");
    put_elf(LIB "/nvidia/current/libcuda.so.535.183.01", 1, 62);
    lnk("libcuda.so.535.183.01", LIB "/nvidia/current/libcuda.so.1");
    lnk(LIB "/nvidia/current/libcuda.so.1", "/etc/alternatives/libcuda.so.1");
    lnk("/etc/alternatives/libcuda.so.1", LIB "/libcuda.so.1");
    put_elf("/usr/lib/i386-linux-gnu/nvidia/current/libcuda.so.535.183.01", 0, 3);
    put_elf("/opt/nv/lib/libnvidia-ml.so.535.183.01", 1, 62);
    put_elf("/opt/nv/lib/libnvidia-cfg.so.535.183.01", 1, 62); /* not in the cache, dir not scanned */
    put_str(LIB "/libnvidia-fake.so.535.183.01", "not an ELF file");
    put_elf(LIB "/libnvidia-arm.so.535.183.01", 1, 183);
    struct cache_ent ents[] = {
        {SBX_LDCACHE_ELF_LIBC6 | SBX_LDCACHE_X86_64, "libcuda.so.1", LIB "/libcuda.so.1"},
        {SBX_LDCACHE_ELF_LIBC6, "libcuda.so.1", "/usr/lib/i386-linux-gnu/nvidia/current/libcuda.so.535.183.01"},
        {SBX_LDCACHE_ELF_LIBC6 | SBX_LDCACHE_X86_64, "libnvidia-ml.so.1", "/opt/nv/lib/libnvidia-ml.so.535.183.01"},
        {SBX_LDCACHE_ELF_LIBC6 | SBX_LDCACHE_X86_64, "libc.so.6", LIB "/libc.so.6"},
        {SBX_LDCACHE_ELF_LIBC6 | SBX_LDCACHE_X86_64, "libnvidia-gone.so.1", LIB "/libnvidia-gone.so.1"},
    };
    put_ldcache("/etc/ld.so.cache", ents, 5, false);
    T_OK(sbx_gpu_plan_for(root, "all", &plan, &err) == 0, "Debian layout: planned (%s)", err.msg);
    plan_text(&plan, got, sizeof(got));
    T_STREQ(got,
            "gpus 0\n"
            "node nvidia0 195:0\n"
            "node nvidiactl 195:255\n"
            "node nvidia-uvm 510:0\n"
            "lib libcuda.so.535.183.01 <- " LIB "/nvidia/current/libcuda.so.535.183.01\n"
            "lib libnvidia-ml.so.535.183.01 <- /opt/nv/lib/libnvidia-ml.so.535.183.01\n"
            "link libcuda.so.1 -> libcuda.so.535.183.01\n"
            "link libnvidia-ml.so.1 -> libnvidia-ml.so.535.183.01\n"
            "env NVIDIA_VISIBLE_DEVICES=0\n"
            "env CUDA_VISIBLE_DEVICES=0\n"
            "env LD_LIBRARY_PATH=/run/sbx-gpu/lib\n"
            "env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/sbx-gpu/bin\n",
            "Debian layout: links followed inside the root, cache entries of other ABIs, non-ELF and foreign-ELF "
            "files and dangling entries ignored");

    /* The same with an old-format table in front of the cache. */
    put_ldcache("/etc/ld.so.cache", ents, 5, true);
    T_OK(sbx_gpu_plan_for(root, "all", &plan, &err) == 0 && plan.nlibs == 2, "cache after an old-format table");
    /* A host where ldconfig never ran: only versioned files. */
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/etc/ld.so.cache", root);
    unlink(p);
    snprintf(p, sizeof(p), "%s" LIB "/libcuda.so.1", root);
    unlink(p);
    put_elf(LIB "/libcuda.so.535.183.01", 1, 62);
    T_OK(sbx_gpu_plan_for(root, "all", &plan, &err) == 0, "no loader cache, no links: planned (%s)", err.msg);
    plan_text(&plan, got, sizeof(got));
    T_OK(strstr(got, "lib libcuda.so.535.183.01 <- " LIB "/libcuda.so.535.183.01\n") &&
             strstr(got, "link libcuda.so.1 -> libcuda.so.535.183.01\n") && !strstr(got, "libnvidia-ml"),
         "no links: libcuda.so.1 made for the versioned file");
    /* No libcuda of the running driver at all. */
    unlink(p);
    snprintf(p, sizeof(p), "%s" LIB "/libcuda.so.535.183.01", root);
    unlink(p);
    snprintf(p, sizeof(p), "%s" LIB "/nvidia/current/libcuda.so.535.183.01", root);
    unlink(p);
    put_elf(LIB "/libcuda.so.470.256.02", 1, 62);
    T_OK(sbx_gpu_plan_for(root, "all", &plan, &err) == -1 && err.code == SBX_E_NOTFOUND, "no libcuda: refused");
    char want[1024];
    snprintf(want, sizeof(want),
             "the NVIDIA driver's libraries were not found: no libcuda.so.535.183.01 in %s/etc/ld.so.cache or "
             "/usr/lib/x86_64-linux-gnu, /usr/lib64, /usr/local/nvidia/lib64 and the other usual directories "
             "(install the driver's user-space part, of the same version as its kernel module)",
             root);
    T_STREQ(err.msg, want, "no libcuda: message");
    rm_root();

    /* The loader cache parser on this host's real cache. */
    size_t len = 0;
    char *cache = sbx_slurp("/etc/ld.so.cache", &len);
    if (!cache) {
        SKIP("this host has no /etc/ld.so.cache to parse");
        return;
    }
    struct libc_find lf = {0, ""};
    int r = sbx_ldcache_parse(cache, len, find_libc, &lf);
    T_OK(r == 0 && lf.entries > 10, "real /etc/ld.so.cache parses (%d entries)", lf.entries);
    struct stat st;
    T_OK(lf.libc[0] == '/' && stat(lf.libc, &st) == 0, "real cache: libc.so.6 of this ABI is %s, which exists",
         lf.libc);
    T_OK(sbx_ldcache_parse(cache, 47, find_libc, &lf) == -1, "truncated cache refused");
    T_OK(sbx_ldcache_parse("not a cache at all, just text", 29, find_libc, &lf) == -1, "garbage refused");
    free(cache);
}

/* ---- reservation ----------------------------------------------------------- */

static void fake_host(sbx_gpu_host *h, int n)
{
    memset(h, 0, sizeof(*h));
    h->n = n;
    for (int i = 0; i < n; i++) {
        h->gpu[i].index = i;
        h->gpu[i].minor = (unsigned)i;
        snprintf(h->gpu[i].bus, sizeof(h->gpu[i].bus), "0000:%02x:00.0", i + 1);
    }
}

static int reserve(const char *dir, const sbx_gpu_host *h, const char *spec, const char *id, sbx_gpu_lease *l,
                   sbx_err *err)
{
    sbx_gpu_request req;
    memset(err, 0, sizeof(*err));
    if (sbx_gpu_parse(spec, &req, err) < 0)
        return -1;
    return sbx_gpu_reserve(dir, h, &req, id, l, err);
}

static void test_reserve(void)
{
    sbx_gpu_host h;
    sbx_gpu_lease a, b, c;
    sbx_err err;
    new_root();
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/run/gpus", root);
    fake_host(&h, 2);

    T_OK(reserve(dir, &h, "1", "sb-a", &a, &err) == 0 && a.n == 1 && a.index[0] == 0 && !a.shared,
         "count 1: GPU 0, exclusive");
    T_OK(reserve(dir, &h, "1", "sb-b", &b, &err) == 0 && b.n == 1 && b.index[0] == 1, "count 1 again: GPU 1");
    T_OK(reserve(dir, &h, "1", "sb-c", &c, &err) == -1 && err.code == SBX_E_LIMIT, "count 1 a third time: refused");
    T_STREQ(err.msg,
            "gpu '1': 1 GPUs asked for, 0 of this host's 2 free: GPU 0 (0000:01:00.0) is in use by sandbox sb-a, "
            "GPU 1 (0000:02:00.0) is in use by sandbox sb-b",
            "count refused: names the GPUs in use and their sandboxes");
    T_OK(reserve(dir, &h, "device=1", "sb-c", &c, &err) == -1 && err.code == SBX_E_LIMIT, "index in use: refused");
    T_STREQ(err.msg, "gpu 'device=1': GPU 1 (0000:02:00.0) is in use by sandbox sb-b", "index refused: message");
    T_OK(reserve(dir, &h, "all", "sb-c", &c, &err) == -1, "all while GPUs are held exclusively: refused");
    T_STREQ(err.msg,
            "gpu 'all': GPU 0 (0000:01:00.0) is in use by sandbox sb-a, GPU 1 (0000:02:00.0) is in use by sandbox "
            "sb-b (all shares GPUs only with other gpu=all sandboxes)",
            "all refused: message");
    sbx_gpu_release(&a);
    T_OK(reserve(dir, &h, "2", "sb-c", &c, &err) == -1 && strstr(err.msg, "2 GPUs asked for, 1 of this host's 2 free"),
         "count 2 with one free: refused, nothing kept (%s)", err.msg);
    T_OK(reserve(dir, &h, "device=0", "sb-c", &c, &err) == 0 && c.n == 1 && c.index[0] == 0,
         "a released GPU can be had again");
    sbx_gpu_release(&b);
    sbx_gpu_release(&c);

    T_OK(reserve(dir, &h, "all", "sb-x", &a, &err) == 0 && a.n == 2 && a.shared, "all: every GPU, shared");
    T_OK(reserve(dir, &h, "all", "sb-y", &b, &err) == 0 && b.n == 2, "all twice: shared");
    T_OK(reserve(dir, &h, "0,1", "sb-z", &c, &err) == -1, "indices while all holds: refused");
    T_STREQ(err.msg,
            "gpu '0,1': GPU 0 (0000:01:00.0) is shared by gpu=all sandboxes, GPU 1 (0000:02:00.0) is shared by "
            "gpu=all sandboxes",
            "indices refused by all: message");
    sbx_gpu_release(&a);
    T_OK(reserve(dir, &h, "1", "sb-z", &c, &err) == -1, "count while one all sandbox is left: refused");
    sbx_gpu_release(&b);
    T_OK(reserve(dir, &h, "0,1", "sb-z", &c, &err) == 0 && c.n == 2, "indices once every all sandbox is gone");
    sbx_gpu_release(&c);
    T_OK(reserve(dir, &h, "3", "sb-z", &c, &err) == -1 && strcmp(err.msg, "gpu '3': 3 GPUs asked for, but this host "
                                                                          "has 2 (indices 0-1)") == 0,
         "reserve checks the request against the host first");
    T_OK(reserve(dir, &h, NULL, "sb-z", &c, &err) == 0 && c.n == 0, "no GPU asked: nothing held");
    rm_root();
}

/* ---- devices cgroup rules ----------------------------------------------------- */

/* The subset of eBPF the device program uses, as text. */
static void disasm(const struct bpf_insn *p, int n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o < cap; i++) {
        const struct bpf_insn *x = &p[i];
        int w;
        switch (x->code) {
        case BPF_LDX | BPF_W | BPF_MEM:
            w = snprintf(buf + o, cap - o, "%d: r%d = *(u32 *)(r%d + %d)\n", i, x->dst_reg, x->src_reg, x->off);
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            w = snprintf(buf + o, cap - o, "%d: w%d &= %#x\n", i, x->dst_reg, (unsigned)x->imm);
            break;
        case BPF_ALU | BPF_RSH | BPF_K:
            w = snprintf(buf + o, cap - o, "%d: w%d >>= %d\n", i, x->dst_reg, x->imm);
            break;
        case BPF_ALU | BPF_MOV | BPF_X:
            w = snprintf(buf + o, cap - o, "%d: w%d = w%d\n", i, x->dst_reg, x->src_reg);
            break;
        case BPF_JMP | BPF_JNE | BPF_K:
            w = snprintf(buf + o, cap - o, "%d: if r%d != %d goto %d\n", i, x->dst_reg, x->imm, i + 1 + x->off);
            break;
        case BPF_ALU64 | BPF_MOV | BPF_K:
            w = snprintf(buf + o, cap - o, "%d: r%d = %d\n", i, x->dst_reg, x->imm);
            break;
        case BPF_JMP | BPF_EXIT:
            w = snprintf(buf + o, cap - o, "%d: exit\n", i);
            break;
        default:
            w = snprintf(buf + o, cap - o, "%d: ??? code %#x\n", i, x->code);
        }
        o += w > 0 ? (size_t)w : 0;
    }
}

static void plan_lines(const sbx_cg_plan *p, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < p->n && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "%s %s=%s\n", p->ops[i].kind == SBX_CG_OP_WRITE ? "write" : "mkdir",
                         p->ops[i].path, p->ops[i].value);
        n += w > 0 ? (size_t)w : 0;
    }
}

static void test_rules(void)
{
    static const sbx_cg_dev_rule rules[] = {
        {'c', 1, 3, SBX_CG_DEV_READ | SBX_CG_DEV_WRITE | SBX_CG_DEV_MKNOD},
        {'c', 136, -1, SBX_CG_DEV_READ | SBX_CG_DEV_WRITE},
        {'b', 7, -1, SBX_CG_DEV_READ},
        {'c', 195, 255, SBX_CG_DEV_READ | SBX_CG_DEV_WRITE},
    };
    struct bpf_insn prog[128];
    int n = sbx_cg_v2_device_prog(rules, 4, prog, 128);
    T_OK(n == 35, "v2 program: 35 instructions (got %d)", n);
    disasm(prog, n > 0 ? n : 0, got, sizeof(got));
    T_STREQ(got,
            "0: r2 = *(u32 *)(r1 + 0)\n"
            "1: w2 &= 0xffff\n"
            "2: r3 = *(u32 *)(r1 + 0)\n"
            "3: w3 >>= 16\n"
            "4: r4 = *(u32 *)(r1 + 4)\n"
            "5: r5 = *(u32 *)(r1 + 8)\n"
            /* c 1:3 rwm: no access test */
            "6: if r2 != 2 goto 11\n"
            "7: if r4 != 1 goto 11\n"
            "8: if r5 != 3 goto 11\n"
            "9: r0 = 1\n"
            "10: exit\n"
            /* c 136:* rw: access test, any minor */
            "11: if r2 != 2 goto 18\n"
            "12: w1 = w3\n"
            "13: w1 &= 0xfffffff9\n"
            "14: if r1 != 0 goto 18\n"
            "15: if r4 != 136 goto 18\n"
            "16: r0 = 1\n"
            "17: exit\n"
            /* b 7:* r */
            "18: if r2 != 1 goto 25\n"
            "19: w1 = w3\n"
            "20: w1 &= 0xfffffffd\n"
            "21: if r1 != 0 goto 25\n"
            "22: if r4 != 7 goto 25\n"
            "23: r0 = 1\n"
            "24: exit\n"
            /* c 195:255 rw */
            "25: if r2 != 2 goto 33\n"
            "26: w1 = w3\n"
            "27: w1 &= 0xfffffff9\n"
            "28: if r1 != 0 goto 33\n"
            "29: if r4 != 195 goto 33\n"
            "30: if r5 != 255 goto 33\n"
            "31: r0 = 1\n"
            "32: exit\n"
            /* nothing matched: deny */
            "33: r0 = 0\n"
            "34: exit\n",
            "v2 program: the instructions, rule by rule, then deny");
    T_OK(sbx_cg_v2_device_prog(rules, 4, prog, 20) == -ENOSPC, "v2 program: too small a buffer is -ENOSPC");
    sbx_cg_dev_rule badr = {'x', 1, 1, SBX_CG_DEV_READ};
    T_OK(sbx_cg_v2_device_prog(&badr, 1, prog, 128) == -EINVAL, "v2 program: bad device type refused");
    T_OK(sbx_cg_v2_device_prog(NULL, 0, prog, 128) == 8, "v2 program without rules: prologue and deny (8)");

    static sbx_cg_plan cp;
    T_OK(sbx_cg_v1_plan_devices("/cg/devices/sbx/x", rules, 4, &cp) == 0, "v1 device plan");
    plan_lines(&cp, got, sizeof(got));
    T_STREQ(got,
            "write /cg/devices/sbx/x/devices.deny=a\n"
            "write /cg/devices/sbx/x/devices.allow=c 1:3 rwm\n"
            "write /cg/devices/sbx/x/devices.allow=c 136:* rw\n"
            "write /cg/devices/sbx/x/devices.allow=b 7:* r\n"
            "write /cg/devices/sbx/x/devices.allow=c 195:255 rw\n",
            "v1 device plan: deny all, then one allow line per rule");
    T_OK(sbx_cg_v1_plan_devices("/cg", &badr, 1, &cp) == -EINVAL, "v1 device plan: bad rule refused");

    /* What a GPU sandbox is allowed: the standard nodes and the plan's. */
    sbx_cg_dev_rule all[SBX_GPU_MAX_RULES];
    int nr = 0;
    T_OK(sbx_rootfs_dev_rules(all, &nr, SBX_GPU_MAX_RULES) == 0 && nr == 8, "standard /dev rules: 8 (%d)", nr);
    plan.nnodes = 2;
    plan.node[0] = (sbx_gpu_node){"nvidia0", "", 195, 0};
    plan.node[1] = (sbx_gpu_node){"nvidia-uvm", "", 510, 0};
    T_OK(sbx_gpu_dev_rules(&plan, all, &nr, SBX_GPU_MAX_RULES) == 0 && nr == 10, "plus the plan's 2 nodes");
    sbx_cg_v1_plan_devices("/d", all, nr, &cp);
    plan_lines(&cp, got, sizeof(got));
    T_STREQ(got,
            "write /d/devices.deny=a\n"
            "write /d/devices.allow=c 1:3 rw\n"
            "write /d/devices.allow=c 1:5 rw\n"
            "write /d/devices.allow=c 1:7 rw\n"
            "write /d/devices.allow=c 1:8 rw\n"
            "write /d/devices.allow=c 1:9 rw\n"
            "write /d/devices.allow=c 5:0 rw\n"
            "write /d/devices.allow=c 5:2 rw\n"
            "write /d/devices.allow=c 136:* rw\n"
            "write /d/devices.allow=c 195:0 rw\n"
            "write /d/devices.allow=c 510:0 rw\n",
            "a GPU sandbox's v1 rules");
    nr = 7;
    T_OK(sbx_rootfs_dev_rules(all, &nr, 8) == -1, "rules: capacity checked");
}

/* Detection puts devices on v1 where a v1 hierarchy has it, else on v2. */
static void test_detect(void)
{
    sbx_cg_layout l;
    sbx_cg_detect_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                       "36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n"
                       "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
                       "", &l);
    T_OK(l.ver[SBX_CG_DEVICES] == SBX_CG_V1 && strcmp(l.mount[SBX_CG_DEVICES], "/sys/fs/cgroup/devices") == 0,
         "detect: devices on v1 when a v1 hierarchy has it");
    sbx_cg_detect_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                       "27 26 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
                       "cpu memory pids", &l);
    T_OK(l.ver[SBX_CG_DEVICES] == SBX_CG_V2 && strcmp(l.mount[SBX_CG_DEVICES], "/sys/fs/cgroup") == 0,
         "detect: devices on v2 (a device program) on a pure cgroup2 host");
    sbx_cg_detect_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", NULL, &l);
    T_OK(l.ver[SBX_CG_DEVICES] == SBX_CG_NONE, "detect: no cgroups, no devices");
    /* Without lim.devices a sandbox's plan does not touch the devices
     * hierarchy; with it, the dir is made (rules come later). */
    sbx_cg_detect_text("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
                       "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                       "36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices\n",
                       "", &l);
    static sbx_cg_plan cp;
    sbx_cg_limits lim = {0};
    sbx_cg_plan_create(&l, "sbx", "g1", &lim, &cp);
    plan_lines(&cp, got, sizeof(got));
    T_STREQ(got, "mkdir /sys/fs/cgroup/memory/sbx=\nmkdir /sys/fs/cgroup/memory/sbx/g1=\n",
            "no GPU: no devices cgroup");
    lim.devices = true;
    sbx_cg_plan_create(&l, "sbx", "g1", &lim, &cp);
    plan_lines(&cp, got, sizeof(got));
    T_STREQ(got,
            "mkdir /sys/fs/cgroup/memory/sbx=\nmkdir /sys/fs/cgroup/memory/sbx/g1=\n"
            "mkdir /sys/fs/cgroup/devices/sbx=\nmkdir /sys/fs/cgroup/devices/sbx/g1=\n",
            "GPU: a devices cgroup too");
}

/* As root: a child in a devices cgroup restricted to /dev/null (c 1:3)
 * opens /dev/null but not /dev/zero (c 1:5), which the kernel refuses
 * with EPERM. Both are harmless to open. */
static void kernel_check(const sbx_cg_layout *lay, int ver, const char *what)
{
    sbx_cg_layout l = *lay;
    for (int c = 0; c < SBX_CG_NCTL; c++)
        if (c != SBX_CG_DEVICES)
            l.ver[c] = SBX_CG_NONE;
    l.ver[SBX_CG_DEVICES] = ver;
    snprintf(l.mount[SBX_CG_DEVICES], sizeof(l.mount[0]), "%s",
             ver == SBX_CG_V2 ? lay->v2_mount : lay->mount[SBX_CG_DEVICES]);
    char id[32];
    snprintf(id, sizeof(id), "t%d", (int)getpid());
    sbx_cg_limits lim = {.devices = true};
    sbx_cgroup cg;
    sbx_err err = {0};
    if (sbx_cg_create(&l, "sbxgputest", id, &lim, &cg, &err) < 0) {
        T_OK(0, "%s: create a devices cgroup: %s", what, err.msg);
        return;
    }
    static const sbx_cg_dev_rule only_null[] = {{'c', 1, 3, SBX_CG_DEV_READ | SBX_CG_DEV_WRITE}};
    int r = sbx_cg_restrict_devices(&cg, only_null, 1, &err);
    T_OK(r == 0, "%s: restricted to c 1:3 (%s)", what, err.msg);
    if (r == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            if (sbx_cg_join_self(&cg) < 0)
                _exit(10);
            int a = open("/dev/null", O_RDONLY | O_CLOEXEC);
            int b = open("/dev/zero", O_RDONLY | O_CLOEXEC);
            _exit(a >= 0 && b < 0 && errno == EPERM ? 0 : a < 0 ? 11 : 12);
        }
        int st = -1;
        waitpid(pid, &st, 0);
        T_OK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
             "%s: inside, /dev/null opens and /dev/zero is refused with EPERM (child status %d)", what,
             WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    T_OK(sbx_cg_destroy(&cg, &err) == 0, "%s: cgroup removed (%s)", what, err.msg);
    /* The shared parent stays after destroy (as for every sandbox); the
     * test's own goes too. */
    sbx_cg_remove_parents(&l, "sbxgputest");
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s/sbxgputest", l.mount[SBX_CG_DEVICES]);
    T_OK(access(parent, F_OK) < 0, "%s: its parent cgroup removed", what);
}

static void test_kernel(void)
{
    if (geteuid() != 0) {
        SKIP("not root: the devices cgroup checks need it");
        return;
    }
    sbx_cg_layout lay;
    sbx_err err = {0};
    if (sbx_cg_detect("/sys/fs/cgroup", &lay, &err) < 0) {
        T_OK(0, "detect cgroups: %s", err.msg);
        return;
    }
    if (lay.ver[SBX_CG_DEVICES] == SBX_CG_V1)
        kernel_check(&lay, SBX_CG_V1, "v1 devices controller");
    else
        SKIP("no v1 devices controller on this host");
    if (lay.v2_mount[0])
        kernel_check(&lay, SBX_CG_V2, "v2 device program (BPF)");
    else
        SKIP("no cgroup2 mount on this host for the BPF device program");
}

/* ---- seccomp: nothing CUDA needs is refused ---------------------------------- */

static void test_seccomp(void)
{
    /* What the driver and CUDA use beyond plain file I/O: ioctls on the
     * nodes, mappings of device memory, memfd for IPC, NUMA placement,
     * thread names in /proc (a write), shared memory for MPS/NCCL. */
    static const char *const need[] = {"ioctl", "mmap", "munmap", "mremap", "mprotect", "madvise", "memfd_create",
                                       "openat", "fcntl", "poll", "ppoll", "epoll_wait", "eventfd2", "mbind",
                                       "get_mempolicy", "set_mempolicy", "sched_setaffinity", "sched_getaffinity",
                                       "futex", "shmget", "shmat", "shmctl", "prctl", "pwrite64", "getrandom",
                                       "process_vm_readv", "readlinkat", "sysinfo", "uname"};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        bool listed = false;
        for (size_t j = 0; j < sizeof(sbx_sc_deny_table) / sizeof(sbx_sc_deny_table[0]); j++)
            listed |= strcmp(sbx_sc_deny_table[j].name, need[i]) == 0;
        for (size_t j = 0; j < sizeof(sbx_sc_cond_table) / sizeof(sbx_sc_cond_table[0]); j++)
            listed |= strcmp(sbx_sc_cond_table[j].name, need[i]) == 0;
        for (size_t j = 0; j < sizeof(sbx_sc_only_table) / sizeof(sbx_sc_only_table[0]); j++)
            listed |= strcmp(sbx_sc_only_table[j].name, need[i]) == 0;
        T_OK(!listed, "seccomp policy leaves %s alone", need[i]);
    }
}

/* ---- sbx info ----------------------------------------------------------------- */

static void test_describe(void)
{
    char want[1024];
    new_root();
    T_OK(sbx_gpu_describe(root, got, sizeof(got)) == 0, "describe without a driver");
    snprintf(want, sizeof(want),
             "gpu      none found (no NVIDIA driver loaded: %s/proc/driver/nvidia/gpus does not exist)\n", root);
    T_STREQ(got, want, "describe: none found (why)");
    rm_root();
    standard_tree();
    T_OK(sbx_gpu_describe(root, got, sizeof(got)) == 0, "describe a fake host");
    T_STREQ(got,
            "gpu      driver " DRV ", 2 GPUs, 7 libraries, nvidia-smi\n"
            "gpu 0    NVIDIA H100 80GB HBM3, GPU-00000000-1111-2222-3333-444444444444, 0000:01:00.0, /dev/nvidia0\n"
            "gpu 1    NVIDIA H100 80GB HBM3, GPU-00000001-1111-2222-3333-444444444444, 0000:41:00.0, /dev/nvidia1\n",
            "describe: driver, every GPU");
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/dev/nvidiactl", root);
    unlink(p);
    sbx_gpu_describe(root, got, sizeof(got));
    T_OK(strncmp(got, "gpu      driver " DRV ", 2 GPUs, not usable: GPU device node ", 55) == 0,
         "describe: a host whose setup is incomplete says why (%.80s)", got);
    T_OK(sbx_gpu_describe(root, got, 40) == -1, "describe: a short buffer is an error");
    rm_root();
}

int main(void)
{
    if (geteuid() != 0) {
        SKIP("not root: fake trees need mknod for device nodes");
        test_parse();
        T_DONE();
    }
    test_parse();
    test_discover();
    test_plans();
    test_libraries();
    test_reserve();
    test_rules();
    test_detect();
    test_kernel();
    test_seccomp();
    test_describe();
    T_DONE();
}
