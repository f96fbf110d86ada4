/* cgroup.h - cgroup v2 limits for one run (cgroup.c). Internal to sandbox/.
 *
 * Life of a run's cgroup, driven by run.c:
 *   sb_cgroup_parent_open   once per context: checks the delegated directory
 *                           (or sb_cgroup_parent_disable: every call below
 *                           is then a no-op without a system call)
 *   sb_cgroup_create        before clone: mkdir a child, write its limits
 *   sb_cgroup_attach        right after clone, when clone3 CLONE_INTO_CGROUP
 *                           (with cg->dirfd) was not used
 *   sb_cgroup_read          after the reap: memory.events, memory.peak, cpu.stat
 *   sb_cgroup_verdict       ML when the kernel OOM-killed inside the cgroup
 *   sb_cgroup_destroy       kill what is left, rmdir
 * Nothing is ever written outside a directory sb_cgroup_create made itself. */
#ifndef SWERVE_SANDBOX_CGROUP_H
#define SWERVE_SANDBOX_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* sb_cgroup_parent_open flags */
#define SB_CGROUP_NEED_CPU 0x1 /* runs will ask for cpu.max */
#define SB_CGROUP_FAKE     0x2 /* tests: a plain directory tree stands in for cgroupfs */

/* The delegated directory runs make their cgroups in. */
struct sb_cgroup_parent {
	int dirfd; /* -1: disabled (why says so) */
	char path[512];
	int have_cpu; /* cpu is in cgroup.subtree_control */
	unsigned long counter;
	char why[512]; /* disabled: one line, the reason; else "" */
	/* tests only (a fake tree has no kernel behind it): called right after
	 * mkdir to create the interface files the kernel would, and instead of
	 * rmdir (return -1 with errno set to fail); NULL in real use.
	 * sb_cgroup_parent_open keeps what was set here before the call */
	int (*on_mkdir)(int parent_fd, const char *name, void *arg);
	int (*on_rmdir)(int parent_fd, const char *name, void *arg);
	void *hook_arg;
};

/* What a run's cgroup enforces. */
struct sb_cgroup_limits {
	uint64_t memory_bytes;  /* memory.max (UINT64_MAX: "max"); swap off */
	uint64_t pids;          /* pids.max (UINT64_MAX: "max") */
	uint64_t cpu_quota_us;  /* cpu.max quota per period; 0: cpu.max not written */
	uint64_t cpu_period_us; /* 0: 100000 */
};

/* One run's cgroup. */
struct sb_cgroup {
	struct sb_cgroup_parent *parent;
	int dirfd; /* the child directory (O_RDONLY|O_DIRECTORY): the fd for
	            * clone3's CLONE_INTO_CGROUP; -1 when inactive */
	char name[64];
	uint64_t memory_max;
};

/* After the run. Fields whose file was absent stay 0 (have_* says). */
struct sb_cgroup_stats {
	uint64_t oom;        /* memory.events "oom": allocations failed at memory.max */
	uint64_t oom_kill;   /* memory.events "oom_kill": processes the OOM killer killed */
	uint64_t mem_max;    /* memory.events "max": times usage reached memory.max */
	uint64_t peak_bytes; /* memory.peak: the most the whole tree used at once */
	uint64_t usage_usec; /* cpu.stat usage_usec: CPU of every process, live or gone */
	uint64_t pids_max;   /* pids.events "max": forks refused at pids.max */
	int have_events, have_peak, have_cpu, have_pids;
};

/* Checks dir (a delegated cgroup v2 directory): on cgroupfs (unless
 * SB_CGROUP_FAKE), memory and pids (and cpu with SB_CGROUP_NEED_CPU) in both
 * cgroup.controllers and cgroup.subtree_control, the directory and its
 * cgroup.procs writable by us. Never writes anything. 0, or
 * SWERVE_EUNSUPPORTED / SWERVE_ENOTFOUND with a message naming the file and
 * the fix; p is then disabled with that message as p->why. */
int sb_cgroup_parent_open(struct sb_cgroup_parent *p, const char *dir, unsigned flags);

/* Disables p with the reason why (e.g. the probe's line). Never fails. */
void sb_cgroup_parent_disable(struct sb_cgroup_parent *p, const char *why);

void sb_cgroup_parent_close(struct sb_cgroup_parent *p);

/* Whether p is usable (runs get a cgroup). */
static inline int sb_cgroup_enabled(const struct sb_cgroup_parent *p)
{
	return p->dirfd >= 0;
}

/* Makes the run's cgroup under p ("swerve-<pid>-<n>", a fresh name) and
 * writes its limits: memory.max, memory.swap.max 0 and memory.oom.group 1
 * where present, pids.max, cpu.max when asked. 0 (p disabled: 0 with
 * cg->dirfd -1, no system call), or a negative SWERVE_E* code with a message
 * naming the file (the directory is removed again). */
int sb_cgroup_create(struct sb_cgroup *cg, struct sb_cgroup_parent *p,
                     const struct sb_cgroup_limits *l);

/* Moves pid into the run's cgroup (writes cgroup.procs). For a child that
 * has not forked yet; clone3 with CLONE_INTO_CGROUP is the race-free way.
 * 0 (also when inactive) or -1 with a message. */
int sb_cgroup_attach(struct sb_cgroup *cg, pid_t pid);

/* Reads the accounting. 0 (inactive: zeroed stats), or SWERVE_ENOTFOUND
 * when memory.events is missing (what could be read is filled). */
int sb_cgroup_read(struct sb_cgroup_stats *out, const struct sb_cgroup *cg);

/* When the kernel OOM-killed in the cgroup: writes "memory limit N bytes
 * (cgroup)" to note and returns 1 (verdict ML); else 0. */
int sb_cgroup_verdict(char *note, size_t len, const struct sb_cgroup *cg,
                      const struct sb_cgroup_stats *st);

/* Kills every process left (cgroup.kill where present, else SIGKILL to each
 * pid in cgroup.procs) and removes the directory, retrying rmdir briefly
 * while it is busy. 0 (also when inactive), or SWERVE_EBUSY (the directory
 * is left in place, the message says so) or -1. cg is inactive afterwards
 * either way. */
int sb_cgroup_destroy(struct sb_cgroup *cg);

#endif
