/* escape.c - the security suite's in-sandbox program: one escape attempt per
 * case (argv[1]), reporting what happened on stdout as one word per attempt:
 * "ok", or the errno name ("EPERM") of the failure. The test
 * (tests/security/test_escape.c) asserts the exact word and the verdict.
 * Cases that should be killed (forbidden syscalls) print "survived" if they
 * ever return. Deliberately plain: libc only, no sandbox code. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e)
{
	switch (e) {
	case 0: return "ok";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EROFS: return "EROFS";
	case ENOSYS: return "ENOSYS";
	case EAFNOSUPPORT: return "EAFNOSUPPORT";
	case ECONNREFUSED: return "ECONNREFUSED";
	case ENETUNREACH: return "ENETUNREACH";
	case EXDEV: return "EXDEV";
	case ENOSPC: return "ENOSPC";
	case EFBIG: return "EFBIG";
	case EAGAIN: return "EAGAIN";
	case EINVAL: return "EINVAL";
	case EBADF: return "EBADF";
	case ENOTTY: return "ENOTTY";
	case ETXTBSY: return "ETXTBSY";
	case EEXIST: return "EEXIST";
	case ESRCH: return "ESRCH";
	default: return "E?";
	}
}

/* print the outcome of a call that returns -1/errno on failure */
static void say(long rc)
{
	printf("%s\n", rc < 0 ? ename(errno) : "ok");
	fflush(stdout);
}

static void *thread_fn(void *arg)
{
	*(int *)arg = 42;
	return NULL;
}

