/*
 * nlmtool: an NLM v4 (program 100021) and NSM (100024) client on libnfs's
 * raw RPC API, a client we did not write, for vnas's lock tests and
 * benchmarks. Built from this file like nfsprobe
 * (cc -O2 -Wall -o nlmtool nlmtool.c -lnfs; Debian package libnfs-dev).
 *
 * The file handle comes from a libnfs mount of the export (MOUNT + LOOKUP,
 * the file is created when missing); NLM and NSM then go over their own
 * TCP connection. URL is the export, as nfsprobe's:
 *     nfs://HOST/EXPORT[?nfsport=P&mountport=P&nlmport=P&nsmport=P]
 * NLM is called on nlmport if given, else on nfsport (vnas serves NLM and
 * NSM on its NFS port), else on the port portmap on HOST:111 gives for
 * 100021 v4 over TCP. NSM likewise with nsmport (100024 v1).
 *
 *   nlmtool lock URL FILE CALLER SVID r|w START LEN [block] [reclaim] [state=N]
 *   nlmtool test URL FILE CALLER SVID r|w START LEN
 *   nlmtool unlock URL FILE CALLER SVID START LEN
 *   nlmtool cancel URL FILE CALLER SVID r|w START LEN      (block=1 in the call)
 *       one NLM4 call each. The owner handle is the bytes "CALLER-SVID", the
 *       cookie a 4-byte counter, LEN 0 means to the end of the file, state
 *       (the caller's NSM state in NLM4_LOCK) is 0 unless given. Prints
 *           op=lock status=NLM4_GRANTED ms=0.41
 *       and for a denied test also the holder:
 *           holder_svid=S holder_start=X holder_len=L holder_exclusive=0|1 holder_oh=OH
 *   nlmtool free_all URL CALLER STATE
 *       NLM4_FREE_ALL (procedure 23, not in libnfs: encoded here by hand) on
 *       the NLM connection, followed by an NLM4_NULL on the same connection
 *       whose reply is awaited, so that a server which handles a
 *       connection's calls in order has handled the FREE_ALL when nlmtool
 *       exits. Prints op=free_all status=SENT reply=0|1 ms=T, reply=1 when
 *       the server answered the FREE_ALL itself (it is a message: no reply
 *       is expected; nlmtool waits 100 ms past the NULL's reply for one).
 *   nlmtool notify URL CALLER STATE
 *       NSM SM_NOTIFY (procedure 6) with mon_name=CALLER and state=STATE, what
 *       a rebooted client's statd sends. Prints op=notify status=OK ms=T.
 *   nlmtool bench URL FILE N
 *       one warm-up pair, then N times: LOCK (write, 0, 0) and UNLOCK, one
 *       call at a time, owner "nlmtool-bench-PID". Prints
 *           op=bench calls=N lock_unlock_us_median=M p90=P p99=Q locks_per_s=R first_pair_us=F
 *       (microseconds for a LOCK + UNLOCK pair; locks_per_s = N / elapsed;
 *       first_pair_us is the warm-up pair, where a server may register the
 *       client with its statd). Exit 1 if a LOCK or UNLOCK was not granted.
 *   nlmtool hold URL FILE CALLER SVID r|w START LEN SECONDS
 *       non-blocking LOCK, prints its line, keeps the connection and the
 *       process for SECONDS (SIGTERM ends it early), then UNLOCKs (if the
 *       lock was granted) and prints that line too. A lost connection is
 *       reported (connection_lost=1) and the UNLOCK goes over a new one.
 *
 * Exit 0 when the call completed, whatever its NLM status; 2 with the
 * reason on stderr when it did not (no connection, mount failed, RPC error,
 * no reply within NLMTOOL_TIMEOUT_MS, default 10000) and on bad arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nlm.h>
#include <nfsc/libnfs-raw-nsm.h>

/* Not in libnfs's public headers: what nfs_get_fh() points at (the same
 * layout in libnfs-private.h from 4.0 through 7.0). */
struct nfs_fh {
    int len;
    char *val;
};

#define NLM4_FREE_ALL 23

