/*
 * nfsprobe: vnas's own NFSv3 probe on libnfs, a client we did not write.
 * The integration tests and the benchmarks build it from this file
 * (cc -O2 -o nfsprobe nfsprobe.c -lnfs; Debian package libnfs-dev).
 *
 *   nfsprobe probe URL SECONDS INTERVAL_MS
 *       every INTERVAL_MS: write a 4 KiB record, COMMIT it, read it back
 *       and compare; a failed call remounts and counts as failed. Prints
 *       round_trips, failed_ops, mismatches and max_gap_ms: the longest
 *       time between two good round trips, the pause a client saw.
 *   nfsprobe seq URL MIB
 *       write MIB MiB in 1 MiB calls, COMMIT, read it back: MB/s each way.
 *   nfsprobe meta URL FILES
 *       create, stat (by path) and remove FILES files: ops/s of each.
 *   nfsprobe lat URL CALLS
 *       one call at a time: GETATTR of an open file, stat by path
 *       (LOOKUP... + GETATTR), a 16-byte READ; median, p90, p99 in us.
 *
 * URL is a directory, e.g. nfs://127.0.0.1/data?nfsport=2049&mountport=2049.
 * Output is one line of key=value pairs per phase.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <nfsc/libnfs.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, struct nfs_context *nfs) {
    fprintf(stderr, "nfsprobe: %s: %s\n", what, nfs ? nfs_get_error(nfs) : "");
    exit(2);
}

/* A mounted context for URL, or NULL (with the reason on stderr). */
static struct nfs_context *connect_url(const char *url_text) {
    struct nfs_context *nfs = nfs_init_context();
    if (!nfs) return NULL;
    struct nfs_url *url = nfs_parse_url_dir(nfs, url_text);
    if (!url) {
        fprintf(stderr, "nfsprobe: bad URL %s: %s\n", url_text, nfs_get_error(nfs));
        nfs_destroy_context(nfs);
        return NULL;
    }
    /* A call that gets no answer at all is an error, not a hang. */
    nfs_set_timeout(nfs, 10000);
    int rc = nfs_mount(nfs, url->server, url->path);
    nfs_destroy_url(url);
    if (rc != 0) {
        fprintf(stderr, "nfsprobe: mount %s: %s\n", url_text, nfs_get_error(nfs));
        nfs_destroy_context(nfs);
        return NULL;
    }
    return nfs;
}

static struct nfs_context *must_connect(const char *url) {
    struct nfs_context *nfs = connect_url(url);
    if (!nfs) exit(2);
    return nfs;
}

static void fill(char *buf, size_t len, uint64_t seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)((seed * 131 + i * 7) % 251);
}

static int cmd_probe(const char *url, double seconds, double interval_ms) {
    char path[64], out[4096], in[4096];
    snprintf(path, sizeof path, "/nfsprobe-%d", (int)getpid());
    long round_trips = 0, failed = 0, mismatches = 0;
    double started = now_ms(), last_good = started, max_gap = 0;
    struct nfs_context *nfs = NULL;
    struct nfsfh *fh = NULL;
    for (uint64_t seq = 0; now_ms() - started < seconds * 1000; seq++) {
        if (!nfs) nfs = connect_url(url);
        if (nfs && !fh && nfs_open2(nfs, path, O_RDWR | O_CREAT, 0644, &fh) != 0) {
            fprintf(stderr, "nfsprobe: open: %s\n", nfs_get_error(nfs));
            fh = NULL;
        }
        int ok = nfs && fh;
        if (ok) {
            fill(out, sizeof out, seq);
            ok = nfs_pwrite(nfs, fh, 0, sizeof out, out) == (int)sizeof out && nfs_fsync(nfs, fh) == 0 &&
                 nfs_pread(nfs, fh, 0, sizeof in, in) == (int)sizeof in;
            if (!ok) fprintf(stderr, "nfsprobe: round trip %" PRIu64 ": %s\n", seq, nfs_get_error(nfs));
        }
        if (!ok) {
            failed++;
            if (fh) nfs_close(nfs, fh);
            if (nfs) nfs_destroy_context(nfs);
            fh = NULL;
            nfs = NULL;
            usleep(20000);
            continue;
        }
        if (memcmp(in, out, sizeof in) != 0) mismatches++;
        round_trips++;
        double t = now_ms();
        if (t - last_good > max_gap) max_gap = t - last_good;
        last_good = t;
        double next = started + (seq + 1) * interval_ms;
        if (next > t) usleep((useconds_t)((next - t) * 1000));
    }
    if (fh) nfs_close(nfs, fh);
    if (nfs) {
        nfs_unlink(nfs, path);
        nfs_destroy_context(nfs);
    }
    printf("phase=probe seconds=%.1f round_trips=%ld failed_ops=%ld mismatches=%ld max_gap_ms=%.0f\n",
           (now_ms() - started) / 1000, round_trips, failed, mismatches, max_gap);
    return failed || mismatches ? 1 : 0;
}

