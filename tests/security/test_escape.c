/* test_escape.c - the security suite: each case runs tests/security/progs/
 * escape.c inside the sandbox and asserts the exact containment outcome (the
 * errno each attempt got, the verdict, the syscall named). Criterion runs
 * each test in its own process; cases skip where the host cannot sandbox. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/sandbox_support.h"
#include "tests/support/support.h"

#define R_INIT                                                                                     \
	{                                                                                          \
		0                                                                                  \
	}

static void expect_ok(struct swerve_sandbox_result *r, int rc, const char *out)
{
	cr_assert_eq(rc, 0, "run failed: %s", r->reason);
	cr_assert_eq(r->verdict, SWERVE_VERDICT_OK, "verdict %s (%s) stderr: %s",
	             swerve_verdict_name(r->verdict), r->reason, r->err.data);
	if (out)
		cr_assert_str_eq(r->out.data, out);
}

static struct swerve_sandbox_opts with_ws(const char *ws)
{
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.workspace = ws;
	o.limits.wall_ms = 10000;
	return o;
}

/* ---- network ---------------------------------------------------------------- */

Test(network, host_loopback_listener_and_outside_world_unreachable)
{
	TS_NEED_SANDBOX();
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	cr_assert(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s, 4) == 0);
	getsockname(s, (struct sockaddr *)&a, &al);
	char port[16];
	snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "connect", port, NULL);
	expect_ok(&r, rc, "ECONNREFUSED\nENETUNREACH\n");
	swerve_sandbox_result_dispose(&r);
	close(s);
}

Test(network, no_socket_state_carries_over_to_the_next_run)
{
	TS_NEED_SANDBOX();
	/* a fixed port bound without SO_REUSEADDR after a server-side close:
	 * a network namespace shared between runs would keep the TIME_WAIT
	 * socket and the next run would get EADDRINUSE */
	for (int i = 0; i < 3; i++) {
		struct swerve_sandbox_result r = R_INIT;
		int rc = ts_escape(&r, NULL, "tcpcycle", "8080", NULL);
		expect_ok(&r, rc, "ok\n");
		swerve_sandbox_result_dispose(&r);
	}
}

Test(network, packet_raw_alg_vsock_sockets_refused)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "sockets", NULL);
	/* packet, raw inet, AF_ALG, vsock refused; unix and inet6 datagram work */
	expect_ok(&r, rc, "EAFNOSUPPORT\nEPERM\nEAFNOSUPPORT\nEAFNOSUPPORT\nok\nok\n");
	swerve_sandbox_result_dispose(&r);
}

/* ---- files ------------------------------------------------------------------ */

Test(files, host_secret_outside_binds_unreadable)
{
	TS_NEED_SANDBOX();
	char secret[128];
	snprintf(secret, sizeof(secret), "/root/swerve-secret-%d", (int)getpid());
	if (ts_write_file(secret, "hunter2\n", 8) < 0)
		cr_skip_test("cannot write a secret under /root (not root?)");
	char old[200];
	snprintf(old, sizeof(old), "/.oldroot%s", secret);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "read", secret, old, "/etc/shadow", "/root",
	                   "/etc/ssl/private", "/etc/gshadow", NULL);
	unlink(secret);
	expect_ok(&r, rc, "ENOENT\nENOENT\nENOENT\nENOENT\nENOENT\nENOENT\n");
	cr_assert_null(strstr(r.out.data, "hunter2"));
	swerve_sandbox_result_dispose(&r);
}

Test(files, readonly_binds_and_root_not_writable)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "write", "/usr/bin/swerve-planted", "/etc/passwd",
	                   "/etc/ld.so.cache", TS_PROGS "/planted", "/planted", "/bin/planted",
	                   NULL);
	expect_ok(&r, rc, NULL);
	/* EROFS; or EACCES first where the sandbox user does not own the file
	 * (a non-root worker) - never "ok" */
	int n = 0;
	for (char *l = r.out.data; *l; l = strchr(l, '\n') + 1, n++)
		cr_assert(!strncmp(l, "EROFS\n", 6) || !strncmp(l, "EACCES\n", 7), "line %d: %s", n,
		          r.out.data);
	cr_assert_eq(n, 6);
	swerve_sandbox_result_dispose(&r);
	cr_assert_neq(access("/usr/bin/swerve-planted", F_OK), 0);
}

