/* seccomp_gen: compiles the policy of src/engine/seccomp_policy.h with
 * libseccomp and prints it as a C include file (the BPF program) on stdout.
 * Runs at build time only, so the engine needs no libseccomp at runtime.
 *
 * Syscall names libseccomp does not know, or that do not exist on the native
 * architecture, are skipped with a note on stderr. Any other error fails
 * (exit 1), and so does the build.
 *
 * Value allow-lists (sbx_sc_only_table: "refuse unless the argument is one
 * of these") cannot be said to libseccomp, which takes one comparison per
 * argument per rule. Each is given to libseccomp as a placeholder action,
 * SCMP_ACT_TRACE(MARK + i); in the exported program every `ret` of that
 * placeholder becomes a forward jump to a small check appended at the end:
 *     for each value v: ld args[n].lo; jeq lo(v) ? next : skip2
 *                       ld args[n].hi; jeq hi(v) ? allow : next-value
 *     ret ERRNO(err)
 *     allow: ret ALLOW
 * The real policy uses no TRACE action, so placeholders are unambiguous.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Also brings in libseccomp's <seccomp.h>: see there why not directly. */
#define SBX_SECCOMP_GEN 1
#include "seccomp_policy.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MARK 0xf000u /* TRACE data of allow-list placeholders */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "seccomp_gen: args[] word offsets below assume little endian"
#endif
/* Offsets in struct seccomp_data of the low and high words of args[n]. */
#define ARG_LO(n) ((uint32_t)(offsetof(struct seccomp_data, args) + 8u * (n)))
#define ARG_HI(n) (ARG_LO(n) + 4u)

static int die(const char *what, int rc)
{
    fprintf(stderr, "seccomp_gen: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

/* Native syscall number, or -1 (with a note) when it should be skipped. */
static int resolve(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) {
        fprintf(stderr, "seccomp_gen: note: skipping %s: unknown to libseccomp\n", name);
        return -1;
    }
    if (nr < 0) { /* pseudo-syscall: exists on other arches only */
        fprintf(stderr, "seccomp_gen: note: skipping %s: not on the native architecture\n", name);
        return -1;
    }
    return nr;
}

/* Reads a whole fd from offset 0 into a malloc'd buffer. */
static char *read_all(int fd, size_t *len)
{
    if (lseek(fd, 0, SEEK_SET) < 0)
        die("lseek", errno);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        die("malloc", ENOMEM);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb)
                die("realloc", ENOMEM);
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read", errno);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int tmp_fd(const char *name)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) { /* no memfd (old kernel, or a filtered build box) */
        FILE *f = tmpfile();
        if (!f)
            die("tmpfile", errno);
        fd = dup(fileno(f));
        fclose(f);
        if (fd < 0)
            die("dup", errno);
    }
    return fd;
}

