/* test_sandbox.c - sandbox/ unit tests: verdicts, the policy table, output
 * capture, option validation (every bad input is XX with a message naming
 * the item), exit/signal/timeout verdicts, the in-process fn entry point,
 * accounting and step timing, context reuse, both namespace paths, and the
 * `swerve exec` command line. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <sys/wait.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>
#include <time.h>

#include "sandbox/internal.h"
#include "sandbox/sandbox.h"
#include "tests/support/sandbox_support.h"
#include "tests/support/support.h"

static struct swerve_sandbox *ctx(void)
{
	static struct swerve_sandbox *sb;
	if (!sb)
		cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0, "%s", swerve_error_last());
	return sb;
}

static int run_argv(struct swerve_sandbox_result *r, struct swerve_sandbox_opts *o,
                    const char *const *argv)
{
	o->argv = argv;
	if (!o->limits.wall_ms)
		o->limits.wall_ms = 10000;
	return swerve_sandbox_run(r, ctx(), o);
}

/* ---- pure parts ----------------------------------------------------------- */

Test(verdict, names)
{
	const char *want[] = {"OK", "RE", "SG", "TO", "ML", "OL", "SV", "XX"};
	for (int v = 0; v < 8; v++)
		cr_assert_str_eq(swerve_verdict_name((enum swerve_verdict)v), want[v]);
	cr_assert_str_eq(swerve_verdict_name((enum swerve_verdict)99), "??");
}

Test(policy, every_rule_has_a_reason_and_the_kill_list_is_there)
{
	size_t n;
	const struct swerve_seccomp_rule *p = swerve_seccomp_policy(&n);
	cr_assert_gt(n, 30);
	int kills = 0, seen_kexec = 0, seen_clone3 = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert(p[i].reason && strlen(p[i].reason) > 5, "%s: no reason", p[i].syscall);
		if (p[i].action == SWERVE_SECCOMP_KILL)
			kills++;
		else
			cr_assert_gt(p[i].err, 0, "%s: no errno", p[i].syscall);
		if (!strcmp(p[i].syscall, "kexec_load"))
			seen_kexec = p[i].action == SWERVE_SECCOMP_KILL;
		if (!strcmp(p[i].syscall, "clone3"))
			seen_clone3 = p[i].err == ENOSYS;
	}
	cr_assert_gt(kills, 10);
	cr_assert(seen_kexec && seen_clone3);
}

Test(capture, keeps_head_and_tail_and_counts_everything)
{
	struct sb_capture c;
	struct swerve_sandbox_output o;
	sb_capture_init(&c, 6);
	sb_capture_add(&c, "0123", 4);
	sb_capture_add(&c, "456789", 6);
	cr_assert_eq(sb_capture_finish(&c, &o), 0);
	cr_assert_eq(o.total, 10);
	cr_assert_eq(o.truncated, 1);
	cr_assert_str_eq(o.data, "012\n[... swerve: 4 bytes omitted ...]\n789");
	free(o.data);
	sb_capture_dispose(&c);
	/* within budget: verbatim */
	sb_capture_init(&c, 64);
	sb_capture_add(&c, "hello\n", 6);
	cr_assert_eq(sb_capture_finish(&c, &o), 0);
	cr_assert_str_eq(o.data, "hello\n");
	cr_assert_eq(o.truncated, 0);
	free(o.data);
	sb_capture_dispose(&c);
	/* many small writes wrap the tail ring */
	sb_capture_init(&c, 8);
	for (int i = 0; i < 100; i++) {
		char ch = (char)('a' + i % 26);
		sb_capture_add(&c, &ch, 1);
	}
	cr_assert_eq(sb_capture_finish(&c, &o), 0);
	cr_assert_str_eq(o.data, "abcd\n[... swerve: 92 bytes omitted ...]\nstuv");
	free(o.data);
	sb_capture_dispose(&c);
}

/* ---- bad input: XX with a message naming the item --------------------------- */

