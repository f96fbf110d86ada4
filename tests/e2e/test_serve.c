/* test_serve.c - `swerve serve` and the `swerve` launcher: `swerve exec`
 * through a resident server prints and returns exactly what a local run
 * does; no server means a local run; only the server's user may use it; a
 * worker that dies mid-run is an infrastructure error (exit 3), never a
 * verdict and never a second run; SIGTERM removes the socket. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/support.h"

static char *dir, sock[256];
static pid_t server = -1;

static int can_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* swerve serve on a fresh socket; waits until it accepts (workers warm) */
static pid_t start_server(const char *path, int workers)
{
	char w[16];
	snprintf(w, sizeof(w), "%d", workers);
	pid_t p = fork();
	if (p == 0) {
		char log[512];
		snprintf(log, sizeof(log), "%s/serve.log", dir);
		if (!freopen(log, "a", stderr))
			_exit(127);
		execl(ts_swerve_bin(), "swerve", "serve", "--socket", path, "--workers", w,
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000 && !can_connect(path); i++)
		usleep(10000);
	cr_assert(can_connect(path), "server did not start (see %s/serve.log)", dir);
	usleep(200000); /* let the workers finish their two warm-up runs */
	return p;
}

static void setup(void)
{
	dir = ts_mkdtemp();
	snprintf(sock, sizeof(sock), "%s/exec.sock", dir);
	server = start_server(sock, 1);
}

static void teardown(void)
{
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
		server = -1;
	}
	ts_rmtree(dir);
	free(dir);
}

/* runs `swerve exec ARGS` with SWERVE_SOCKET=via ("" = local) */
static int run_exec(char **out, char **err, const char *via, const char *args)
{
	return ts_sh(out, err, "cd %s && SWERVE_SOCKET='%s' %s exec %s", dir, via, ts_swerve_bin(),
	             args);
}

/* the verdict line carries times: compare up to " wall=" */
static void strip_times(char *s)
{
	char *w;
	while (s && (w = strstr(s, " wall="))) {
		char *nl = strchr(w, '\n');
		memmove(w, nl ? nl : w + strlen(w), strlen(nl ? nl : w + strlen(w)) + 1);
		s = w + 1;
	}
}

TestSuite(serve, .init = setup, .fini = teardown, .timeout = 120);

Test(serve, same_output_and_exit_code_as_a_local_run)
{
	const char *cases[] = {
	        "-- /bin/echo hi",
	        "-- /bin/sh -c 'echo out; echo err >&2; exit 3'",
	        "--wall-ms 300 -- /bin/sleep 5",
	        "--bogus -- /bin/true",
	        "-- /no/such/program",
	        "--env A=1 -- /bin/sh -c 'echo $A; env | wc -l'",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *o1, *e1, *o2, *e2;
		int r1 = run_exec(&o1, &e1, sock, cases[i]);
		int r2 = run_exec(&o2, &e2, "", cases[i]);
		strip_times(e1);
		strip_times(e2);
		cr_expect_eq(r1, r2, "%s: server %d, local %d (%s | %s)", cases[i], r1, r2, e1, e2);
		cr_expect_str_eq(o1, o2, "%s: stdout", cases[i]);
		cr_expect_str_eq(e1, e2, "%s: stderr", cases[i]);
		free(o1), free(e1), free(o2), free(e2);
	}
	/* --json, parsed by the same code */
	char *o, *e;
	cr_assert_eq(run_exec(&o, &e, sock, "--json -- /bin/sh -c 'exit 4'"), 1);
	cr_assert(strstr(o, "\"verdict\":\"RE\"") && strstr(o, "\"exit_code\":4"), "%s", o);
	free(o), free(e);
}

Test(serve, the_server_really_ran_it)
{
	/* a server's worker keeps one context, whose runs share its network
	 * namespace (sandbox/run.c: the holder); local one-shot runs each get
	 * a fresh one: the namespace's inode tells them apart */
	const char *args = "-- /bin/readlink /proc/self/ns/net";
	char *a, *b, *c, *d, *e;
	cr_assert_eq(run_exec(&a, &e, sock, args), 0, "%s", e);
	free(e);
	cr_assert_eq(run_exec(&b, &e, sock, args), 0, "%s", e);
	free(e);
	cr_assert(!strncmp(a, "net:[", 5), "%s", a);
	cr_assert_str_eq(a, b, "two runs through one worker: the same context");
	cr_assert_eq(run_exec(&c, &e, "", args), 0, "%s", e);
	free(e);
	cr_assert_eq(run_exec(&d, &e, "", args), 0, "%s", e);
	free(e);
	cr_assert_str_neq(c, d, "two local runs: two fresh namespaces");
	cr_assert_str_neq(a, c);
	free(a), free(b), free(c), free(d);
	/* stopped: the socket is gone and the launcher runs locally */
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	server = -1;
	struct stat st;
	cr_assert(stat(sock, &st) < 0 && errno == ENOENT, "socket left behind");
	cr_assert_eq(run_exec(&a, &e, sock, "-- /bin/echo local"), 0, "%s", e);
	cr_assert_str_eq(a, "local\n");
	free(a), free(e);
}

Test(serve, other_users_are_refused)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	struct stat st;
	cr_assert_eq(stat(sock, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "the socket is born mode %o", st.st_mode & 0777);
	/* opened up on purpose: the server's own check must still refuse */
	chmod(sock, 0666);
	chmod(dir, 0755);
	char *o, *e;
	int rc = ts_sh(&o, &e,
	               "cd / && setpriv --reuid=65534 --regid=65534 --clear-groups env "
	               "SWERVE_SOCKET='%s' %s exec -- /bin/echo hi",
	               sock, ts_swerve_bin());
	cr_assert_eq(rc, 3, "rc %d out %s err %s", rc, o, e);
	cr_assert(strstr(e, "refused by the server: uid 65534"), "%s", e);
	cr_assert_str_eq(o, "");
	free(o), free(e);
}