int main(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        die("seccomp_init", ENOMEM);

    int rc;
    /* Syscalls through a foreign ABI (i386, x32) kill the whole process, not
     * just the thread (libseccomp's default). Kernels before 4.14 read
     * KILL_PROCESS as KILL_THREAD, which is still a kill. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0)
        fprintf(stderr, "seccomp_gen: note: bad-arch action stays KILL_THREAD: %s\n", strerror(-rc));
    /* Binary search over syscall numbers instead of a linear list: allowed
     * syscalls (nearly all) then cost ~log2(rules) comparisons. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        fprintf(stderr, "seccomp_gen: note: no binary-tree optimization: %s\n", strerror(-rc));

    unsigned nrules = 0;
    for (size_t i = 0; i < ARRAY_LEN(sbx_sc_deny_table); i++) {
        const struct sbx_sc_deny *d = &sbx_sc_deny_table[i];
        int nr = resolve(d->name);
        if (nr < 0)
            continue;
        if ((rc = seccomp_rule_add_exact(ctx, SCMP_ACT_ERRNO((uint32_t)d->err), nr, 0)) < 0) {
            fprintf(stderr, "seccomp_gen: rule for %s\n", d->name);
            die("seccomp_rule_add_exact", rc);
        }
        nrules++;
    }

    for (size_t i = 0; i < ARRAY_LEN(sbx_sc_cond_table); i++) {
        const struct sbx_sc_cond *c = &sbx_sc_cond_table[i];
        int nr = resolve(c->name);
        if (nr < 0)
            continue;
        if (c->ncmp > SBX_SC_MAX_CMP) {
            fprintf(stderr, "seccomp_gen: rule for %s: %u comparisons\n", c->name, c->ncmp);
            exit(1);
        }
        struct scmp_arg_cmp cmp[SBX_SC_MAX_CMP];
        for (unsigned k = 0; k < c->ncmp; k++) {
            const struct sbx_sc_cmp *p = &c->cmp[k];
            if (p->arg > 5) {
                fprintf(stderr, "seccomp_gen: rule for %s: bad argument %u\n", c->name, p->arg);
                exit(1);
            }
            cmp[k].arg = p->arg;
            switch (p->op) {
            case SBX_SC_NE:
                cmp[k].op = SCMP_CMP_NE;
                cmp[k].datum_a = p->a;
                cmp[k].datum_b = 0;
                break;
            case SBX_SC_MASKED_EQ:
                cmp[k].op = SCMP_CMP_MASKED_EQ;
                cmp[k].datum_a = p->a; /* mask */
                cmp[k].datum_b = p->b; /* value */
                break;
            default:
                fprintf(stderr, "seccomp_gen: rule for %s: bad op %d\n", c->name, (int)p->op);
                exit(1);
            }
        }
        rc = seccomp_rule_add_exact_array(ctx, SCMP_ACT_ERRNO((uint32_t)c->err), nr, c->ncmp, cmp);
        if (rc < 0) {
            fprintf(stderr, "seccomp_gen: conditional rule for %s\n", c->name);
            die("seccomp_rule_add_exact_array", rc);
        }
        nrules++;
    }

    /* Value allow-lists: placeholders, resolved after export. */
    int only_used[ARRAY_LEN(sbx_sc_only_table)] = {0};
    for (size_t i = 0; i < ARRAY_LEN(sbx_sc_only_table); i++) {
        const struct sbx_sc_only *o = &sbx_sc_only_table[i];
        int nr = resolve(o->name);
        if (nr < 0)
            continue;
        if (o->arg > 5 || o->nvalues == 0 || o->nvalues > SBX_SC_MAX_VALUES) {
            fprintf(stderr, "seccomp_gen: allow-list for %s: bad arg or count\n", o->name);
            exit(1);
        }
        if ((rc = seccomp_rule_add_exact(ctx, SCMP_ACT_TRACE(MARK + (uint32_t)i), nr, 0)) < 0) {
            fprintf(stderr, "seccomp_gen: allow-list for %s\n", o->name);
            die("seccomp_rule_add_exact", rc);
        }
        only_used[i] = 1;
        nrules++;
    }

    /* The program, and its readable form for the comment. */
    int bfd = tmp_fd("sbx-seccomp-bpf"), pfd = tmp_fd("sbx-seccomp-pfc");
    if ((rc = seccomp_export_bpf(ctx, bfd)) < 0)
        die("seccomp_export_bpf", rc);
    if ((rc = seccomp_export_pfc(ctx, pfd)) < 0)
        die("seccomp_export_pfc", rc);
    seccomp_release(ctx);

    size_t blen, plen;
    char *bpf = read_all(bfd, &blen);
    char *pfc = read_all(pfd, &plen);
    close(bfd);
    close(pfd);
    if (blen == 0 || blen % sizeof(struct sock_filter) != 0) {
        fprintf(stderr, "seccomp_gen: exported program has odd size %zu\n", blen);
        exit(1);
    }
    size_t nlib = blen / sizeof(struct sock_filter);
    size_t cap = nlib;
    for (size_t i = 0; i < ARRAY_LEN(sbx_sc_only_table); i++)
        cap += 4u * sbx_sc_only_table[i].nvalues + 2u;
    struct sock_filter *prog = calloc(cap, sizeof *prog);
    if (!prog)
        die("calloc", ENOMEM);
    memcpy(prog, bpf, blen);
    size_t ninsn = nlib;

    for (size_t i = 0; i < ARRAY_LEN(sbx_sc_only_table); i++) {
        if (!only_used[i])
            continue;
        const struct sbx_sc_only *o = &sbx_sc_only_table[i];
        const uint32_t mark = SECCOMP_RET_TRACE | (MARK + (uint32_t)i);
        const size_t start = ninsn;
        unsigned hits = 0;
        /* Placeholder returns become jumps to the check (always forward). */
        for (size_t k = 0; k < nlib; k++) {
            if (prog[k].code == (BPF_RET | BPF_K) && prog[k].k == mark) {
                prog[k] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, (uint32_t)(start - k - 1));
                hits++;
            }
        }
        if (hits == 0) {
            fprintf(stderr, "seccomp_gen: allow-list for %s: placeholder not in program\n", o->name);
            exit(1);
        }
        /* Layout: 4 instructions per value, then deny, then allow. */
        const size_t deny = start + 4u * o->nvalues, allow = deny + 1;
        for (unsigned v = 0; v < o->nvalues; v++) {
            const uint32_t lo = (uint32_t)o->values[v], hi = (uint32_t)(o->values[v] >> 32);
            size_t at = start + 4u * v;
            prog[at] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(o->arg));
            prog[at + 1] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, lo, 0, 2);
            prog[at + 2] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(o->arg));
            size_t jt = allow - (at + 3) - 1;
            if (jt > 255) {
                fprintf(stderr, "seccomp_gen: allow-list for %s: too long\n", o->name);
                exit(1);
            }
            prog[at + 3] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, hi, (uint8_t)jt, 0);
        }
        prog[deny] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                                  SECCOMP_RET_ERRNO | ((uint32_t)o->err & SECCOMP_RET_DATA));
        prog[allow] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        ninsn = allow + 1;
    }
    /* No placeholder may survive. */
    for (size_t k = 0; k < ninsn; k++) {
        if (prog[k].code == (BPF_RET | BPF_K) && (prog[k].k & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_TRACE) {
            fprintf(stderr, "seccomp_gen: stray TRACE return at %zu\n", k);
            exit(1);
        }
    }
    if (ninsn > BPF_MAXINSNS) {
        fprintf(stderr, "seccomp_gen: program too long (%zu instructions)\n", ninsn);
        exit(1);
    }

    printf("/* Generated by tools/seccomp_gen from src/engine/seccomp_policy.h\n"
           " * (libseccomp %u.%u.%u): do not edit. %u rules, %zu instructions.\n"
           " *\n"
           " * libseccomp's listing of the program follows. An action TRACE(%u + i)\n"
           " * in it stands for the value allow-list sbx_sc_only_table[i], checked by\n"
           " * the instructions appended after libseccomp's %zu.\n"
           " *\n",
           seccomp_version()->major, seccomp_version()->minor, seccomp_version()->micro, nrules,
           ninsn, MARK, nlib);
    /* The PFC text, commented; keep any "*" "/" pair from closing the comment. */
    for (char *line = pfc, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        for (char *s; (s = strstr(line, "*/"));)
            s[1] = '|';
        printf(" * %s\n", line);
    }
    printf(" */\n"
           "#include <linux/filter.h>\n"
           "\n"
           "static const struct sock_filter sbx_seccomp_filter[] = {\n");
    for (size_t i = 0; i < ninsn; i++) {
        const struct sock_filter f = prog[i];
        printf("    {0x%02x, %u, %u, 0x%08" PRIx32 "},\n", (unsigned)f.code, (unsigned)f.jt,
               (unsigned)f.jf, (uint32_t)f.k);
    }
    printf("};\n");
    free(prog);
    free(bpf);
    free(pfc);
    if (fflush(stdout) != 0 || ferror(stdout))
        die("write", errno ? errno : EIO);
    return 0;
}
