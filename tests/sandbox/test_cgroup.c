/* test_cgroup.c - sandbox/cgroup.c against a fake cgroup tree (plain files
 * named like the kernel's in a temp dir; a hook plays the kernel's part at
 * mkdir and rmdir): the run's child cgroup and its limit files, the OOM
 * verdict, accounting, cleanup that never touches the parent's files, and
 * the refusals (missing controller, not enabled in subtree_control, not
 * writable, not cgroupfs, rmdir busy). On the real host: the cgroup v2
 * hierarchy is refused when not delegated, and the sandbox still runs. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/cgroup.h"
#include "sandbox/internal.h"
#include "sandbox/sandbox.h"
#include "tests/support/sandbox_support.h"
#include "tests/support/support.h"

/* ---- the fake tree ------------------------------------------------------- */

struct fake {
	char *root;         /* the "delegated" directory */
	int no_swap;        /* the kernel has no memory.swap.max (CONFIG_SWAP off) */
	int no_kill;        /* no cgroup.kill (Linux < 5.14) */
	int no_files;       /* the "kernel" creates nothing at all */
	int busy;           /* rmdir fails with EBUSY this many times (-1: always) */
	int rmdirs;         /* rmdir calls seen */
	char kill_seen[16]; /* cgroup.kill content at rmdir time */
	char child[128];    /* the last child's name */
	const char *events; /* memory.events the "kernel" reports (NULL: quiet) */
	const char *cpu;    /* cpu.stat likewise */
	char seen[256];     /* memory.max|pids.max|cgroup.procs at rmdir time */
};

static void put(const char *dir, const char *name, const char *content)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(ts_write_file(path, content, strlen(content)), 0, "%s", path);
}

static char *get(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return ts_read_file(path, NULL);
}