Test(serve, worker_killed_mid_run_is_an_infrastructure_error_not_a_rerun)
{
	char marker[512];
	snprintf(marker, sizeof(marker), "%s/ran", dir);
	char *o, *e;
	/* the command appends to a file in a workspace, then sleeps; we kill
	 * the worker while it sleeps */
	pid_t c = fork();
	if (c == 0) {
		char *out = NULL, *err = NULL;
		char args[1024];
		snprintf(args, sizeof(args),
		         "--workspace %s -- /bin/sh -c 'echo x >> /workspace/ran; sleep 30'", dir);
		int rc = run_exec(&out, &err, sock, args);
		_exit(rc == 3 && err && strstr(err, "closed the connection before the verdict")
		              ? 0
		              : 10 + rc);
	}
	for (int i = 0; i < 500; i++) {
		struct stat st;
		if (stat(marker, &st) == 0)
			break;
		usleep(10000);
	}
	/* the server's only worker: its child */
	char path[128], *kids;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)server, (int)server);
	kids = ts_read_file(path, NULL);
	cr_assert(kids && atoi(kids) > 0, "no worker under the server");
	cr_assert_eq(kill(atoi(kids), SIGKILL), 0);
	free(kids);
	int st;
	waitpid(c, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client exit %d",
	          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	char *ran = ts_read_file(marker, NULL);
	cr_assert_str_eq(ran, "x\n", "the command ran more than once");
	free(ran);
	/* the server replaced the worker and serves again */
	int ok = 0;
	for (int i = 0; i < 100 && !ok; i++) {
		ok = run_exec(&o, &e, sock, "-- /bin/echo again") == 0 && !strcmp(o, "again\n");
		free(o), free(e);
		if (!ok)
			usleep(50000);
	}
	cr_assert(ok);
}

Test(serve, a_client_gone_mid_run_cancels_it)
{
	/* Ctrl-C on `swerve exec`: the launcher dies, its connection hangs up,
	 * and the worker kills the run instead of waiting for its deadline */
	char marker[512];
	snprintf(marker, sizeof(marker), "%s/started", dir);
	pid_t c = fork();
	if (c == 0) { /* this process becomes the launcher */
		int nul = open("/dev/null", O_RDWR);
		if (nul < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0 ||
		    setenv("SWERVE_SOCKET", sock, 1))
			_exit(127);
		execl(ts_swerve_bin(), "swerve", "exec", "--wall-ms", "60000", "--workspace", dir,
		      "--", "/bin/sh", "-c", "touch /workspace/started; exec sleep 47.5",
		      (char *)NULL);
		_exit(127);
	}
	int seen = 0;
	for (int i = 0; i < 500 && !seen; i++) {
		struct stat st;
		seen = stat(marker, &st) == 0;
		if (!seen)
			usleep(10000);
	}
	cr_assert(seen, "the command never started");
	cr_assert_eq(kill(c, SIGKILL), 0);
	waitpid(c, NULL, 0);
	/* the single worker is free again well before the 60 s deadline */
	char *o, *e;
	time_t t0 = time(NULL);
	cr_assert_eq(run_exec(&o, &e, sock, "-- /bin/echo next"), 0, "%s", e);
	cr_assert_str_eq(o, "next\n");
	free(o), free(e);
	cr_assert_lt(time(NULL) - t0, 10, "the cancelled run kept the worker busy");
	/* and the sandboxed sleep is gone */
	int gone = 0;
	for (int i = 0; i < 100 && !gone; i++) {
		gone = ts_sh(NULL, NULL, "pgrep -f '^sleep 47.5$' >/dev/null") != 0;
		if (!gone)
			usleep(50000);
	}
	cr_assert(gone, "the cancelled command still runs");
}

Test(serve, a_silent_client_holds_a_worker_10_s_at_most)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* the only worker took the silent connection; the next client waits
	 * for the worker's receive timeout, not forever */
	char *o, *e;
	time_t t0 = time(NULL);
	cr_assert_eq(run_exec(&o, &e, sock, "-- /bin/echo after"), 0, "%s", e);
	cr_assert_str_eq(o, "after\n");
	cr_assert_lt(time(NULL) - t0, 20);
	free(o), free(e);
	close(fd);
}

Test(serve, a_second_server_on_the_same_socket_refuses)
{
	char *o, *e;
	int rc = ts_sh(&o, &e, "%s serve --socket %s --workers 1", ts_swerve_bin(), sock);
	cr_assert_eq(rc, 2, "%s", e);
	cr_assert(strstr(e, "another server listens there"), "%s", e);
	free(o), free(e);
	/* a file that is not a socket is never removed */
	char f[512];
	snprintf(f, sizeof(f), "%s/plain", dir);
	cr_assert_eq(ts_write_file(f, "keep", 4), 0);
	rc = ts_sh(&o, &e, "%s serve --socket %s --workers 1", ts_swerve_bin(), f);
	cr_assert_eq(rc, 2, "%s", e);
	cr_assert(strstr(e, "exists and is not a socket"), "%s", e);
	free(o), free(e);
	char *keep = ts_read_file(f, NULL);
	cr_assert_str_eq(keep, "keep");
	free(keep);
}