static const char *usage_text =
    "usage: nlmtool lock URL FILE CALLER SVID r|w START LEN [block] [reclaim] [state=N]\n"
    "       nlmtool test URL FILE CALLER SVID r|w START LEN\n"
    "       nlmtool unlock URL FILE CALLER SVID START LEN\n"
    "       nlmtool cancel URL FILE CALLER SVID r|w START LEN\n"
    "       nlmtool free_all URL CALLER STATE\n"
    "       nlmtool notify URL CALLER STATE\n"
    "       nlmtool bench URL FILE N\n"
    "       nlmtool hold URL FILE CALLER SVID r|w START LEN SECONDS\n"
    "URL: nfs://HOST/EXPORT[?nfsport=P&mountport=P&nlmport=P&nsmport=P]\n";

static void usage(const char *why) {
    if (why) fprintf(stderr, "nlmtool: %s\n", why);
    fputs(usage_text, stderr);
    exit(2);
}

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("nlmtool: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double timeout_ms(void) {
    const char *t = getenv("NLMTOOL_TIMEOUT_MS");
    return t && atof(t) > 0 ? atof(t) : 10000;
}

/* ---- arguments ---------------------------------------------------------- */

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    errno = 0;
    if (!*s || *s == '-') usage(what);
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) usage(what);
    return v;
}

static uint32_t parse_u32(const char *s, const char *what) {
    uint64_t v = parse_u64(s, what);
    if (v > UINT32_MAX) usage(what);
    return (uint32_t)v;
}

static int32_t parse_i32(const char *s, const char *what) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || !*s || *end || v < INT32_MIN || v > UINT32_MAX) usage(what);
    return (int32_t)(uint32_t)v;
}

static int parse_mode(const char *s) {
    if (!strcmp(s, "w")) return 1;
    if (!strcmp(s, "r")) return 0;
    usage("lock mode must be r or w");
    return 0;
}

struct target {
    const char *url;
    char host[256];
    int nfsport, nlmport, nsmport;
};

/* HOST and the ports of nfs://HOST/EXPORT?k=v&...; libnfs parses the URL
 * again for the mount (and ignores the keys it does not know). */
static void parse_url(const char *url, struct target *t) {
    memset(t, 0, sizeof *t);
    t->url = url;
    if (strncmp(url, "nfs://", 6)) usage("URL must start with nfs://");
    const char *h = url + 6, *e = h + strcspn(h, "/?");
    if (e == h || *e != '/' || (size_t)(e - h) >= sizeof t->host) usage("URL needs nfs://HOST/EXPORT");
    memcpy(t->host, h, e - h);
    const char *q = strchr(e, '?');
    while (q && *q) {
        q++;
        size_t n = strcspn(q, "&");
        int *port = NULL;
        if (!strncmp(q, "nfsport=", 8)) port = &t->nfsport;
        if (!strncmp(q, "nlmport=", 8)) port = &t->nlmport;
        if (!strncmp(q, "nsmport=", 8)) port = &t->nsmport;
        if (port) {
            *port = atoi(q + 8);
            if (*port <= 0 || *port > 65535) usage("bad port in URL");
        }
        q += n;
    }
}

/* ---- calls -------------------------------------------------------------- */

enum kind { K_CONNECT, K_VOID, K_LOCK, K_UNLOCK, K_CANCEL, K_TEST };

struct call {
    enum kind kind;
    int done, status;
    char err[512];
    uint32_t cookie;
    int cookie_echoed;
    int nlm;
    /* a denied TEST's holder */
    int exclusive;
    uint32_t svid;
    uint64_t offset, len;
    char oh[256];
};

static int cookie_matches(const nlm_cookie *c, uint32_t want) {
    uint32_t be = htonl(want);
    return c->data.data_len == 4 && !memcmp(c->data.data_val, &be, 4);
}