static int kernel_mkdir(int parent_fd, const char *name, void *arg)
{
	(void)parent_fd;
	struct fake *f = arg;
	char dir[1024];
	snprintf(f->child, sizeof(f->child), "%s", name);
	snprintf(dir, sizeof(dir), "%s/%s", f->root, name);
	if (f->no_files)
		return 0;
	put(dir, "cgroup.controllers", "memory pids cpu\n");
	put(dir, "cgroup.subtree_control", "");
	put(dir, "cgroup.procs", "");
	put(dir, "cgroup.events", "populated 0\nfrozen 0\n");
	if (!f->no_kill)
		put(dir, "cgroup.kill", "");
	put(dir, "memory.max", "max\n");
	if (!f->no_swap)
		put(dir, "memory.swap.max", "max\n");
	put(dir, "memory.oom.group", "0\n");
	put(dir, "memory.events",
	    f->events ? f->events : "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
	put(dir, "memory.peak", "0\n");
	put(dir, "pids.max", "max\n");
	put(dir, "pids.events", "max 0\n");
	put(dir, "cpu.max", "max 100000\n");
	put(dir, "cpu.stat", f->cpu ? f->cpu : "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
	return 0;
}

/* cgroupfs removes a cgroup with its interface files in one rmdir */
static int kernel_rmdir(int parent_fd, const char *name, void *arg)
{
	(void)parent_fd;
	struct fake *f = arg;
	char dir[1024];
	f->rmdirs++;
	snprintf(dir, sizeof(dir), "%s/%s", f->root, name);
	char *k = get(dir, "cgroup.kill");
	snprintf(f->kill_seen, sizeof(f->kill_seen), "%s", k ? k : "(none)");
	free(k);
	char *m = get(dir, "memory.max"), *pm = get(dir, "pids.max"),
	     *pr = get(dir, "cgroup.procs");
	snprintf(f->seen, sizeof(f->seen), "%s|%s|%s", m ? m : "", pm ? pm : "", pr ? pr : "");
	free(m);
	free(pm);
	free(pr);
	if (f->busy) {
		if (f->busy > 0)
			f->busy--;
		errno = EBUSY;
		return -1;
	}
	struct stat st;
	if (stat(dir, &st) < 0)
		return -1; /* errno ENOENT */
	ts_rmtree(dir);
	return 0;
}

static const char *parent_files[] = {"cgroup.controllers", "cgroup.subtree_control",
                                     "cgroup.procs",       "memory.max",
                                     "pids.max",           "cgroup.kill"};
#define N_PARENT_FILES (sizeof(parent_files) / sizeof(parent_files[0]))

static void fake_init(struct fake *f, const char *controllers, const char *subtree)
{
	memset(f, 0, sizeof(*f));
	f->root = ts_mkdtemp();
	put(f->root, "cgroup.controllers", controllers);
	put(f->root, "cgroup.subtree_control", subtree);
	put(f->root, "cgroup.procs", "4242\n");
	put(f->root, "memory.max", "max\n");
	put(f->root, "pids.max", "max\n");
	put(f->root, "cgroup.kill", "");
}

/* the parent's files, joined, to compare before and after */
static char *snapshot(const struct fake *f)
{
	size_t cap = 8192, n = 0;
	char *s = calloc(1, cap);
	for (size_t i = 0; i < N_PARENT_FILES; i++) {
		char *c = get(f->root, parent_files[i]);
		n += (size_t)snprintf(s + n, cap - n, "%s=%s|", parent_files[i], c ? c : "(gone)");
		free(c);
	}
	DIR *d = opendir(f->root);
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n += (size_t)snprintf(s + n, cap - n, "+%s", de->d_name);
	closedir(d);
	return s;
}

static void open_fake(struct sb_cgroup_parent *p, struct fake *f)
{
	memset(p, 0, sizeof(*p));
	p->on_mkdir = kernel_mkdir;
	p->on_rmdir = kernel_rmdir;
	p->hook_arg = f;
	cr_assert_eq(sb_cgroup_parent_open(p, f->root, SB_CGROUP_FAKE), 0, "%s",
	             swerve_error_last());
	cr_assert(sb_cgroup_enabled(p));
	cr_assert_str_eq(p->why, "");
}

static void assert_file(const char *dir, const char *name, const char *want)
{
	char *c = get(dir, name);
	cr_assert(c, "%s/%s missing", dir, name);
	cr_assert_str_eq(c, want, "%s: '%s', want '%s'", name, c, want);
	free(c);
}

static int dir_exists(const char *root, const char *name)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", root, name);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- the run's cgroup ------------------------------------------------------ */

Test(cgroup, create_writes_the_limit_files_and_destroy_removes_only_the_child)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, "cpuset cpu io memory hugetlb pids rdma\n", "cpu memory pids\n");
	char *before = snapshot(&f);
	open_fake(&p, &f);
	cr_assert(p.have_cpu);
	struct sb_cgroup_limits l = {.memory_bytes = 1073741824,
	                             .pids = 512,
	                             .cpu_quota_us = 50000,
	                             .cpu_period_us = 100000};
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	cr_assert_geq(cg.dirfd, 0);
	char want[64], dir[1024];
	snprintf(want, sizeof(want), "swerve-%d-0", (int)getpid());
	cr_assert_str_eq(cg.name, want);
	cr_assert_str_eq(f.child, want);
	snprintf(dir, sizeof(dir), "%s/%s", f.root, cg.name);
	assert_file(dir, "memory.max", "1073741824");
	assert_file(dir, "memory.swap.max", "0");
	assert_file(dir, "memory.oom.group", "1");
	assert_file(dir, "pids.max", "512");
	assert_file(dir, "cpu.max", "50000 100000");
	assert_file(dir, "cgroup.procs", ""); /* attach not called */

	cr_assert_eq(sb_cgroup_attach(&cg, 4321), 0, "%s", swerve_error_last());
	assert_file(dir, "cgroup.procs", "4321");

	cr_assert_eq(sb_cgroup_destroy(&cg), 0, "%s", swerve_error_last());
	cr_assert_eq(cg.dirfd, -1);
	cr_assert_str_eq(f.kill_seen, "1", "cgroup.kill written before rmdir");
	cr_assert_not(dir_exists(f.root, want));
	/* a second run gets a fresh name */
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	snprintf(want, sizeof(want), "swerve-%d-1", (int)getpid());
	cr_assert_str_eq(cg.name, want);
	cr_assert_eq(sb_cgroup_destroy(&cg), 0, "%s", swerve_error_last());
	sb_cgroup_parent_close(&p);

	char *after = snapshot(&f);
	cr_assert_str_eq(after, before, "the parent's files changed");
	free(before);
	free(after);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, unlimited_is_max_and_optional_files_are_never_created)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, "memory pids\n", "memory pids\n");
	f.no_swap = 1;
	open_fake(&p, &f);
	cr_assert_not(p.have_cpu);
	struct sb_cgroup_limits l = {.memory_bytes = UINT64_MAX, .pids = UINT64_MAX};
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/%s", f.root, cg.name);
	assert_file(dir, "memory.max", "max");
	assert_file(dir, "pids.max", "max");
	assert_file(dir, "cpu.max", "max 100000\n"); /* no quota asked: untouched */
	char *swap = get(dir, "memory.swap.max");
	cr_assert_null(swap, "memory.swap.max created where the kernel had none");
	cr_assert_eq(sb_cgroup_destroy(&cg), 0);

	/* a CPU quota where cpu is not enabled: refused, nothing left behind */
	l.cpu_quota_us = 10000;
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), SWERVE_EUNSUPPORTED);
	cr_assert(strstr(swerve_error_last(), "cgroup.subtree_control"), "%s", swerve_error_last());
	cr_assert_eq(cg.dirfd, -1);
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, oom_kill_gives_ml_and_accounting_is_parsed)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	struct sb_cgroup_stats st;
	char note[160] = "";
	fake_init(&f, "cpu memory pids\n", "cpu memory pids\n");
	open_fake(&p, &f);
	struct sb_cgroup_limits l = {.memory_bytes = 1073741824, .pids = 64};
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	char dir[1024];
	snprintf(dir, sizeof(dir), "%s/%s", f.root, cg.name);

	/* a run that stayed under the limit */
	cr_assert_eq(sb_cgroup_read(&st, &cg), 0, "%s", swerve_error_last());
	cr_assert(st.have_events && st.have_peak && st.have_cpu && st.have_pids);
	cr_assert_eq(st.oom_kill, 0);
	cr_assert_eq(sb_cgroup_verdict(note, sizeof(note), &cg, &st), 0);
	cr_assert_str_eq(note, "");

	/* the kernel's files after an OOM kill */
	put(dir, "memory.events", "low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 1\n");
	put(dir, "memory.peak", "1073741824\n");
	put(dir, "cpu.stat",
	    "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n"
	    "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n");
	put(dir, "pids.events", "max 3\n");
	cr_assert_eq(sb_cgroup_read(&st, &cg), 0, "%s", swerve_error_last());
	cr_assert_eq(st.oom_kill, 1);
	cr_assert_eq(st.oom, 2);
	cr_assert_eq(st.mem_max, 17);
	cr_assert_eq(st.peak_bytes, 1073741824ull);
	cr_assert_eq(st.usage_usec, 1234567ull);
	cr_assert_eq(st.pids_max, 3);
	cr_assert_eq(sb_cgroup_verdict(note, sizeof(note), &cg, &st), 1);
	cr_assert_str_eq(note, "memory limit 1073741824 bytes (cgroup)");

	/* oom_group_kill alone is not read as oom_kill, and a missing
	 * memory.events is an error, not a silent OK */
	put(dir, "memory.events", "oom_group_kill 1\noom_kill 0\n");
	cr_assert_eq(sb_cgroup_read(&st, &cg), 0);
	cr_assert_eq(st.oom_kill, 0);
	char path[1100];
	snprintf(path, sizeof(path), "%s/memory.events", dir);
	unlink(path);
	cr_assert_eq(sb_cgroup_read(&st, &cg), SWERVE_ENOTFOUND);
	cr_assert(strstr(swerve_error_last(), "memory.events"), "%s", swerve_error_last());
	cr_assert_eq(st.peak_bytes, 1073741824ull, "what could be read is filled");

	cr_assert_eq(sb_cgroup_destroy(&cg), 0);
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, without_cgroup_kill_every_listed_process_gets_sigkill)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, "memory pids\n", "memory pids\n");
	f.no_kill = 1;
	open_fake(&p, &f);
	struct sb_cgroup_limits l = {.memory_bytes = 1 << 30, .pids = 64};
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	pid_t kid = fork();
	if (kid == 0) {
		pause();
		_exit(0);
	}
	char dir[1024], pids[32];
	snprintf(dir, sizeof(dir), "%s/%s", f.root, cg.name);
	snprintf(pids, sizeof(pids), "%d\n", (int)kid);
	put(dir, "cgroup.procs", pids);
	cr_assert_eq(sb_cgroup_destroy(&cg), 0, "%s", swerve_error_last());
	int st = 0;
	cr_assert_eq(waitpid(kid, &st, 0), kid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status 0x%x", st);
	cr_assert_str_eq(f.kill_seen, "(none)");
	cr_assert_not(dir_exists(f.root, f.child));
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, rmdir_busy_is_retried_then_reported)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, "memory pids\n", "memory pids\n");
	open_fake(&p, &f);
	struct sb_cgroup_limits l = {.memory_bytes = 1 << 30, .pids = 64};

	/* busy a few times (the last tasks still exiting): retried, removed */
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	f.busy = 3;
	f.rmdirs = 0;
	cr_assert_eq(sb_cgroup_destroy(&cg), 0, "%s", swerve_error_last());
	cr_assert_eq(f.rmdirs, 4);
	cr_assert_not(dir_exists(f.root, f.child));

	/* busy for good: SWERVE_EBUSY within the bound, left in place */
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	f.busy = -1;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	cr_assert_eq(sb_cgroup_destroy(&cg), SWERVE_EBUSY);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	cr_assert_lt(ms, 1000.0, "gave up after %.0f ms", ms);
	cr_assert_gt(f.rmdirs, 2);
	cr_assert(strstr(swerve_error_last(), "still busy"), "%s", swerve_error_last());
	cr_assert(strstr(swerve_error_last(), f.child), "%s", swerve_error_last());
	cr_assert(dir_exists(f.root, f.child));
	cr_assert_eq(cg.dirfd, -1);
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, an_existing_name_is_skipped_never_reused)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, "memory pids\n", "memory pids\n");
	char theirs[1024], name[64];
	snprintf(name, sizeof(name), "swerve-%d-0", (int)getpid());
	snprintf(theirs, sizeof(theirs), "%s/%s", f.root, name);
	put(theirs, "memory.max", "12345\n");
	open_fake(&p, &f);
	struct sb_cgroup_limits l = {.memory_bytes = 1 << 30, .pids = 64};
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0, "%s", swerve_error_last());
	cr_assert_str_neq(cg.name, name);
	assert_file(theirs, "memory.max", "12345\n");
	cr_assert_eq(sb_cgroup_destroy(&cg), 0);
	assert_file(theirs, "memory.max", "12345\n");
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, a_plain_directory_gets_no_files_and_is_removed_again)
{
	/* no kernel behind it: the limit files do not exist, and the module
	 * never creates them (no O_CREAT) */
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, "memory pids\n", "memory pids\n");
	f.no_files = 1;
	char *before = snapshot(&f);
	open_fake(&p, &f);
	p.on_rmdir = NULL; /* a real rmdir of the (empty) directory */
	struct sb_cgroup_limits l = {.memory_bytes = 1 << 30, .pids = 64};
	int rc = sb_cgroup_create(&cg, &p, &l);
	cr_assert_eq(rc, SWERVE_EUNSUPPORTED, "rc %d: %s", rc, swerve_error_last());
	cr_assert(strstr(swerve_error_last(), "memory.max"), "%s", swerve_error_last());
	cr_assert_eq(cg.dirfd, -1);
	cr_assert_not(dir_exists(f.root, f.child), "the failed child was not removed");
	char *after = snapshot(&f);
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