static void expect_xx(struct swerve_sandbox_opts *o, int code, const char *needle)
{
	struct swerve_sandbox_result r;
	int rc = swerve_sandbox_run(&r, ctx(), o);
	cr_assert_eq(rc, code, "rc %d (%s), want %d", rc, r.reason, code);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_XX);
	cr_assert_not_null(strstr(r.reason, needle), "reason '%s' lacks '%s'", r.reason, needle);
	cr_assert_str_eq(r.reason, swerve_error_last());
	swerve_sandbox_result_dispose(&r);
}

Test(options, bad_input_is_xx_naming_the_cause)
{
	TS_NEED_SANDBOX();
	const char *argv[] = {"/bin/true", NULL}, *empty[] = {NULL};
	struct swerve_sandbox_opts o = {0};
	expect_xx(&o, SWERVE_EINVAL, "options version");
	o = (struct swerve_sandbox_opts)SWERVE_SANDBOX_OPTS_INIT;
	o.argv = empty;
	expect_xx(&o, SWERVE_EINVAL, "argv is empty");
	o.argv = NULL;
	expect_xx(&o, SWERVE_EINVAL, "give argv (non-empty), fn, or both");
	o.argv = argv;
	o.workspace = "/nonexistent/swerve-ws";
	expect_xx(&o, SWERVE_ENOTFOUND, "workspace '/nonexistent/swerve-ws'");
	o.workspace = "relative/ws";
	expect_xx(&o, SWERVE_EINVAL, "must be an absolute path");
	o.workspace = NULL;
	struct swerve_sandbox_bind b = {"/nonexistent/venv", "/venv"};
	o.ro_binds = &b;
	o.n_ro_binds = 1;
	expect_xx(&o, SWERVE_ENOTFOUND, "/nonexistent/venv");
	o.ro_binds = NULL;
	o.n_ro_binds = 0;
	const char *env[] = {"NOEQUALS", NULL};
	o.env = env;
	expect_xx(&o, SWERVE_EINVAL, "env entry 'NOEQUALS'");
	o.env = NULL;
	const char *lower[] = {"/usr/share", NULL};
	o.workspace_lower = lower;
	expect_xx(&o, SWERVE_EINVAL, "workspace_upper");
	o.workspace_lower = NULL;
	o.network = 1;
	expect_xx(&o, SWERVE_EINVAL, "network mode 1");
}

Test(options, missing_program_is_xx_enotfound)
{
	TS_NEED_SANDBOX();
	const char *argv[] = {"swerve-no-such-program", NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.argv = argv;
	expect_xx(&o, SWERVE_ENOTFOUND, "program 'swerve-no-such-program': not found");
	const char *argv2[] = {"/workspace/nope", NULL};
	o.argv = argv2;
	expect_xx(&o, SWERVE_ENOTFOUND, "program '/workspace/nope'");
}

Test(options, missing_cwd_is_xx)
{
	TS_NEED_SANDBOX();
	const char *argv[] = {"/bin/true", NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.argv = argv;
	o.cwd = "/no/such/dir";
	expect_xx(&o, SWERVE_ENOTFOUND, "working directory '/no/such/dir'");
}

/* ---- verdicts ------------------------------------------------------------- */

Test(run, ok_re_sg_verdicts_and_exit_codes)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *ok[] = {"/bin/sh", "-c", "echo out; echo err >&2", NULL};
	cr_assert_eq(run_argv(&r, &o, ok), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OK);
	cr_assert_eq(r.exit_code, 0);
	cr_assert_str_eq(r.out.data, "out\n");
	cr_assert_str_eq(r.err.data, "err\n");
	cr_assert_eq(r.out.truncated, 0);
	swerve_sandbox_result_dispose(&r);
	const char *re[] = {"/bin/sh", "-c", "exit 42", NULL};
	cr_assert_eq(run_argv(&r, &o, re), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_RE);
	cr_assert_eq(r.exit_code, 42);
	swerve_sandbox_result_dispose(&r);
	const char *sg[] = {"/bin/sh", "-c", "kill -SEGV $$", NULL};
	cr_assert_eq(run_argv(&r, &o, sg), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_SG);
	cr_assert_eq(r.signal, SIGSEGV);
	cr_assert_eq(r.exit_code, -1);
	swerve_sandbox_result_dispose(&r);
	/* stdin is /dev/null: a reader ends at once */
	const char *cat[] = {"cat", NULL};
	cr_assert_eq(run_argv(&r, &o, cat), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OK);
	cr_assert_str_eq(r.out.data, "");
	swerve_sandbox_result_dispose(&r);
}

Test(run, wall_clock_deadline_sub_second)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.limits.wall_ms = 300;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sleep", "30", NULL};
	cr_assert_eq(run_argv(&r, &o, argv), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_TO);
	cr_assert_geq(r.wall_us, 300000);
	cr_assert_lt(r.wall_us, 2000000, "wall %llu us", (unsigned long long)r.wall_us);
	cr_assert_not_null(strstr(r.reason, "300 ms"));
	swerve_sandbox_result_dispose(&r);
}

