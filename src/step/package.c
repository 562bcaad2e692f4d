/* Code packages (package.h). */
#include "package.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "util.h"

static const char *const default_ignore[] = {".git", ".hg", ".svn", "__pycache__", "*.pyc", ".metaflow", ".DS_Store"};

bool sbx_step_package_ignored(const char *rel, bool is_dir, char *const *patterns, size_t n)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    for (size_t i = 0; i < n; i++) {
        char pat[PATH_MAX];
        const char *p = patterns[i];
        while (*p == '/')
            p++;
        size_t len = strlen(p);
        if (len == 0 || len >= sizeof(pat))
            continue;
        memcpy(pat, p, len + 1);
        bool dir_only = pat[len - 1] == '/';
        if (dir_only) {
            pat[--len] = '\0';
            if (!is_dir || len == 0)
                continue;
        }
        bool anchored = patterns[i][0] == '/' || strchr(pat, '/');
        if (anchored ? fnmatch(pat, rel, FNM_PATHNAME | FNM_PERIOD) == 0 : fnmatch(pat, base, FNM_PERIOD) == 0)
            return true;
    }
    return false;
}

typedef struct pack {
    struct archive *a;
    size_t entries;
    char **pats;
    size_t n_pats;
    const char *skip_abs;
    sbx_step_package_info *info;
    sbx_err *err;
    char buf[65536];
} pack;

static int arch_fail(pack *p, const char *what, const char *rel)
{
    return sbx_fail(p->err, SBX_E_SYSTEM, "code package: %s %s: %s", what, rel, archive_error_string(p->a));
}

static int add_file(pack *p, const char *abs, const char *rel, const struct stat *st)
{
    if ((p->info->bytes += (uint64_t)st->st_size) > SBX_STEP_PACKAGE_MAX)
        return sbx_fail(p->err, SBX_E_LIMIT,
                        "the code package is over %llu MiB (at %s): leave large files out with .sbxignore or the step's "
                        "\"ignore\", or choose a smaller code directory",
                        SBX_STEP_PACKAGE_MAX >> 20, rel);
    int fd = open(abs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return sbx_fail_errno(p->err, errno, "code package: cannot read %s", abs);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, rel);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, st->st_mode & 0755);
    archive_entry_set_size(e, st->st_size);
    archive_entry_set_mtime(e, st->st_mtim.tv_sec, 0);
    int rc = archive_write_header(p->a, e) == ARCHIVE_OK ? 0 : arch_fail(p, "cannot add", rel);
    archive_entry_free(e);
    int64_t left = st->st_size;
    while (rc == 0 && left > 0) {
        ssize_t n = read(fd, p->buf, sizeof(p->buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* shrank while we read it: pad, the header is written */
            memset(p->buf, 0, sizeof(p->buf));
            n = left < (int64_t)sizeof(p->buf) ? (ssize_t)left : (ssize_t)sizeof(p->buf);
        }
        if (n > left)
            n = (ssize_t)left;
        if (archive_write_data(p->a, p->buf, (size_t)n) < 0)
            rc = arch_fail(p, "cannot write", rel);
        left -= n;
    }
    close(fd);
    if (rc == 0)
        p->info->files++;
    return rc;
}

static int add_other(pack *p, const char *abs, const char *rel, const struct stat *st)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, rel);
    archive_entry_set_mtime(e, st->st_mtim.tv_sec, 0);
    if (S_ISDIR(st->st_mode)) {
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, (st->st_mode & 0755) | 0700);
    } else {
        char target[PATH_MAX];
        ssize_t n = readlink(abs, target, sizeof(target) - 1);
        if (n < 0) {
            archive_entry_free(e);
            return sbx_fail_errno(p->err, errno, "code package: cannot read the link %s", abs);
        }
        target[n] = '\0';
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, target);
    }
    int rc = archive_write_header(p->a, e) == ARCHIVE_OK ? 0 : arch_fail(p, "cannot add", rel);
    archive_entry_free(e);
    return rc;
}