/* ---- refusals -------------------------------------------------------------- */

static void assert_refused(const char *controllers, const char *subtree, unsigned flags,
                           const char *want_in_msg)
{
	struct fake f;
	struct sb_cgroup_parent p;
	struct sb_cgroup cg;
	fake_init(&f, controllers, subtree);
	char *before = snapshot(&f);
	memset(&p, 0, sizeof(p));
	p.on_mkdir = kernel_mkdir;
	p.hook_arg = &f;
	int rc = sb_cgroup_parent_open(&p, f.root, SB_CGROUP_FAKE | flags);
	cr_assert_eq(rc, SWERVE_EUNSUPPORTED, "rc %d", rc);
	cr_assert(strstr(swerve_error_last(), want_in_msg), "'%s' lacks '%s'", swerve_error_last(),
	          want_in_msg);
	cr_assert_not(sb_cgroup_enabled(&p));
	cr_assert_str_eq(p.why, swerve_error_last());
	/* disabled: every call is a no-op */
	struct sb_cgroup_limits l = {.memory_bytes = 1 << 30, .pids = 64};
	cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0);
	cr_assert_eq(cg.dirfd, -1);
	cr_assert_eq(sb_cgroup_attach(&cg, getpid()), 0);
	struct sb_cgroup_stats st;
	cr_assert_eq(sb_cgroup_read(&st, &cg), 0);
	cr_assert_eq(st.have_events, 0);
	cr_assert_eq(sb_cgroup_destroy(&cg), 0);
	cr_assert_str_eq(f.child, "", "a child was made");
	char *after = snapshot(&f);
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
	sb_cgroup_parent_close(&p);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, missing_controller_is_refused)
{
	assert_refused("cpu io pids\n", "cpu io pids\n", 0, "controller 'memory' missing in");
	assert_refused("memory\n", "memory\n", 0, "controller 'pids' missing");
	/* "memory" must be a word, not a prefix of another controller */
	assert_refused("memoryx pids\n", "memoryx pids\n", 0, "'memory' missing");
	assert_refused("memory pids\n", "memory pids\n", SB_CGROUP_NEED_CPU,
	               "controller 'cpu' missing");
}