Test(run, cpu_limit_is_to)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.limits.wall_ms = 20000;
	o.limits.cpu_s = 1;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c", "while :; do :; done", NULL};
	cr_assert_eq(run_argv(&r, &o, argv), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_TO, "verdict %s", swerve_verdict_name(r.verdict));
	cr_assert_eq(r.signal, SIGXCPU);
	cr_assert_geq(r.cpu_us, 500000); /* rusage is tick-sampled */
	swerve_sandbox_result_dispose(&r);
}

Test(run, accounting_and_step_timing)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
	                      NULL};
	cr_assert_eq(run_argv(&r, &o, argv), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OK);
	cr_assert_gt(r.cpu_us, 50000, "cpu %llu us", (unsigned long long)r.cpu_us);
	cr_assert_gt(r.max_rss_kb, 100);
	cr_assert_geq(r.wall_us, r.cpu_us / 2);
	struct swerve_sandbox_timing t;
	swerve_sandbox_last_timing(ctx(), &t);
	/* parent-side steps are ordered; the child's are stamped by another
	 * process (it may finish its mounts before the parent's clone returns) */
	cr_assert(t.clone_us > 0 && t.clone_us <= t.maps_us && t.maps_us <= t.wait_us &&
	                  t.mounts_us > 0 && t.mounts_us <= t.seccomp_us &&
	                  t.seccomp_us <= t.wait_us,
	          "clone %llu maps %llu mounts %llu seccomp %llu wait %llu",
	          (unsigned long long)t.clone_us, (unsigned long long)t.maps_us,
	          (unsigned long long)t.mounts_us, (unsigned long long)t.seccomp_us,
	          (unsigned long long)t.wait_us);
	swerve_sandbox_result_dispose(&r);
}

Test(run, cwd_hostname_and_workspace)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.workspace = ws;
	o.hostname = "episode-7";
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c", "pwd; hostname; echo hi > made; id -u", NULL};
	cr_assert_eq(run_argv(&r, &o, argv), 0);
	cr_assert_str_eq(r.out.data, "/workspace\nepisode-7\n1000\n");
	swerve_sandbox_result_dispose(&r);
	o.workspace_mount = "/src/repo";
	o.cwd = "/tmp";
	const char *argv2[] = {"/bin/sh", "-c", "pwd; cat /src/repo/made", NULL};
	cr_assert_eq(run_argv(&r, &o, argv2), 0);
	cr_assert_str_eq(r.out.data, "/tmp\nhi\n");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

/* ---- in-process entry point ---------------------------------------------------- */

static int fn_body(void *arg)
{
	const char *text = arg;
	FILE *f = fopen("/workspace/from-fn", "w");
	if (!f)
		return 100;
	fputs(text, f);
	fclose(f);
	/* containment applies: mount is refused by the seccomp filter */
	if (mount("none", "/tmp", "tmpfs", 0, NULL) == 0 || errno != EPERM)
		return 101;
	if (getuid() != 1000)
		return 102;
	return 7;
}

Test(run, fn_runs_contained_in_the_child)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp(), p[512];
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.workspace = ws;
	o.fn = fn_body;
	o.fn_arg = "written by fn\n";
	struct swerve_sandbox_result r;
	cr_assert_eq(swerve_sandbox_run(&r, ctx(), &o), 0, "%s", r.reason);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_RE);
	cr_assert_eq(r.exit_code, 7);
	snprintf(p, sizeof(p), "%s/from-fn", ws);
	char *s = ts_read_file(p, NULL);
	cr_assert_str_eq(s, "written by fn\n");
	free(s);
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

