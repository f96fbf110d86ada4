/* seccomp.c - the syscall policy as one data table, compiled once per worker.
 *
 * The policy is a deny-list on top of the namespaces: everything a test suite
 * needs stays allowed; what reaches kernel attack surface or host state that
 * namespaces do not cover fails with an errno the program can handle, or
 * kills the sandbox (verdict SV, naming the syscall). Kills are delivered as
 * SECCOMP_RET_USER_NOTIF: the supervisor holds the listener, reads which
 * syscall it was, and kills the pid namespace before the call ever runs.
 * Other architectures (i386 `int 0x80`, x32) are killed by the kernel with
 * SIGSYS (SECCOMP_RET_KILL_PROCESS).
 *
 * Built with libseccomp, exported as raw BPF (seccomp_export_bpf), and loaded
 * by the child with the seccomp(2) syscall: the child allocates nothing. */
#include "sandbox/internal.h"

#include <errno.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#define E(name, err, why)                                                                          \
	{                                                                                          \
#name, SWERVE_SECCOMP_ERRNO, err, why                                              \
	}
#define K(name, why)                                                                               \
	{                                                                                          \
#name, SWERVE_SECCOMP_KILL, 0, why                                                 \
	}

static const struct swerve_seccomp_rule policy[] = {
        /* namespaces and mounts: the sandbox's own view must stay fixed */
        E(mount, EPERM, "no remounting the sandbox's filesystem view"),
        E(umount2, EPERM, "no unmounting the binds to reveal what is below"),
        E(pivot_root, EPERM, "the root is fixed"),
        E(chroot, EPERM, "the root is fixed"),
        E(unshare, EPERM, "no new namespaces (user-namespace kernel attack surface)"),
        E(setns, EPERM, "no joining other namespaces"),
        E(clone, EPERM,
          "clone with any CLONE_NEW* flag (argument check); plain fork and threads work"),
        E(clone3, ENOSYS,
          "flags are behind a pointer seccomp cannot read: ENOSYS makes libc fall back to clone"),
        E(fsopen, ENOSYS, "new mount API"),
        E(fsconfig, ENOSYS, "new mount API"),
        E(fsmount, ENOSYS, "new mount API"),
        E(fspick, ENOSYS, "new mount API"),
        E(open_tree, ENOSYS, "new mount API"),
        E(move_mount, ENOSYS, "new mount API"),
        E(mount_setattr, ENOSYS, "new mount API"),
        /* kernel subsystems with a history of exploits */
        E(io_uring_setup, ENOSYS, "io_uring: large attack surface, bypasses seccomp for its ops"),
        E(io_uring_enter, ENOSYS, "io_uring"),
        E(io_uring_register, ENOSYS, "io_uring"),
        E(keyctl, EPERM, "kernel keyrings are not namespaced"),
        E(add_key, EPERM, "kernel keyrings are not namespaced"),
        E(request_key, EPERM, "kernel keyrings are not namespaced"),
        E(userfaultfd, EPERM, "used to widen kernel race windows"),
        E(ptrace, EPERM, "no tracing (seccomp/ptrace interplay; process inspection)"),
        E(process_vm_writev, EPERM, "no writing other processes' memory"),
        E(name_to_handle_at, EPERM, "file handles bypass path-based containment"),
        E(syslog, EPERM, "the kernel log is host state"),
        E(socket, EAFNOSUPPORT,
          "families other than unix, inet, inet6, netlink (argument check): no packet, AF_ALG, "
          "vsock..."),
        E(ioctl, EPERM,
          "TIOCSTI / TIOCLINUX (argument check, low 32 bits): no typing into a terminal"),
        E(settimeofday, EPERM, "the clock is host state"),
        E(clock_settime, EPERM, "the clock is host state"),
        E(clock_adjtime, EPERM, "the clock is host state"),
        E(adjtimex, EPERM, "the clock is host state"),
        /* never legitimate in a test run: kill and report */
        K(open_by_handle_at, "reads any file by handle (the 'shocker' escape)"),
        K(kexec_load, "replaces the running kernel"),
        K(kexec_file_load, "replaces the running kernel"),
        K(init_module, "loads kernel code"),
        K(finit_module, "loads kernel code"),
        K(delete_module, "unloads kernel code"),
        K(reboot, "host power state"),
        K(swapon, "host memory configuration"),
        K(swapoff, "host memory configuration"),
        K(acct, "host process accounting"),
        K(bpf, "eBPF programs: kernel attack surface"),
        K(perf_event_open, "perf: kernel attack surface and side channels"),
        K(iopl, "raw I/O port access"),
        K(ioperm, "raw I/O port access"),
        K(quotactl, "host filesystem quotas"),
        K(lookup_dcookie, "kernel profiling internals"),
        K(vhangup, "terminal hang-up of the host's tty"),
        K(uselib, "obsolete loader syscall"),
        K(nfsservctl, "obsolete"),
};

const struct swerve_seccomp_rule *swerve_seccomp_policy(size_t *n)
{
	*n = sizeof(policy) / sizeof(policy[0]);
	return policy;
}

