/* internal.h - what the sandbox/ modules share with each other (not public).
 *
 * The run is split by facility, nsjail-style, each with a parent-side verb
 * that prepares data before clone(2) (may allocate) and a child-side verb
 * that only uses that prepared data (no malloc, no stdio: the child is a
 * clone of a possibly multi-threaded process):
 *   mount.c    the new root: plan (parent) / apply (child)
 *   limits.c   rlimits and the pid-namespace process cap (child)
 *   net.c      loopback up in the new netns (child)
 *   seccomp.c  the policy table, built once into BPF (parent) / loaded (child)
 *   capture.c  head+tail output capture (parent)
 *   verdict.c  verdict names, result disposal
 *   probe.c    what the host supports
 *   cgroup.c   cgroup v2 limits per run where delegated (cgroup.h)
 *   spawn.c    clone, uid/gid maps, handshake, the child's checklist, init
 *   run.c      the supervisor: deadline, output, memory, accounting, verdict */
#ifndef SWERVE_SANDBOX_INTERNAL_H
#define SWERVE_SANDBOX_INTERNAL_H

#include <linux/filter.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"

/* ---- child -> supervisor messages (over the CLOEXEC socketpair) -------- */

enum sb_step {
	SB_STEP_NONE = 0,
	SB_STEP_RELEASE,  /* waiting for the parent to write the id maps */
	SB_STEP_SETGID,   /* switching to the sandbox uid/gid */
	SB_STEP_HOSTNAME, /* sethostname */
	SB_STEP_MOUNT,    /* a mount step: .index says which */
	SB_STEP_PIVOT,    /* pivot_root / detaching the old root */
	SB_STEP_NET,      /* loopback up */
	SB_STEP_SETNS,    /* joining the context's user/net/uts namespaces */
	SB_STEP_PIDMAX,   /* pid-namespace process cap */
	SB_STEP_FORK,     /* init forking the command */
	SB_STEP_CWD,      /* chdir to the working directory */
	SB_STEP_STDIO,    /* stdin/stdout/stderr */
	SB_STEP_RLIMIT,   /* setrlimit: .index is the resource */
	SB_STEP_SETSID,   /* setsid / parent-death signal */
	SB_STEP_CAPS,     /* dropping capabilities */
	SB_STEP_NNP,      /* no_new_privs */
	SB_STEP_SECCOMP,  /* loading the filter / sending its listener */
	SB_STEP_EXEC,     /* execve of the command */
	SB_STEP_COUNT,
};

const char *sb_step_name(int step);

enum sb_msg_kind {
	SB_MSG_ERROR = 1, /* {step, index, err}: a containment step failed */
	SB_MSG_EXIT,      /* {status}: the command's wait status (from init) */
	SB_MSG_READY,     /* a prepared command waits for its run (prepare) */
};

struct sb_msg {
	int kind;
	int step;
	int index;
	int err;
	int status;
};

#include "sandbox/rawsys.h"

/* The shared-memory start (spawn.c) runs libc and our code in CLONE_VM
 * children: not under sanitizers whose runtime keeps per-process state in
 * that memory (ASan's stack bookkeeping breaks on the children's stacks);
 * those builds use the copy-on-write start. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
        __has_feature(memory_sanitizer)
#define SB_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#undef SB_SANITIZED
#define SB_SANITIZED 1
#endif
#if SB_HAVE_RAW_SYSCALL && !defined(SB_SANITIZED)
#define SB_VM_START 1
#else
#define SB_VM_START 0
#endif

/* Timestamps the child writes into a MAP_SHARED page (no syscalls). */
struct sb_shared {
	uint64_t t_mounts, t_pivot, t_seccomp; /* CLOCK_MONOTONIC ns */
	uint64_t t_exec;                       /* init saw the command exec (shared-memory start) */
};

uint64_t sb_now_ns(void);

/* ---- mounts ------------------------------------------------------------- */