static int cmd_seq(const char *url, long mib) {
    struct nfs_context *nfs = must_connect(url);
    char path[64];
    snprintf(path, sizeof path, "/nfsprobe-seq-%d", (int)getpid());
    size_t block = 1 << 20;
    char *buf = malloc(block), *back = malloc(block);
    struct nfsfh *fh;
    if (nfs_open2(nfs, path, O_RDWR | O_CREAT | O_TRUNC, 0644, &fh) != 0) die("create", nfs);
    double t0 = now_ms();
    for (long i = 0; i < mib; i++) {
        fill(buf, block, i);
        if (nfs_pwrite(nfs, fh, (uint64_t)i * block, block, buf) != (int)block) die("write", nfs);
    }
    if (nfs_fsync(nfs, fh) != 0) die("commit", nfs);
    double t1 = now_ms();
    long bad = 0;
    for (long i = 0; i < mib; i++) {
        if (nfs_pread(nfs, fh, (uint64_t)i * block, block, back) != (int)block) die("read", nfs);
        fill(buf, block, i);
        bad += memcmp(buf, back, block) != 0;
    }
    double t2 = now_ms();
    nfs_close(nfs, fh);
    nfs_unlink(nfs, path);
    nfs_destroy_context(nfs);
    printf("phase=seq mib=%ld write_mb_s=%.0f read_mb_s=%.0f mismatches=%ld\n", mib,
           mib * 1.048576 / ((t1 - t0) / 1000), mib * 1.048576 / ((t2 - t1) / 1000), bad);
    return bad ? 1 : 0;
}

static int cmd_meta(const char *url, long files) {
    struct nfs_context *nfs = must_connect(url);
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/nfsprobe-meta-%d", (int)getpid());
    if (nfs_mkdir(nfs, dir) != 0) die("mkdir", nfs);
    double t0 = now_ms();
    for (long i = 0; i < files; i++) {
        struct nfsfh *fh;
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        if (nfs_creat(nfs, path, 0644, &fh) != 0) die("create", nfs);
        nfs_close(nfs, fh);
    }
    double t1 = now_ms();
    for (long i = 0; i < files; i++) {
        struct nfs_stat_64 st;
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        if (nfs_stat64(nfs, path, &st) != 0) die("stat", nfs);
    }
    double t2 = now_ms();
    for (long i = 0; i < files; i++) {
        snprintf(path, sizeof path, "%s/f%ld", dir, i);
        if (nfs_unlink(nfs, path) != 0) die("remove", nfs);
    }
    double t3 = now_ms();
    nfs_rmdir(nfs, dir);
    nfs_destroy_context(nfs);
    printf("phase=meta files=%ld create_ops_s=%.0f stat_ops_s=%.0f remove_ops_s=%.0f\n", files,
           files / ((t1 - t0) / 1000), files / ((t2 - t1) / 1000), files / ((t3 - t2) / 1000));
    return 0;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *op, double *us, long n) {
    qsort(us, n, sizeof *us, by_value);
    printf("phase=lat op=%s calls=%ld median_us=%.1f p90_us=%.1f p99_us=%.1f\n", op, n, us[n / 2],
           us[n * 9 / 10], us[n * 99 / 100]);
}

static int cmd_lat(const char *url, long calls) {
    struct nfs_context *nfs = must_connect(url);
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/nfsprobe-lat-%d", (int)getpid());
    if (nfs_mkdir(nfs, dir) != 0) die("mkdir", nfs);
    snprintf(path, sizeof path, "%s/small", dir);
    struct nfsfh *fh;
    char data[4096], buf[16];
    fill(data, sizeof data, 1);
    if (nfs_open2(nfs, path, O_RDWR | O_CREAT, 0644, &fh) != 0) die("create", nfs);
    if (nfs_pwrite(nfs, fh, 0, sizeof data, data) != (int)sizeof data || nfs_fsync(nfs, fh) != 0)
        die("write", nfs);
    double *us = calloc(calls, sizeof *us);
    struct nfs_stat_64 st;
    for (long i = 0; i < calls; i++) {
        double t = now_ms();
        if (nfs_fstat64(nfs, fh, &st) != 0) die("getattr", nfs);
        us[i] = (now_ms() - t) * 1000;
    }
    report("getattr", us, calls);
    for (long i = 0; i < calls; i++) {
        double t = now_ms();
        if (nfs_stat64(nfs, path, &st) != 0) die("stat", nfs);
        us[i] = (now_ms() - t) * 1000;
    }
    report("stat_path", us, calls);
    for (long i = 0; i < calls; i++) {
        uint64_t at = (uint64_t)(i * 64) % (sizeof data - sizeof buf);
        double t = now_ms();
        if (nfs_pread(nfs, fh, at, sizeof buf, buf) != (int)sizeof buf) die("read", nfs);
        us[i] = (now_ms() - t) * 1000;
        if (memcmp(buf, data + at, sizeof buf) != 0) die("read: wrong data", NULL);
    }
    report("read16", us, calls);
    nfs_close(nfs, fh);
    nfs_unlink(nfs, path);
    nfs_rmdir(nfs, dir);
    nfs_destroy_context(nfs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: nfsprobe probe URL SECONDS INTERVAL_MS | seq URL MIB | "
                        "meta URL FILES | lat URL CALLS\n");
        return 2;
    }
    const char *cmd = argv[1], *url = argv[2];
    if (!strcmp(cmd, "probe") && argc == 5) return cmd_probe(url, atof(argv[3]), atof(argv[4]));
    if (!strcmp(cmd, "seq")) return cmd_seq(url, atol(argv[3]));
    if (!strcmp(cmd, "meta")) return cmd_meta(url, atol(argv[3]));
    if (!strcmp(cmd, "lat") && atol(argv[3]) > 0) return cmd_lat(url, atol(argv[3]));
    fprintf(stderr, "nfsprobe: unknown command or arguments\n");
    return 2;
}
