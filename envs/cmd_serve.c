/* cmd_serve.c - `swerve serve`: a resident server for `swerve exec`.
 *
 * The server listens on a Unix socket (SOCK_SEQPACKET, mode 0600) and runs
 * N worker processes that accept on it; each worker keeps one sandbox
 * context, so its runs take the fast path (holder, template root, shared-
 * memory start: sandbox/run.c) instead of building namespaces per command.
 * While idle, a worker keeps the next run's sandbox started
 * (swerve_sandbox_prepare: same mounts, directory and hostname as its last
 * run), so a request only sets limits and execs.
 * The `swerve` launcher (envs/launch_main.c) sends one message per
 * `swerve exec`: "SWX1\0", its working directory, then its arguments from
 * "exec" on, each NUL-terminated, with its stdin, stdout and stderr attached
 * (SCM_RIGHTS). The worker checks the peer (the server's own uid or root
 * only), changes to the client's directory, points its fds 0-2 at the
 * client's, runs exactly what `swerve exec` runs (swerve_exec_cli: same
 * options, same output, same verdict line), puts its fds back and sends the
 * exit code (an int). A client that goes away mid-run (its connection
 * hangs up) cancels the run: the sandbox's tree is killed at once. A worker
 * that dies mid-run closes the connection and
 * the client reports an infrastructure error (never a verdict); the server
 * starts a new worker. SIGTERM or SIGINT stops the server and its workers
 * and removes the socket. */
#include "cli.h"
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAGIC      "SWX1"
#define REQ_MAX        65536
#define MAX_ARGS       4096
#define DEFAULT_SOCKET "/run/swerve/exec.sock"

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: swerve serve [--socket PATH] [--workers N]\n\n"
	           "Serves `swerve exec` from warm sandbox contexts: the `swerve` launcher hands\n"
	           "`swerve exec ...` to this server when it listens on $SWERVE_SOCKET "
	           "(default\n" DEFAULT_SOCKET
	           "), and runs it itself otherwise. Output, verdict line\n"
	           "and exit status are those of a local `swerve exec`. Only the server's own\n"
	           "user (and root) may connect. Runs until SIGTERM or SIGINT.\n\n"
	           "options:\n"
	           "  --socket PATH   where to listen (default " DEFAULT_SOCKET ")\n"
	           "  --workers N     concurrent runs (default: the number of CPUs)\n");
}

static void reply(int conn, int code)
{
	ssize_t r;
	do
		r = send(conn, &code, sizeof(code), MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
}

/* One request on conn. Returns nothing: every outcome is an exit code sent
 * to the client (or a closed connection). */
static void serve_one(int conn, struct swerve_sandbox *sb, const int saved[3])
{
	static char buf[REQ_MAX + 1];
	static char *argv[MAX_ARGS + 1];
	int fds[3] = {-1, -1, -1}, nfds = 0;
	union {
		char b[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {buf, REQ_MAX};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = u.b,
	                    .msg_controllen = sizeof(u.b)};
	ssize_t n;
	do
		n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < k; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (nfds < 3)
					fds[nfds++] = fd;
				else
					close(fd);
			}
		}
	struct ucred cr;
	socklen_t cl = sizeof(cr);
	int code = SWERVE_EXIT_INFRA;
	if (n <= 0 || nfds != 3 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		goto done; /* not our launcher: no fds to talk to */
	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
	    (cr.uid != geteuid() && cr.uid != 0)) {
		dprintf(fds[2], "swerve exec: refused by the server: uid %d is not the server's\n",
		        (int)cr.uid);
		goto done;
	}
	buf[n] = '\0';
	/* magic, cwd, then at least "exec" and one more argument */
	int argc = 0;
	size_t off = sizeof(REQ_MAGIC);
	if ((size_t)n < off || memcmp(buf, REQ_MAGIC, off) != 0 || buf[n - 1] != '\0') {
		dprintf(fds[2], "swerve exec: the server cannot read this request (launcher and "
		                "server of different versions?)\n");
		goto done;
	}
	const char *cwd = buf + off;
	off += strlen(cwd) + 1;
	while (off < (size_t)n && argc < MAX_ARGS) {
		argv[argc++] = buf + off;
		off += strlen(buf + off) + 1;
	}
	argv[argc] = NULL;
	if (argc < 1 || strcmp(argv[0], "exec") != 0) {
		dprintf(fds[2], "swerve exec: the server only runs `swerve exec`\n");
		goto done;
	}
	if (chdir(cwd) < 0) {
		dprintf(fds[2], "swerve exec: the server cannot enter %s: %s\n", cwd,
		        strerror(errno));
		goto done;
	}
	fflush(stdout);
	fflush(stderr);
	if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0) {
		dprintf(fds[2], "swerve exec: the server cannot use this terminal: %s\n",
		        strerror(errno));
	} else {
		code = swerve_exec_cli(argc, argv, sb, conn); /* a client gone cancels */
		fflush(stdout);
		fflush(stderr);
	}
	for (int i = 0; i < 3; i++)
		dup2(saved[i], i);
	clearerr(stdout);
	clearerr(stderr);
	if (chdir("/") < 0)
		code = SWERVE_EXIT_INFRA;