static void on_reply(struct rpc_context *rpc, int status, void *data, void *priv) {
    struct call *c = priv;
    (void)rpc;
    if (c->done) return;
    c->done = 1;
    c->status = status;
    if (status != RPC_STATUS_SUCCESS) {
        snprintf(c->err, sizeof c->err, "%s",
                 status == RPC_STATUS_ERROR && data ? (const char *)data
                 : status == RPC_STATUS_TIMEOUT    ? "timed out"
                                                   : "cancelled");
        return;
    }
    switch (c->kind) {
    case K_LOCK: {
        NLM4_LOCKres *r = data;
        c->nlm = r->status;
        c->cookie_echoed = cookie_matches(&r->cookie, c->cookie);
        break;
    }
    case K_UNLOCK: {
        NLM4_UNLOCKres *r = data;
        c->nlm = r->status;
        c->cookie_echoed = cookie_matches(&r->cookie, c->cookie);
        break;
    }
    case K_CANCEL: {
        NLM4_CANCres *r = data;
        c->nlm = r->status;
        c->cookie_echoed = cookie_matches(&r->cookie, c->cookie);
        break;
    }
    case K_TEST: {
        NLM4_TESTres *r = data;
        c->nlm = r->reply.status;
        c->cookie_echoed = cookie_matches(&r->cookie, c->cookie);
        if (c->nlm == NLM4_DENIED) {
            nlm4_holder *h = &r->reply.nlm4_testreply_u.lock.holder;
            c->exclusive = h->exclusive != 0;
            c->svid = h->svid;
            c->offset = h->l_offset;
            c->len = h->l_len;
            /* libnfs decodes the opaque owner handle as a string: printable
             * bytes are kept, the others shown as '?'. */
            size_t i = 0;
            for (const char *p = h->oh; p && *p && i + 1 < sizeof c->oh; p++)
                c->oh[i++] = (*p > ' ' && *p < 127) ? *p : '?';
            c->oh[i] = 0;
        }
        break;
    }
    default:
        break;
    }
}

/* Services rpc until c is done; exit 2 on a dead connection or timeout. */
static void wait_call(struct rpc_context *rpc, struct call *c, const char *what) {
    double deadline = now_ms() + timeout_ms();
    while (!c->done) {
        double left = deadline - now_ms();
        if (left <= 0) fail("%s: no reply within %.0f ms", what, timeout_ms());
        struct pollfd pfd = { .fd = rpc_get_fd(rpc), .events = rpc_which_events(rpc) };
        int n = poll(&pfd, 1, left < 100 ? (int)left + 1 : 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("%s: poll: %s", what, strerror(errno));
        }
        if (rpc_service(rpc, n > 0 ? pfd.revents : 0) < 0 && !c->done)
            fail("%s: %s", what, rpc_get_error(rpc));
    }
    if (c->status != RPC_STATUS_SUCCESS) fail("%s: %s", what, c->err);
}

static const char *nlm_name(int s) {
    static char other[32];
    switch (s) {
    case NLM4_GRANTED: return "NLM4_GRANTED";
    case NLM4_DENIED: return "NLM4_DENIED";
    case NLM4_DENIED_NOLOCKS: return "NLM4_DENIED_NOLOCKS";
    case NLM4_BLOCKED: return "NLM4_BLOCKED";
    case NLM4_DENIED_GRACE_PERIOD: return "NLM4_DENIED_GRACE_PERIOD";
    case NLM4_DEADLCK: return "NLM4_DEADLCK";
    case NLM4_ROFS: return "NLM4_ROFS";
    case NLM4_STALE_FH: return "NLM4_STALE_FH";
    case NLM4_FBIG: return "NLM4_FBIG";
    case NLM4_FAILED: return "NLM4_FAILED";
    }
    snprintf(other, sizeof other, "NLM4_STAT_%d", s);
    return other;
}

/* A connection to PROG/VERS on HOST: on PORT, or where portmap on HOST:111
 * says when PORT is 0. libnfs makes a NULL call of PROG/VERS once connected,
 * so a server that does not serve it fails here. */
static struct rpc_context *connect_prog(const char *host, int port, int prog, int vers, const char *name) {
    struct rpc_context *rpc = rpc_init_context();
    if (!rpc) fail("out of memory");
    struct call c = { .kind = K_CONNECT };
    int rc = port ? rpc_connect_port_async(rpc, host, port, prog, vers, on_reply, &c)
                  : rpc_connect_program_async(rpc, host, prog, vers, on_reply, &c);
    char what[400];
    if (port)
        snprintf(what, sizeof what, "connect to %s on %s:%d", name, host, port);
    else
        snprintf(what, sizeof what, "connect to %s on %s (port from portmap on %s:111)", name, host, host);
    if (rc != 0) fail("%s: %s", what, rpc_get_error(rpc));
    wait_call(rpc, &c, what);
    return rpc;
}

static struct rpc_context *connect_nlm(const struct target *t) {
    return connect_prog(t->host, t->nlmport ? t->nlmport : t->nfsport, NLM_PROGRAM, NLM_V4, "NLM v4");
}