static int fn_then(void *arg)
{
	FILE *f = fopen("/workspace/from-fn", "w");
	if (!f)
		return 100;
	fputs("fn ran first\n", f);
	fclose(f);
	fputs("from fn\n", stdout);
	fflush(stdout);
	return arg ? 9 : 0;
}

Test(run, fn_then_argv_in_one_sandbox_and_fn_failure_skips_argv)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp();
	const char *argv[] = {"/bin/sh", "-c", "cat /workspace/from-fn; echo HOME=$HOME", NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	o.workspace = ws;
	o.fn = fn_then;
	o.argv = argv;
	cr_assert_eq(swerve_sandbox_run(&r, ctx(), &o), 0, "%s", r.reason);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OK, "%s %s", swerve_verdict_name(r.verdict),
	             r.err.data);
	/* fn's output, then the command's, which saw fn's file and the scrubbed env */
	cr_assert_str_eq(r.out.data, "from fn\nfn ran first\nHOME=/tmp\n");
	swerve_sandbox_result_dispose(&r);
	/* a non-zero fn return is the exit code; the command does not run */
	o.fn_arg = "fail";
	cr_assert_eq(swerve_sandbox_run(&r, ctx(), &o), 0, "%s", r.reason);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_RE);
	cr_assert_eq(r.exit_code, 9);
	cr_assert_str_eq(r.out.data, "from fn\n");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

/* ---- reuse and both namespace paths ----------------------------------------------- */

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

Test(context, reused_for_many_runs_without_leaking_fds)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/true", NULL};
	for (int i = 0; i < 2; i++) { /* the second run starts the holder (fast path) */
		cr_assert_eq(run_argv(&r, &o, argv), 0);
		swerve_sandbox_result_dispose(&r);
	}
	int before = count_fds();
	for (int i = 0; i < 30; i++) {
		cr_assert_eq(run_argv(&r, &o, argv), 0, "run %d: %s", i, r.reason);
		cr_assert_eq(r.verdict, SWERVE_VERDICT_OK);
		swerve_sandbox_result_dispose(&r);
	}
	cr_assert_eq(count_fds(), before);
}

Test(context, slow_path_per_run_namespaces)
{
	TS_NEED_SANDBOX();
	setenv("SWERVE_SANDBOX_SLOW", "1", 1);
	struct swerve_sandbox *sb;
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0);
	cr_assert_eq(sb->fast, 0);
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c",
	                      "id -u; hostname; cat /proc/net/dev | grep -c :", NULL};
	o.argv = argv;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	cr_assert_str_eq(r.out.data, "1000\nsandbox\n1\n"); /* only lo */
	swerve_sandbox_result_dispose(&r);
	swerve_sandbox_free(sb);
	unsetenv("SWERVE_SANDBOX_SLOW");
}

Test(context, warm_puts_a_root_context_on_its_fast_path)
{
	TS_NEED_SANDBOX();
	if (geteuid() != 0)
		cr_skip_test("the fast path needs a root worker");
	struct swerve_sandbox *sb;
	struct swerve_sandbox_timing t;
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0);
	cr_assert_eq(sb->fast, 0);
	cr_assert_eq(swerve_sandbox_warm(sb), 0, "%s", swerve_error_last());
	cr_assert_eq(sb->fast, 1);
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/echo", "warm", NULL};
	o.argv = argv;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	cr_assert_str_eq(r.out.data, "warm\n");
	swerve_sandbox_last_timing(sb, &t);
	cr_assert_eq(t.maps_us, 0, "the first real run wrote id maps: slow path");
	swerve_sandbox_result_dispose(&r);
	swerve_sandbox_free(sb);
	/* slow by choice: warm is a no-op after one run, and the runs stay slow */
	setenv("SWERVE_SANDBOX_SLOW", "1", 1);
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0);
	cr_assert_eq(swerve_sandbox_warm(sb), 0);
	cr_assert_eq(sb->fast, 0);
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	swerve_sandbox_last_timing(sb, &t);
	cr_assert_gt(t.maps_us, 0);
	swerve_sandbox_result_dispose(&r);
	swerve_sandbox_free(sb);
	unsetenv("SWERVE_SANDBOX_SLOW");
}