Test(files, workspace_writable_outside_it_not)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp();
	struct swerve_sandbox_opts o = with_ws(ws);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "write", "/workspace/made-inside", "/outside", "/usr/x", NULL);
	expect_ok(&r, rc, "ok\nEROFS\nEROFS\n");
	char p[512];
	snprintf(p, sizeof(p), "%s/made-inside", ws);
	cr_assert_eq(access(p, F_OK), 0, "file written inside is not in the host workspace");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(files, overlay_keeps_pristine_tree_unchanged)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_probe p;
	swerve_sandbox_probe(&p);
	if (!p.overlay_userns)
		cr_skip_test("overlay in user namespaces unavailable: %s", p.why);
	char *d = ts_mkdtemp(), lower[512], upper[512], work[512], f[600];
	snprintf(lower, sizeof(lower), "%s/pristine", d);
	snprintf(upper, sizeof(upper), "%s/upper", d);
	snprintf(work, sizeof(work), "%s/work", d);
	snprintf(f, sizeof(f), "%s/a.txt", lower);
	ts_write_file(f, "pristine\n", 9);
	snprintf(f, sizeof(f), "%s/b.txt", lower);
	ts_write_file(f, "b\n", 2);
	mkdir(upper, 0755);
	mkdir(work, 0755);
	const char *lowers[] = {lower, NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.workspace_lower = lowers;
	o.workspace_upper = upper;
	o.workspace_work = work;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "append", "/workspace/a.txt", "model\n", NULL);
	expect_ok(&r, rc, "ok\n");
	cr_assert_eq(r.used_overlay, 1);
	swerve_sandbox_result_dispose(&r);
	rc = ts_escape(&r, &o, "unlink", "/workspace/b.txt", NULL);
	expect_ok(&r, rc, "ok\n");
	swerve_sandbox_result_dispose(&r);
	/* the pristine tree is untouched; the upper dir holds the changes */
	snprintf(f, sizeof(f), "%s/a.txt", lower);
	char *s = ts_read_file(f, NULL);
	cr_assert_str_eq(s, "pristine\n");
	free(s);
	snprintf(f, sizeof(f), "%s/b.txt", lower);
	cr_assert_eq(access(f, F_OK), 0);
	snprintf(f, sizeof(f), "%s/a.txt", upper);
	s = ts_read_file(f, NULL);
	cr_assert_str_eq(s, "pristine\nmodel\n");
	free(s);
	/* a second run over the same upper sees the first run's changes */
	rc = ts_escape(&r, &o, "read", "/workspace/b.txt", "/workspace/a.txt", NULL);
	expect_ok(&r, rc, "ENOENT\nok\n");
	/* the pristine tree itself is not reachable for writing from inside */
	swerve_sandbox_result_dispose(&r);
	rc = ts_escape(&r, &o, "write", lower, NULL);
	expect_ok(&r, rc, "ENOENT\n");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(d);
	free(d);
}

Test(files, planted_symlink_and_hardlink_do_not_reach_host)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp(), secret[128];
	snprintf(secret, sizeof(secret), "/root/swerve-link-secret-%d", (int)getpid());
	if (ts_write_file(secret, "hunter2\n", 8) < 0)
		cr_skip_test("cannot write a secret under /root (not root?)");
	struct swerve_sandbox_opts o = with_ws(ws);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "links", secret, "/workspace", NULL);
	unlink(secret);
	/* symlink made (dangling inside), following it fails, hardlinks across
	 * mounts fail */
	expect_ok(&r, rc, "ok\nENOENT\nEXDEV\nEXDEV\n");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(files, no_dev_mem_raw_disks_or_sys)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "devices", NULL);
	/* mem, kmem, sda, vda, /sys absent; mknod refused; /dev/null works */
	expect_ok(&r, rc, "ENOENT\nENOENT\nENOENT\nENOENT\nENOENT\nEPERM\nok\n");
	swerve_sandbox_result_dispose(&r);
}

