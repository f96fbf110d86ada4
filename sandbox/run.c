/* run.c - the supervisor: the per-worker context and one run.
 *
 * swerve_sandbox_new() builds what every run reuses: the seccomp BPF, the
 * host probe, a MAP_SHARED page for the child's step timestamps.
 * swerve_sandbox_run() prepares the child's data (mount plan, env, rlimits),
 * clones into new user/mount/pid/net/ipc/uts/cgroup namespaces, writes the
 * uid/gid maps (setgroups denied; the sandbox user 1000 is the caller's uid
 * on the host), releases the child, then supervises: a wall-clock deadline
 * with sub-second resolution, head+tail output capture with a hard cap,
 * the resident memory of the sandbox's processes against the memory limit,
 * and the seccomp listener (a killed syscall is named, then the sandbox
 * killed). Every kill targets the pid namespace's init through a pidfd,
 * which takes every descendant with it. Accounting comes from wait4 on init,
 * which has reaped every process of the sandbox.
 *
 * Return convention: 0 with a model verdict, or a negative code with XX. */
#include "sandbox/internal.h"
#include "sandbox/spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* per run: fresh mount, pid, ipc and cgroup namespaces (the fast path's
 * child copies the template's mount namespace instead); user, net and uts
 * too on the slow path (the fast path joins the holder's) */
#define RUN_NS_FLAGS  (CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWCGROUP)
#define SLOW_NS_FLAGS (CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWUTS)

/* memory sampling period while a run is alive */
#define MEM_POLL_NS (10 * 1000000ull)

static int write_proc(pid_t pid, const char *file, const char *data);

#define VM_STACK (1u << 20) /* per stack of the shared-memory start */

static void prep_discard(struct swerve_sandbox *sb);

/* The probe's reasons that concern user namespaces (for an error message). */
static const char *userns_why(const struct swerve_sandbox_probe *p, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (const char *s = p->why; s && *s;) {
		const char *e = strstr(s, "; ");
		size_t l = e ? (size_t)(e - s) : strlen(s);
		if (!strncmp(s, "user namespaces", 15) && n + l + 3 < len)
			n += (size_t)snprintf(buf + n, len - n, "; %.*s", (int)l, s);
		s = e ? e + 2 : NULL;
	}
	return buf;
}

static int write_maps(const struct swerve_sandbox *sb, pid_t pid)
{
	char map[64];
	snprintf(map, sizeof(map), "%d %u 1", SB_UID, (unsigned)sb->host_uid);
	if (write_proc(pid, "uid_map", map) < 0 || write_proc(pid, "setgroups", "deny") < 0)
		return -1;
	snprintf(map, sizeof(map), "%d %u 1", SB_GID, (unsigned)sb->host_gid);
	return write_proc(pid, "gid_map", map);
}

static int open_ns(pid_t pid, const char *name)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, name);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static void holder_stop(struct swerve_sandbox *sb)
{
	int *fds[] = {&sb->ns_user, &sb->ns_net, &sb->ns_uts, &sb->ns_mnt, &sb->holder_sock};
	for (size_t i = 0; i < 5; i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	if (sb->holder_pid > 0) {
		kill(sb->holder_pid, SIGKILL);
		while (waitpid(sb->holder_pid, NULL, __WALL) < 0 && errno == EINTR)
			;
		sb->holder_pid = 0;
	}
	sb->fast = 0;
}

static int recv_byte(int fd, char want)
{
	char r;
	struct pollfd pf = {fd, POLLIN, 0};
	return poll(&pf, 1, 5000) == 1 && recv(fd, &r, 1, 0) == 1 && r == want ? 0 : -1;
}

/* Starts the per-context holder (fast path) with a template root for the
 * mount points that o needs. On any failure the context stays on the slow
 * path; nothing is reported (the slow path reports real errors). */
static void holder_start(struct swerve_sandbox *sb, const struct swerve_sandbox_opts *o)
{
	int sv[2];
	/* keep the former template's mount points (bounded) */
	char *old = sb->tmpl.key_len && sb->tmpl.key_len < 65536 ? strdup(sb->tmpl.key) : NULL;
	sb->tmpl.extra_key = old;
	int rc = sb_mount_plan_build(&sb->tmpl, SB_PLAN_TEMPLATE, o, sb->passwd, sb->group);
	sb->tmpl.extra_key = NULL;
	free(old);
	if (rc < 0) {
		swerve_error_clear();
		return;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, NULL, NULL, 0);
	if (pid == 0)
		sb_holder_main(sv[1], &sb->tmpl);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return;
	}
	sb->holder_pid = pid;
	sb->holder_sock = sv[0];
	if (recv_byte(sv[0], 'u') < 0 || write_maps(sb, pid) < 0 ||
	    send(sv[0], "g", 1, MSG_NOSIGNAL) != 1 || recv_byte(sv[0], 'r') < 0) {
		holder_stop(sb);
		return;
	}
	sb->ns_user = open_ns(pid, "user");
	sb->ns_net = open_ns(pid, "net");
	sb->ns_uts = open_ns(pid, "uts");
	sb->ns_mnt = open_ns(pid, "mnt");
	if (sb->ns_user < 0 || sb->ns_net < 0 || sb->ns_uts < 0 || sb->ns_mnt < 0) {
		holder_stop(sb);
		return;
	}
	sb->fast = 1;
}