Test(run, cancel_fd_kills_the_tree_and_gives_xx)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox *sb;
	struct swerve_sandbox_result r;
	int p[2];
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0);
	cr_assert_eq(pipe(p), 0);
	pid_t w = fork();
	if (w == 0) { /* the "client": goes away after 300 ms */
		usleep(300000);
		_exit(0);
	}
	close(p[1]);
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c", "echo before; sleep 30 & wait", NULL};
	o.argv = argv;
	o.limits.wall_ms = 20000;
	o.cancel_fd = p[0];
	/* the write end lives in the child only: its exit hangs the pipe up */
	uint64_t t0 = (uint64_t)time(NULL);
	int rc = swerve_sandbox_run(&r, sb, &o);
	waitpid(w, NULL, 0);
	cr_assert_lt(rc, 0, "a cancelled run is an infrastructure outcome");
	cr_assert_eq(r.verdict, SWERVE_VERDICT_XX);
	cr_assert(strstr(r.reason, "cancelled"), "%s", r.reason);
	cr_assert_lt((uint64_t)time(NULL) - t0, 10, "not cancelled promptly");
	cr_assert(r.out.data && strstr(r.out.data, "before"), "output so far kept");
	swerve_sandbox_result_dispose(&r);
	/* the context still works afterwards */
	o.cancel_fd = 0;
	const char *ok[] = {"/bin/true", NULL};
	o.argv = ok;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OK);
	swerve_sandbox_result_dispose(&r);
	close(p[0]);
	swerve_sandbox_free(sb);
}

static int fn_exit7(void *arg)
{
	(void)arg;
	return 7;
}

Test(context, prepared_start_runs_the_next_command_the_same_way)
{
	TS_NEED_SANDBOX();
	if (geteuid() != 0)
		cr_skip_test("the prepared start needs a root worker (fast path)");
	if (!SB_VM_START)
		cr_skip_test("sanitizer build: no shared-memory start, so no prepared one");
	struct swerve_sandbox *sb;
	struct swerve_sandbox_timing t;
	struct swerve_sandbox_result r;
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0);
	/* before any run there is nothing to prepare from: a no-op */
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	cr_assert_eq(swerve_sandbox_warm(sb), 0);
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c", "echo $X $(hostname) $(pwd); ulimit -n; id -u",
	                      NULL};
	const char *env[] = {"X=first", NULL};
	o.argv = argv;
	o.env = env;
	o.limits.nofile = 77;
	o.limits.wall_ms = 10000;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	char *unprepared = strdup(r.out.data);
	swerve_sandbox_result_dispose(&r);
	/* the same run from a prepared sandbox: same output; this run's env
	 * and limits, given only when it starts */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(swerve_sandbox_prepare(sb), 0, "%s", swerve_error_last());
		cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
		swerve_sandbox_last_timing(sb, &t);
		cr_assert_eq(t.prepared, 1, "run %d did not use the prepared sandbox", i);
		cr_assert_eq(r.verdict, SWERVE_VERDICT_OK);
		cr_assert_str_eq(r.out.data, unprepared);
		swerve_sandbox_result_dispose(&r);
	}
	cr_assert_str_eq(unprepared, "first sandbox /\n77\n1000\n");
	free(unprepared);
	o.limits.nofile = 55;
	env[0] = "X=second";
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	cr_assert_str_eq(r.out.data, "second sandbox /\n55\n1000\n");
	swerve_sandbox_result_dispose(&r);
	/* another working directory or hostname: discarded, a fresh start */
	o.cwd = "/tmp";
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	swerve_sandbox_last_timing(sb, &t);
	cr_assert_eq(t.prepared, 0);
	cr_assert_str_eq(r.out.data, "second sandbox /tmp\n55\n1000\n");
	swerve_sandbox_result_dispose(&r);
	o.hostname = "other";
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	swerve_sandbox_last_timing(sb, &t);
	cr_assert_eq(t.prepared, 0);
	cr_assert_str_eq(r.out.data, "second other /tmp\n55\n1000\n");
	swerve_sandbox_result_dispose(&r);
	/* the deadline counts from the run, and kills a prepared run too */
	const char *sleeper[] = {"/bin/sleep", "5", NULL};
	o.argv = sleeper;
	o.limits.wall_ms = 300;
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	swerve_sandbox_last_timing(sb, &t);
	cr_assert_eq(t.prepared, 1);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_TO);
	cr_assert_geq(r.wall_us, 300000);
	swerve_sandbox_result_dispose(&r);
	/* a missing program is still XX naming it */
	const char *missing[] = {"/no/such/program", NULL};
	o.argv = missing;
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	cr_assert_lt(swerve_sandbox_run(&r, sb, &o), 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_XX);
	cr_assert(strstr(r.reason, "/no/such/program"), "%s", r.reason);
	swerve_sandbox_result_dispose(&r);
	/* an fn run (it needs its own copy of our memory) discards it */
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	o.argv = NULL;
	o.fn = fn_exit7;
	cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "%s", r.reason);
	swerve_sandbox_last_timing(sb, &t);
	cr_assert_eq(t.prepared, 0);
	cr_assert_eq(r.exit_code, 7);
	swerve_sandbox_result_dispose(&r);
	/* freeing the context with one pending leaves no process behind */
	cr_assert_eq(swerve_sandbox_prepare(sb), 0);
	swerve_sandbox_free(sb);
	cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child of ours is left");
	cr_assert_eq(errno, ECHILD);
}

