/* Finding, checking and fetching micromamba (micromamba.h). */
#include "micromamba.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "util.h"

#define MAX_BINARY (256u << 20)

const char *sbx_step_elf_platform(const char *path)
{
    unsigned char h[EI_NIDENT + 4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, h, sizeof(h));
    close(fd);
    if (n < (ssize_t)sizeof(h) || memcmp(h, ELFMAG, SELFMAG) != 0 || h[EI_DATA] != ELFDATA2LSB)
        return NULL;
    /* e_type (2 bytes) then e_machine (2 bytes), little-endian */
    unsigned machine = (unsigned)h[EI_NIDENT + 2] | (unsigned)h[EI_NIDENT + 3] << 8;
    if (h[EI_CLASS] == ELFCLASS64 && machine == EM_X86_64)
        return "linux-64";
    if (h[EI_CLASS] == ELFCLASS64 && machine == EM_AARCH64)
        return "linux-aarch64";
    return NULL;
}

/* A usable binary: a regular, executable ELF file for the platform. */
static int check_binary(const char *path, const char *platform, const char *from, sbx_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return sbx_fail_errno(err, errno, "micromamba %s (%s)", path, from);
    if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111))
        return sbx_fail(err, SBX_E_INVALID, "micromamba %s (%s) is not an executable file", path, from);
    const char *p = sbx_step_elf_platform(path);
    if (!p)
        return sbx_fail(err, SBX_E_INVALID,
                        "micromamba %s (%s) is not a Linux executable for linux-64 or linux-aarch64: give the "
                        "micromamba binary for %s",
                        path, from, platform);
    if (strcmp(p, platform) != 0)
        return sbx_fail(err, SBX_E_INVALID,
                        "micromamba %s (%s) is for %s, not for %s (METAFLOW_SANDBOX_TARGET_PLATFORM): give a %s binary",
                        path, from, p, platform, platform);
    return 0;
}

static size_t to_file(char *d, size_t s, size_t n, void *ud)
{
    return fwrite(d, s, n, ud) == n ? s * n : 0;
}

/* An interrupt of the launcher stops the download (backend.h). */
static int stop_download(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)ud, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return sbx_step_stopping(false) ? 1 : 0;
}

/* Fetches the platform's archive and writes its bin/micromamba to dest. */
static int download(const char *platform, const char *dest, sbx_err *err)
{
    const char *base = getenv("SBX_MICROMAMBA_URL");
    char url[1024], arch_path[PATH_MAX + 16], tmp[PATH_MAX + 16];
    snprintf(url, sizeof(url), "%s/%s/latest", base && *base ? base : SBX_STEP_MICROMAMBA_URL, platform);
    snprintf(arch_path, sizeof(arch_path), "%s.download", dest);
    snprintf(tmp, sizeof(tmp), "%s.tmp", dest);
    FILE *f = fopen(arch_path, "we");
    if (!f)
        return sbx_fail_errno(err, errno, "cannot write %s", arch_path);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *h = curl_easy_init();
    if (!h) {
        fclose(f);
        return sbx_fail(err, SBX_E_SYSTEM, "cannot set up an HTTP client (libcurl)");
    }
    char cerr[CURL_ERROR_SIZE] = "";
    /* A proxy from the environment applies, never to loopback (a mirror here). */
    const char *np = getenv("no_proxy");
    if (!np || !*np)
        np = getenv("NO_PROXY");
    char noproxy[1024];
    snprintf(noproxy, sizeof(noproxy), "%s%slocalhost,127.0.0.1,::1", np && *np ? np : "", np && *np ? "," : "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, noproxy);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_file);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_BINARY);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, stop_download);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    if (fclose(f) != 0 && rc == CURLE_OK)
        rc = CURLE_WRITE_ERROR;
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        unlink(arch_path);
        return sbx_fail(err, SBX_E_SYSTEM, "the micromamba download from %s was interrupted", url);
    }
    if (rc != CURLE_OK) {
        unlink(arch_path);
        return sbx_fail(err, SBX_E_NOTFOUND,
                        "cannot download micromamba for %s from %s (%s): set METAFLOW_SANDBOX_MICROMAMBA_PATH to a "
                        "micromamba binary for %s, or put one at %s, or set METAFLOW_SANDBOX_STAGE_MICROMAMBA=0",
                        platform, url, cerr[0] ? cerr : curl_easy_strerror(rc), platform, dest);
    }
    /* The archive holds bin/micromamba (a plain binary is taken as is). */
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    archive_read_support_format_raw(a);
    int ret = -1;
    if (archive_read_open_filename(a, arch_path, 65536) != ARCHIVE_OK) {
        sbx_fail(err, SBX_E_INVALID, "micromamba download from %s: %s", url, archive_error_string(a));
    } else {
        struct archive_entry *e;
        bool found = false;
        while (!found && archive_read_next_header(a, &e) == ARCHIVE_OK) {
            const char *name = archive_entry_pathname(e);
            size_t n = strlen(name);
            bool want = archive_format(a) == ARCHIVE_FORMAT_RAW || strcmp(name, "bin/micromamba") == 0 ||
                        (n > 15 && strcmp(name + n - 15, "/bin/micromamba") == 0);
            if (!want)
                continue;
            found = true;
            int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
            if (fd < 0) {
                sbx_fail_errno(err, errno, "cannot write %s", tmp);
                break;
            }
            ret = archive_read_data_into_fd(a, fd) == ARCHIVE_OK ? 0 : -1;
            if (fchmod(fd, 0755) < 0)
                ret = -1;
            if (close(fd) < 0) /* closed whatever fchmod said */
                ret = -1;
            if (ret < 0)
                sbx_fail(err, SBX_E_INVALID, "micromamba download from %s: %s", url, archive_error_string(a));
        }
        if (!found)
            sbx_fail(err, SBX_E_INVALID, "micromamba download from %s has no bin/micromamba", url);
    }
    archive_read_free(a);
    unlink(arch_path);
    if (ret == 0 && check_binary(tmp, platform, url, err) < 0)
        ret = -1;
    if (ret == 0 && rename(tmp, dest) < 0)
        ret = sbx_fail_errno(err, errno, "cannot rename %s", tmp);
    if (ret < 0)
        unlink(tmp);
    return ret;
}