static struct rpc_context *connect_nsm(const struct target *t) {
    return connect_prog(t->host, t->nsmport ? t->nsmport : t->nfsport, NSM_PROGRAM, NSM_V1, "NSM v1");
}

/* ---- the file handle ---------------------------------------------------- */

struct file {
    struct nfs_context *nfs;
    struct nfsfh *fh;
    struct nfs_fh *handle;
};

static void open_file(const struct target *t, const char *name, struct file *f) {
    f->nfs = nfs_init_context();
    if (!f->nfs) fail("out of memory");
    struct nfs_url *url = nfs_parse_url_dir(f->nfs, t->url);
    if (!url) fail("bad URL %s: %s", t->url, nfs_get_error(f->nfs));
    nfs_set_timeout(f->nfs, (int)timeout_ms());
    if (nfs_mount(f->nfs, url->server, url->path) != 0) fail("mount %s: %s", t->url, nfs_get_error(f->nfs));
    nfs_destroy_url(url);
    char path[4096];
    snprintf(path, sizeof path, "%s%s", name[0] == '/' ? "" : "/", name);
    if (nfs_open2(f->nfs, path, O_RDWR | O_CREAT, 0644, &f->fh) != 0 && nfs_open(f->nfs, path, O_RDONLY, &f->fh) != 0)
        fail("open %s: %s", path, nfs_get_error(f->nfs));
    f->handle = nfs_get_fh(f->fh);
}

static void close_file(struct file *f) {
    nfs_close(f->nfs, f->fh);
    nfs_destroy_context(f->nfs);
}

/* ---- NLM4 --------------------------------------------------------------- */

struct owner {
    char *caller;
    uint32_t svid;
    char oh[400];
};

static void make_owner(struct owner *o, char *caller, uint32_t svid) {
    if (strlen(caller) > NLM_MAXNAME) usage("CALLER longer than 256 bytes");
    o->caller = caller;
    o->svid = svid;
    snprintf(o->oh, sizeof o->oh, "%s-%" PRIu32, caller, svid);
}

static uint32_t next_cookie = 1;

struct cookie_buf {
    uint32_t be;
};

static void fill_lock(nlm4_lock *l, const struct file *f, const struct owner *o, uint64_t start, uint64_t len) {
    memset(l, 0, sizeof *l);
    l->caller_name = o->caller;
    l->fh.data.data_len = f->handle->len;
    l->fh.data.data_val = f->handle->val;
    l->oh = (char *)o->oh;
    l->svid = o->svid;
    l->l_offset = start;
    l->l_len = len;
}

static void set_cookie(nlm_cookie *c, struct cookie_buf *buf, struct call *call) {
    call->cookie = next_cookie++;
    buf->be = htonl(call->cookie);
    c->data.data_len = 4;
    c->data.data_val = (char *)&buf->be;
}

static void check_cookie(const struct call *c, const char *op) {
    if (!c->cookie_echoed) fprintf(stderr, "nlmtool: %s: the reply does not carry the call's cookie\n", op);
}

static int nlm_lock(struct rpc_context *rpc, const struct file *f, const struct owner *o, int exclusive,
                    uint64_t start, uint64_t len, int block, int reclaim, int32_t state) {
    struct call c = { .kind = K_LOCK };
    struct cookie_buf cb;
    NLM4_LOCKargs a;
    memset(&a, 0, sizeof a);
    set_cookie(&a.cookie, &cb, &c);
    a.block = block;
    a.exclusive = exclusive;
    fill_lock(&a.lock, f, o, start, len);
    a.reclaim = reclaim;
    a.state = state;
    if (rpc_nlm4_lock_async(rpc, on_reply, &a, &c) != 0) fail("NLM4_LOCK: %s", rpc_get_error(rpc));
    wait_call(rpc, &c, "NLM4_LOCK");
    check_cookie(&c, "NLM4_LOCK");
    return c.nlm;
}

static int nlm_unlock(struct rpc_context *rpc, const struct file *f, const struct owner *o, uint64_t start,
                      uint64_t len) {
    struct call c = { .kind = K_UNLOCK };
    struct cookie_buf cb;
    NLM4_UNLOCKargs a;
    memset(&a, 0, sizeof a);
    set_cookie(&a.cookie, &cb, &c);
    fill_lock(&a.lock, f, o, start, len);
    if (rpc_nlm4_unlock_async(rpc, on_reply, &a, &c) != 0) fail("NLM4_UNLOCK: %s", rpc_get_error(rpc));
    wait_call(rpc, &c, "NLM4_UNLOCK");
    check_cookie(&c, "NLM4_UNLOCK");
    return c.nlm;
}

