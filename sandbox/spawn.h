/* spawn.h - the child side of a run (spawn.c), called by run.c right after
 * clone(2). Internal to sandbox/. */
#ifndef SWERVE_SANDBOX_SPAWN_H
#define SWERVE_SANDBOX_SPAWN_H

#include "sandbox/internal.h"

/* Everything the child needs, prepared by the parent before clone. */
struct sb_child {
	int sock;  /* child end of the socketpair (CLOEXEC) */
	int out_w; /* stdout pipe write end */
	int err_w; /* stderr pipe write end */
	char *const *argv;
	char *const *envp;
	const char *path; /* the sandbox's PATH, for the program lookup */
	int (*fn)(void *);
	void *fn_arg;
	const char *cwd;
	const char *hostname;
	const struct sb_mount_plan *plan;
	struct sb_rlimit rl[SB_NRLIMITS];
	const struct sock_fprog *prog;
	struct sb_shared *shared;
	int fast;                            /* join ns_* instead of waiting for id maps */
	int ns_user, ns_net, ns_uts, ns_mnt; /* the context's namespaces (fast path);
	                                      * plan is then a RUN plan for ns_mnt */
	/* shared-memory start (fast path, argv only): init runs in the
	 * caller's address space on its own stack, the command starts
	 * vfork-style on another; init writes one byte on started_w once the
	 * command has exec'd (or died) and from then on uses raw syscalls only */
	int vm;
	int started_w;
	int cap_last; /* highest capability number of this kernel */
	/* prepared start (swerve_sandbox_prepare): the command stops after
	 * loading the seccomp filter, sends SB_MSG_READY and waits in a raw
	 * read(2) on go_r; argv, envp, path and rl are filled in by the run
	 * before it writes the byte (the limits are applied after it) */
	int prepared;
	int go_r;
	char *cmd_stack_top;
};

/* clone(2) entry of init for the shared-memory start (arg: the sb_child) */
int sb_child_vm_entry(void *arg);

__attribute__((noreturn)) void sb_child_main(const struct sb_child *c);

/* The per-context holder (a clone, as root, in a new mount namespace):
 * makes a network namespace (loopback up, sb_net_reusable), builds the
 * template root (tmpl) and pivots into it, enters new user and uts
 * namespaces, says "u", waits for its id maps ("g"), says "r", then sleeps
 * until the context closes sock. */
__attribute__((noreturn)) void sb_holder_main(int sock, const struct sb_mount_plan *tmpl);

#endif
