/*
 * locker: one lock owner, driven line by line, for lock tests in the QEMU
 * guest (scripts/guest.sh locks). Built static into its initramfs
 * (gcc -static -O2 -o locker locker.c); runs anywhere else as well.
 *
 *   locker NAME
 *
 * Reads one command a line from stdin and prints one result line per
 * command on stdout, flushed, each beginning with NAME. T is the time the
 * call took, in whole milliseconds (monotonic clock). START and LEN are
 * byte offsets; LEN 0 means "to the end of the file", as in fcntl(2).
 *
 *   open PATH               open(O_RDWR|O_CREAT, 0666); closes the file
 *                           open before, if any (which drops its locks)
 *                             -> NAME ok ms=T
 *   lock r|w START LEN      fcntl(F_SETLK): a POSIX lock, no waiting
 *                             -> NAME granted ms=T
 *                             -> NAME denied ms=T       (EAGAIN, EACCES)
 *   lockw r|w START LEN     fcntl(F_SETLKW): waits for the lock
 *                             -> NAME waiting           (at once)
 *                             -> NAME granted ms=T      (when it returns)
 *   unlock START LEN        fcntl(F_SETLK, F_UNLCK)  -> NAME ok ms=T
 *   test r|w START LEN      fcntl(F_GETLK)
 *                             -> NAME free
 *                             -> NAME held type=r|w start=S len=L pid=P
 *   flock sh|ex [nb]        flock(2) LOCK_SH or LOCK_EX; with nb
 *                           LOCK_NB, result lines as for lock; without,
 *                           as for lockw (waiting, then granted)
 *   flock un                flock(LOCK_UN)           -> NAME ok ms=T
 *   close                   close(2)                 -> NAME ok ms=T
 *
 * And for NFSv4.2's operations on contents, on the open file:
 *   seek data|hole START    lseek(SEEK_DATA or SEEK_HOLE)
 *                             -> NAME at=OFFSET ms=T
 *   alloc START LEN         fallocate(0)             -> NAME ok ms=T
 *   punch START LEN         fallocate(PUNCH_HOLE|KEEP_SIZE) -> NAME ok ms=T
 *   copyto PATH LEN         copy_file_range of LEN bytes from offset 0 to
 *                           offset 0 of PATH (opened O_RDWR|O_CREAT)
 *                             -> NAME copied=N ms=T
 *
 * And what an application sees of a move or a failover:
 *   probe PATH SECONDS      for SECONDS, every 20 ms, write 4 KiB to PATH,
 *                           fsync, read back, compare (its own descriptor)
 *                             -> NAME probed round_trips=N errors=E
 *                                max_gap_ms=G (longest time between two
 *                                round trips that succeeded)
 *                                worst_ms=G1,G2,G3,G4,G5 (the five longest,
 *                                longest first: one stall of an emulated
 *                                CPU is not a pattern, twenty moves are)
 *
 * Any call that fails otherwise prints NAME error ERRNO-TEXT ms=T (a
 * waiting call prints it after its "waiting" line); a line it cannot parse
 * prints NAME error bad command: LINE. End of input ends the program.
 *
 * A process is one lock owner (POSIX locks belong to the process, flock
 * locks to the open file), so two lockers on one file contend as two
 * applications would. A waiting lockw or flock blocks this process only:
 * the commands after it are read when it returns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static const char *name;
static int fd = -1;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	printf("%s ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* The result of a call that may be denied: ok_word on success. */
static void result(int rc, int err, long long t0, const char *ok_word, int may_deny)
{
	long long ms = now_ms() - t0;
	if (rc == 0)
		say("%s ms=%lld", ok_word, ms);
	else if (may_deny && (err == EAGAIN || err == EACCES || err == EWOULDBLOCK))
		say("denied ms=%lld", ms);
	else
		say("error %s ms=%lld", strerror(err), ms);
}