Test(context, fast_path_template_follows_changing_mount_points)
{
	TS_NEED_SANDBOX();
	if (geteuid() != 0)
		cr_skip_test("the fast path needs a root worker");
	char *ws = ts_mkdtemp();
	struct swerve_sandbox *sb;
	cr_assert_eq(swerve_sandbox_new(&sb, NULL), 0);
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	struct swerve_sandbox_result r;
	const char *argv[] = {"/bin/sh", "-c", "echo x > f; pwd; ls /opt/u", NULL};
	struct swerve_sandbox_bind b = {"/usr/share", "/opt/u"};
	o.argv = argv;
	o.workspace = ws;
	o.ro_binds = &b;
	o.n_ro_binds = 1;
	const char *mnts[] = {"/workspace", "/workspace", "/src", "/workspace", "/src"};
	pid_t holder = 0;
	for (int i = 0; i < 5; i++) {
		char want[64];
		o.workspace_mount = mnts[i];
		b.dst = i == 2 ? "/opt/v" : "/opt/u";
		argv[2] = i == 2 ? "echo x > f; pwd; ls /opt/v >/dev/null" : "echo x > f; pwd";
		cr_assert_eq(swerve_sandbox_run(&r, sb, &o), 0, "run %d: %s", i, r.reason);
		snprintf(want, sizeof(want), "%s\n", mnts[i]);
		cr_assert_str_eq(r.out.data, want, "run %d", i);
		cr_assert_eq(sb->fast, i > 0, "run %d fast %d", i, sb->fast);
		/* from run 2 on the template has both layouts: no more rebuilds */
		if (i == 2)
			holder = sb->holder_pid;
		if (i > 2)
			cr_assert_eq(sb->holder_pid, holder, "run %d rebuilt the template", i);
		swerve_sandbox_result_dispose(&r);
	}
	swerve_sandbox_free(sb);
	ts_rmtree(ws);
	free(ws);
}

struct worker {
	int id, ok;
	char err[256];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct swerve_sandbox *sb;
	char script[64], want[32];
	if (swerve_sandbox_new(&sb, NULL) < 0) {
		snprintf(w->err, sizeof(w->err), "new: %s", swerve_error_last());
		return NULL;
	}
	snprintf(script, sizeof(script), "echo worker %d; sleep 0.01", w->id);
	snprintf(want, sizeof(want), "worker %d\n", w->id);
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	for (int i = 0; i < 15; i++) {
		struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
		struct swerve_sandbox_result r;
		o.argv = argv;
		o.limits.wall_ms = 20000;
		int rc = swerve_sandbox_run(&r, sb, &o);
		if (rc < 0 || r.verdict != SWERVE_VERDICT_OK || strcmp(r.out.data, want)) {
			snprintf(w->err, sizeof(w->err), "run %d: rc %d %s '%.40s' %.150s", i, rc,
			         swerve_verdict_name(r.verdict), r.out.data ? r.out.data : "",
			         r.reason);
			swerve_sandbox_result_dispose(&r);
			break;
		}
		swerve_sandbox_result_dispose(&r);
		w->ok++;
	}
	swerve_sandbox_free(sb);
	return NULL;
}