static int run(const char *c, char **argv)
{
	if (!strcmp(c,
	            "connect")) { /* argv[2]: a port the test listens on at the host's 127.0.0.1 */
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		say(connect(fd, (struct sockaddr *)&a, sizeof(a)));
		/* and any non-loopback address: no route */
		int fd2 = socket(AF_INET, SOCK_STREAM, 0);
		inet_pton(AF_INET, "10.0.0.1", &a.sin_addr);
		say(connect(fd2, (struct sockaddr *)&a, sizeof(a)));
	} else if (!strcmp(c, "sockets")) {
		say(socket(AF_PACKET, SOCK_RAW, 0));
		say(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
		say(socket(AF_ALG, SOCK_SEQPACKET, 0));
		say(socket(AF_VSOCK, SOCK_STREAM, 0));
		say(socket(AF_UNIX, SOCK_STREAM, 0));
		say(socket(AF_INET6, SOCK_DGRAM, 0));
	} else if (!strcmp(c, "read")) { /* argv[2..]: host paths that must not be readable */
		for (int i = 2; argv[i]; i++)
			say(open(argv[i], O_RDONLY));
	} else if (!strcmp(c, "write")) { /* argv[2..]: paths to create/append */
		for (int i = 2; argv[i]; i++)
			say(open(argv[i], O_WRONLY | O_CREAT | O_APPEND, 0644));
	} else if (!strcmp(c, "append")) { /* argv[2]: file, argv[3]: text */
		int fd = open(argv[2], O_WRONLY | O_APPEND);
		say(fd < 0 ? -1 : write(fd, argv[3], strlen(argv[3])));
	} else if (!strcmp(c, "unlink")) {
		say(unlink(argv[2]));
	} else if (!strcmp(c, "ns")) {
		say(mount("none", "/tmp", "tmpfs", 0, NULL));
		say(umount2("/proc", MNT_DETACH));
		say(syscall(SYS_pivot_root, "/tmp", "/tmp"));
		say(unshare(CLONE_NEWUSER));
		int nsfd = open("/proc/self/ns/net", O_RDONLY);
		say(setns(nsfd, 0));
		say(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, NULL, NULL, 0));
		say(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0));
		say(chroot("/tmp"));
	} else if (!strcmp(c, "keyctl")) {
		say(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
		say(syscall(SYS_add_key, "user", "k", "v", 1, -3));
	} else if (!strcmp(c, "clock")) {
		struct timespec ts = {1, 0};
		say(clock_settime(CLOCK_REALTIME, &ts));
		struct timeval tv = {1, 0};
		say(settimeofday(&tv, NULL));
	} else if (!strcmp(c, "kill-syscall")) { /* argv[2]: a syscall the policy kills */
		const char *s = argv[2];
		long nr = !strcmp(s, "bpf")                 ? SYS_bpf
		          : !strcmp(s, "perf_event_open")   ? SYS_perf_event_open
		          : !strcmp(s, "init_module")       ? SYS_init_module
		          : !strcmp(s, "kexec_load")        ? SYS_kexec_load
		          : !strcmp(s, "reboot")            ? SYS_reboot
		          : !strcmp(s, "swapon")            ? SYS_swapon
		          : !strcmp(s, "open_by_handle_at") ? SYS_open_by_handle_at
		                                            : -1;
		if (!strcmp(s, "reboot"))
			syscall(nr, 0xfee1dead, 672274793, 0x4321fedc, NULL);
		else
			syscall(nr, 0, 0, 0, 0, 0);
		printf("survived\n");
	} else if (!strcmp(c, "tiocsti")) {
		char ch = 'x';
		/* stdin is /dev/null: without the filter these would be ENOTTY */
		say(ioctl(0, TIOCSTI, &ch));
		say(syscall(SYS_ioctl, 0, TIOCSTI | 0x100000000ull, &ch));
		say(ioctl(0, TIOCLINUX, &ch));
	} else if (!strcmp(c, "io_uring")) {
		say(syscall(SYS_io_uring_setup, 8, NULL));
	} else if (!strcmp(c, "clone3")) {
		struct clone_args ca;
		memset(&ca, 0, sizeof(ca));
		ca.exit_signal = SIGCHLD;
		say(syscall(SYS_clone3, &ca, sizeof(ca)));
		pthread_t t;
		int v = 0;
		int e = pthread_create(&t, NULL, thread_fn, &v);
		if (!e)
			pthread_join(t, NULL);
		printf("%s\n", e == 0 && v == 42 ? "threads" : "no-threads");
	} else if (!strcmp(c, "x32")) {
		syscall(0x40000000 | SYS_getpid);
		printf("survived\n");
	} else if (!strcmp(c, "int80")) {
		long ret;
		/* i386 getpid (20) through the 32-bit entry */
		__asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
		printf("survived %ld\n", ret);
	} else if (!strcmp(c, "forkbomb")) {
		int n = 0, e = 0;
		for (;;) {
			pid_t p = fork();
			if (p == 0) {
				pause();
				_exit(0);
			}
			if (p < 0) {
				e = errno;
				break;
			}
			n++;
		}
		printf("%s %d\n", ename(e), n);
		fflush(stdout);
		for (;;) /* and keep forking: the deadline must end it */
			if (fork() == 0)
				for (;;)
					;
	} else if (!strcmp(c, "membomb")) {
		for (;;) {
			char *p = malloc(16 << 20);
			if (!p) {
				printf("ENOMEM\n");
				return 1;
			}
			memset(p, 1, 16 << 20);
		}
	} else if (!strcmp(c, "fill")) { /* argv[2]: file to grow until it fails */
		signal(SIGXFSZ, SIG_IGN);
		int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		static char buf[1 << 16];
		memset(buf, 'x', sizeof(buf));
		long total = 0;
		for (;;) {
			ssize_t w = write(fd, buf, sizeof(buf));
			if (w < 0) {
				printf("%s %ld\n", ename(errno), total);
				return 0;
			}
			total += w;
		}
	} else if (!strcmp(c, "flood")) {
		static char buf[1 << 16];
		memset(buf, 'y', sizeof(buf));
		fputs("HEAD-MARK\n", stdout);
		fflush(stdout);
		for (;;)
			if (write(1, buf, sizeof(buf)) < 0)
				return 1;
	} else if (!strcmp(c, "daemon")) { /* argv[2]: file the daemon appends to; argv[3]: main
		                              sleeps s */
		pid_t p = fork();
		if (p == 0) {
			if (fork() == 0) {
				setsid();
				for (;;) {
					int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
					write(fd, ".", 1);
					close(fd);
					usleep(20000);
				}
			}
			_exit(0);
		}
		waitpid(p, NULL, 0);
		/* until the daemon has certainly run (the host may be busy) */
		struct stat st;
		for (int i = 0; i < 500 && (stat(argv[2], &st) < 0 || st.st_size < 2); i++)
			usleep(10000);
		sleep((unsigned)atoi(argv[3]));
		printf("main done\n");
	} else if (!strcmp(c, "fds")) {
		int open_fds = 0;
		for (int fd = 3; fd < 4096; fd++)
			if (fcntl(fd, F_GETFD) >= 0)
				open_fds++;
		printf("%d\n", open_fds);
	} else if (!strcmp(c, "whoami")) {
		printf("%d %d\n", (int)getuid(), (int)geteuid());
	} else if (!strcmp(c, "setuid")) { /* argv[2]: a setuid copy of this program */
		struct stat st;
		if (stat(argv[2], &st) == 0 && (st.st_mode & S_ISUID))
			printf("suid-bit\n");
		fflush(stdout);
		execl(argv[2], argv[2], "whoami", (char *)NULL);
		say(-1);
	} else if (!strcmp(c, "env")) { /* argv[2]: variable name */
		const char *v = getenv(argv[2]);
		printf("%s\n", v ? v : "(unset)");
	} else if (!strcmp(c, "links")) { /* argv[2]: host secret path; argv[3]: workspace dir */
		char l[4096], h[4096];
		snprintf(l, sizeof(l), "%s/sym", argv[3]);
		snprintf(h, sizeof(h), "%s/hard", argv[3]);
		say(symlink(argv[2], l));
		say(open(l, O_RDONLY));
		say(link("/etc/passwd", h));
		say(link("/proc/self/exe", h));
	} else if (!strcmp(c, "devices")) {
		say(open("/dev/mem", O_RDONLY));
		say(open("/dev/kmem", O_RDONLY));
		say(open("/dev/sda", O_RDONLY));
		say(open("/dev/vda", O_RDONLY));
		say(open("/sys/kernel", O_RDONLY));
		say(mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1)));
		say(open("/dev/null", O_WRONLY));
	} else if (!strcmp(c, "core")) {
		struct rlimit rl;
		getrlimit(RLIMIT_CORE, &rl);
		printf("core %llu %llu\n", (unsigned long long)rl.rlim_cur,
		       (unsigned long long)rl.rlim_max);
		rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
		say(setrlimit(RLIMIT_CORE, &rl));
		fflush(stdout);
		abort();
	} else if (!strcmp(c, "uts-ipc")) { /* argv[2]: SysV key (decimal) */
		say(sethostname("evil", 4));
		char hn[64];
		gethostname(hn, sizeof(hn));
		printf("%s\n", hn);
		say(shmget((key_t)atoi(argv[2]), 4096, IPC_CREAT | 0600));
	} else if (!strcmp(c, "proc")) {
		say(open("/proc/1/exe", O_WRONLY));
		say(open("/proc/1/exe", O_RDONLY));
		say(open("/proc/self/exe", O_WRONLY));
		say(open("/proc/sys/kernel/core_pattern", O_WRONLY));
		say(open("/proc/sysrq-trigger", O_WRONLY));
		int n = 0;
		DIR *d = opendir("/proc");
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (de->d_name[0] >= '0' && de->d_name[0] <= '9')
				n++;
		printf("pids %d\n", n);
	} else if (!strcmp(c, "caps")) {
		/* what the kernel says of us: capability sets, no_new_privs, seccomp */
		FILE *f = fopen("/proc/self/status", "r");
		char line[256];
		while (f && fgets(line, sizeof(line), f))
			if (!strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs", 10) ||
			    !strncmp(line, "Seccomp:", 8))
				fputs(line, stdout);
		if (f)
			fclose(f);
	} else if (!strcmp(c, "init")) {
		/* pid 1 is the sandbox's init, which may share the supervisor's
		 * memory: neither its memory nor its signal handlers reachable */
		say(open("/proc/1/mem", O_RDWR));
		say(open("/proc/1/mem", O_RDONLY));
		say(open("/proc/1/maps", O_RDONLY));
		say(open("/proc/1/environ", O_RDONLY));
		/* its memory and descriptors (the control socket to the
		 * supervisor) through the syscalls that bypass /proc */
		char buf[16];
		struct iovec l = {buf, sizeof(buf)}, r = {(void *)&buf, sizeof(buf)};
		say(syscall(SYS_process_vm_readv, 1, &l, 1, &r, 1, 0) < 0 ? -1 : 0);
		int pfd = (int)syscall(SYS_pidfd_open, 1, 0);
		say(pfd < 0 ? -1 : (syscall(SYS_pidfd_getfd, pfd, 3, 0) < 0 ? -1 : 0));
		int sigs[] = {SIGUSR1, SIGTERM, SIGINT, SIGHUP, SIGCHLD};
		for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
			kill(1, sigs[i]);
		usleep(50000);
		printf("alive\n");
	} else if (!strcmp(c, "threads")) {
		pthread_t t[8];
		int v[8] = {0};
		for (int i = 0; i < 8; i++)
			pthread_create(&t[i], NULL, thread_fn, &v[i]);
		int ok = 1;
		for (int i = 0; i < 8; i++) {
			pthread_join(t[i], NULL);
			ok &= v[i] == 42;
		}
		printf("%s\n", ok ? "ok" : "bad");
	} else if (!strcmp(c, "loopback")) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t al = sizeof(a);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0 ||
		    getsockname(s, (struct sockaddr *)&a, &al) < 0) {
			say(-1);
			return 1;
		}
		int cl = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(cl, (struct sockaddr *)&a, sizeof(a)) < 0) {
			say(-1);
			return 1;
		}
		int sv = accept(s, NULL, NULL);
		char buf[8] = {0};
		write(cl, "ping", 4);
		read(sv, buf, 4);
		printf("%s\n", strcmp(buf, "ping") ? "bad" : "ok");
	} else if (!strcmp(c, "tcpcycle")) { /* argv[2]: a fixed port; no SO_REUSEADDR */
		int l = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0) {
			say(-1);
			return 0;
		}
		int cl = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(cl, (struct sockaddr *)&a, sizeof(a)) < 0) {
			say(-1);
			return 0;
		}
		int sv = accept(l, NULL, NULL);
		close(sv); /* the server closes first: its side goes to TIME_WAIT */
		usleep(10000);
		close(cl);
		close(l);
		say(0);
	} else if (!strcmp(c, "exit")) {
		return atoi(argv[2]);
	} else if (!strcmp(c, "signal")) {
		signal(atoi(argv[2]), SIG_DFL);
		kill(getpid(), atoi(argv[2]));
		pause();
	} else if (!strcmp(c, "noop")) {
		/* the test harness's warm-up run (SWERVE_TEST_PREPARE) */
	} else {
		fprintf(stderr, "escape: unknown case %s\n", c);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: escape CASE [ARGS]\n");
		return 2;
	}
	return run(argv[1], argv);
}