Test(files, setuid_binary_gives_nothing)
{
	TS_NEED_SANDBOX();
	if (geteuid() != 0)
		cr_skip_test("making a setuid-root file needs root");
	char *ws = ts_mkdtemp(), cmd[1024];
	snprintf(cmd, sizeof(cmd),
	         "cp %s/escape %s/suid && chown 0:0 %s/suid && chmod 4755 %s/suid", ts_progs_dir(),
	         ws, ws, ws);
	cr_assert_eq(ts_sh(NULL, NULL, "%s", cmd), 0);
	struct swerve_sandbox_opts o = with_ws(ws);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "setuid", "/workspace/suid", NULL);
	expect_ok(&r, rc, "suid-bit\n1000 1000\n");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

/* ---- namespaces and privileged syscalls -------------------------------------- */

Test(syscalls, mount_umount_pivot_unshare_setns_clone_chroot_refused)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "ns", NULL);
	expect_ok(&r, rc, "EPERM\nEPERM\nEPERM\nEPERM\nEPERM\nEPERM\nEPERM\nEPERM\n");
	swerve_sandbox_result_dispose(&r);
}

Test(syscalls, keyctl_and_clock_refused)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "keyctl", NULL);
	expect_ok(&r, rc, "EPERM\nEPERM\n");
	swerve_sandbox_result_dispose(&r);
	rc = ts_escape(&r, NULL, "clock", NULL);
	expect_ok(&r, rc, "EPERM\nEPERM\n");
	swerve_sandbox_result_dispose(&r);
}

Test(syscalls, forbidden_syscalls_kill_with_verdict_sv_and_name)
{
	TS_NEED_SANDBOX();
	const char *names[] = {"bpf",    "perf_event_open", "init_module",      "kexec_load",
	                       "reboot", "swapon",          "open_by_handle_at"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct swerve_sandbox_result r = R_INIT;
		int rc = ts_escape(&r, NULL, "kill-syscall", names[i], NULL);
		cr_assert_eq(rc, 0, "%s: %s", names[i], r.reason);
		cr_assert_eq(r.verdict, SWERVE_VERDICT_SV, "%s: verdict %s", names[i],
		             swerve_verdict_name(r.verdict));
		cr_assert_str_eq(r.syscall, names[i]);
		cr_assert_null(strstr(r.out.data, "survived"), "%s returned", names[i]);
		swerve_sandbox_result_dispose(&r);
	}
}

Test(syscalls, tiocsti_and_tioclinux_refused_including_high_bits)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "tiocsti", NULL);
	expect_ok(&r, rc, "EPERM\nEPERM\nEPERM\n");
	swerve_sandbox_result_dispose(&r);
}

Test(syscalls, io_uring_enosys)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "io_uring", NULL);
	expect_ok(&r, rc, "ENOSYS\n");
	swerve_sandbox_result_dispose(&r);
}

Test(syscalls, clone3_enosys_threads_still_work)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "clone3", NULL);
	expect_ok(&r, rc, "ENOSYS\nthreads\n");
	swerve_sandbox_result_dispose(&r);
}

Test(syscalls, x32_abi_syscall_killed)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "x32", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_SV, "verdict %s", swerve_verdict_name(r.verdict));
	cr_assert_eq(r.signal, SIGSYS);
	cr_assert_str_eq(r.out.data, "");
	swerve_sandbox_result_dispose(&r);
}

Test(syscalls, i386_int80_syscall_killed)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "int80", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_SV, "verdict %s", swerve_verdict_name(r.verdict));
	cr_assert_eq(r.signal, SIGSYS);
	cr_assert_str_eq(r.out.data, "");
	swerve_sandbox_result_dispose(&r);
}

/* ---- resources ------------------------------------------------------------------ */

Test(resources, fork_bomb_capped_and_ended_at_deadline)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.limits.wall_ms = 1500;
	o.limits.nproc = 64;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "forkbomb", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_TO, "verdict %s", swerve_verdict_name(r.verdict));
	int n = -1;
	cr_assert_eq(sscanf(r.out.data, "EAGAIN %d", &n), 1, "out: %s", r.out.data);
	cr_assert(n > 10 && n <= 64 + 300, "forked %d", n);
	cr_assert_lt(r.wall_us, 6000000);
	swerve_sandbox_result_dispose(&r);
}