Test(cgroup, controllers_not_enabled_in_subtree_control_are_refused)
{
	assert_refused("memory pids cpu\n", "", 0, "'memory' not enabled in");
	assert_refused("memory pids cpu\n", "memory\n", 0, "'pids' not enabled in");
	assert_refused("memory pids cpu\n", "memory pids\n", SB_CGROUP_NEED_CPU,
	               "'cpu' not enabled");
}

Test(cgroup, a_directory_that_is_not_ours_is_refused)
{
	struct fake f;
	fake_init(&f, "memory pids\n", "memory pids\n");
	cr_assert_eq(chmod(f.root, 0755), 0); /* readable by all, like cgroupfs */
	/* as a user to whom the directory is not delegated (root is exempt
	 * from mode bits: drop to nobody in a child) */
	fflush(NULL);
	pid_t kid = fork();
	if (kid == 0) {
		if (geteuid() == 0) {
			if (setresgid(65534, 65534, 65534) < 0 ||
			    setresuid(65534, 65534, 65534) < 0)
				_exit(10);
		} else if (chmod(f.root, 0555) < 0) {
			_exit(11);
		}
		struct sb_cgroup_parent p;
		memset(&p, 0, sizeof(p));
		int rc = sb_cgroup_parent_open(&p, f.root, SB_CGROUP_FAKE);
		if (rc != SWERVE_EUNSUPPORTED)
			_exit(12);
		if (!strstr(p.why, "is not delegated to us"))
			_exit(13);
		_exit(0);
	}
	int st = 0;
	cr_assert_eq(waitpid(kid, &st, 0), kid);
	chmod(f.root, 0700);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, a_missing_directory_and_a_non_cgroupfs_directory_are_refused)
{
	struct sb_cgroup_parent p;
	memset(&p, 0, sizeof(p));
	cr_assert_eq(sb_cgroup_parent_open(&p, "/nonexistent/swerve-cg", 0), SWERVE_ENOTFOUND);
	cr_assert(strstr(p.why, "/nonexistent/swerve-cg"), "%s", p.why);
	cr_assert_eq(sb_cgroup_parent_open(&p, NULL, 0), SWERVE_EINVAL);
	/* a fake tree without SB_CGROUP_FAKE: not on cgroup2fs */
	struct fake f;
	fake_init(&f, "memory pids\n", "memory pids\n");
	cr_assert_eq(sb_cgroup_parent_open(&p, f.root, 0), SWERVE_EUNSUPPORTED);
	cr_assert(strstr(p.why, "not a cgroup v2 directory"), "%s", p.why);
	cr_assert_not(sb_cgroup_enabled(&p));
	ts_rmtree(f.root);
	free(f.root);
}