done:
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	/* a write to a client that went away raised SIGPIPE (blocked): drop it */
	sigset_t p;
	struct timespec zero = {0, 0};
	sigemptyset(&p);
	sigaddset(&p, SIGPIPE);
	while (sigtimedwait(&p, NULL, &zero) > 0)
		;
	reply(conn, code);
}

__attribute__((noreturn)) static void worker(int lfd)
{
	struct swerve_sandbox *sb;
	int saved[3];
	sigset_t pipe_set;
	/* the server's SIGTERM handler must not run here: default, so that the
	 * server can stop a worker; SIGPIPE blocked (the command's mask is reset
	 * inside the sandbox), so a vanished client costs a write error only */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() == 1)
		_exit(SWERVE_EXIT_INFRA);
	if (swerve_sandbox_new(&sb, NULL) < 0) {
		fprintf(stderr, "swerve serve: worker %d: %s\n", (int)getpid(),
		        swerve_error_last());
		_exit(SWERVE_EXIT_INFRA);
	}
	for (int i = 0; i < 3; i++)
		if ((saved[i] = fcntl(i, F_DUPFD_CLOEXEC, 10)) < 0)
			_exit(SWERVE_EXIT_INFRA);
	if (swerve_sandbox_warm(sb) < 0) {
		fprintf(stderr, "swerve serve: worker %d: %s\n", (int)getpid(),
		        swerve_error_last());
		_exit(SWERVE_EXIT_INFRA);
	}
	if (chdir("/") < 0)
		_exit(SWERVE_EXIT_INFRA);
	if (swerve_sandbox_prepare(sb) < 0)
		swerve_error_clear();
	for (;;) {
		int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			fprintf(stderr, "swerve serve: worker %d: accept: %s\n", (int)getpid(),
			        strerror(errno));
			_exit(SWERVE_EXIT_INFRA);
		}
		/* a client that connects and says nothing must not hold the worker */
		struct timeval tv = {10, 0};
		setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		serve_one(conn, sb, saved);
		close(conn);
		/* idle until the next client: start its sandbox now (same mounts,
		 * directory and hostname as this run; anything else discards it) */
		if (swerve_sandbox_prepare(sb) < 0)
			swerve_error_clear();
	}
}

/* Binds path, replacing a stale socket (one nobody accepts on). */
/* Binds path, replacing a stale socket (one nobody accepts on): the fd, or
 * minus the exit code after a one-line message. */