Test(resources, memory_bomb_ml)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.limits.wall_ms = 10000;
	o.limits.memory_bytes = 256ull << 20;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "membomb", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_ML, "verdict %s", swerve_verdict_name(r.verdict));
	cr_assert_lt(r.wall_us, 5000000);
	cr_assert_lt(r.max_rss_kb, 1024 * 1024, "rss %llu kB", (unsigned long long)r.max_rss_kb);
	swerve_sandbox_result_dispose(&r);
}

Test(resources, filling_tmp_stops_at_its_size)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.tmp_bytes = 4 << 20;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "fill", "/tmp/fill", NULL);
	expect_ok(&r, rc, NULL);
	long n = -1;
	cr_assert_eq(sscanf(r.out.data, "ENOSPC %ld", &n), 1, "out: %s", r.out.data);
	cr_assert_leq(n, 4 << 20);
	swerve_sandbox_result_dispose(&r);
}

Test(resources, filling_workspace_stops_at_file_size_limit)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp();
	struct swerve_sandbox_opts o = with_ws(ws);
	o.limits.fsize_bytes = 1 << 20;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "fill", "/workspace/big", NULL);
	expect_ok(&r, rc, "EFBIG 1048576\n");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(resources, output_flood_ol_keeps_head_and_tail)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.limits.output_bytes = 4096;
	o.limits.output_kill_bytes = 8 << 20;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "flood", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_OL, "verdict %s", swerve_verdict_name(r.verdict));
	cr_assert_eq(r.out.truncated, 1);
	cr_assert_gt(r.out.total, 8 << 20);
	cr_assert_eq(strncmp(r.out.data, "HEAD-MARK\n", 10), 0);
	cr_assert_not_null(strstr(r.out.data, "bytes omitted"));
	cr_assert_eq(r.out.data[r.out.len - 1], 'y');
	cr_assert_lt(r.out.len, 4096 + 100);
	swerve_sandbox_result_dispose(&r);
}

static long file_size(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

Test(resources, daemonised_grandchild_killed_when_command_exits)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp(), f[512];
	snprintf(f, sizeof(f), "%s/beat", ws);
	struct swerve_sandbox_opts o = with_ws(ws);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "daemon", "/workspace/beat", "0", NULL);
	expect_ok(&r, rc, "main done\n");
	long a = file_size(f);
	cr_assert_gt(a, 0, "the daemon never ran");
	usleep(200000);
	cr_assert_eq(file_size(f), a, "the daemon outlived the run");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(resources, daemonised_grandchild_killed_at_deadline)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp(), f[512];
	snprintf(f, sizeof(f), "%s/beat", ws);
	struct swerve_sandbox_opts o = with_ws(ws);
	o.limits.wall_ms = 1000;
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "daemon", "/workspace/beat", "30", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_TO);
	cr_assert_lt(r.wall_us, 3000000, "wall %llu us", (unsigned long long)r.wall_us);
	long a = file_size(f);
	cr_assert_gt(a, 0);
	usleep(200000);
	cr_assert_eq(file_size(f), a, "the daemon outlived the deadline");
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

/* ---- process state ------------------------------------------------------------- */

Test(process, supervisor_sentinel_fd_not_visible)
{
	TS_NEED_SANDBOX();
	int fd = open("/etc/hostname", O_RDONLY); /* deliberately not CLOEXEC */
	cr_assert_geq(fd, 0);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "fds", NULL);
	expect_ok(&r, rc, "0\n");
	swerve_sandbox_result_dispose(&r);
	close(fd);
}

Test(process, parent_environment_not_visible)
{
	TS_NEED_SANDBOX();
	setenv("SWERVE_TEST_SECRET", "hunter2", 1);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "env", "SWERVE_TEST_SECRET", NULL);
	expect_ok(&r, rc, "(unset)\n");
	swerve_sandbox_result_dispose(&r);
	const char *env[] = {"GIVEN=yes", NULL};
	struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
	o.env = env;
	rc = ts_escape(&r, &o, "env", "GIVEN", NULL);
	expect_ok(&r, rc, "yes\n");
	swerve_sandbox_result_dispose(&r);
}