int swerve_sandbox_new(struct swerve_sandbox **out, const void *config)
{
	(void)config;
	struct swerve_sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return swerve_error_set(SWERVE_ENOMEM, "sandbox: out of memory");
	/* The full probe forks and mounts (a few ms): a one-shot process should
	 * not pay for it. Here only what can be read cheaply; a clone that fails
	 * later runs the probe to name the setting to change. */
	if (sb_probe_quick(&sb->probe) < 0) {
		int rc = swerve_error_set(SWERVE_EUNSUPPORTED, "sandbox: %s", sb->probe.why);
		free(sb);
		return rc;
	}
	if (sb_seccomp_build(&sb->prog) < 0) {
		free(sb);
		return swerve_error_wrap("sandbox");
	}
	sb->shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sb->shared == MAP_FAILED) {
		sb_seccomp_dispose(&sb->prog);
		free(sb);
		return swerve_error_set(SWERVE_ENOMEM, "sandbox: mmap: %s", strerror(errno));
	}
	sb->host_uid = geteuid();
	sb->host_gid = getegid();
	snprintf(sb->passwd, sizeof(sb->passwd),
	         "root:x:0:0:root:/root:/bin/sh\nsandbox:x:%d:%d:sandbox:/tmp:/bin/sh\n"
	         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
	         SB_UID, SB_GID);
	snprintf(sb->group, sizeof(sb->group), "root:x:0:\nsandbox:x:%d:\nnogroup:x:65534:\n",
	         SB_GID);
	sb->holder_sock = sb->ns_user = sb->ns_net = sb->ns_uts = sb->ns_mnt = -1;
	sb->cap_last = 63;
	FILE *cl = fopen("/proc/sys/kernel/cap_last_cap", "re");
	if (cl) {
		if (fscanf(cl, "%d", &sb->cap_last) != 1 || sb->cap_last < 0 || sb->cap_last > 63)
			sb->cap_last = 63;
		fclose(cl);
	}
	/* SWERVE_SANDBOX_SLOW=1 forces the per-run namespaces (tests, benchmarks) */
	const char *slow = getenv("SWERVE_SANDBOX_SLOW");
	sb->want_holder = geteuid() == 0 && !(slow && *slow && strcmp(slow, "0"));
	/* cgroup v2 limits (cgroup.c) where a delegated directory exists:
	 * SWERVE_SANDBOX_CGROUP names one (it must then be usable), else this
	 * process's own cgroup is tried where the probe found it delegated;
	 * otherwise runs keep the sampling and rlimits, and cg.why says why */
	const char *cgdir = getenv("SWERVE_SANDBOX_CGROUP");
	if (cgdir && *cgdir) {
		if (sb_cgroup_parent_open(&sb->cg, cgdir, 0) < 0) {
			int rc = swerve_error_wrap("sandbox: SWERVE_SANDBOX_CGROUP");
			swerve_sandbox_free(sb);
			return rc;
		}
	} else if (sb->probe.cgroup2) {
		if (sb_cgroup_parent_open(&sb->cg, sb->probe.cgroup2_path, 0) < 0)
			swerve_error_clear();
	} else {
		sb_cgroup_parent_disable(&sb->cg, strstr(sb->probe.why, "cgroup v2:"));
	}
	*out = sb;
	return 0;
}

void swerve_sandbox_free(struct swerve_sandbox *sb)
{
	if (!sb)
		return;
	prep_discard(sb);
	holder_stop(sb);
	sb_cgroup_parent_close(&sb->cg);
	sb_seccomp_dispose(&sb->prog);
	sb_mount_plan_dispose(&sb->plan);
	sb_mount_plan_dispose(&sb->tmpl);
	sb_mount_plan_dispose(&sb->run_plan);
	sb_mount_plan_dispose(&sb->cand_plan);
	if (sb->shared && sb->shared != MAP_FAILED)
		munmap(sb->shared, 4096);
	if (sb->vm_stacks)
		munmap(sb->vm_stacks, 2 * VM_STACK);
	free(sb);
}

int swerve_sandbox_warm(struct swerve_sandbox *sb)
{
	for (int i = 0; i < 2 && !sb->fast; i++) {
		struct swerve_sandbox_opts o = SWERVE_SANDBOX_OPTS_INIT;
		const char *argv[] = {"/bin/true", NULL};
		struct swerve_sandbox_result r;
		o.argv = argv;
		o.limits.wall_ms = 10000;
		int rc = swerve_sandbox_run(&r, sb, &o);
		swerve_sandbox_result_dispose(&r);
		if (rc < 0)
			return rc;
		if (!sb->want_holder)
			break; /* slow path by choice or necessity: nothing to warm */
	}
	return 0;
}

void swerve_sandbox_last_timing(const struct swerve_sandbox *sb, struct swerve_sandbox_timing *out)
{
	*out = sb->timing;
}

static int write_proc(pid_t pid, const char *file, const char *data)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, data, strlen(data));
	int e = errno;
	close(fd);
	errno = e;
	return w == (ssize_t)strlen(data) ? 0 : -1;
}

/* ---- environment ---------------------------------------------------------- */

struct envbuf {
	char **envp;
	const char *path;
};

static int env_build(struct envbuf *e, const char *const *env)
{
	static const char *const defaults[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
	                                       "LANG=C.UTF-8"};
	size_t n = 0;
	for (size_t i = 0; env && env[i]; i++) {
		const char *eq = strchr(env[i], '=');
		if (!eq || eq == env[i])
			return swerve_error_set(SWERVE_EINVAL,
			                        "sandbox: env entry '%s': expected NAME=value",
			                        env[i]);
		n++;
	}
	e->envp = calloc(n + 4, sizeof(char *));
	if (!e->envp)
		return swerve_error_set(SWERVE_ENOMEM, "sandbox: out of memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		e->envp[k++] = (char *)env[i];
	for (size_t d = 0; d < 3; d++) {
		size_t nl = (size_t)(strchr(defaults[d], '=') - defaults[d]) + 1;
		int have = 0;
		for (size_t i = 0; i < n; i++)
			if (!strncmp(env[i], defaults[d], nl))
				have = 1;
		if (!have)
			e->envp[k++] = (char *)defaults[d];
	}
	e->path = "";
	for (size_t i = 0; i < k; i++)
		if (!strncmp(e->envp[i], "PATH=", 5))
			e->path = e->envp[i] + 5;
	return 0;
}

/* ---- memory ----------------------------------------------------------------- */

/* Anonymous resident bytes of init and all its descendants (via
 * /proc/<pid>/task/<tid>/children). tmpfs use is bounded by the tmpfs sizes. */
static uint64_t tree_rss(pid_t init)
{
	static long page;
	if (!page)
		page = sysconf(_SC_PAGESIZE);
	pid_t stack[4096];
	size_t sp = 0;
	uint64_t total = 0;
	char path[96], buf[4096];
	stack[sp++] = init;
	while (sp) {
		pid_t p = stack[--sp];
		snprintf(path, sizeof(path), "/proc/%d/statm", (int)p);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf) - 1);
			close(fd);
			if (n > 0) {
				buf[n] = '\0';
				unsigned long long size, res, shared;
				/* resident minus file-backed: shared libraries are
				 * counted once per process otherwise */
				if (sscanf(buf, "%llu %llu %llu", &size, &res, &shared) == 3 &&
				    res > shared)
					total += (res - shared) * (uint64_t)page;
			}
		}
		snprintf(path, sizeof(path), "/proc/%d/task", (int)p);
		DIR *d = opendir(path);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char cp[300];
			snprintf(cp, sizeof(cp), "/proc/%d/task/%s/children", (int)p, de->d_name);
			int fd2 = open(cp, O_RDONLY | O_CLOEXEC);
			if (fd2 < 0)
				continue;
			ssize_t n = read(fd2, buf, sizeof(buf) - 1);
			close(fd2);
			if (n <= 0)
				continue;
			buf[n] = '\0';
			for (char *s = buf; *s;) {
				char *end;
				long c = strtol(s, &end, 10);
				if (end == s)
					break;
				if (sp < sizeof(stack) / sizeof(stack[0]))
					stack[sp++] = (pid_t)c;
				s = end;
			}
		}
		closedir(d);
	}
	return total;
}