static int nlm_cancel(struct rpc_context *rpc, const struct file *f, const struct owner *o, int exclusive,
                      uint64_t start, uint64_t len) {
    struct call c = { .kind = K_CANCEL };
    struct cookie_buf cb;
    NLM4_CANCargs a;
    memset(&a, 0, sizeof a);
    set_cookie(&a.cookie, &cb, &c);
    a.block = 1;
    a.exclusive = exclusive;
    fill_lock(&a.lock, f, o, start, len);
    if (rpc_nlm4_cancel_async(rpc, on_reply, &a, &c) != 0) fail("NLM4_CANCEL: %s", rpc_get_error(rpc));
    wait_call(rpc, &c, "NLM4_CANCEL");
    check_cookie(&c, "NLM4_CANCEL");
    return c.nlm;
}

static void nlm_test(struct rpc_context *rpc, const struct file *f, const struct owner *o, int exclusive,
                     uint64_t start, uint64_t len, struct call *c) {
    memset(c, 0, sizeof *c);
    c->kind = K_TEST;
    struct cookie_buf cb;
    NLM4_TESTargs a;
    memset(&a, 0, sizeof a);
    set_cookie(&a.cookie, &cb, c);
    a.exclusive = exclusive;
    fill_lock(&a.lock, f, o, start, len);
    if (rpc_nlm4_test_async(rpc, on_reply, &a, c) != 0) fail("NLM4_TEST: %s", rpc_get_error(rpc));
    wait_call(rpc, c, "NLM4_TEST");
    check_cookie(c, "NLM4_TEST");
}

/* ---- subcommands -------------------------------------------------------- */

/* argv from FILE on: FILE CALLER SVID [r|w] START LEN ... */
struct lockcmd {
    struct target t;
    struct file f;
    struct owner o;
    int exclusive;
    uint64_t start, len;
};

static void lock_args(char **argv, int with_mode, struct lockcmd *l) {
    parse_url(argv[0], &l->t);
    make_owner(&l->o, argv[2], parse_u32(argv[3], "SVID must be a number below 2^32"));
    int i = 4;
    l->exclusive = with_mode ? parse_mode(argv[i++]) : 0;
    l->start = parse_u64(argv[i++], "START must be a number");
    l->len = parse_u64(argv[i], "LEN must be a number");
}

static int cmd_lock(int argc, char **argv) {
    struct lockcmd l;
    int block = 0, reclaim = 0;
    int32_t state = 0;
    lock_args(argv, 1, &l);
    for (int i = 7; i < argc; i++) {
        if (!strcmp(argv[i], "block"))
            block = 1;
        else if (!strcmp(argv[i], "reclaim"))
            reclaim = 1;
        else if (!strncmp(argv[i], "state=", 6))
            state = parse_i32(argv[i] + 6, "state=N needs a number");
        else
            usage("lock takes [block] [reclaim] [state=N] after LEN");
    }
    open_file(&l.t, argv[1], &l.f);
    struct rpc_context *rpc = connect_nlm(&l.t);
    double t0 = now_ms();
    int s = nlm_lock(rpc, &l.f, &l.o, l.exclusive, l.start, l.len, block, reclaim, state);
    printf("op=lock status=%s ms=%.2f\n", nlm_name(s), now_ms() - t0);
    rpc_destroy_context(rpc);
    close_file(&l.f);
    return 0;
}

static int cmd_test(char **argv) {
    struct lockcmd l;
    struct call c;
    lock_args(argv, 1, &l);
    open_file(&l.t, argv[1], &l.f);
    struct rpc_context *rpc = connect_nlm(&l.t);
    double t0 = now_ms();
    nlm_test(rpc, &l.f, &l.o, l.exclusive, l.start, l.len, &c);
    printf("op=test status=%s ms=%.2f", nlm_name(c.nlm), now_ms() - t0);
    if (c.nlm == NLM4_DENIED)
        printf(" holder_svid=%" PRIu32 " holder_start=%" PRIu64 " holder_len=%" PRIu64 " holder_exclusive=%d holder_oh=%s",
               c.svid, c.offset, c.len, c.exclusive, c.oh[0] ? c.oh : "-");
    printf("\n");
    rpc_destroy_context(rpc);
    close_file(&l.f);
    return 0;
}

