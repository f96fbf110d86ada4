/* spawn.c - clone(2) into new namespaces and the child's containment
 * checklist, nsjail-style, seccomp last.
 *
 * Two processes live in every sandbox:
 *   init    (pid 1 of the new pid namespace; our code) builds the mount
 *           namespace, brings loopback up, forks the command, reaps every
 *           orphan, and when the command exits sends its wait status to the
 *           supervisor and exits - which makes the kernel kill whatever else
 *           is still running in the namespace (daemons, double forks).
 *   command (pid 2) sets up stdio, setsid, parent-death signal, rlimits,
 *           drops every capability, sets no_new_privs, loads the seccomp
 *           filter (sending its notification listener to the supervisor),
 *           and execs (or calls the in-process fn).
 * Both are raw clones of the caller: no malloc, no stdio, no atfork
 * handlers. The first thing init does is close every fd it inherited from
 * the caller but its own (other threads' pipes must not be held open).
 *
 * Two ways into the namespaces:
 *   slow path (any uid): clone with CLONE_NEWUSER|NEWNET|NEWUTS too; the
 *           supervisor writes the id maps and releases init over the socket.
 *   fast path (the worker is root): a per-context holder process owns a
 *           template root (see mount.c), a network namespace with loopback
 *           up (see net.c: no TIME_WAIT, no TCP metrics cache), a user
 *           namespace (sandbox uid 1000 = the worker's uid) and a uts
 *           namespace. A run clones pid, ipc and cgroup namespaces, joins a
 *           private copy of the template mount namespace and attaches its own
 *           mounts as real root (the sandbox user has no privilege over that
 *           mount namespace, nor over the network one), then joins the
 *           holder's net, uts and user namespaces (setns). No id-map
 *           handshake, no per-run root or network namespace (creating one
 *           costs ~0.4 ms, and tearing it down keeps a kernel worker busy).
 *           Nothing persists in the shared ones between runs: the sandbox has
 *           no capability to change them, every socket dies with its
 *           processes, and closed TCP connections leave no TIME_WAIT. A failing step writes
 * {step, index, errno} on the CLOEXEC socketpair and _exits; a successful exec closes the command's
 * copy.
 */