Test(context, concurrent_contexts_in_threads_do_not_mix)
{
	TS_NEED_SANDBOX();
	pthread_t t[3];
	struct worker w[3];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 3; i++) {
		w[i].id = i;
		cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].ok, 15, "worker %d: %s", i, w[i].err);
	}
}

Test(probe, reports_features_and_reasons)
{
	struct swerve_sandbox_probe p;
	cr_assert_eq(swerve_sandbox_probe(&p), 0);
	if (!p.userns)
		cr_assert_not_null(strstr(p.why, "user namespaces"), "%s", p.why);
	if (!p.cgroup2)
		cr_assert_not_null(strstr(p.why, "cgroup v2"), "%s", p.why);
	else
		cr_assert_neq(p.cgroup2_path[0], '\0');
}

/* ---- swerve exec --------------------------------------------------------------- */

Test(cli, host_without_user_namespaces_is_xx_naming_the_sysctl)
{
	TS_NEED_SANDBOX();
	if (access("/usr/bin/unshare", X_OK) < 0)
		cr_skip_test("no unshare(1)");
	/* a user namespace whose own limit of nested user namespaces is 0 */
	char *out = NULL, *err = NULL;
	int rc = ts_sh(&out, &err,
	               "unshare -Ur sh -c 'echo 0 > "
	               "/proc/sys/user/max_user_namespaces && timeout 20 %s exec -- /bin/true'",
	               ts_swerve_bin());
	if (strstr(err, "unshare failed") || strstr(err, "Permission denied"))
		cr_skip_test("cannot set up the test namespace: %s", err);
	cr_assert_eq(rc, 3, "rc %d stderr %s", rc, err);
	cr_assert_not_null(strstr(err, "XX"), "%s", err);
	cr_assert_not_null(strstr(err, "user.max_user_namespaces"), "%s", err);
	free(out);
	free(err);
}

Test(cli, exec_json_and_exit_codes)
{
	TS_NEED_SANDBOX();
	char *out = NULL, *err = NULL;
	int rc = ts_sh(&out, &err, "%s exec --json --wall-ms 5000 -- /bin/sh -c 'echo hi; exit 3'",
	               ts_swerve_bin());
	cr_assert_eq(rc, 1, "stderr: %s", err);
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	cr_assert_not_null(j, "not JSON: %s", out);
	cr_assert_str_eq(json_string_value(json_object_get(j, "verdict")), "RE");
	cr_assert_eq(json_integer_value(json_object_get(j, "exit_code")), 3);
	cr_assert_str_eq(json_string_value(json_object_get(j, "stdout")), "hi\n");
	cr_assert(json_integer_value(json_object_get(j, "wall_us")) > 0);
	json_decref(j);
	free(out);
	free(err);
	rc = ts_sh(&out, &err, "%s exec -- /bin/true", ts_swerve_bin());
	cr_assert_eq(rc, 0);
	cr_assert_not_null(strstr(err, "swerve exec: OK exit=0"), "%s", err);
	free(out);
	free(err);
	rc = ts_sh(&out, &err, "%s exec --workspace /nonexistent/ws -- /bin/true", ts_swerve_bin());
	cr_assert_eq(rc, 3);
	cr_assert_not_null(strstr(err, "workspace '/nonexistent/ws'"), "%s", err);
	free(out);
	free(err);
	rc = ts_sh(&out, &err, "%s exec --bogus 1 -- /bin/true", ts_swerve_bin());
	cr_assert_eq(rc, 2);
	cr_assert_not_null(strstr(err, "unknown option '--bogus'"), "%s", err);
	free(out);
	free(err);
	rc = ts_sh(&out, &err, "%s exec --json --wall-ms 200 -- sleep 5", ts_swerve_bin());
	cr_assert_eq(rc, 1);
	cr_assert_not_null(strstr(out, "\"verdict\":\"TO\""), "%s", out);
	free(out);
	free(err);
}