Test(process, core_dumps_off)
{
	TS_NEED_SANDBOX();
	char *ws = ts_mkdtemp();
	struct swerve_sandbox_opts o = with_ws(ws);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, &o, "core", NULL);
	cr_assert_eq(rc, 0);
	cr_assert_eq(r.verdict, SWERVE_VERDICT_SG);
	cr_assert_eq(r.signal, SIGABRT);
	cr_assert_str_eq(r.out.data, "core 0 0\nEPERM\n");
	char *ls = NULL;
	ts_sh(&ls, NULL, "ls %s", ws);
	cr_assert_str_eq(ls, "", "files left: %s", ls);
	free(ls);
	swerve_sandbox_result_dispose(&r);
	ts_rmtree(ws);
	free(ws);
}

Test(process, hostname_and_sysv_ipc_stay_inside)
{
	TS_NEED_SANDBOX();
	char before[256], after[256], key[32];
	gethostname(before, sizeof(before));
	int k = 0x5e000000 | (getpid() & 0xffffff);
	snprintf(key, sizeof(key), "%d", k);
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "uts-ipc", key, NULL);
	expect_ok(&r, rc, "EPERM\nsandbox\nok\n");
	gethostname(after, sizeof(after));
	cr_assert_str_eq(before, after);
	cr_assert_eq(shmget((key_t)k, 0, 0), -1, "the sandbox's SysV segment reached the host");
	cr_assert_eq(errno, ENOENT);
	swerve_sandbox_result_dispose(&r);
}

Test(process, supervisor_binary_not_writable_through_proc)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "proc", NULL);
	expect_ok(&r, rc, NULL);
	/* /proc/1 is the sandbox's init (a clone of this test binary): not
	 * openable; own exe busy; sysctls read-only; only 2 pids visible */
	char l[5][32];
	int pids = -1;
	cr_assert_eq(sscanf(r.out.data, "%31s %31s %31s %31s %31s pids %d", l[0], l[1], l[2], l[3],
	                    l[4], &pids),
	             6, "out: %s", r.out.data);
	cr_assert_str_eq(l[0], "EACCES");
	cr_assert_str_eq(l[1], "EACCES");
	for (int i = 2; i < 5; i++)
		cr_assert_str_neq(l[i], "ok", "line %d: %s", i, r.out.data);
	cr_assert_eq(pids, 2);
	swerve_sandbox_result_dispose(&r);
}

static volatile sig_atomic_t handled;
static void on_signal(int sig)
{
	(void)sig;
	handled++;
}

Test(process, init_memory_and_signal_handlers_unreachable)
{
	TS_NEED_SANDBOX();
	/* the supervisor's handlers: on the shared-memory start, pid 1 runs in
	 * this address space, so a handler running there would be a way in */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	int sigs[] = {SIGUSR1, SIGTERM, SIGINT, SIGHUP};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		cr_assert_eq(sigaction(sigs[i], &sa, NULL), 0);
	for (int run = 0; run < 3; run++) {
		struct swerve_sandbox_result r = R_INIT;
		int rc = ts_escape(&r, NULL, "init", NULL);
		/* /proc is read-only (EROFS before any permission check);
		 * process_vm_readv and pidfd_getfd (init's control socket)
		 * refused by the kernel's ptrace access check: init is not
		 * dumpable (and Yama, where on, refuses a child attaching to its
		 * parent as well) */
		expect_ok(&r, rc, "EROFS\nEACCES\nEACCES\nEACCES\nEPERM\nEPERM\nalive\n");
		swerve_sandbox_result_dispose(&r);
	}
	cr_assert_eq(handled, 0, "a signal sent to pid 1 ran a handler of the supervisor");
}

Test(process, no_capabilities_no_new_privs_seccomp_filter)
{
	TS_NEED_SANDBOX();
	struct swerve_sandbox_result r = R_INIT;
	int rc = ts_escape(&r, NULL, "caps", NULL);
	expect_ok(&r, rc, NULL);
	/* every set empty, the bounding set included: nothing to regain by exec */
	const char *want[] = {"CapInh:\t0000000000000000\n",
	                      "CapPrm:\t0000000000000000\n",
	                      "CapEff:\t0000000000000000\n",
	                      "CapBnd:\t0000000000000000\n",
	                      "CapAmb:\t0000000000000000\n",
	                      "NoNewPrivs:\t1\n",
	                      "Seccomp:\t2\n"};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(strstr(r.out.data, want[i]), "missing %s in:\n%s", want[i], r.out.data);
	swerve_sandbox_result_dispose(&r);
}