static int cmd_unlock(char **argv) {
    struct lockcmd l;
    lock_args(argv, 0, &l);
    open_file(&l.t, argv[1], &l.f);
    struct rpc_context *rpc = connect_nlm(&l.t);
    double t0 = now_ms();
    int s = nlm_unlock(rpc, &l.f, &l.o, l.start, l.len);
    printf("op=unlock status=%s ms=%.2f\n", nlm_name(s), now_ms() - t0);
    rpc_destroy_context(rpc);
    close_file(&l.f);
    return 0;
}

static int cmd_cancel(char **argv) {
    struct lockcmd l;
    lock_args(argv, 1, &l);
    open_file(&l.t, argv[1], &l.f);
    struct rpc_context *rpc = connect_nlm(&l.t);
    double t0 = now_ms();
    int s = nlm_cancel(rpc, &l.f, &l.o, l.exclusive, l.start, l.len);
    printf("op=cancel status=%s ms=%.2f\n", nlm_name(s), now_ms() - t0);
    rpc_destroy_context(rpc);
    close_file(&l.f);
    return 0;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmd_bench(char **argv) {
    struct target t;
    struct file f;
    struct owner o;
    char caller[64];
    parse_url(argv[0], &t);
    long n = (long)parse_u64(argv[2], "N must be a number");
    if (n < 1 || n > 100000000) usage("N must be between 1 and 10^8");
    snprintf(caller, sizeof caller, "nlmtool-bench-%d", (int)getpid());
    make_owner(&o, caller, (uint32_t)getpid());
    open_file(&t, argv[1], &f);
    struct rpc_context *rpc = connect_nlm(&t);
    double *us = calloc(n, sizeof *us);
    if (!us) fail("out of memory");
    long refused = 0;
    double t0 = now_ms();
    refused += nlm_lock(rpc, &f, &o, 1, 0, 0, 0, 0, 0) != NLM4_GRANTED;
    refused += nlm_unlock(rpc, &f, &o, 0, 0) != NLM4_GRANTED;
    double first = (now_ms() - t0) * 1000;
    double started = now_ms();
    for (long i = 0; i < n; i++) {
        double t1 = now_ms();
        refused += nlm_lock(rpc, &f, &o, 1, 0, 0, 0, 0, 0) != NLM4_GRANTED;
        refused += nlm_unlock(rpc, &f, &o, 0, 0) != NLM4_GRANTED;
        us[i] = (now_ms() - t1) * 1000;
    }
    double elapsed = (now_ms() - started) / 1000;
    qsort(us, n, sizeof *us, by_value);
    printf("op=bench calls=%ld lock_unlock_us_median=%.1f p90=%.1f p99=%.1f locks_per_s=%.0f first_pair_us=%.0f", n,
           us[n / 2], us[n * 9 / 10], us[n * 99 / 100], n / elapsed, first);
    if (refused) printf(" not_granted=%ld", refused);
    printf("\n");
    free(us);
    rpc_destroy_context(rpc);
    close_file(&f);
    return refused ? 1 : 0;
}

static int cmd_hold(char **argv) {
    struct lockcmd l;
    lock_args(argv, 1, &l);
    double seconds = (double)parse_u64(argv[7], "SECONDS must be a whole number");
    open_file(&l.t, argv[1], &l.f);
    /* SIGTERM stays pending until the wait checks it: no call is cut. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    struct rpc_context *rpc = connect_nlm(&l.t);
    double t0 = now_ms();
    int s = nlm_lock(rpc, &l.f, &l.o, l.exclusive, l.start, l.len, 0, 0, 0);
    printf("op=lock status=%s ms=%.2f\n", nlm_name(s), now_ms() - t0);
    fflush(stdout);
    double until = now_ms() + seconds * 1000;
    int lost = 0;
    while (now_ms() < until) {
        sigset_t pending;
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM)) break;
        if (lost) {
            usleep(100000);
            continue;
        }
        struct pollfd pfd = { .fd = rpc_get_fd(rpc), .events = rpc_which_events(rpc) };
        int n = poll(&pfd, 1, 100);
        if (n < 0 && errno != EINTR) fail("poll: %s", strerror(errno));
        if (rpc_service(rpc, n > 0 ? pfd.revents : 0) < 0) {
            fprintf(stderr, "nlmtool: hold: connection lost: %s\n", rpc_get_error(rpc));
            lost = 1;
        }
    }
    if (lost) {
        rpc_destroy_context(rpc);
        rpc = connect_nlm(&l.t);
    }
    if (s == NLM4_GRANTED) {
        t0 = now_ms();
        int u = nlm_unlock(rpc, &l.f, &l.o, l.start, l.len);
        printf("op=unlock status=%s ms=%.2f%s\n", nlm_name(u), now_ms() - t0, lost ? " connection_lost=1" : "");
    } else if (lost) {
        printf("connection_lost=1\n");
    }
    rpc_destroy_context(rpc);
    close_file(&l.f);
    return 0;
}

/* NLM4_FREE_ALL is not in libnfs: the call is encoded here and written to
 * the socket of libnfs's connection (idle then), with an NLM4_NULL behind
 * it; the replies are read here too. */
static size_t put32(unsigned char *p, size_t at, uint32_t v) {
    v = htonl(v);
    memcpy(p + at, &v, 4);
    return at + 4;
}

static size_t put_opaque(unsigned char *p, size_t at, const char *s, size_t n) {
    at = put32(p, at, (uint32_t)n);
    memcpy(p + at, s, n);
    memset(p + at + n, 0, (4 - n % 4) % 4);
    return at + n + (4 - n % 4) % 4;
}

/* One CALL record of NLM v4 procedure PROC with AUTH_SYS, ARGS appended. */
static size_t nlm_record(unsigned char *p, uint32_t xid, uint32_t proc, const unsigned char *args, size_t args_len) {
    size_t at = 4;
    at = put32(p, at, xid);
    at = put32(p, at, 0); /* CALL */
    at = put32(p, at, 2); /* RPC version */
    at = put32(p, at, NLM_PROGRAM);
    at = put32(p, at, NLM_V4);
    at = put32(p, at, proc);
    /* AUTH_SYS: stamp, machine name, uid, gid, no groups */
    unsigned char cred[64];
    size_t c = put32(cred, 0, (uint32_t)time(NULL));
    c = put_opaque(cred, c, "nlmtool", 7);
    c = put32(cred, c, getuid());
    c = put32(cred, c, getgid());
    c = put32(cred, c, 0);
    at = put32(p, at, 1);
    at = put_opaque(p, at, (const char *)cred, c);
    at = put32(p, at, 0); /* verifier AUTH_NONE */
    at = put32(p, at, 0);
    memcpy(p + at, args, args_len);
    at += args_len;
    put32(p, 0, 0x80000000u | (uint32_t)(at - 4));
    return at;
}

static uint32_t get32(const unsigned char *p, size_t at) {
    uint32_t v;
    memcpy(&v, p + at, 4);
    return ntohl(v);
}

/* NULL if the RPC reply P (LEN bytes, from the xid on) accepted the call,
 * else what went wrong. */
static const char *reply_error(const unsigned char *p, size_t len) {
    static const char *accept[] = { NULL, "PROG_UNAVAIL", "PROG_MISMATCH", "PROC_UNAVAIL", "GARBAGE_ARGS",
                                    "SYSTEM_ERR" };
    if (len < 12 || get32(p, 4) != 1) return "something that is not an RPC reply";
    if (get32(p, 8) != 0) return "MSG_DENIED";
    if (len < 20) return "a truncated reply";
    size_t at = 16 + ((get32(p, 16) + 3) & ~3u) + 4; /* past the verifier */
    if (at + 4 > len) return "a truncated reply";
    uint32_t stat = get32(p, at);
    if (stat < sizeof accept / sizeof *accept) return accept[stat];
    return "an unknown accept_stat";
}

static void write_all(int fd, const unsigned char *p, size_t n, double deadline) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fail("NLM4_FREE_ALL: send: %s", strerror(errno));
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        if (now_ms() > deadline) fail("NLM4_FREE_ALL: cannot send within %.0f ms", timeout_ms());
        poll(&pfd, 1, 100);
    }
}