enum sb_mount_kind {
	SB_M_MKDIR,    /* mkdir dst */
	SB_M_FILE,     /* create an empty file dst (bind target) */
	SB_M_SYMLINK,  /* symlink src -> dst */
	SB_M_WRITE,    /* write data to new file dst */
	SB_M_BIND_RO,  /* bind src at dst (recursive), then read-only nosuid nodev */
	SB_M_BIND_DEV, /* bind a device node src at dst, read-only, nosuid */
	SB_M_BIND_RW,  /* bind src at dst (recursive), nosuid nodev */
	SB_M_TMPFS,    /* tmpfs at dst with data (size=...) */
	SB_M_OVERLAY,  /* overlay at dst with data (lowerdir=...) */
	SB_M_PROC,     /* fresh proc at dst (read-only, nosuid, nodev, noexec) */
	SB_M_ROOT_RO,  /* the new root itself read-only */
};

struct sb_mount_op {
	enum sb_mount_kind kind;
	const char *extra; /* overlay workdir (attach mode) */
	const char *src;   /* host path, already prefixed with the old root */
	const char *dst;   /* path in the new root */
	const char *data;  /* mount data or file content */
	int optional;      /* a missing source is skipped, not an error */
};

/* A mount plan: ops in order plus the arena holding their strings. */
struct sb_mount_plan {
	struct sb_mount_op *ops;
	size_t n, cap;
	char *arena;
	size_t arena_len, arena_cap;
	int used_overlay;
	int mode;  /* enum sb_plan_mode */
	char *key; /* TEMPLATE/RUN: the run-specific mount points, "\nd:/path\nf:/path\n" */
	size_t key_len, key_cap;
	const char *extra_key; /* TEMPLATE: more mount points to create (a former key) */
};

/* What a plan holds:
 *  FULL     everything, built by the child of a slow-path run (sources
 *           under the old root);
 *  TEMPLATE the run-independent root (toolchain, /etc, /dev) plus empty
 *           mount points for the run's own mounts, built once by the holder;
 *  RUN      only the run's own mounts (workspace, extra binds, /tmp,
 *           /dev/shm, /proc), attached by a fast-path run into its copy of
 *           the template (sources are host paths, opened before joining). */
enum sb_plan_mode { SB_PLAN_FULL = 0, SB_PLAN_TEMPLATE, SB_PLAN_RUN };

void sb_mount_plan_reset(struct sb_mount_plan *p);
void sb_mount_plan_dispose(struct sb_mount_plan *p);

/* Builds the plan for opts (parent side). Checks that sources exist:
 * SWERVE_ENOTFOUND / SWERVE_EINVAL with a message naming the path. */
int sb_mount_plan_build(struct sb_mount_plan *p, int mode, const struct swerve_sandbox_opts *o,
                        const char *passwd, const char *group);

/* Whether every mount point of run plan r exists in template plan t. */
int sb_mount_key_covered(const struct sb_mount_plan *t, const struct sb_mount_plan *r);

/* Child side of a RUN plan: opens detached mounts of the sources (in the
 * caller's mount namespace), joins a copy of the template mount namespace
 * (setns + unshare), attaches them and mounts /tmp, /dev/shm, /proc.
 * Returns 0, or -1 with step, index and errno set. */
int sb_mount_attach(const struct sb_mount_plan *p, int template_ns, int *step, int *index);

/* Child side: executes the plan (staging root on tmpfs, binds, pivot_root,
 * old root detached). Returns 0, or -1 with step and index set and errno. */
int sb_mount_apply(const struct sb_mount_plan *p, int *step, int *index);

/* The staging mount point and the old root's name during setup. */
#define SB_STAGE   "/tmp"
#define SB_OLDROOT "/.oldroot" /* the old root, under the new one */

/* ---- limits ------------------------------------------------------------- */

struct sb_rlimit {
	int resource;
	struct rlimit lim;
};

#define SB_NRLIMITS 6