/* ---- the real host --------------------------------------------------------- */

/* The cgroup2 mount point, or "" */
static void cgroup2_mount(char *out, size_t len)
{
	out[0] = '\0';
	FILE *fp = fopen("/proc/self/mountinfo", "re");
	if (!fp)
		return;
	char line[1024], mp[512];
	while (fgets(line, sizeof(line), fp))
		if (strstr(line, " - cgroup2 ") && sscanf(line, "%*s %*s %*s %*s %511s", mp) == 1) {
			snprintf(out, len, "%s", mp);
			break;
		}
	fclose(fp);
}

/* Hash of a directory's entries and the mtime of each (a write to any of
 * the cgroup's files or a new child would show). */
static char *dir_state(const char *dir)
{
	size_t cap = 1 << 16, n = 0;
	char *s = calloc(1, cap);
	DIR *d = opendir(dir);
	if (!d)
		return s;
	struct dirent *de;
	while ((de = readdir(d)) && n + 300 < cap) {
		char path[1024];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0)
			n += (size_t)snprintf(s + n, cap - n, "%s:%ld.%ld\n", de->d_name,
			                      (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	}
	closedir(d);
	return s;
}

Test(cgroup, this_host_is_not_delegated_and_the_real_hierarchy_is_never_written)
{
	struct swerve_sandbox_probe pr;
	swerve_sandbox_probe(&pr);
	if (pr.cgroup2)
		cr_skip_test("this host has a delegated cgroup v2 at %s (the refusal is "
		             "tested on the fake tree)",
		             pr.cgroup2_path);
	cr_assert(strstr(pr.why, "cgroup v2:"), "probe gives no cgroup reason: '%s'", pr.why);

	/* the quick probe (what a context uses) says the same */
	struct swerve_sandbox_probe q;
	sb_probe_quick(&q);
	cr_assert_eq(q.cgroup2, 0);
	cr_assert(strstr(q.why, "cgroup v2:"), "quick probe gives no cgroup reason: '%s'", q.why);

	char mnt[512];
	cgroup2_mount(mnt, sizeof(mnt));
	const char *dirs[] = {"/sys/fs/cgroup", mnt};
	for (size_t i = 0; i < 2; i++) {
		if (!dirs[i][0])
			continue;
		char *before = dir_state(dirs[i]);
		struct sb_cgroup_parent p;
		memset(&p, 0, sizeof(p));
		int rc = sb_cgroup_parent_open(&p, dirs[i], 0);
		cr_assert_lt(rc, 0, "%s accepted", dirs[i]);
		cr_assert_not(sb_cgroup_enabled(&p));
		struct sb_cgroup cg;
		struct sb_cgroup_limits l = {.memory_bytes = 1 << 30, .pids = 64};
		cr_assert_eq(sb_cgroup_create(&cg, &p, &l), 0);
		cr_assert_eq(sb_cgroup_destroy(&cg), 0);
		char *after = dir_state(dirs[i]);
		cr_assert_str_eq(after, before, "%s changed", dirs[i]);
		free(before);
		free(after);
	}
}

Test(cgroup, the_sandbox_still_runs_with_limits_where_cgroup_v2_is_not_delegated)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_probe pr;
	swerve_sandbox_probe(&pr);
	struct swerve_sandbox *sb;
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0, "%s", swerve_error_last());
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c", "echo ok", NULL};
	o.argv = argv;
	o.limits.wall_ms = 10000;
	o.limits.memory_bytes = 256ull << 20;
	o.limits.nproc = 64;
	for (int i = 0; i < 2; i++) { /* the second run takes the fast path as root */
		struct swerve_sandbox_result r;
		int rc = swerve_sandbox_run(&r, sb, &o);
		cr_assert_eq(rc, 0, "%s", r.reason);
		cr_assert_eq(r.verdict, SWERVE_VERDICT_OK, "%s %s", swerve_verdict_name(r.verdict),
		             r.reason);
		cr_assert_str_eq(r.out.data, "ok\n");
		swerve_sandbox_result_dispose(&r);
	}
	swerve_sandbox_free(sb);
	if (!pr.cgroup2)
		cr_assert(strstr(pr.why, "cgroup v2:"), "%s", pr.why);
}

