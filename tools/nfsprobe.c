/*
 * nfsprobe: vnas's own NFSv3 probe on libnfs, a client we did not write.
 * The integration tests and the benchmarks build it from this file
 * (cc -O2 -o nfsprobe nfsprobe.c -lnfs; Debian package libnfs-dev).
 *
 *   nfsprobe probe URL SECONDS INTERVAL_MS
 *       every INTERVAL_MS: write a 4 KiB record, COMMIT it, read it back
 *       and compare; a failed call remounts and counts as failed. Prints
 *       round_trips, failed_ops, mismatches and max_gap_ms: the longest
 *       time between two good round trips, the pause a client saw. With
 *       NFSPROBE_GAP_MS=N set, also each gap over N ms as it ends
 *       (gap_ms=G at_ms=T, T since the start). SIGTERM ends it early.
 *   nfsprobe seq URL MIB [DEPTH]
 *       write MIB MiB in 1 MiB calls, DEPTH (default 8) in flight, COMMIT,
 *       read it back and compare: MB/s each way.
 *   nfsprobe write|read URL NAME MIB [DEPTH]
 *       one half of seq on the file NAME (kept), for a caller that
 *       measures between the halves.
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
#include <poll.h>
#include <signal.h>
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
    /* NFSPROBE_GAP_MS=N: print each gap over N ms as it ends. */
    const char *report = getenv("NFSPROBE_GAP_MS");
    double report_gap_ms = report ? atof(report) : 0;
    /* NFSPROBE_COMMIT=0: no COMMIT in the round trip, so the disk's own
     * stalls (another process's fsync) do not count as the server's. */
    const char *commit_env = getenv("NFSPROBE_COMMIT");
    int commit = !(commit_env && !strcmp(commit_env, "0"));
    struct nfs_context *nfs = NULL;
    struct nfsfh *fh = NULL;
    /* SIGTERM ends the run after the round trip in progress (it stays
     * pending, so no call is interrupted), summary printed as usual. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    for (uint64_t seq = 0; now_ms() - started < seconds * 1000; seq++) {
        sigset_t pending;
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM)) break;
        if (!nfs) nfs = connect_url(url);
        if (nfs && !fh && nfs_open2(nfs, path, O_RDWR | O_CREAT, 0644, &fh) != 0) {
            fprintf(stderr, "nfsprobe: open: %s\n", nfs_get_error(nfs));
            fh = NULL;
        }
        int ok = nfs && fh;
        if (ok) {
            fill(out, sizeof out, seq);
            ok = nfs_pwrite(nfs, fh, 0, sizeof out, out) == (int)sizeof out && (!commit || nfs_fsync(nfs, fh) == 0) &&
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
        if (report_gap_ms > 0 && t - last_good > report_gap_ms)
            printf("gap_ms=%.0f at_ms=%.0f\n", t - last_good, t - started), fflush(stdout);
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

/* Calls in flight of a pipelined sequential pass. */
#define DEPTH_MAX 64
#define BLOCK (1 << 20)

struct slot {
    struct pass *pass;
    long block;
    char *buf;
};

struct pass {
    struct nfs_context *nfs;
    struct nfsfh *fh;
    int writing;
    long next, blocks, inflight, bad, failed;
    char *expect;
    struct slot slots[DEPTH_MAX];
};

static void issue(struct pass *p, struct slot *slot);

static void done(int status, struct nfs_context *nfs, void *data, void *private_data) {
    struct slot *slot = private_data;
    struct pass *p = slot->pass;
    (void)nfs;
    p->inflight--;
    if (status != BLOCK) {
        fprintf(stderr, "nfsprobe: %s of block %ld: %d %s\n", p->writing ? "write" : "read", slot->block,
                status, status < 0 ? (char *)data : "");
        p->failed++;
    } else if (!p->writing) {
        fill(p->expect, BLOCK, slot->block);
        p->bad += memcmp(p->expect, data, BLOCK) != 0;
    }
    if (p->next < p->blocks && !p->failed) issue(p, slot);
}