/* Fills r (SB_NRLIMITS entries) from the effective limits. */
void sb_limits_plan(struct sb_rlimit *r, const struct swerve_sandbox_limits *l);
/* Child side: applies them; returns 0 or -1 (errno) with *index = resource. */
int sb_limits_apply(const struct sb_rlimit *r, int *index);

/* ---- net ------------------------------------------------------------------ */

int sb_net_loopback_up(void);
/* In a network namespace shared by successive runs: no TIME_WAIT sockets
 * (a closed server port is free again at once) and no TCP metrics cache, so
 * no run sees state from an earlier one. Needs /proc/sys/net of the current
 * namespace (the host's /proc is fine). 0 or -1 (errno). */
int sb_net_reusable(void);

/* ---- seccomp ------------------------------------------------------------ */

/* Builds the filter once (libseccomp -> exported BPF). */
int sb_seccomp_build(struct sock_fprog *out);
void sb_seccomp_dispose(struct sock_fprog *p);
/* Child side: loads prog with a user-notification listener; returns the
 * listener fd, or -1 (errno). Requires no_new_privs already set. */
int sb_seccomp_load(const struct sock_fprog *prog);
/* Name of syscall nr on the native arch into buf. */
void sb_seccomp_syscall_name(int nr, char *buf, size_t len);

/* ---- capture ------------------------------------------------------------ */

struct sb_capture {
	char *head;
	size_t head_len, head_cap;
	char *tail; /* ring */
	size_t tail_pos, tail_len, tail_cap;
	uint64_t total;
};

int sb_capture_init(struct sb_capture *c, uint64_t keep);
void sb_capture_add(struct sb_capture *c, const char *d, size_t n);
/* Moves the captured bytes into out (joined head + marker + tail). */
int sb_capture_finish(struct sb_capture *c, struct swerve_sandbox_output *out);
void sb_capture_dispose(struct sb_capture *c);

/* ---- the context ---------------------------------------------------------- */

struct swerve_sandbox {
	struct swerve_sandbox_probe probe;
	struct sock_fprog prog;
	struct sb_mount_plan plan;
	struct sb_shared *shared; /* MAP_SHARED page */
	struct swerve_sandbox_timing timing;
	uid_t host_uid;
	gid_t host_gid;
	/* Fast path (the worker is root): a holder process keeps a template
	 * root, a network namespace, a user namespace (ids mapped) and a uts
	 * namespace per context, which every run joins; see spawn.c. */
	int fast;
	struct sb_mount_plan tmpl;      /* the holder's template (fast path) */
	struct sb_mount_plan run_plan;  /* this run's mounts (fast path) */
	struct sb_mount_plan cand_plan; /* the next run's, compared with run_plan */
	/* swerve_sandbox_prepare (run.c): a started sandbox waiting for its
	 * command, made with run_plan, last_cwd and last_host */
	struct sb_prepared *prep;
	int have_last; /* a fast-path run set run_plan, last_cwd, last_host */
	char last_cwd[4096], last_host[65];
	int ns_mnt;
	int want_holder; /* root and not SWERVE_SANDBOX_SLOW: start it at run 2 */
	unsigned long runs;
	pid_t holder_pid;
	int holder_sock;
	int ns_user, ns_net, ns_uts;
	char passwd[256], group[256];
	/* stacks of the shared-memory start (spawn.c): init's and the
	 * command's, guard page below each; NULL until the first such run */
	char *vm_stacks;
	/* cgroup v2 (cgroup.c): the delegated directory runs make their
	 * cgroups in; disabled (cg.why says why) where there is none */
	struct sb_cgroup_parent cg;
	int cap_last; /* /proc/sys/kernel/cap_last_cap (63 when unknown) */
};

/* The cheap part of the probe (sysctls, seccomp actions; no fork): fills
 * p->why and returns -1 when the host certainly cannot sandbox. */
int sb_probe_quick(struct swerve_sandbox_probe *p);

/* Effective limits (defaults filled in). */
void sb_limits_effective(struct swerve_sandbox_limits *out, const struct swerve_sandbox_limits *in);

#define SB_UID 1000
#define SB_GID 1000

#endif