/* ---- the run -------------------------------------------------------------- */

struct sup {
	int out_r, err_r, sock, pidfd, listener;
	struct sb_capture out, err;
	int killed;    /* our verdict when we killed it, else -1 */
	int cancelled; /* opts->cancel_fd fired: the run is XX */
	int have_exit, exit_status;
	int have_error;
	struct sb_msg error;
	int out_eof, err_eof, sock_eof;
	char note[160];
	char syscall[32];
};

static void kill_tree(struct sup *s, int verdict)
{
	if (s->killed < 0)
		s->killed = verdict;
	syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, NULL, 0);
}

static void read_stream(struct sup *s, int fd, struct sb_capture *c, int *eof, uint64_t kill_at)
{
	char buf[65536];
	for (int i = 0; i < 16; i++) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			sb_capture_add(c, buf, (size_t)n);
			if (s->out.total + s->err.total > kill_at && s->killed < 0) {
				snprintf(s->note, sizeof(s->note), "output past %" PRIu64 " bytes",
				         kill_at);
				kill_tree(s, SWERVE_VERDICT_OL);
			}
			continue;
		}
		if (n == 0)
			*eof = 1;
		return;
	}
}

/* One message from the child's socket, without blocking: its size, 0 at
 * EOF, or -errno; *fd the descriptor it carried, else -1. A raw system call
 * where there is one: prep_wait_ready calls it while a shared-memory child
 * owns errno. */
static long recv_child_msg(int sock, struct sb_msg *m, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {m, sizeof(*m)};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = u.buf,
	                    .msg_controllen = sizeof(u.buf)};
#if SB_HAVE_RAW_SYSCALL
	long n = sb_raw_syscall(SYS_recvmsg, sock, (long)&mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, 0, 0,
	                        0);
#else
	long n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		n = -errno;
#endif
	*fd = -1;
	struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}

static void read_sock(struct sup *s)
{
	for (;;) {
		struct sb_msg m;
		int fd;
		long n = recv_child_msg(s->sock, &m, &fd);
		if (n == 0 || (n < 0 && n != -EAGAIN && n != -EINTR))
			s->sock_eof = 1; /* every copy of the child end is closed */
		if (n <= 0)
			return;
		if (fd >= 0) {
			if (s->listener >= 0)
				close(fd);
			else
				s->listener = fd;
			continue;
		}
		if (n != sizeof(m))
			continue;
		if (m.kind == SB_MSG_ERROR && !s->have_error) {
			s->have_error = 1;
			s->error = m;
		} else if (m.kind == SB_MSG_EXIT) {
			s->have_exit = 1;
			s->exit_status = m.status;
		}
	}
}

