/* cgroup.c - cgroup v2 limits for one run, where a delegated cgroup v2
 * directory exists: a child cgroup per run with memory.max (swap off, the
 * whole group OOM-killed together), pids.max and optionally cpu.max; after
 * the run its OOM events, peak memory and CPU; then everything left in it is
 * killed and the directory removed.
 *
 * What it does not do: enable controllers (cgroup.subtree_control of the
 * delegated directory must already list them: the operator's step, see
 * README "Isolation"), move the worker itself, or touch any cgroup it did not
 * create. Every write goes through the fd of a directory this module made
 * with mkdirat (a name that already existed is skipped, never reused), and
 * files are opened without O_CREAT: on a directory that is not a cgroup the
 * writes fail instead of creating files.
 *
 * Where no delegated cgroup v2 exists (the parent is disabled) every call is
 * a no-op without a system call, and run.c's memory sampling and the rlimits
 * (limits.c) stay the enforcement. */
#include "sandbox/cgroup.h"

#include "sandbox/error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* rmdir of a cgroup whose last tasks are still exiting fails with EBUSY:
 * retry with growing sleeps for at most this long */
#define RMDIR_WAIT_NS (250 * 1000000ull)
/* rounds of SIGKILL to cgroup.procs where there is no cgroup.kill */
#define KILL_ROUNDS 20

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Reads file (relative to dirfd) into buf, NUL-terminated: length or -1. */
static ssize_t read_at(int dirfd, const char *file, char *buf, size_t len)
{
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t n = 0;
	while (n + 1 < len) {
		ssize_t k = read(fd, buf + n, len - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	int e = errno;
	close(fd);
	errno = e;
	buf[n] = '\0';
	return (ssize_t)n;
}

/* Writes s to an existing file (relative to dirfd): 0 or -1 (errno). */
static int write_at(int dirfd, const char *file, const char *s)
{
	int fd = openat(dirfd, file, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t len = strlen(s);
	ssize_t w = write(fd, s, len);
	int e = errno;
	close(fd);
	if (w == (ssize_t)len)
		return 0;
	errno = w < 0 ? e : EIO;
	return -1;
}

static int exists_at(int dirfd, const char *file)
{
	return faccessat(dirfd, file, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Whether the space-separated list has word w. */
static int has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *s = list; (s = strstr(s, w)); s += n)
		if ((s == list || s[-1] == ' ' || s[-1] == '\n') &&
		    (s[n] == '\0' || s[n] == ' ' || s[n] == '\n'))
			return 1;
	return 0;
}

/* Value of key in a "key value" per line file (memory.events, cpu.stat). */
static int keyed(const char *buf, const char *key, uint64_t *out)
{
	size_t n = strlen(key);
	for (const char *s = buf; s && *s;) {
		if (!strncmp(s, key, n) && s[n] == ' ') {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(s + n + 1, &end, 10);
			if (end == s + n + 1 || errno)
				return -1;
			*out = v;
			return 0;
		}
		s = strchr(s, '\n');
		if (s)
			s++;
	}
	return -1;
}

static int disable(struct sb_cgroup_parent *p, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int disable(struct sb_cgroup_parent *p, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	swerve_error_vset(code, fmt, ap);
	va_end(ap);
	if (p->dirfd >= 0)
		close(p->dirfd);
	p->dirfd = -1;
	snprintf(p->why, sizeof(p->why), "%s", swerve_error_last());
	return code;
}

void sb_cgroup_parent_disable(struct sb_cgroup_parent *p, const char *why)
{
	memset(p, 0, sizeof(*p));
	p->dirfd = -1;
	snprintf(p->why, sizeof(p->why), "%s", why && *why ? why : "cgroup v2: not in use");
}

int sb_cgroup_parent_open(struct sb_cgroup_parent *p, const char *dir, unsigned flags)
{
	char ctl[512], sub[512];
	int (*on_mkdir)(int, const char *, void *) = p->on_mkdir;
	int (*on_rmdir)(int, const char *, void *) = p->on_rmdir;
	void *hook_arg = p->hook_arg;
	sb_cgroup_parent_disable(p, NULL);
	p->on_mkdir = on_mkdir;
	p->on_rmdir = on_rmdir;
	p->hook_arg = hook_arg;
	snprintf(p->path, sizeof(p->path), "%s", dir ? dir : "");
	if (!dir || !*dir)
		return disable(p, SWERVE_EINVAL, "cgroup v2: no delegated directory given");
	p->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p->dirfd < 0)
		return disable(p, errno == ENOENT ? SWERVE_ENOTFOUND : SWERVE_EUNSUPPORTED,
		               "cgroup v2: '%s': %s", dir, strerror(errno));
	struct statfs fs;
	if (!(flags & SB_CGROUP_FAKE) &&
	    (fstatfs(p->dirfd, &fs) < 0 || fs.f_type != CGROUP2_SUPER_MAGIC))
		return disable(p, SWERVE_EUNSUPPORTED,
		               "cgroup v2: '%s' is not a cgroup v2 directory (not on cgroup2fs)",
		               dir);
	if (read_at(p->dirfd, "cgroup.controllers", ctl, sizeof(ctl)) < 0)
		return disable(p, SWERVE_EUNSUPPORTED, "cgroup v2: '%s/cgroup.controllers': %s",
		               dir, strerror(errno));
	if (read_at(p->dirfd, "cgroup.subtree_control", sub, sizeof(sub)) < 0)
		return disable(p, SWERVE_EUNSUPPORTED, "cgroup v2: '%s/cgroup.subtree_control': %s",
		               dir, strerror(errno));
	const char *need[] = {"memory", "pids", "cpu"};
	size_t n_need = flags & SB_CGROUP_NEED_CPU ? 3 : 2;
	for (size_t i = 0; i < n_need; i++) {
		if (!has_word(ctl, need[i]))
			return disable(
			        p, SWERVE_EUNSUPPORTED,
			        "cgroup v2: controller '%s' missing in '%s/cgroup.controllers' "
			        "(a cgroup v1 or hybrid host, or not delegated: boot with "
			        "systemd.unified_cgroup_hierarchy=1, run under Delegate=yes)",
			        need[i], dir);
		if (!has_word(sub, need[i]))
			return disable(p, SWERVE_EUNSUPPORTED,
			               "cgroup v2: controller '%s' not enabled in "
			               "'%s/cgroup.subtree_control' (move the worker to a leaf "
			               "cgroup, then echo '+memory +pids +cpu' > that file)",
			               need[i], dir);
	}
	p->have_cpu = has_word(sub, "cpu");
	if (faccessat(p->dirfd, ".", W_OK, AT_EACCESS) < 0 ||
	    faccessat(p->dirfd, "cgroup.procs", W_OK, AT_EACCESS) < 0)
		return disable(p, SWERVE_EUNSUPPORTED,
		               "cgroup v2: '%s' is not delegated to us (%s; run under "
		               "systemd-run -p Delegate=yes or a unit with Delegate=yes)",
		               dir, strerror(errno));
	p->why[0] = '\0';
	return 0;
}

void sb_cgroup_parent_close(struct sb_cgroup_parent *p)
{
	if (p->dirfd >= 0)
		close(p->dirfd);
	p->dirfd = -1;
}

static void num_or_max(char *buf, size_t len, uint64_t v)
{
	if (v == UINT64_MAX)
		snprintf(buf, len, "max");
	else
		snprintf(buf, len, "%" PRIu64, v);
}

static int remove_dir(struct sb_cgroup_parent *p, const char *name)
{
	if (p->on_rmdir)
		return p->on_rmdir(p->dirfd, name, p->hook_arg);
	return unlinkat(p->dirfd, name, AT_REMOVEDIR);
}

int sb_cgroup_create(struct sb_cgroup *cg, struct sb_cgroup_parent *p,
                     const struct sb_cgroup_limits *l)
{
	memset(cg, 0, sizeof(*cg));
	cg->dirfd = -1;
	cg->parent = p;
	if (p->dirfd < 0)
		return 0;
	if (l->cpu_quota_us && !p->have_cpu)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "cgroup v2: a CPU quota needs 'cpu' in "
		                        "'%s/cgroup.subtree_control'",
		                        p->path);
	int made = 0;
	for (int tries = 0; tries < 64 && !made; tries++) {
		snprintf(cg->name, sizeof(cg->name), "swerve-%d-%lu", (int)getpid(), p->counter++);
		if (mkdirat(p->dirfd, cg->name, 0755) == 0)
			made = 1;
		else if (errno != EEXIST) /* an existing name is not ours: skip it */
			return swerve_error_set(
			        errno == EACCES || errno == EPERM ? SWERVE_EUNSUPPORTED
			                                          : SWERVE_ERROR,
			        "cgroup v2: mkdir '%s/%s': %s", p->path, cg->name, strerror(errno));
	}
	if (!made)
		return swerve_error_set(SWERVE_EEXIST, "cgroup v2: '%s/%s': 64 names taken",
		                        p->path, cg->name);
	const char *file = "";
	int rc = SWERVE_ERROR;
	if (p->on_mkdir && p->on_mkdir(p->dirfd, cg->name, p->hook_arg) < 0) {
		file = "(test hook)";
		goto fail;
	}
	cg->dirfd = openat(p->dirfd, cg->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (cg->dirfd < 0) {
		file = ".";
		goto fail;
	}
	char v[64];
	cg->memory_max = l->memory_bytes;
	num_or_max(v, sizeof(v), l->memory_bytes);
	if (write_at(cg->dirfd, file = "memory.max", v) < 0)
		goto fail;
	/* swap would let a run exceed memory.max unseen; one OOM ends the run */
	if (exists_at(cg->dirfd, "memory.swap.max") &&
	    write_at(cg->dirfd, file = "memory.swap.max", "0") < 0)
		goto fail;
	if (exists_at(cg->dirfd, "memory.oom.group") &&
	    write_at(cg->dirfd, file = "memory.oom.group", "1") < 0)
		goto fail;
	num_or_max(v, sizeof(v), l->pids);
	if (write_at(cg->dirfd, file = "pids.max", v) < 0)
		goto fail;
	if (l->cpu_quota_us) {
		snprintf(v, sizeof(v), "%" PRIu64 " %" PRIu64, l->cpu_quota_us,
		         l->cpu_period_us ? l->cpu_period_us : 100000);
		if (write_at(cg->dirfd, file = "cpu.max", v) < 0)
			goto fail;
	}
	return 0;
fail:;
	int e = errno;
	rc = swerve_error_set(e == ENOENT ? SWERVE_EUNSUPPORTED : SWERVE_ERROR,
	                      "cgroup v2: '%s/%s/%s': %s", p->path, cg->name, file, strerror(e));
	if (cg->dirfd >= 0)
		close(cg->dirfd);
	cg->dirfd = -1;
	remove_dir(p, cg->name);
	return rc;
}

int sb_cgroup_attach(struct sb_cgroup *cg, pid_t pid)
{
	if (cg->dirfd < 0)
		return 0;
	char v[32];
	snprintf(v, sizeof(v), "%d", (int)pid);
	if (write_at(cg->dirfd, "cgroup.procs", v) < 0)
		return swerve_error_set(SWERVE_ERROR, "cgroup v2: moving %d into '%s/%s': %s",
		                        (int)pid, cg->parent->path, cg->name, strerror(errno));
	return 0;
}

int sb_cgroup_read(struct sb_cgroup_stats *out, const struct sb_cgroup *cg)
{
	char buf[1024];
	memset(out, 0, sizeof(*out));
	if (cg->dirfd < 0)
		return 0;
	if (read_at(cg->dirfd, "memory.peak", buf, sizeof(buf)) > 0) {
		char *end;
		unsigned long long v = strtoull(buf, &end, 10);
		if (end != buf) {
			out->peak_bytes = v;
			out->have_peak = 1;
		}
	}
	if (read_at(cg->dirfd, "cpu.stat", buf, sizeof(buf)) > 0)
		out->have_cpu = keyed(buf, "usage_usec", &out->usage_usec) == 0;
	if (read_at(cg->dirfd, "pids.events", buf, sizeof(buf)) > 0)
		out->have_pids = keyed(buf, "max", &out->pids_max) == 0;
	if (read_at(cg->dirfd, "memory.events", buf, sizeof(buf)) < 0)
		return swerve_error_set(SWERVE_ENOTFOUND, "cgroup v2: '%s/%s/memory.events': %s",
		                        cg->parent->path, cg->name, strerror(errno));
	keyed(buf, "oom", &out->oom);
	keyed(buf, "max", &out->mem_max);
	out->have_events = keyed(buf, "oom_kill", &out->oom_kill) == 0;
	return 0;
}

int sb_cgroup_verdict(char *note, size_t len, const struct sb_cgroup *cg,
                      const struct sb_cgroup_stats *st)
{
	if (cg->dirfd < 0 || !st->oom_kill)
		return 0;
	snprintf(note, len, "memory limit %" PRIu64 " bytes (cgroup)", cg->memory_max);
	return 1;
}

/* SIGKILL to every pid listed in cgroup.procs, a few rounds (new forks may
 * appear between reading and killing), until none is left to signal. */
static void kill_listed(int dirfd)
{
	char buf[8192];
	for (int round = 0; round < KILL_ROUNDS; round++) {
		if (read_at(dirfd, "cgroup.procs", buf, sizeof(buf)) <= 0)
			return;
		int live = 0;
		for (char *s = buf; *s;) {
			char *end;
			long pid = strtol(s, &end, 10);
			if (end == s)
				break;
			if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
				live++;
			s = end;
		}
		if (!live)
			return;
		nap_us(1000);
	}
}

int sb_cgroup_destroy(struct sb_cgroup *cg)
{
	if (cg->dirfd < 0)
		return 0;
	struct sb_cgroup_parent *p = cg->parent;
	if (!(exists_at(cg->dirfd, "cgroup.kill") && write_at(cg->dirfd, "cgroup.kill", "1") == 0))
		kill_listed(cg->dirfd);
	close(cg->dirfd);
	cg->dirfd = -1;
	uint64_t end = now_ns() + RMDIR_WAIT_NS;
	long sleep_us = 100;
	for (;;) {
		if (remove_dir(p, cg->name) == 0 || errno == ENOENT)
			return 0;
		int e = errno;
		if (e != EBUSY && e != EINTR)
			return swerve_error_set(SWERVE_ERROR, "cgroup v2: rmdir '%s/%s': %s",
			                        p->path, cg->name, strerror(e));
		if (now_ns() >= end)
			return swerve_error_set(
			        SWERVE_EBUSY,
			        "cgroup v2: rmdir '%s/%s': still busy after %llu ms "
			        "(left in place)",
			        p->path, cg->name, RMDIR_WAIT_NS / 1000000ull);
		nap_us(sleep_us);
		if (sleep_us < 20000)
			sleep_us *= 2;
	}
}