static int add(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned n,
               const struct scmp_arg_cmp *a)
{
	int rc = seccomp_rule_add_array(ctx, action, nr, n, a);
	if (rc < 0)
		return swerve_error_set(SWERVE_ERROR, "seccomp: rule for syscall %d: %s", nr,
		                        strerror(-rc));
	return 0;
}

static int add_rule(scmp_filter_ctx ctx, const struct swerve_seccomp_rule *r)
{
	int nr = seccomp_syscall_resolve_name(r->syscall);
	if (nr == __NR_SCMP_ERROR || nr < 0)
		return 0; /* unknown to this libseccomp or not on this arch: nothing to filter */
	uint32_t act = r->action == SWERVE_SECCOMP_KILL ? SCMP_ACT_NOTIFY : SCMP_ACT_ERRNO(r->err);
	if (strcmp(r->syscall, "clone") == 0) {
		static const uint64_t ns[] = {CLONE_NEWNS,     CLONE_NEWUSER, CLONE_NEWPID,
		                              CLONE_NEWNET,    CLONE_NEWIPC,  CLONE_NEWUTS,
		                              CLONE_NEWCGROUP, CLONE_NEWTIME};
		for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
			struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_MASKED_EQ, ns[i], ns[i]);
			if (add(ctx, act, nr, 1, &a) < 0)
				return -1;
		}
		return 0;
	}
	if (strcmp(r->syscall, "socket") == 0) {
		/* allowed: AF_UNIX 1, AF_INET 2, AF_INET6 10, AF_NETLINK 16;
		 * refused: 0, 3..9, 11..15 one by one, and everything above 16 */
		for (int fam = 0; fam <= AF_NETLINK; fam++) {
			if (fam == AF_UNIX || fam == AF_INET || fam == AF_INET6 ||
			    fam == AF_NETLINK)
				continue;
			struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_EQ, (uint64_t)fam);
			if (add(ctx, act, nr, 1, &a) < 0)
				return -1;
		}
		struct scmp_arg_cmp a = SCMP_A0(SCMP_CMP_GT, AF_NETLINK);
		return add(ctx, act, nr, 1, &a);
	}
	if (strcmp(r->syscall, "ioctl") == 0) {
		static const uint64_t bad[] = {TIOCSTI, TIOCLINUX};
		for (size_t i = 0; i < 2; i++) {
			/* masked to 32 bits: the kernel ignores the high bits of cmd */
			struct scmp_arg_cmp a = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, bad[i]);
			if (add(ctx, act, nr, 1, &a) < 0)
				return -1;
		}
		return 0;
	}
	return add(ctx, act, nr, 0, NULL);
}

int sb_seccomp_build(struct sock_fprog *out)
{
	int rc = -1, fd = -1;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	memset(out, 0, sizeof(*out));
	if (!ctx)
		return swerve_error_set(SWERVE_ERROR, "seccomp: seccomp_init failed");
	/* native arch only: i386 (int 0x80) and x32 syscalls kill the process */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0) {
		swerve_error_set(SWERVE_ERROR, "seccomp: cannot set the bad-arch action");
		goto done;
	}
	/* a binary tree over syscall numbers: every syscall pays this filter */
	seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	for (size_t i = 0; i < sizeof(policy) / sizeof(policy[0]); i++)
		if (add_rule(ctx, &policy[i]) < 0)
			goto done;
	fd = memfd_create("swerve-bpf", MFD_CLOEXEC);
	if (fd < 0) {
		swerve_error_set(SWERVE_ERROR, "seccomp: memfd_create: %s", strerror(errno));
		goto done;
	}
	int e = seccomp_export_bpf(ctx, fd);
	if (e < 0) {
		swerve_error_set(SWERVE_ERROR, "seccomp: export BPF: %s", strerror(-e));
		goto done;
	}
	off_t len = lseek(fd, 0, SEEK_END);
	if (len <= 0 || len % sizeof(struct sock_filter)) {
		swerve_error_set(SWERVE_ERROR, "seccomp: exported BPF has bad size %lld",
		                 (long long)len);
		goto done;
	}
	out->filter = malloc((size_t)len);
	if (!out->filter) {
		swerve_error_set(SWERVE_ENOMEM, "seccomp: out of memory");
		goto done;
	}
	if (pread(fd, out->filter, (size_t)len, 0) != len) {
		swerve_error_set(SWERVE_EIO, "seccomp: reading exported BPF: %s", strerror(errno));
		free(out->filter);
		out->filter = NULL;
		goto done;
	}
	out->len = (unsigned short)(len / sizeof(struct sock_filter));
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
	return rc;
}

void sb_seccomp_dispose(struct sock_fprog *p)
{
	free(p->filter);
	p->filter = NULL;
	p->len = 0;
}

int sb_seccomp_load(const struct sock_fprog *prog)
{
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
	                    prog);
}

void sb_seccomp_syscall_name(int nr, char *buf, size_t len)
{
	char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	if (name)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "syscall %d", nr);
	free(name);
}