static int listen_on(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -swerve_cli_fail("serve", SWERVE_EXIT_USAGE, "%s: path too long", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (!strcmp(path, DEFAULT_SOCKET) && mkdir("/run/swerve", 0700) < 0 && errno != EEXIST)
		return -swerve_cli_fail("serve", SWERVE_EXIT_INFRA, "/run/swerve: %s",
		                        strerror(errno));
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -swerve_cli_fail("serve", SWERVE_EXIT_INFRA, "socket: %s", strerror(errno));
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return -swerve_cli_fail("serve", SWERVE_EXIT_USAGE,
			                        "%s: exists and is not a socket", path);
		}
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			return -swerve_cli_fail("serve", SWERVE_EXIT_USAGE,
			                        "%s: another server listens there", path);
		}
		unlink(path); /* stale */
	}
	mode_t old = umask(0177); /* the socket is born 0600 */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 128) < 0) {
		int e = errno;
		close(fd);
		return -swerve_cli_fail("serve", SWERVE_EXIT_INFRA, "%s: %s", path, strerror(e));
	}
	return fd;
}

int swerve_cmd_serve(int argc, char **argv)
{
	const char *path = DEFAULT_SOCKET;
	int nworkers = (int)sysconf(_SC_NPROCESSORS_ONLN), rc;
	if (swerve_cli_wants_help(argc, argv)) {
		usage(stdout);
		return SWERVE_EXIT_OK;
	}
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--socket") && v) {
			path = v;
			i++;
		} else if (!strcmp(argv[i], "--workers") && v) {
			if ((rc = swerve_cli_int(&nworkers, "serve", "--workers", v, 1, 256)))
				return rc;
			i++;
		} else {
			return swerve_cli_usage("serve", "unknown or incomplete option '%s'",
			                        argv[i]);
		}
	}
	if (nworkers < 1)
		nworkers = 1;
	/* the sandbox must work here before anyone is told to use us */
	struct swerve_sandbox *probe;
	if (swerve_sandbox_new(&probe, NULL) < 0)
		return swerve_cli_fail("serve", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
	swerve_sandbox_free(probe);
	int lfd = listen_on(path);
	if (lfd < 0)
		return -lfd;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	pid_t *pids = calloc((size_t)nworkers, sizeof(pid_t));
	if (!pids) {
		unlink(path);
		return swerve_cli_fail("serve", SWERVE_EXIT_INFRA, "out of memory");
	}
	fprintf(stderr, "swerve serve: listening on %s with %d worker%s\n", path, nworkers,
	        nworkers == 1 ? "" : "s");
	int fast_deaths = 0, code = SWERVE_EXIT_OK;
	time_t last_start = 0;
	while (!stop) {
		for (int i = 0; i < nworkers && !stop; i++) {
			if (pids[i] > 0)
				continue;
			/* a worker that cannot even start: stop instead of spinning */
			time_t now = time(NULL);
			fast_deaths = now - last_start < 2 ? fast_deaths + 1 : 0;
			last_start = now;
			if (fast_deaths > 3 * nworkers) {
				fprintf(stderr,
				        "swerve serve: workers keep dying at start; stopping\n");
				code = SWERVE_EXIT_INFRA;
				stop = 1;
				break;
			}
			fflush(stderr);
			pid_t p = fork();
			if (p == 0)
				worker(lfd);
			if (p < 0) {
				fprintf(stderr, "swerve serve: fork: %s\n", strerror(errno));
				sleep(1);
				continue;
			}
			pids[i] = p;
		}
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0)
			continue; /* EINTR: stop was set */
		for (int i = 0; i < nworkers; i++)
			if (pids[i] == w) {
				pids[i] = 0;
				if (!stop)
					fprintf(stderr,
					        "swerve serve: worker %d ended (status 0x%x); "
					        "starting "
					        "another\n",
					        (int)w, st);
			}
	}
	close(lfd);
	unlink(path);
	for (int i = 0; i < nworkers; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	for (int i = 0; i < nworkers; i++)
		if (pids[i] > 0)
			while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR)
				;
	free(pids);
	fprintf(stderr, "swerve serve: stopped\n");
	return code;
}