/* "r" or "w" -> F_RDLCK or F_WRLCK; -1 otherwise. */
static int lock_type(const char *s)
{
	if (strcmp(s, "r") == 0)
		return F_RDLCK;
	if (strcmp(s, "w") == 0)
		return F_WRLCK;
	return -1;
}

/* A decimal offset, whole string, not negative. */
static int offset(const char *s, off_t *out)
{
	char *end;
	long long v;
	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0)
		return -1;
	*out = (off_t)v;
	return 0;
}

static int do_line(char *line)
{
	char *words[5] = {0};
	int n = 0;
	char *save = NULL, *w;
	for (w = strtok_r(line, " \t", &save); w != NULL && n < 5; w = strtok_r(NULL, " \t", &save))
		words[n++] = w;
	if (n == 0)
		return 0;
	const char *cmd = words[0];
	long long t0;
	int rc;

	if (strcmp(cmd, "open") == 0 && n == 2) {
		if (fd >= 0)
			close(fd);
		t0 = now_ms();
		fd = open(words[1], O_RDWR | O_CREAT, 0666);
		result(fd >= 0 ? 0 : -1, errno, t0, "ok", 0);
		return 0;
	}
	if (strcmp(cmd, "close") == 0 && n == 1) {
		t0 = now_ms();
		rc = close(fd);
		int err = errno;
		fd = -1;
		result(rc, err, t0, "ok", 0);
		return 0;
	}
	if ((strcmp(cmd, "lock") == 0 || strcmp(cmd, "lockw") == 0 || strcmp(cmd, "test") == 0) && n == 4) {
		struct flock fl = {0};
		int type = lock_type(words[1]);
		if (type < 0 || offset(words[2], &fl.l_start) < 0 || offset(words[3], &fl.l_len) < 0)
			return -1;
		fl.l_type = (short)type;
		fl.l_whence = SEEK_SET;
		if (strcmp(cmd, "test") == 0) {
			t0 = now_ms();
			rc = fcntl(fd, F_GETLK, &fl);
			if (rc < 0)
				result(rc, errno, t0, "", 0);
			else if (fl.l_type == F_UNLCK)
				say("free");
			else
				say("held type=%s start=%lld len=%lld pid=%ld", fl.l_type == F_RDLCK ? "r" : "w",
				    (long long)fl.l_start, (long long)fl.l_len, (long)fl.l_pid);
			return 0;
		}
		int wait = strcmp(cmd, "lockw") == 0;
		if (wait)
			say("waiting");
		t0 = now_ms();
		rc = fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl);
		result(rc, errno, t0, "granted", !wait);
		return 0;
	}
	if (strcmp(cmd, "unlock") == 0 && n == 3) {
		struct flock fl = {0};
		if (offset(words[1], &fl.l_start) < 0 || offset(words[2], &fl.l_len) < 0)
			return -1;
		fl.l_type = F_UNLCK;
		fl.l_whence = SEEK_SET;
		t0 = now_ms();
		rc = fcntl(fd, F_SETLK, &fl);
		result(rc, errno, t0, "ok", 0);
		return 0;
	}
	if (strcmp(cmd, "flock") == 0 && (n == 2 || n == 3)) {
		int op;
		if (strcmp(words[1], "sh") == 0)
			op = LOCK_SH;
		else if (strcmp(words[1], "ex") == 0)
			op = LOCK_EX;
		else if (strcmp(words[1], "un") == 0 && n == 2)
			op = LOCK_UN;
		else
			return -1;
		if (n == 3) {
			if (strcmp(words[2], "nb") != 0)
				return -1;
			op |= LOCK_NB;
		}
		int wait = op == LOCK_SH || op == LOCK_EX;
		if (wait)
			say("waiting");
		t0 = now_ms();
		rc = flock(fd, op);
		result(rc, errno, t0, op == LOCK_UN ? "ok" : "granted", (op & LOCK_NB) != 0);
		return 0;
	}
	if (strcmp(cmd, "seek") == 0 && n == 3) {
		off_t start;
		int whence = strcmp(words[1], "data") == 0 ? SEEK_DATA : strcmp(words[1], "hole") == 0 ? SEEK_HOLE : -1;
		if (whence < 0 || offset(words[2], &start) < 0)
			return -1;
		t0 = now_ms();
		off_t at = lseek(fd, start, whence);
		if (at < 0)
			result(-1, errno, t0, "", 0);
		else
			say("at=%lld ms=%lld", (long long)at, now_ms() - t0);
		return 0;
	}
	if ((strcmp(cmd, "alloc") == 0 || strcmp(cmd, "punch") == 0) && n == 3) {
		off_t start, len;
		if (offset(words[1], &start) < 0 || offset(words[2], &len) < 0)
			return -1;
		int mode = strcmp(cmd, "punch") == 0 ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : 0;
		t0 = now_ms();
		rc = fallocate(fd, mode, start, len);
		result(rc, errno, t0, "ok", 0);
		return 0;
	}
	if (strcmp(cmd, "probe") == 0 && n == 3) {
		/* For SECONDS, every 20 ms: write 4 KiB to PATH, fsync, read it
		 * back, compare; the longest time between two round trips that
		 * succeeded (what an application sees of a move). */
		off_t seconds;
		if (offset(words[2], &seconds) < 0)
			return -1;
		int p = open(words[1], O_RDWR | O_CREAT, 0666);
		if (p < 0) {
			result(-1, errno, now_ms(), "", 0);
			return 0;
		}
		char out[4096], in[4096];
		long long start = now_ms(), last = start, max_gap = 0, trips = 0, errors = 0;
		long long worst[5] = {0, 0, 0, 0, 0};
		while (now_ms() - start < (long long)seconds * 1000) {
			memset(out, (int)('a' + trips % 26), sizeof out);
			int ok = pwrite(p, out, sizeof out, 0) == (ssize_t)sizeof out && fsync(p) == 0 &&
				 pread(p, in, sizeof in, 0) == (ssize_t)sizeof in && memcmp(in, out, sizeof in) == 0;
			long long t = now_ms();
			if (ok) {
				long long gap = t - last;
				if (gap > max_gap)
					max_gap = gap;
				for (int w = 0; w < 5; w++) {
					if (gap > worst[w]) {
						for (int k = 4; k > w; k--)
							worst[k] = worst[k - 1];
						worst[w] = gap;
						break;
					}
				}
				last = t;
				trips++;
			} else {
				errors++;
			}
			usleep(20000);
		}
		close(p);
		say("probed round_trips=%lld errors=%lld max_gap_ms=%lld worst_ms=%lld,%lld,%lld,%lld,%lld", trips,
		    errors, max_gap, worst[0], worst[1], worst[2], worst[3], worst[4]);
		return 0;
	}
	if (strcmp(cmd, "copyto") == 0 && n == 3) {
		off_t len;
		if (offset(words[2], &len) < 0)
			return -1;
		t0 = now_ms();
		int to = open(words[1], O_RDWR | O_CREAT, 0666);
		if (to < 0) {
			result(-1, errno, t0, "", 0);
			return 0;
		}
		loff_t in = 0, out = 0;
		long long copied = 0;
		while (copied < (long long)len) {
			ssize_t got = copy_file_range(fd, &in, to, &out, (size_t)(len - copied), 0);
			if (got <= 0) {
				if (got < 0)
					copied = -errno;
				break;
			}
			copied += got;
		}
		close(to);
		if (copied < 0)
			result(-1, (int)-copied, t0, "", 0);
		else
			say("copied=%lld ms=%lld", copied, now_ms() - t0);
		return 0;
	}
	return -1;
}

int main(int argc, char **argv)
{
	char line[4096];
	if (argc != 2) {
		fprintf(stderr, "usage: locker NAME  (commands on stdin)\n");
		return 2;
	}
	name = argv[1];
	while (fgets(line, sizeof line, stdin) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		char copy[sizeof line];
		memcpy(copy, line, sizeof line);
		if (do_line(line) < 0)
			say("error bad command: %s", copy);
	}
	return 0;
}