static void issue(struct pass *p, struct slot *slot) {
    slot->block = p->next++;
    uint64_t at = (uint64_t)slot->block * BLOCK;
    int rc;
    if (p->writing) {
        fill(slot->buf, BLOCK, slot->block);
        rc = nfs_pwrite_async(p->nfs, p->fh, at, BLOCK, slot->buf, done, slot);
    } else {
        rc = nfs_pread_async(p->nfs, p->fh, at, BLOCK, done, slot);
    }
    if (rc != 0) {
        p->failed++;
        return;
    }
    p->inflight++;
}

/* Runs libnfs's event loop until every call of the pass has answered. */
static void run_pass(struct pass *p, int depth) {
    p->next = 0;
    for (int i = 0; i < depth && p->next < p->blocks; i++) issue(p, &p->slots[i]);
    while (p->inflight > 0) {
        struct pollfd pfd = {.fd = nfs_get_fd(p->nfs), .events = nfs_which_events(p->nfs)};
        if (poll(&pfd, 1, 10000) <= 0) die("no answer for 10 s", p->nfs);
        if (nfs_service(p->nfs, pfd.revents) < 0) die("service", p->nfs);
    }
    if (p->failed) die("sequential pass failed", p->nfs);
}

/* Writes (then COMMITs) or reads back and checks MIB MiB of NAME; prints
 * MB/s. The file stays, so a later read can find it. */
static int sequential(const char *url, const char *name, long mib, int depth, int writing) {
    if (depth < 1 || depth > DEPTH_MAX) depth = 8;
    struct nfs_context *nfs = must_connect(url);
    struct pass p = {.nfs = nfs, .blocks = mib, .expect = malloc(BLOCK), .writing = writing};
    for (int i = 0; i < depth; i++) {
        p.slots[i].pass = &p;
        p.slots[i].buf = malloc(BLOCK);
    }
    int flags = writing ? O_RDWR | O_CREAT | O_TRUNC : O_RDONLY;
    if (nfs_open2(nfs, name, flags, 0644, &p.fh) != 0) die(writing ? "create" : "open", nfs);
    double t0 = now_ms();
    run_pass(&p, depth);
    if (writing && nfs_fsync(nfs, p.fh) != 0) die("commit", nfs);
    double t1 = now_ms();
    nfs_close(nfs, p.fh);
    nfs_destroy_context(nfs);
    printf("phase=%s mib=%ld depth=%d mb_s=%.0f mismatches=%ld\n", writing ? "write" : "read", mib, depth,
           mib * 1.048576 / ((t1 - t0) / 1000), p.bad);
    return p.bad ? 1 : 0;
}

static int cmd_seq(const char *url, long mib, int depth) {
    char name[64];
    snprintf(name, sizeof name, "/nfsprobe-seq-%d", (int)getpid());
    int rc = sequential(url, name, mib, depth, 1) | sequential(url, name, mib, depth, 0);
    struct nfs_context *nfs = must_connect(url);
    nfs_unlink(nfs, name);
    nfs_destroy_context(nfs);
    return rc;
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
        fprintf(stderr, "usage: nfsprobe probe URL SECONDS INTERVAL_MS | seq URL MIB [DEPTH] | "
                        "write|read URL NAME MIB [DEPTH] | "
                        "meta URL FILES | lat URL CALLS\n");
        return 2;
    }
    const char *cmd = argv[1], *url = argv[2];
    if (!strcmp(cmd, "probe") && argc == 5) return cmd_probe(url, atof(argv[3]), atof(argv[4]));
    if (!strcmp(cmd, "seq")) return cmd_seq(url, atol(argv[3]), argc > 4 ? atoi(argv[4]) : 8);
    if ((!strcmp(cmd, "write") || !strcmp(cmd, "read")) && argc >= 5)
        return sequential(url, argv[3], atol(argv[4]), argc > 5 ? atoi(argv[5]) : 8, !strcmp(cmd, "write"));
    if (!strcmp(cmd, "meta")) return cmd_meta(url, atol(argv[3]));
    if (!strcmp(cmd, "lat") && atol(argv[3]) > 0) return cmd_lat(url, atol(argv[3]));
    fprintf(stderr, "nfsprobe: unknown command or arguments\n");
    return 2;
}