#include "sandbox/internal.h"
#include "sandbox/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void sb_send(int sock, const struct sb_msg *m)
{
	ssize_t r;
	do
		r = send(sock, m, sizeof(*m), MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
}

__attribute__((noreturn)) static void fail(int sock, int step, int index)
{
	struct sb_msg m = {SB_MSG_ERROR, step, index, errno, 0};
	sb_send(sock, &m);
	_exit(127);
}

static int send_fd(int sock, int fd)
{
	char data = 'L';
	struct iovec iov = {&data, 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = u.buf,
	                    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int drop_caps(int last)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	/* the bounding set: every capability this kernel has (cap_last_cap) */
	for (int cap = 0; cap <= last; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -1;
	/* root inside never regains capabilities on exec, locked */
	if (prctl(PR_SET_SECUREBITS,
	          SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
	                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
	                  SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
	          0, 0, 0) < 0)
		return -1;
	return (int)syscall(SYS_capset, &h, d);
}

/* execve with a PATH search over the sandbox's PATH (execvpe would use the
 * caller's environment), in a stack buffer. */
static void exec_path(const struct sb_child *c)
{
	const char *file = c->argv[0];
	char buf[4096];
	if (strchr(file, '/')) {
		execve(file, c->argv, c->envp);
		return;
	}
	int saw_eacces = 0;
	size_t fl = strlen(file);
	for (const char *p = c->path; p && *p;) {
		const char *e = strchr(p, ':');
		size_t dl = e ? (size_t)(e - p) : strlen(p);
		if (dl + fl + 2 <= sizeof(buf)) {
			memcpy(buf, dl ? p : ".", dl ? dl : 1);
			size_t n = dl ? dl : 1;
			buf[n] = '/';
			memcpy(buf + n + 1, file, fl + 1);
			execve(buf, c->argv, c->envp);
			if (errno == EACCES)
				saw_eacces = 1;
			else if (errno != ENOENT && errno != ENOTDIR)
				return;
		}
		p = e ? e + 1 : NULL;
	}
	errno = saw_eacces ? EACCES : ENOENT;
}

static int close_except(int *keep, int n);

/* A prepared command (swerve_sandbox_prepare): every containment step but
 * the limits is done; says so and waits for its run, whose supervisor then
 * parks again (libc is ours after the byte). The wait is a raw read: the
 * supervisor runs on this memory and TLS meanwhile. */
static void wait_for_run(const struct sb_child *c)
{
	struct sb_msg m = {SB_MSG_READY, 0, 0, 0, 0};
	char go;
	long k;
	sb_send(c->sock, &m);
	do
		k = sb_raw_syscall(SYS_read, c->go_r, (long)&go, 1, 0, 0, 0);
	while (k == -EINTR);
	if (k != 1) /* discarded: the supervisor closed its end */
		for (;;)
			sb_raw_syscall(SYS_exit_group, 127, 0, 0, 0, 0, 0);
	close(c->go_r);
}

__attribute__((noreturn)) static void command(const struct sb_child *c)
{
	int sock = c->sock, idx = -1, lfd;
	sigset_t none;
	sigemptyset(&none); /* a clean signal mask (init blocks everything) */
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 || setsid() < 0 ||
	    prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		fail(sock, SB_STEP_SETSID, -1);
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0 || dup2(nul, 0) < 0 || dup2(c->out_w, 1) < 0 || dup2(c->err_w, 2) < 0)
		fail(sock, SB_STEP_STDIO, -1);
	/* every other fd closed: nothing of the supervisor's is visible (a
	 * prepared command keeps its go socket, CLOEXEC, until the run) */
	int keep[2] = {sock, c->prepared ? c->go_r : -1};
	if (close_except(keep, 2) < 0)
		fail(sock, SB_STEP_STDIO, -1);
	if (!c->prepared && sb_limits_apply(c->rl, &idx) < 0)
		fail(sock, SB_STEP_RLIMIT, idx);
	if (drop_caps(c->cap_last) < 0)
		fail(sock, SB_STEP_CAPS, -1);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail(sock, SB_STEP_NNP, -1);
	lfd = sb_seccomp_load(c->prog);
	if (lfd < 0 || send_fd(sock, lfd) < 0)
		fail(sock, SB_STEP_SECCOMP, -1);
	close(lfd);
	if (c->prepared) {
		wait_for_run(c);
		if (sb_limits_apply(c->rl, &idx) < 0)
			fail(sock, SB_STEP_RLIMIT, idx);
	}
	c->shared->t_seccomp = sb_now_ns();
	if (c->fn) {
		/* fn may parse hostile input: it never gets the error channel */
		close(sock);
		int rc = c->fn(c->fn_arg);
		if (rc != 0 || !c->argv)
			_exit(rc & 0xff);
		/* fn then argv: same process, same containment */
		exec_path(c);
		static const char msg[] = "sandbox: exec after fn failed\n";
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(127);
		_exit(127);
	}
	exec_path(c);
	fail(sock, SB_STEP_EXEC, -1);
}

/* clone(2) entry of the command in the shared-memory start: runs on its
 * own stack in init's (= the caller's) address space until execve, while
 * init waits (CLONE_VFORK) and the supervisor is parked in a system call
 * that cannot change errno, so the libc calls here own errno. */
static int command_vm_entry(void *arg)
{
	command(arg);
}

/* Closes every fd >= 3 except those in keep (unsorted, -1 entries ignored). */
static int close_except(int *keep, int n)
{
	for (int i = 1; i < n; i++) /* insertion sort: n is tiny */
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	unsigned lo = 3;
	for (int i = 0; i < n; i++) {
		if (keep[i] < (int)lo)
			continue;
		if ((unsigned)keep[i] > lo && syscall(SYS_close_range, lo, keep[i] - 1, 0) < 0)
			return -1;
		lo = (unsigned)keep[i] + 1;
	}
	return (int)syscall(SYS_close_range, lo, ~0U, 0);
}

__attribute__((noreturn)) void sb_holder_main(int sock, const struct sb_mount_plan *tmpl)
{
	char go;
	int keep[1] = {sock}, step = 0, idx = -1;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || close_except(keep, 1) < 0)
		_exit(127);
	/* long-lived: must not keep the caller's stdio (a pipe's EOF) open */
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
		_exit(127);
	close(nul);
	/* the context's network namespace, made as real root (so the sandbox has
	 * no privilege over it) while the host's /proc is still reachable */
	if (unshare(CLONE_NEWNET) < 0 || sb_net_reusable() < 0 || sb_net_loopback_up() < 0)
		fail(sock, SB_STEP_NET, -1);
	if (sb_mount_apply(tmpl, &step, &idx) < 0)
		fail(sock, step, idx);
	if (unshare(CLONE_NEWUSER | CLONE_NEWUTS) < 0)
		fail(sock, SB_STEP_SETNS, -1);
	if (send(sock, "u", 1, MSG_NOSIGNAL) != 1 || read(sock, &go, 1) != 1)
		_exit(127);
	if (send(sock, "r", 1, MSG_NOSIGNAL) != 1)
		_exit(127);
	/* From here on the holder only has to exist. Become a small program so
	 * that this clone of the caller does not keep the caller's memory
	 * copy-on-write for the context's lifetime (killed by
	 * swerve_sandbox_free, or by the parent-death signal, which survives
	 * exec). */
	char *const argv[] = {"sleep", "infinity", NULL}, *const envp[] = {NULL};
	execve("/usr/bin/sleep", argv, envp);
	while (read(sock, &go, 1) > 0) /* no sleep(1): wait for the context */
		;
	_exit(0);
}

int sb_child_vm_entry(void *arg)
{
	sb_child_main(arg);
}

#if SB_HAVE_RAW_SYSCALL
/* The rest of init in the shared-memory start, once the command has exec'd
 * (or died): the supervisor runs again on the same memory and TLS, so only
 * raw system calls from here on (errno is the supervisor's). */
__attribute__((noreturn)) static void init_vm_wait(const struct sb_child *c, pid_t pid)
{
	int sock = c->sock;
	char b = 's';
	c->shared->t_exec = sb_now_ns(); /* vDSO: no errno */
	sb_raw_syscall(SYS_close, c->out_w, 0, 0, 0, 0, 0);
	sb_raw_syscall(SYS_close, c->err_w, 0, 0, 0, 0, 0);
	sb_raw_syscall(SYS_write, c->started_w, (long)&b, 1, 0, 0, 0);
	sb_raw_syscall(SYS_close, c->started_w, 0, 0, 0, 0, 0);
	for (;;) {
		int st = 0;
		long w = sb_raw_syscall(SYS_wait4, -1, (long)&st, __WALL, 0, 0, 0);
		if (w == pid) {
			struct sb_msg m = {SB_MSG_EXIT, 0, 0, 0, st};
			while (sb_raw_syscall(SYS_sendto, sock, (long)&m, sizeof(m), MSG_NOSIGNAL,
			                      0, 0) == -EINTR)
				;
			break;
		}
		if (w < 0 && w != -EINTR)
			break;
	}
	for (;;)
		sb_raw_syscall(SYS_exit_group, 0, 0, 0, 0, 0, 0);
}
#endif

__attribute__((noreturn)) void sb_child_main(const struct sb_child *c)
{
	int sock = c->sock, step = 0, idx = -1;
	char go;
	int keep[9] = {sock,
	               c->out_w,
	               c->err_w,
	               c->vm ? c->started_w : -1,
	               c->prepared ? c->go_r : -1,
	               c->ns_user,
	               c->ns_net,
	               c->ns_uts,
	               c->ns_mnt};
	if (c->vm) {
		/* the caller's signal handlers live in this address space: none
		 * may run here (a signal from inside the sandbox to pid 1 would
		 * run the supervisor's handler on its memory); SIGKILL still
		 * works */
		sigset_t all;
		sigfillset(&all);
		sb_raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, _NSIG / 8, 0, 0);
	}
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		fail(sock, SB_STEP_SETSID, -1);
	if (close_except(keep, c->fast ? 9 : 5) < 0)
		fail(sock, SB_STEP_STDIO, -1);
	/* slow path: the supervisor writes our uid/gid maps, then releases us */
	if (!c->fast && read(sock, &go, 1) != 1)
		_exit(127);
	/* not before: an unprivileged supervisor must be able to open our
	 * /proc/<pid>/uid_map; from now on /proc/1 is closed to the command */
	if (prctl(PR_SET_DUMPABLE, 0) < 0)
		fail(sock, SB_STEP_SETSID, -1);
	if (!c->fast && sethostname(c->hostname, strlen(c->hostname)) < 0)
		fail(sock, SB_STEP_HOSTNAME, -1);
	if ((c->fast ? sb_mount_attach(c->plan, c->ns_mnt, &step, &idx)
	             : sb_mount_apply(c->plan, &step, &idx)) < 0)
		fail(sock, step, idx);
	c->shared->t_mounts = c->shared->t_pivot = sb_now_ns();
	if (c->fast) {
		/* user last: joining it gives up every privilege outside it */
		if (setns(c->ns_net, CLONE_NEWNET) < 0 || setns(c->ns_uts, CLONE_NEWUTS) < 0 ||
		    setns(c->ns_user, CLONE_NEWUSER) < 0)
			fail(sock, SB_STEP_SETNS, -1);
		close(c->ns_net);
		close(c->ns_uts);
		close(c->ns_user);
		close(c->ns_mnt);
		if (sethostname(c->hostname, strlen(c->hostname)) < 0)
			fail(sock, SB_STEP_HOSTNAME, -1);
	} else if (sb_net_loopback_up() < 0) {
		fail(sock, SB_STEP_NET, -1);
	}
	if (chdir(c->cwd) < 0)
		fail(sock, SB_STEP_CWD, -1);
#if SB_HAVE_RAW_SYSCALL
	if (c->vm) {
		pid_t vpid = clone(command_vm_entry, c->cmd_stack_top,
		                   CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)c);
		if (vpid < 0)
			fail(sock, SB_STEP_FORK, -1);
		init_vm_wait(c, vpid);
	}
#endif
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
	if (pid < 0)
		fail(sock, SB_STEP_FORK, -1);
	if (pid == 0)
		command(c);
	/* init: hold nothing of the command's; reap until the command exits */
	close(c->out_w);
	close(c->err_w);
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, __WALL);
		if (w == pid) {
			struct sb_msg m = {SB_MSG_EXIT, 0, 0, 0, st};
			sb_send(sock, &m);
			_exit(0);
		}
		if (w < 0 && errno != EINTR)
			_exit(0);
	}
}