static int cmd_free_all(char **argv) {
    struct target t;
    parse_url(argv[0], &t);
    const char *caller = argv[1];
    if (strlen(caller) > NLM_MAXNAME) usage("CALLER longer than 256 bytes");
    int32_t state = parse_i32(argv[2], "STATE must be a number");
    struct rpc_context *rpc = connect_nlm(&t);
    int fd = rpc_get_fd(rpc);
    /* nlm4_notify: string name, int32 state (as Linux and Ganesha read it) */
    unsigned char args[NLM_MAXNAME + 16], out[2 * (NLM_MAXNAME + 128)];
    size_t a = put_opaque(args, 0, caller, strlen(caller));
    a = put32(args, a, (uint32_t)state);
    uint32_t xid_free = 0x6e6c0000u ^ ((uint32_t)getpid() << 1), xid_null = xid_free + 1;
    size_t n = nlm_record(out, xid_free, NLM4_FREE_ALL, args, a);
    n += nlm_record(out + n, xid_null, 0, NULL, 0);
    double t0 = now_ms(), deadline = t0 + timeout_ms();
    write_all(fd, out, n, deadline);
    /* Read records; note the xid of each. */
    unsigned char buf[65536];
    size_t have = 0;
    int got_free = 0, got_null = 0;
    double null_at = 0;
    for (;;) {
        double now = now_ms();
        if (got_null && (got_free || now > null_at + 100)) break;
        if (now > deadline) fail("NLM4_FREE_ALL: no reply to the NLM4_NULL behind it within %.0f ms", timeout_ms());
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (poll(&pfd, 1, 20) <= 0) continue;
        ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r == 0) {
            if (got_null) break;
            fail("NLM4_FREE_ALL: the server closed the connection");
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            fail("NLM4_FREE_ALL: recv: %s", strerror(errno));
        }
        have += r;
        /* whole single-fragment records at the front */
        for (;;) {
            if (have < 8) break;
            uint32_t mark, xid;
            memcpy(&mark, buf, 4);
            memcpy(&xid, buf + 4, 4);
            size_t len = ntohl(mark) & 0x7fffffffu;
            if (len + 4 > sizeof buf) fail("NLM4_FREE_ALL: reply record too long");
            if (have < len + 4) break;
            xid = ntohl(xid);
            if (xid == xid_free || xid == xid_null) {
                const char *bad = reply_error(buf + 4, len);
                if (bad) fail("%s: the server answered %s", xid == xid_free ? "NLM4_FREE_ALL" : "NLM4_NULL", bad);
            }
            if (xid == xid_free) got_free = 1;
            if (xid == xid_null && !got_null) got_null = 1, null_at = now_ms();
            memmove(buf, buf + len + 4, have - len - 4);
            have -= len + 4;
        }
    }
    printf("op=free_all status=SENT reply=%d ms=%.2f\n", got_free, now_ms() - t0);
    rpc_destroy_context(rpc);
    return 0;
}