/* The supervisor's side (run.c), on the fake tree: the context's parent is
 * pointed at it. clone3 cannot clone into a plain directory (EBADF), so the
 * run takes the fallback: a plain clone, then init's pid written to
 * cgroup.procs. Limits written, the "kernel's" OOM report read as ML,
 * accounting taken, the directory removed; slow and fast path. */
Test(cgroup, a_run_creates_attaches_reads_and_removes_its_cgroup)
{
	TS_NEED_SANDBOX();
	struct fake f;
	fake_init(&f, "cpu memory pids\n", "cpu memory pids\n");
	char *before = snapshot(&f);
	struct swerve_sandbox *sb;
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0, "%s", swerve_error_last());
	sb_cgroup_parent_close(&sb->cg);
	sb->cg.on_mkdir = kernel_mkdir;
	sb->cg.on_rmdir = kernel_rmdir;
	sb->cg.hook_arg = &f;
	cr_assert_eq(sb_cgroup_parent_open(&sb->cg, f.root, SB_CGROUP_FAKE), 0, "%s",
	             swerve_error_last());

	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c", "echo ok", NULL};
	o.argv = argv;
	o.limits.wall_ms = 10000;
	o.limits.memory_bytes = 256ull << 20;
	o.limits.nproc = 64;
	o.tmp_bytes = 16ull << 20;
	o.shm_bytes = 1ull << 20;
	/* memory.max: the limit plus the tmpfs sizes (tmpfs pages are charged) */
	char want_max[32];
	snprintf(want_max, sizeof(want_max), "%llu", (256ull + 16 + 1) << 20);
	for (int i = 0; i < 3; i++) { /* slow path, then (as root) the fast path */
		struct swerve_sandbox_result r;
		int oom = i == 2;
		f.events =
		        oom ? "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 1\n" : NULL;
		f.cpu = oom ? "usage_usec 5000000\n" : NULL;
		f.seen[0] = f.child[0] = '\0';
		int rc = swerve_sandbox_run(&r, sb, &o);
		cr_assert_eq(rc, 0, "run %d: %s", i, r.reason);
		if (oom) {
			cr_assert_eq(r.verdict, SWERVE_VERDICT_ML, "run %d: %s %s", i,
			             swerve_verdict_name(r.verdict), r.reason);
			char want[96];
			snprintf(want, sizeof(want), "memory limit %s bytes (cgroup)", want_max);
			cr_assert_str_eq(r.reason, want);
			cr_assert_eq(r.cpu_us, 5000000ull, "cpu.stat usage_usec taken");
		} else {
			cr_assert_eq(r.verdict, SWERVE_VERDICT_OK, "run %d: %s %s", i,
			             swerve_verdict_name(r.verdict), r.reason);
			cr_assert_str_eq(r.out.data, "ok\n");
		}
		/* what the run's cgroup held when it was removed */
		char max[64] = "", pids[64] = "";
		long procs = 0;
		cr_assert_eq(sscanf(f.seen, "%63[^|]|%63[^|]|%ld", max, pids, &procs), 3, "'%s'",
		             f.seen);
		cr_assert_str_eq(max, want_max);
		cr_assert_str_eq(pids, "65");
		cr_assert_gt(procs, 1, "init's pid in cgroup.procs: '%s'", f.seen);
		cr_assert_str_eq(f.kill_seen, "1");
		cr_assert_neq(f.child[0], '\0');
		cr_assert_not(dir_exists(f.root, f.child), "run %d left %s", i, f.child);
		swerve_sandbox_result_dispose(&r);
	}
	swerve_sandbox_free(sb);
	char *after = snapshot(&f);
	cr_assert_str_eq(after, before, "the parent's files changed");
	free(before);
	free(after);
	ts_rmtree(f.root);
	free(f.root);
}

Test(cgroup, an_unusable_explicit_cgroup_directory_fails_the_context)
{
	struct fake f;
	fake_init(&f, "memory pids\n", "memory pids\n");
	setenv("SWERVE_SANDBOX_CGROUP", f.root, 1);
	struct swerve_sandbox *sb = NULL;
	int rc = swerve_sandbox_new(&sb, NULL);
	unsetenv("SWERVE_SANDBOX_CGROUP");
	cr_assert_eq(rc, SWERVE_EUNSUPPORTED, "rc %d", rc);
	cr_assert_null(sb);
	cr_assert(strstr(swerve_error_last(), "SWERVE_SANDBOX_CGROUP") &&
	                  strstr(swerve_error_last(), "not a cgroup v2 directory"),
	          "%s", swerve_error_last());
	ts_rmtree(f.root);
	free(f.root);
}