int sbx_step_micromamba_find(const sbx_step_settings *s, char *out, size_t cap, sbx_err *err)
{
    if (!s->platform[0])
        return sbx_fail(err, SBX_E_INVALID,
                        "this host's machine has no conda platform name: set METAFLOW_SANDBOX_TARGET_PLATFORM "
                        "(linux-64, linux-aarch64)");
    if (s->micromamba_path[0]) {
        if (check_binary(s->micromamba_path, s->platform, "METAFLOW_SANDBOX_MICROMAMBA_PATH", err) < 0)
            return -1;
        return snprintf(out, cap, "%s", s->micromamba_path) < (int)cap ? 0 : sbx_fail(err, SBX_E_INVALID, "path too long");
    }
    char dir[PATH_MAX], path[PATH_MAX];
    if (sbx_pathf(dir, sizeof(dir), "%s/%s", s->micromamba_cache, s->platform) < 0 ||
        sbx_pathf(path, sizeof(path), "%s/micromamba", dir) < 0)
        return sbx_fail(err, SBX_E_INVALID, "METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR is too long");
    if (access(path, F_OK) == 0) {
        if (check_binary(path, s->platform, "the micromamba cache, METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR", err) < 0)
            return -1;
    } else if (!s->auto_download) {
        return sbx_fail(err, SBX_E_NOTFOUND,
                        "this step has an environment and needs micromamba for %s, and there is none: set "
                        "METAFLOW_SANDBOX_MICROMAMBA_PATH to a micromamba binary, or put one at %s "
                        "(METAFLOW_SANDBOX_MICROMAMBA_CACHE_DIR), or allow METAFLOW_SANDBOX_AUTO_DOWNLOAD_MICROMAMBA=1, "
                        "or set METAFLOW_SANDBOX_STAGE_MICROMAMBA=0",
                        s->platform, path);
    } else {
        int e = sbx_mkdir_p(dir, 0755);
        if (e < 0)
            return sbx_fail_errno(err, -e, "cannot create the micromamba cache %s", dir);
        if (download(s->platform, path, err) < 0)
            return -1;
    }
    return snprintf(out, cap, "%s", path) < (int)cap ? 0 : sbx_fail(err, SBX_E_INVALID, "path too long");
}