static int cmd_notify(char **argv) {
    struct target t;
    parse_url(argv[0], &t);
    if (strlen(argv[1]) > NSM_MAXSTRLEN) usage("CALLER longer than 1024 bytes");
    int32_t state = parse_i32(argv[2], "STATE must be a number");
    struct rpc_context *rpc = connect_nsm(&t);
    struct call c = { .kind = K_VOID };
    NSM1_NOTIFYargs a = { .mon_name = argv[1], .state = state };
    double t0 = now_ms();
    if (rpc_nsm1_notify_async(rpc, on_reply, &a, &c) != 0) fail("SM_NOTIFY: %s", rpc_get_error(rpc));
    wait_call(rpc, &c, "SM_NOTIFY");
    printf("op=notify status=OK ms=%.2f\n", now_ms() - t0);
    rpc_destroy_context(rpc);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) usage(NULL);
    const char *cmd = argv[1];
    char **a = argv + 2;
    int n = argc - 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(cmd, "lock") && n >= 7 && n <= 10) return cmd_lock(n, a);
    if (!strcmp(cmd, "test") && n == 7) return cmd_test(a);
    if (!strcmp(cmd, "unlock") && n == 6) return cmd_unlock(a);
    if (!strcmp(cmd, "cancel") && n == 7) return cmd_cancel(a);
    if (!strcmp(cmd, "free_all") && n == 3) return cmd_free_all(a);
    if (!strcmp(cmd, "notify") && n == 3) return cmd_notify(a);
    if (!strcmp(cmd, "bench") && n == 3) return cmd_bench(a);
    if (!strcmp(cmd, "hold") && n == 8) return cmd_hold(a);
    usage("unknown command or wrong number of arguments");
    return 2;
}