static void read_notif(struct sup *s)
{
	struct seccomp_notif req;
	memset(&req, 0, sizeof(req));
	if (ioctl(s->listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
		if (errno == ENOENT || errno == EINTR)
			return;
		/* listener gone (the filter's processes are gone) */
		close(s->listener);
		s->listener = -1;
		return;
	}
	if (s->killed < 0) {
		sb_seccomp_syscall_name(req.data.nr, s->syscall, sizeof(s->syscall));
		snprintf(s->note, sizeof(s->note), "forbidden syscall %s", s->syscall);
	}
	kill_tree(s, SWERVE_VERDICT_SV);
}

static int fail_xx(struct swerve_sandbox_result *r, int code)
{
	r->verdict = SWERVE_VERDICT_XX;
	snprintf(r->reason, sizeof(r->reason), "%s", swerve_error_last());
	return code;
}

static int child_error(const struct swerve_sandbox *sb, const struct swerve_sandbox_opts *o,
                       const struct sb_msg *m)
{
	int e = m->err;
	const char *es = strerror(e);
	if (m->step == SB_STEP_EXEC) {
		const char *prog = o->argv ? o->argv[0] : "(fn)";
		if (e == ENOENT)
			return swerve_error_set(SWERVE_ENOTFOUND,
			                        "sandbox: program '%s': not found in the sandbox "
			                        "(execve: %s)",
			                        prog, es);
		return swerve_error_set(SWERVE_ERROR, "sandbox: program '%s': execve: %s", prog,
		                        es);
	}
	if (m->step == SB_STEP_CWD)
		return swerve_error_set(e == ENOENT ? SWERVE_ENOTFOUND : SWERVE_ERROR,
		                        "sandbox: working directory '%s': %s", o->cwd, es);
	const struct sb_mount_plan *plan = sb->fast ? &sb->run_plan : &sb->plan;
	if (m->step == SB_STEP_MOUNT && m->index >= 0 && (size_t)m->index < plan->n) {
		const struct sb_mount_op *op = &plan->ops[m->index];
		const char *src = !op->src                    ? ""
		                  : plan->mode != SB_PLAN_RUN ? op->src + strlen(SB_OLDROOT)
		                                              : op->src;
		int code = e == ENOENT ? SWERVE_ENOTFOUND : SWERVE_ERROR;
		if (op->kind == SB_M_OVERLAY)
			return swerve_error_set(
			        e == EINVAL || e == EPERM ? SWERVE_EUNSUPPORTED : code,
			        "sandbox: overlay workspace at '%s': %s%s", op->dst, es,
			        sb->probe.overlay_userns
			                ? ""
			                : " (overlayfs in user namespaces unsupported "
			                  "here)");
		return swerve_error_set(code, "sandbox: mount step %d ('%s' at '%s'): %s", m->index,
		                        src, op->dst, es);
	}
	if (m->step == SB_STEP_RLIMIT)
		return swerve_error_set(SWERVE_ERROR, "sandbox: setrlimit resource %d: %s",
		                        m->index, es);
	return swerve_error_set(SWERVE_ERROR, "sandbox: %s: %s", sb_step_name(m->step), es);
}

/* The shared-memory start (fast path, argv only; spawn.c): init and the
 * command run on these stacks in our address space, so no copy of it is
 * made per run and none freed when they exit. 1 MiB each, reserved lazily,
 * a guard page below each. 0, or -1 to use the copy-on-write start. */
static int vm_stacks(struct swerve_sandbox *sb)
{
	if (!SB_VM_START)
		return -1;
	if (sb->vm_stacks)
		return 0;
	char *m = mmap(NULL, 2 * VM_STACK, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (m == MAP_FAILED)
		return -1;
	if (mprotect(m, 4096, PROT_NONE) < 0 || mprotect(m + VM_STACK, 4096, PROT_NONE) < 0) {
		munmap(m, 2 * VM_STACK);
		return -1;
	}
	sb->vm_stacks = m;
	return 0;
}

/* The time left until deadline (CLOCK_MONOTONIC ns) as a relative timeout
 * in *ts (0 once passed), or NULL for UINT64_MAX (none). */
static struct timespec *time_left(struct timespec *ts, uint64_t deadline)
{
	if (deadline == UINT64_MAX)
		return NULL;
	uint64_t now = sb_now_ns(), d = deadline > now ? deadline - now : 0;
	ts->tv_sec = (time_t)(d / 1000000000ull);
	ts->tv_nsec = (long)(d % 1000000000ull);
	return ts;
}

#if SB_HAVE_RAW_SYSCALL
/* ppoll with every signal blocked, as a raw system call (no errno): how the
 * worker waits while a shared-memory child runs libc on its TLS. 0 once the
 * deadline has passed, else ppoll's result (-errno on failure). */
static long park_poll(struct pollfd *pf, int n, uint64_t deadline)
{
	struct timespec ts, *tsp = time_left(&ts, deadline);
	sigset_t all;
	if (tsp && !tsp->tv_sec && !tsp->tv_nsec)
		return 0;
	sigfillset(&all);
	return sb_raw_syscall(SYS_ppoll, (long)pf, n, (long)tsp, (long)&all, _NSIG / 8, 0);
}
#endif

/* While init and the command set up on our memory they own this thread's
 * errno (they run libc code with our TLS): wait, in system calls that
 * cannot set errno and with every signal blocked, until init says the
 * command has exec'd or died (a byte or EOF on started), init is gone, or
 * the wall-clock limit passes (then the main loop kills the tree). */
static void vm_park(int started, int pidfd, uint64_t t0, uint64_t wall_ms)
{
#if SB_HAVE_RAW_SYSCALL
	uint64_t deadline = wall_ms == UINT64_MAX ? UINT64_MAX : t0 + wall_ms * 1000000ull;
	for (;;) {
		struct pollfd pf[2] = {{started, POLLIN, 0}, {pidfd, POLLIN, 0}};
		long k = park_poll(pf, 2, deadline);
		if (k != -EINTR && k != -EAGAIN)
			return; /* ready, deadline passed (0), or failed */
	}
#else
	(void)started, (void)pidfd, (void)t0, (void)wall_ms;
#endif
}

/* A run with a cgroup (cgroup.c) is cloned straight into it: clone3 with
 * CLONE_INTO_CGROUP, no moment outside (Linux >= 5.7; the sandbox needs
 * 5.12 for mount_setattr anyway). Where clone3 refuses all the same (a
 * directory that is not a real cgroup: the tests' fake tree), a plain clone
 * and *attach = 1: the caller moves the child at once (the slow path's child
 * waits for its id maps first; on the fast path init may fork the command
 * before the move, which the pid namespace and the memory sampling still
 * bound). */
static pid_t clone_into_cgroup(unsigned long flags, int *pidfd, int cgfd, int *attach)
{
	struct {
		uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
		        set_tid, set_tid_size, cgroup;
	} a;
	memset(&a, 0, sizeof(a));
	a.flags = flags | CLONE_PIDFD | CLONE_INTO_CGROUP;
	a.pidfd = (uint64_t)(uintptr_t)pidfd;
	a.exit_signal = SIGCHLD;
	a.cgroup = (uint64_t)cgfd;
	pid_t pid = (pid_t)syscall(SYS_clone3, &a, sizeof(a));
	if (pid >= 0)
		return pid;
	*attach = 1;
	return (pid_t)syscall(SYS_clone, flags | CLONE_PIDFD | SIGCHLD, 0, pidfd, NULL, 0);
}

/* ---- prepared starts -------------------------------------------------------
 * swerve_sandbox_prepare() starts the next run's sandbox ahead of time (the
 * shared-memory start, from the last run's mounts, working directory and
 * hostname) and leaves its command waiting after the seccomp filter (spawn.c
 * wait_for_run). A run whose mounts, directory and hostname are the same
 * gives it argv, environment and limits and writes one byte; any other run
 * discards it. */
struct sb_prepared {
	struct sb_child c; /* read by init and the command until the exec */
	pid_t pid;
	pthread_t thread; /* init shares this thread's TLS */
	int pidfd, sock, out_r, err_r, started_r, go_w, listener;
	char cwd[4096], host[65];
};

static void prep_close(struct sb_prepared *p)
{
	int fds[] = {p->pidfd, p->sock, p->out_r, p->err_r, p->started_r, p->go_w, p->listener};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void prep_discard(struct swerve_sandbox *sb)
{
	struct sb_prepared *p = sb->prep;
	if (!p)
		return;
	sb->prep = NULL;
	if (p->pid > 0) {
		if (p->pidfd >= 0)
			syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
		else
			kill(p->pid, SIGKILL);
		while (waitpid(p->pid, NULL, __WALL) < 0 && errno == EINTR)
			;
	}
	prep_close(p);
	free(p);
}

static int plan_equal(const struct sb_mount_plan *a, const struct sb_mount_plan *b)
{
	if (a->n != b->n || a->used_overlay != b->used_overlay)
		return 0;
	for (size_t i = 0; i < a->n; i++) {
		const struct sb_mount_op *x = &a->ops[i], *y = &b->ops[i];
		const char *xs[] = {x->extra, x->src, x->dst, x->data};
		const char *ys[] = {y->extra, y->src, y->dst, y->data};
		if (x->kind != y->kind || x->optional != y->optional)
			return 0;
		for (int k = 0; k < 4; k++)
			if ((xs[k] == NULL) != (ys[k] == NULL) || (xs[k] && strcmp(xs[k], ys[k])))
				return 0;
	}
	return 1;
}

/* While a prepared start sets up, its init and command own this thread's
 * errno: wait for SB_MSG_READY (the listener fd comes first) in raw system
 * calls only, signals blocked. 0 ready, -1 failed (the caller discards). */
static int prep_wait_ready(struct sb_prepared *p)
{
#if SB_HAVE_RAW_SYSCALL
	uint64_t deadline = sb_now_ns() + 5000000000ull;
	for (;;) {
		struct sb_msg m;
		int fd;
		long n = recv_child_msg(p->sock, &m, &fd);
		if (n > 0) {
			if (fd >= 0) {
				if (p->listener >= 0)
					sb_raw_syscall(SYS_close, fd, 0, 0, 0, 0, 0);
				else
					p->listener = fd;
				continue;
			}
			if (n == (long)sizeof(m) && m.kind == SB_MSG_READY)
				return 0;
			if (n == (long)sizeof(m) && m.kind == SB_MSG_ERROR)
				return -1;
			continue;
		}
		if (n == 0 || (n != -EAGAIN && n != -EINTR))
			return -1;
		struct pollfd pf[2] = {{p->sock, POLLIN, 0}, {p->pidfd, POLLIN, 0}};
		long k = park_poll(pf, 2, deadline);
		if (k == 0)
			return -1; /* not ready in 5 s */
		if (k > 0 && pf[1].revents && !pf[0].revents)
			return -1; /* init is gone */
	}
#else
	(void)p;
	return -1;
#endif
}

int swerve_sandbox_prepare(struct swerve_sandbox *sb)
{
	if (sb->prep || !sb->fast || !sb->have_last || sb_cgroup_enabled(&sb->cg) ||
	    vm_stacks(sb) < 0)
		return 0; /* nothing to do, or not possible here */
	struct sb_prepared *p = calloc(1, sizeof(*p));
	int out[2] = {-1, -1}, err[2] = {-1, -1}, started[2] = {-1, -1}, go[2] = {-1, -1};
	int sv[2] = {-1, -1};
	if (!p)
		return swerve_error_set(SWERVE_ENOMEM, "sandbox: prepare: out of memory");
	p->pid = -1;
	p->pidfd = p->sock = p->out_r = p->err_r = p->started_r = p->go_w = p->listener = -1;
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    pipe2(started, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, go) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		int e = errno;
		int fds[] = {out[0], out[1], err[0], err[1], started[0], started[1], go[0], go[1]};
		for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
			if (fds[i] >= 0)
				close(fds[i]);
		free(p);
		return swerve_error_set(SWERVE_ERROR, "sandbox: prepare: %s", strerror(e));
	}
	snprintf(p->cwd, sizeof(p->cwd), "%s", sb->last_cwd);
	snprintf(p->host, sizeof(p->host), "%s", sb->last_host);
	struct sb_child *c = &p->c;
	c->sock = sv[1];
	c->out_w = out[1];
	c->err_w = err[1];
	c->cwd = p->cwd;
	c->hostname = p->host;
	c->plan = &sb->run_plan;
	c->prog = &sb->prog;
	c->shared = sb->shared;
	c->fast = 1;
	c->ns_user = sb->ns_user;
	c->ns_net = sb->ns_net;
	c->ns_uts = sb->ns_uts;
	c->ns_mnt = sb->ns_mnt;
	c->vm = 1;
	c->started_w = started[1];
	c->cmd_stack_top = sb->vm_stacks + 2 * VM_STACK;
	c->cap_last = sb->cap_last;
	c->prepared = 1;
	c->go_r = go[0];
	p->sock = sv[0];
	p->out_r = out[0];
	p->err_r = err[0];
	p->started_r = started[0];
	p->go_w = go[1];
	p->thread = pthread_self();
	fcntl(p->out_r, F_SETFL, O_NONBLOCK);
	fcntl(p->err_r, F_SETFL, O_NONBLOCK);
	unsigned long flags = RUN_NS_FLAGS & ~(unsigned long)CLONE_NEWNS;
	p->pid = clone(sb_child_vm_entry, sb->vm_stacks + VM_STACK,
	               (int)(flags | CLONE_VM | CLONE_PIDFD | SIGCHLD), c, &p->pidfd);
	int e = errno;
	/* no failing call from here until the command is ready (errno) */
	close(sv[1]);
	close(out[1]);
	close(err[1]);
	close(started[1]);
	close(go[0]);
	sb->prep = p;
	if (p->pid < 0) {
		prep_discard(sb);
		return swerve_error_set(SWERVE_ERROR, "sandbox: prepare: clone: %s", strerror(e));
	}
	if (prep_wait_ready(p) < 0) {
		prep_discard(sb);
		return swerve_error_set(SWERVE_ERROR, "sandbox: prepare: the sandbox did not "
		                                      "become ready (the next run starts afresh)");
	}
	return 0;
}

int swerve_sandbox_run(struct swerve_sandbox_result *r, struct swerve_sandbox *sb,
                       const struct swerve_sandbox_opts *o)
{
	int rc = 0, pipe_out[2] = {-1, -1}, pipe_err[2] = {-1, -1}, sv[2] = {-1, -1};
	int started[2] = {-1, -1};
	struct envbuf env = {0};
	struct sb_child c;
	struct sup s;
	struct swerve_sandbox_limits lim;
	pid_t pid = -1;
	uint64_t t0 = sb_now_ns();
	int e_map;
	char whybuf[600];
	struct sb_cgroup cg = {.dirfd = -1};
	int cg_attach = 0, use_prep = 0;
	struct sb_prepared *prep = NULL;

	memset(r, 0, sizeof(*r));
	r->exit_code = -1;
	memset(&s, 0, sizeof(s));
	s.out_r = s.err_r = s.sock = s.pidfd = s.listener = -1;
	s.killed = -1;
	memset(&sb->timing, 0, sizeof(sb->timing));
	memset(sb->shared, 0, sizeof(*sb->shared));
	swerve_error_clear();

	if (!o || o->version != SWERVE_SANDBOX_OPTS_VERSION) {
		swerve_error_set(SWERVE_EINVAL,
		                 "sandbox: options version %u, expected %u (use "
		                 "SWERVE_SANDBOX_OPTS_INIT)",
		                 o ? o->version : 0, SWERVE_SANDBOX_OPTS_VERSION);
		return fail_xx(r, SWERVE_EINVAL);
	}
	if (o->argv && !o->argv[0]) {
		swerve_error_set(SWERVE_EINVAL, "sandbox: argv is empty");
		return fail_xx(r, SWERVE_EINVAL);
	}
	if (!o->fn && !o->argv) {
		swerve_error_set(SWERVE_EINVAL, "sandbox: give argv (non-empty), fn, or both");
		return fail_xx(r, SWERVE_EINVAL);
	}
	if (o->network != 0) {
		swerve_error_set(SWERVE_EINVAL,
		                 "sandbox: network mode %d: only 0 (loopback only) "
		                 "exists",
		                 o->network);
		return fail_xx(r, SWERVE_EINVAL);
	}
	sb_limits_effective(&lim, &o->limits);
	/* fast path from the second run on (one-shot callers such as swerve exec
	 * never pay for the holder): this run's mounts, and a template that has
	 * their mount points (rebuilt when a run needs other ones) */
	const char *cwd =
	        o->cwd ? o->cwd
	               : (o->workspace || o->workspace_lower
	                          ? (o->workspace_mount ? o->workspace_mount : "/workspace")
	                          : "/");
	const char *host = o->hostname ? o->hostname : "sandbox";
	if (sb->want_holder && ++sb->runs >= 2) {
		if ((rc = sb_mount_plan_build(&sb->cand_plan, SB_PLAN_RUN, o, sb->passwd,
		                              sb->group)) < 0)
			return fail_xx(r, rc);
		/* a prepared start serves this run if it is set up the same way */
		use_prep = sb->prep && sb->fast && o->argv && !o->fn &&
		           plan_equal(&sb->cand_plan, &sb->run_plan) &&
		           !strcmp(cwd, sb->prep->cwd) && !strcmp(host, sb->prep->host) &&
		           pthread_equal(sb->prep->thread, pthread_self()) &&
		           !sb_cgroup_enabled(&sb->cg);
		if (!use_prep)
			prep_discard(sb);
		struct sb_mount_plan t = sb->run_plan;
		sb->run_plan = sb->cand_plan;
		sb->cand_plan = t;
		if (!sb->fast || !sb_mount_key_covered(&sb->tmpl, &sb->run_plan)) {
			holder_stop(sb);
			holder_start(sb, o);
			/* a host where the holder cannot start: slow path from now on */
			sb->want_holder = sb->fast;
		}
	}
	const struct sb_mount_plan *plan = sb->fast ? &sb->run_plan : &sb->plan;
	if (!sb->fast &&
	    (rc = sb_mount_plan_build(&sb->plan, SB_PLAN_FULL, o, sb->passwd, sb->group)) < 0)
		return fail_xx(r, rc);
	if (plan->used_overlay && !sb->fast)
		swerve_sandbox_probe(&sb->probe);
	if (plan->used_overlay && !sb->fast && !sb->probe.overlay_userns) {
		swerve_error_set(SWERVE_EUNSUPPORTED, "sandbox: overlay workspace: %s",
		                 sb->probe.why);
		return fail_xx(r, SWERVE_EUNSUPPORTED);
	}
	r->used_overlay = plan->used_overlay;
	if ((rc = env_build(&env, o->env)) < 0)
		return fail_xx(r, rc);
	if (sb_capture_init(&s.out, lim.output_bytes) < 0 ||
	    sb_capture_init(&s.err, lim.output_bytes) < 0)
		goto sysfail;

	memset(&c, 0, sizeof(c));
	c.argv = (char *const *)o->argv;
	c.envp = env.envp;
	c.path = env.path;
	c.fn = o->fn;
	c.fn_arg = o->fn_arg;
	c.cwd = cwd;
	c.hostname = host;
	c.plan = plan;
	sb_limits_plan(c.rl, &o->limits);
	c.prog = &sb->prog;
	c.cap_last = sb->cap_last;
	c.shared = sb->shared;
	c.fast = sb->fast;
	c.ns_user = sb->ns_user;
	c.ns_net = sb->ns_net;
	c.ns_uts = sb->ns_uts;
	c.ns_mnt = sb->ns_mnt;

	if (use_prep) {
		/* the prepared command waits after its seccomp filter: give it
		 * this run's argv, environment and limits, release it, and park
		 * while it applies them and execs (spawn.c wait_for_run) */
		prep = sb->prep;
		sb->prep = NULL;
		prep->c.argv = (char *const *)o->argv;
		prep->c.envp = env.envp;
		prep->c.path = env.path;
		sb_limits_plan(prep->c.rl, &o->limits);
		pid = prep->pid;
		s.pidfd = prep->pidfd;
		s.sock = prep->sock;
		s.out_r = prep->out_r;
		s.err_r = prep->err_r;
		s.listener = prep->listener;
		started[0] = prep->started_r;
		prep->pidfd = prep->sock = prep->out_r = prep->err_r = prep->listener = -1;
		prep->started_r = -1;
		sb->timing.prepared = 1;
		if (send(prep->go_w, "g", 1, MSG_NOSIGNAL) != 1)
			goto sysfail;
		close(prep->go_w);
		prep->go_w = -1;
		vm_park(started[0], s.pidfd, t0, lim.wall_ms);
		goto supervise;
	}
	if (pipe2(pipe_out, O_CLOEXEC) < 0 || pipe2(pipe_err, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		goto sysfail;
	c.sock = sv[1];
	c.out_w = pipe_out[1];
	c.err_w = pipe_err[1];

	if (sb_cgroup_enabled(&sb->cg)) {
		/* tmpfs pages are charged to the cgroup: their sizes add to the
		 * limit (the sampling counts anonymous memory only) */
		uint64_t tmpfs = (o->tmp_bytes ? o->tmp_bytes : 512ull << 20) +
		                 (o->shm_bytes ? o->shm_bytes : 64ull << 20);
		struct sb_cgroup_limits cl = {
		        .memory_bytes = lim.memory_bytes > UINT64_MAX - tmpfs
		                                ? UINT64_MAX
		                                : lim.memory_bytes + tmpfs,
		        .pids = lim.nproc + 1 /* init */,
		};
		if ((rc = sb_cgroup_create(&cg, &sb->cg, &cl)) < 0)
			goto fail;
	}
	int pidfd = -1;
	/* fast path: no CLONE_NEWNS (the child joins a copy of the template) */
	unsigned long flags = sb->fast ? RUN_NS_FLAGS & ~(unsigned long)CLONE_NEWNS
	                               : RUN_NS_FLAGS | SLOW_NS_FLAGS;
	/* the shared-memory start: argv runs; on the slow path only for a root
	 * worker (init makes the shared memory non-dumpable, and an unprivileged
	 * worker could then no longer write the next run's id maps) */
	c.vm = (sb->fast || sb->host_uid == 0) && !o->fn && cg.dirfd < 0 /* else clone3 */ &&
	       vm_stacks(sb) == 0;
	c.started_w = -1;
	if (c.vm) {
		if (pipe2(started, O_CLOEXEC) < 0)
			goto sysfail;
		c.started_w = started[1];
		c.cmd_stack_top = sb->vm_stacks + 2 * VM_STACK;
		/* init shares our memory: no copy of the address space to make
		 * (or to free when it exits), see spawn.c */
		pid = clone(sb_child_vm_entry, sb->vm_stacks + VM_STACK,
		            (int)(flags | CLONE_VM | CLONE_PIDFD | SIGCHLD), &c, &pidfd);
	} else if (cg.dirfd >= 0) {
		pid = clone_into_cgroup(flags, &pidfd, cg.dirfd, &cg_attach);
	} else {
		pid = (pid_t)syscall(SYS_clone, flags | CLONE_PIDFD | SIGCHLD, 0, &pidfd, NULL, 0);
	}
	if (pid < 0) {
		int e = errno;
		swerve_sandbox_probe(&sb->probe); /* to name the setting to change */
		swerve_error_set(e == EPERM || e == EINVAL || e == ENOSPC ? SWERVE_EUNSUPPORTED
		                                                          : SWERVE_ERROR,
		                 "sandbox: clone into new namespaces: %s%s", strerror(e),
		                 userns_why(&sb->probe, whybuf, sizeof(whybuf)));
		rc = swerve_error_code();
		goto fail;
	}
	if (pid == 0) {
		close(sv[0]);
		close(pipe_out[0]);
		close(pipe_err[0]);
		sb_child_main(&c);
	}
	sb->timing.clone_us = (sb_now_ns() - t0) / 1000;
	s.pidfd = pidfd;
	s.sock = sv[0];
	s.out_r = pipe_out[0];
	s.err_r = pipe_err[0];
	close(sv[1]);
	close(pipe_out[1]);
	close(pipe_err[1]);
	sv[0] = sv[1] = pipe_out[0] = pipe_out[1] = pipe_err[0] = pipe_err[1] = -1;
	if (cg_attach && (rc = sb_cgroup_attach(&cg, pid)) < 0)
		goto fail;
	fcntl(s.out_r, F_SETFL, O_NONBLOCK);
	fcntl(s.err_r, F_SETFL, O_NONBLOCK);
	/* slow path: the child waits in read(2) for its id maps (so, on the
	 * shared-memory start, errno is still ours until the "g" is sent) */
	if (!sb->fast) {
		if (write_maps(sb, pid) < 0 || send(s.sock, "g", 1, MSG_NOSIGNAL) != 1)
			goto mapfail;
		sb->timing.maps_us = (sb_now_ns() - t0) / 1000;
	}
	if (c.vm) {
		close(started[1]);
		started[1] = -1;
		vm_park(started[0], s.pidfd, t0, lim.wall_ms);
	}

supervise:;
	uint64_t deadline = lim.wall_ms == UINT64_MAX ? UINT64_MAX : t0 + lim.wall_ms * 1000000ull;
	uint64_t next_mem = t0 + MEM_POLL_NS;
	int init_done = 0;
	while (!init_done) {
		struct pollfd pf[6];
		int n = 0, i_out = -1, i_err = -1, i_sock = -1, i_pid, i_lis = -1, i_can = -1;
		if (o->cancel_fd > 0 && !s.cancelled) {
			i_can = n;
			pf[n++] = (struct pollfd){o->cancel_fd, POLLIN, 0};
		}
		if (!s.out_eof) {
			i_out = n;
			pf[n++] = (struct pollfd){s.out_r, POLLIN, 0};
		}
		if (!s.err_eof) {
			i_err = n;
			pf[n++] = (struct pollfd){s.err_r, POLLIN, 0};
		}
		if (!s.sock_eof) {
			i_sock = n;
			pf[n++] = (struct pollfd){s.sock, POLLIN, 0};
		}
		i_pid = n;
		pf[n++] = (struct pollfd){s.pidfd, POLLIN, 0};
		if (s.listener >= 0) {
			i_lis = n;
			pf[n++] = (struct pollfd){s.listener, POLLIN, 0};
		}
		uint64_t wake = deadline;
		if (lim.memory_bytes != UINT64_MAX && next_mem < wake)
			wake = next_mem;
		struct timespec ts;
		int k = ppoll(pf, (nfds_t)n, time_left(&ts, wake), NULL);
		if (k < 0 && errno != EINTR)
			goto sysfail_kill;
		if (i_out >= 0 && pf[i_out].revents)
			read_stream(&s, s.out_r, &s.out, &s.out_eof, lim.output_kill_bytes);
		if (i_err >= 0 && pf[i_err].revents)
			read_stream(&s, s.err_r, &s.err, &s.err_eof, lim.output_kill_bytes);
		if (i_sock >= 0 && pf[i_sock].revents)
			read_sock(&s);
		if (i_lis >= 0 && (pf[i_lis].revents & POLLIN))
			read_notif(&s);
		else if (i_lis >= 0 && pf[i_lis].revents) {
			/* POLLHUP: every process under the filter is gone */
			close(s.listener);
			s.listener = -1;
		}
		if (pf[i_pid].revents)
			init_done = 1;
		if (i_can >= 0 && pf[i_can].revents && !init_done) {
			s.cancelled = 1;
			kill_tree(&s, SWERVE_VERDICT_XX);
		}
		uint64_t now = sb_now_ns();
		if (!init_done && now >= deadline && s.killed < 0) {
			snprintf(s.note, sizeof(s.note), "wall-clock limit %" PRIu64 " ms",
			         lim.wall_ms);
			kill_tree(&s, SWERVE_VERDICT_TO);
		}
		if (!init_done && lim.memory_bytes != UINT64_MAX && now >= next_mem) {
			next_mem = now + MEM_POLL_NS;
			if (s.killed < 0 && tree_rss(pid) > lim.memory_bytes) {
				snprintf(s.note, sizeof(s.note), "memory limit %" PRIu64 " bytes",
				         lim.memory_bytes);
				kill_tree(&s, SWERVE_VERDICT_ML);
			}
		}
	}
	/* init is gone, and with it every process of the sandbox: drain */
	/* (bounded: a clone made by another thread may hold a copy of our
	 * pipes for the moment before it closes what it inherited) */
	for (uint64_t end = sb_now_ns() + 1000000000ull;
	     (!s.out_eof || !s.err_eof) && sb_now_ns() < end;) {
		struct pollfd dp[2];
		int dn = 0;
		if (!s.out_eof)
			dp[dn++] = (struct pollfd){s.out_r, POLLIN, 0};
		if (!s.err_eof)
			dp[dn++] = (struct pollfd){s.err_r, POLLIN, 0};
		poll(dp, (nfds_t)dn, 100);
		if (!s.out_eof)
			read_stream(&s, s.out_r, &s.out, &s.out_eof, UINT64_MAX);
		if (!s.err_eof)
			read_stream(&s, s.err_r, &s.err, &s.err_eof, UINT64_MAX);
	}
	read_sock(&s);
	if (s.listener >= 0 && s.killed < 0) {
		struct pollfd lp = {s.listener, POLLIN, 0};
		if (poll(&lp, 1, 0) > 0 && (lp.revents & POLLIN))
			read_notif(&s);
	}

	{
		int st = 0;
		struct rusage ru;
		memset(&ru, 0, sizeof(ru));
		while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
			;
		pid = -1;
		uint64_t t1 = sb_now_ns();
		r->wall_us = (t1 - t0) / 1000;
		r->cpu_us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
		            (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
		r->max_rss_kb = (uint64_t)ru.ru_maxrss;
		sb->timing.wait_us = (t1 - t0) / 1000;
		if (sb->shared->t_mounts > t0)
			sb->timing.mounts_us = (sb->shared->t_mounts - t0) / 1000;
		if (sb->shared->t_pivot > t0)
			sb->timing.pivot_us = (sb->shared->t_pivot - t0) / 1000;
		if (sb->shared->t_seccomp > t0)
			sb->timing.seccomp_us = (sb->shared->t_seccomp - t0) / 1000;
		sb->timing.exec_us = sb->shared->t_exec > t0 /* the shared-memory start knows */
		                             ? (sb->shared->t_exec - t0) / 1000
		                             : sb->timing.seccomp_us;
		if (cg.dirfd >= 0) {
			/* the kernel's OOM killer acted in the run's cgroup: ML (init
			 * may be gone with the rest: memory.oom.group) */
			struct sb_cgroup_stats cst;
			if (sb_cgroup_read(&cst, &cg) < 0)
				swerve_error_clear();
			if (s.killed < 0 && sb_cgroup_verdict(s.note, sizeof(s.note), &cg, &cst))
				s.killed = SWERVE_VERDICT_ML;
			if (cst.have_cpu && cst.usage_usec > r->cpu_us)
				r->cpu_us = cst.usage_usec; /* every process, reaped or not */
		}

		if (sb_capture_finish(&s.out, &r->out) < 0 ||
		    sb_capture_finish(&s.err, &r->err) < 0)
			goto sysfail;
		if (s.have_error && s.killed < 0) {
			rc = child_error(sb, o, &s.error);
			goto fail;
		}
		if (s.cancelled) {
			rc = swerve_error_set(SWERVE_ERROR, "sandbox: cancelled (cancel_fd %d)",
			                      o->cancel_fd);
			goto fail;
		}
		if (s.killed >= 0) {
			r->verdict = (enum swerve_verdict)s.killed;
			r->signal = SIGKILL;
			snprintf(r->syscall, sizeof(r->syscall), "%s", s.syscall);
			snprintf(r->reason, sizeof(r->reason), "%s", s.note);
		} else if (!s.have_exit) {
			swerve_error_set(SWERVE_ERROR,
			                 "sandbox: init exited without the command's status "
			                 "(wait status 0x%x)",
			                 st);
			rc = SWERVE_ERROR;
			goto fail;
		} else if (WIFEXITED(s.exit_status)) {
			r->exit_code = WEXITSTATUS(s.exit_status);
			r->verdict = r->exit_code ? SWERVE_VERDICT_RE : SWERVE_VERDICT_OK;
		} else if (WIFSIGNALED(s.exit_status)) {
			r->signal = WTERMSIG(s.exit_status);
			if (r->signal == SIGSYS) {
				r->verdict = SWERVE_VERDICT_SV;
				snprintf(r->syscall, sizeof(r->syscall), "non-native ABI");
				snprintf(r->reason, sizeof(r->reason),
				         "killed by seccomp: a syscall through a non-native ABI "
				         "(i386 int 0x80 or x32)");
			} else if (r->signal == SIGXCPU) {
				r->verdict = SWERVE_VERDICT_TO;
				snprintf(r->reason, sizeof(r->reason),
				         "CPU-time limit %" PRIu64 " s", lim.cpu_s);
			} else {
				r->verdict = SWERVE_VERDICT_SG;
				snprintf(r->reason, sizeof(r->reason), "%s", strsignal(r->signal));
			}
		}
	}
	rc = 0;
	goto done;

mapfail:
	e_map = errno;
	swerve_sandbox_probe(&sb->probe);
	errno = e_map;
	swerve_error_set(SWERVE_EUNSUPPORTED, "sandbox: writing uid/gid maps of %d: %s%s", (int)pid,
	                 strerror(errno), userns_why(&sb->probe, whybuf, sizeof(whybuf)));
	rc = SWERVE_EUNSUPPORTED;
	goto fail;
sysfail_kill:
sysfail:
	swerve_error_set(SWERVE_ERROR, "sandbox: %s", strerror(errno));
	rc = SWERVE_ERROR;
fail:
	fail_xx(r, rc);
done:
	if (pid > 0) {
		if (s.pidfd >= 0)
			syscall(SYS_pidfd_send_signal, s.pidfd, SIGKILL, NULL, 0);
		else
			kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (cg.dirfd >= 0) {
		/* kill what is left, rmdir; a cgroup still busy stays in place
		 * (cgroup.c), the run's own result and message are kept */
		int code = swerve_error_code();
		char keep[sizeof(r->reason)];
		snprintf(keep, sizeof(keep), "%s", swerve_error_last());
		sb_cgroup_destroy(&cg);
		if (code)
			swerve_error_set(code, "%s", keep);
		else
			swerve_error_clear();
	}
	if (r->verdict == SWERVE_VERDICT_XX) {
		swerve_sandbox_result_dispose(r);
		if (!r->out.data && sb_capture_finish(&s.out, &r->out) < 0)
			r->out.data = NULL;
		if (!r->err.data && sb_capture_finish(&s.err, &r->err) < 0)
			r->err.data = NULL;
	}
	sb_capture_dispose(&s.out);
	sb_capture_dispose(&s.err);
	int fds[] = {pipe_out[0], pipe_out[1], pipe_err[0], pipe_err[1], sv[0],
	             sv[1],       s.out_r,     s.err_r,     s.sock,      s.pidfd,
	             s.listener,  started[0],  started[1]};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (prep) {
		prep_close(prep);
		free(prep);
	}
	if (sb->fast) { /* what swerve_sandbox_prepare starts the next run with */
		sb->have_last = 1;
		snprintf(sb->last_cwd, sizeof(sb->last_cwd), "%s", cwd);
		snprintf(sb->last_host, sizeof(sb->last_host), "%s", host);
	}
	free(env.envp);
	return rc;
}
