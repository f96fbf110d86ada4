/* launch_main.c - the `swerve` program users run: a small launcher.
 *
 * `swerve exec ...` is handed to a resident `swerve serve` when one listens
 * on $SWERVE_SOCKET (default /run/swerve/exec.sock): the launcher sends its
 * arguments, working directory and stdin/stdout/stderr over the socket, the
 * server's worker runs the command on a warm sandbox context and prints
 * exactly what `swerve exec` prints onto those descriptors, and the launcher
 * exits with the code the server sends back. `swerve exec` when no server
 * listens (or SWERVE_SOCKET is empty) execs swerve-exec (exec alone, linked
 * lean), everything else swerve-core (the full command); both are found next
 * to this program or in ../libexec/swerve/.
 *
 * Why a launcher: the full command links libgit2, SQLite, jansson, expat and
 * libseccomp with 19 more shared libraries, and loading them costs ~3 ms
 * before main(); a one-line `swerve exec` should not pay that. Built with
 * -DSWERVE_NOLIBC (x86-64, arm64) it is a static program with no C library
 * at all (its own _start and raw system calls: ~0.2 ms to start, against
 * ~0.5 ms for any glibc program on the development VM); elsewhere the same
 * code builds against libc. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#define REQ_MAGIC      "SWX1"
#define REQ_MAX        65536
#define DEFAULT_SOCKET "/run/swerve/exec.sock"

#include "sandbox/rawsys.h"

#ifdef SWERVE_NOLIBC
#if !SB_HAVE_RAW_SYSCALL
#error "SWERVE_NOLIBC needs x86-64 or arm64"
#endif
#define sys6 sb_raw_syscall

/* the compiler may emit calls to these for struct copies */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}
#else
#include <string.h>
#include <unistd.h>
static long sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long r = syscall(n, a, b, c, d, e, f);
	return r < 0 ? -errno : r;
}
#endif

#define sys1(n, a)       sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static size_t slen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static int seq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static void say(const char *a, const char *b, const char *c)
{
	const char *p[3] = {a, b, c};
	for (int i = 0; i < 3; i++)
		if (p[i])
			sys3(SYS_write, 2, p[i], slen(p[i]));
}

static const char *getenv_(char **envp, const char *name)
{
	size_t n = slen(name);
	for (; envp && *envp; envp++) {
		const char *e = *envp;
		size_t i = 0;
		while (i < n && e[i] == name[i])
			i++;
		if (i == n && e[n] == '=')
			return e + n + 1;
	}
	return 0;
}

/* swerve exec with -h/--help before `--` is answered by swerve-core */
static int wants_help(int argc, char **argv)
{
	for (int i = 2; i < argc; i++) {
		if (seq(argv[i], "--"))
			return 0;
		if (seq(argv[i], "-h") || seq(argv[i], "--help"))
			return 1;
	}
	return 0;
}

/* Hands `swerve exec` to the server. Returns the exit code, or -1 when no
 * server answers (the caller then runs it locally; nothing has run). */
static int via_server(int argc, char **argv, char **envp)
{
	static char req[REQ_MAX];
	const char *path = getenv_(envp, "SWERVE_SOCKET");
	if (!path)
		path = DEFAULT_SOCKET;
	if (!*path)
		return -1;
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	size_t pl = slen(path);
	if (pl >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, pl + 1);
	/* request: magic, cwd, then argv[1..] (from "exec"), each NUL-ended */
	size_t n = 0;
	memcpy(req, REQ_MAGIC, 5);
	n = 5;
	long k = sys3(SYS_getcwd, req + n, REQ_MAX - n, 0);
	if (k <= 0) /* unreachable cwd: let the full command say so */
		return -1;
	n += (size_t)k; /* the length includes the NUL */
	for (int i = 1; i < argc; i++) {
		size_t l = slen(argv[i]) + 1;
		if (n + l > REQ_MAX)
			return -1; /* too big for one message: run locally */
		memcpy(req + n, argv[i], l);
		n += l;
	}
	long fd = sys3(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (sys3(SYS_connect, fd, &sa, sizeof(sa)) < 0) {
		sys1(SYS_close, fd);
		return -1;
	}
	int fds[3] = {0, 1, 2};
	union {
		char buf[CMSG_SPACE(sizeof(fds))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {req, n};
	struct msghdr mh;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.buf;
	mh.msg_controllen = sizeof(u.buf);
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	long s;
	do
		s = sys3(SYS_sendmsg, fd, &mh, MSG_NOSIGNAL);
	while (s == -EINTR);
	if (s != (long)n) {
		sys1(SYS_close, fd);
		return -1;
	}
	/* from here on the server may be running the command: never run it a
	 * second time locally */
	int code = 0;
	do
		s = sys6(SYS_recvfrom, fd, (long)&code, sizeof(code), 0, 0, 0);
	while (s == -EINTR);
	if (s != sizeof(code) || code < 0 || code > 255) {
		say("swerve exec: the server (", path,
		    ") closed the connection before the verdict: infrastructure error\n");
		return 3;
	}
	return code;
}

/* execs the named program found next to this one or in ../libexec/swerve;
 * returns only when neither exists (ENOENT) or the exec failed (said) */
static int run_tool(const char *name, char **argv, char **envp)
{
	static char buf[4096 + 64];
	static const char *const dirs[] = {"/", "/../libexec/swerve/"};
	long k = sys3(SYS_readlink, "/proc/self/exe", buf, 4096);
	size_t dir = 0, nl = slen(name);
	if (k > 0)
		for (long i = 0; i < k; i++)
			if (buf[i] == '/')
				dir = (size_t)i;
	for (int t = 0; t < 2 && dir; t++) {
		size_t l = slen(dirs[t]);
		memcpy(buf + dir, dirs[t], l);
		memcpy(buf + dir + l, name, nl + 1);
		long e = sys3(SYS_execve, buf, argv, envp);
		if (e != -ENOENT) {
			say("swerve: cannot run ", buf, ": exec failed\n");
			return -1;
		}
	}
	return 0;
}

static int launch(int argc, char **argv, char **envp)
{
	if (argc >= 3 && seq(argv[1], "exec") && !wants_help(argc, argv)) {
		int code = via_server(argc, argv, envp);
		if (code >= 0)
			return code;
	}
	/* a one-shot exec: the lean program, else the full one */
	if (argc >= 2 && seq(argv[1], "exec") && run_tool("swerve-exec", argv, envp) < 0)
		return 3;
	if (run_tool("swerve-core", argv, envp) == 0)
		say("swerve: swerve-core not found next to this program or in ../libexec/swerve", 0,
		    "\n");
	return 3;
}

#ifdef SWERVE_NOLIBC
__attribute__((noreturn, used)) void swerve_start_c(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	int code = launch(argc, argv, envp);
	for (;;)
		sys1(SYS_exit_group, code);
}
#if defined(__x86_64__)
__asm__(".text\n.global _start\n_start:\n\txor %rbp, %rbp\n\tmov %rsp, %rdi\n"
        "\tand $-16, %rsp\n\tcall swerve_start_c\n\thlt\n");
#else
__asm__(".text\n.global _start\n_start:\n\tmov x0, sp\n\tbl swerve_start_c\n");
#endif
#else
extern char **environ;
int main(int argc, char **argv)
{
	return launch(argc, argv, environ);
}
#endif