static int walk(pack *p, const char *abs, const char *rel, int depth)
{
    if (depth > 64)
        return sbx_fail(p->err, SBX_E_LIMIT, "code package: %s is nested deeper than 64 directories", abs);
    struct dirent **names;
    int n = scandir(abs, &names, NULL, alphasort); /* sorted: the same tree gives the same package */
    if (n < 0)
        return sbx_fail_errno(p->err, errno, "code package: cannot list %s", abs);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = names[i]->d_name;
        char a[PATH_MAX], r[PATH_MAX];
        if (rc || strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            goto next;
        if (sbx_step_stopping(false)) { /* a large tree takes a while: ^C stops it */
            rc = sbx_fail(p->err, SBX_E_SYSTEM, "code package: interrupted");
            goto next;
        }
        if (sbx_pathf(a, sizeof(a), "%s/%s", abs, nm) < 0 ||
            sbx_pathf(r, sizeof(r), "%s%s%s", rel, *rel ? "/" : "", nm) < 0) {
            rc = sbx_fail(p->err, SBX_E_INVALID, "code package: path too long under %s", abs);
            goto next;
        }
        struct stat st;
        if (lstat(a, &st) < 0) {
            if (errno != ENOENT) /* vanished meanwhile: not in the package */
                rc = sbx_fail_errno(p->err, errno, "code package: %s", a);
            goto next;
        }
        if (p->skip_abs && strcmp(a, p->skip_abs) == 0)
            goto next;
        if (sbx_step_package_ignored(r, S_ISDIR(st.st_mode), p->pats, p->n_pats))
            goto next;
        if (++p->entries > SBX_STEP_PACKAGE_MAX_ENTRIES) {
            rc = sbx_fail(p->err, SBX_E_LIMIT,
                          "the code package has more than %d entries (at %s): leave files out with .sbxignore or the "
                          "step's \"ignore\", or choose a smaller code directory",
                          SBX_STEP_PACKAGE_MAX_ENTRIES, r);
            goto next;
        }
        if (S_ISREG(st.st_mode))
            rc = add_file(p, a, r, &st);
        else if (S_ISDIR(st.st_mode))
            rc = add_other(p, a, r, &st) < 0 ? -1 : walk(p, a, r, depth + 1);
        else if (S_ISLNK(st.st_mode))
            rc = add_other(p, a, r, &st);
    next:
        free(names[i]);
    }
    free(names);
    return rc;
}

/* The default list, then .sbxignore's lines, then the step's. */
static int collect_patterns(const char *dir, char *const *ignore, size_t n_ignore, pack *p, sbx_err *err)
{
    size_t cap = SBX_ARRAY_LEN(default_ignore) + n_ignore + 16;
    p->pats = calloc(cap, sizeof(char *));
    if (!p->pats)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    for (size_t i = 0; i < SBX_ARRAY_LEN(default_ignore); i++)
        p->pats[p->n_pats++] = strdup(default_ignore[i]);
    for (size_t i = 0; i < n_ignore; i++)
        p->pats[p->n_pats++] = strdup(ignore[i]);
    char path[PATH_MAX];
    if (sbx_pathf(path, sizeof(path), "%s/.sbxignore", dir) < 0)
        return 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[PATH_MAX];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t len = strlen(s);
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = '\0';
        if (!*s || *s == '#')
            continue;
        if (p->n_pats == cap) {
            char **np = realloc(p->pats, (cap *= 2) * sizeof(char *));
            if (!np)
                break;
            p->pats = np;
        }
        p->pats[p->n_pats++] = strdup(s);
    }
    fclose(f);
    for (size_t i = 0; i < p->n_pats; i++)
        if (!p->pats[i])
            return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    return 0;
}

int sbx_step_package_build(const char *dir, char *const *ignore, size_t n_ignore, const char *skip_abs,
                           const char *out_path, sbx_step_package_info *info, sbx_err *err)
{
    memset(info, 0, sizeof(*info));
    if (strcmp(dir, "/") == 0)
        return sbx_fail(err, SBX_E_INVALID,
                        "the code directory is / (the current directory?): choose one with --code-dir, or --no-code");
    pack *p = calloc(1, sizeof(*p));
    if (!p)
        return sbx_fail(err, SBX_E_SYSTEM, "out of memory");
    p->skip_abs = skip_abs;
    p->info = info;
    p->err = err;
    int rc = collect_patterns(dir, ignore, n_ignore, p, err);
    if (rc == 0) {
        p->a = archive_write_new();
        if (!p->a || archive_write_add_filter_gzip(p->a) != ARCHIVE_OK ||
            archive_write_set_format_pax_restricted(p->a) != ARCHIVE_OK ||
            archive_write_open_filename(p->a, out_path) != ARCHIVE_OK)
            rc = sbx_fail(err, SBX_E_SYSTEM, "code package: cannot write %s: %s", out_path,
                          p->a ? archive_error_string(p->a) : "out of memory");
    }
    if (rc == 0)
        rc = walk(p, dir, "", 0);
    if (p->a) {
        if (archive_write_close(p->a) != ARCHIVE_OK && rc == 0)
            rc = sbx_fail(err, SBX_E_SYSTEM, "code package: cannot write %s: %s", out_path, archive_error_string(p->a));
        archive_write_free(p->a);
    }
    for (size_t i = 0; i < p->n_pats; i++)
        free(p->pats[i]);
    free(p->pats);
    free(p);
    if (rc < 0)
        unlink(out_path);
    return rc;
}
