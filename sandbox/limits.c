/* limits.c - resource limits: defaults, rlimits (child side), and the
 * process cap.
 *
 * Without a delegated cgroup v2 (the common case on shared hosts) limits are
 * enforced with what a user namespace allows:
 *  - rlimits: CORE 0 (no core dumps), FSIZE, NOFILE, CPU (soft then hard
 *    +1 s backstop), NPROC (per uid: meaningful when the worker runs under a
 *    dedicated unprivileged uid; root's uid is exempt in the kernel);
 *  - processes: the new pid namespace's own pid_max (Linux >= 6.14), set to
 *    nproc + 300: at most about nproc + 300 pids before the first wrap-around,
 *    nproc after it (pids below 300 are reserved after a wrap);
 *  - memory: the supervisor sums resident memory of the sandbox's processes
 *    (run.c) and kills past the limit (ML).
 * Whatever the limits, run.c's wall-clock deadline ends every run. */
#include "sandbox/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void sb_limits_effective(struct swerve_sandbox_limits *out, const struct swerve_sandbox_limits *in)
{
	*out = *in;
	if (!out->wall_ms)
		out->wall_ms = 60000;
	if (!out->cpu_s)
		out->cpu_s = out->wall_ms == UINT64_MAX ? UINT64_MAX : out->wall_ms / 1000 + 1;
	if (!out->fsize_bytes)
		out->fsize_bytes = 1ull << 30;
	if (!out->nofile)
		out->nofile = 4096;
	if (!out->nproc)
		out->nproc = 512;
	if (!out->memory_bytes)
		out->memory_bytes = 4ull << 30;
	if (!out->output_bytes)
		out->output_bytes = 1ull << 20;
	if (!out->output_kill_bytes)
		out->output_kill_bytes = 64ull << 20;
	if (out->nproc > 4000000)
		out->nproc = 4000000;
}

static rlim_t lim(uint64_t v)
{
	return v == UINT64_MAX ? RLIM_INFINITY : (rlim_t)v;
}

void sb_limits_plan(struct sb_rlimit *r, const struct swerve_sandbox_limits *l)
{
	struct swerve_sandbox_limits e;
	sb_limits_effective(&e, l);
	r[0] = (struct sb_rlimit){RLIMIT_CORE, {0, 0}};
	r[1] = (struct sb_rlimit){RLIMIT_FSIZE, {lim(e.fsize_bytes), lim(e.fsize_bytes)}};
	r[2] = (struct sb_rlimit){RLIMIT_NOFILE, {lim(e.nofile), lim(e.nofile)}};
	r[3] = (struct sb_rlimit){
	        RLIMIT_CPU,
	        {lim(e.cpu_s), e.cpu_s == UINT64_MAX ? RLIM_INFINITY : (rlim_t)e.cpu_s + 1}};
	r[4] = (struct sb_rlimit){RLIMIT_NPROC, {lim(e.nproc), lim(e.nproc)}};
	r[5] = (struct sb_rlimit){RLIMIT_MEMLOCK, {64 << 10, 64 << 10}};
}

int sb_limits_apply(const struct sb_rlimit *r, int *index)
{
	for (int i = 0; i < SB_NRLIMITS; i++) {
		*index = r[i].resource;
		struct rlimit cur;
		struct rlimit want = r[i].lim;
		/* never raise above what the worker itself was given */
		if (getrlimit(r[i].resource, &cur) == 0) {
			if (cur.rlim_max != RLIM_INFINITY &&
			    (want.rlim_max == RLIM_INFINITY || want.rlim_max > cur.rlim_max))
				want.rlim_max = cur.rlim_max;
			if (want.rlim_cur != RLIM_INFINITY && want.rlim_max != RLIM_INFINITY &&
			    want.rlim_cur > want.rlim_max)
				want.rlim_cur = want.rlim_max;
			if (want.rlim_cur == RLIM_INFINITY && want.rlim_max != RLIM_INFINITY)
				want.rlim_cur = want.rlim_max;
		}
		if (setrlimit(r[i].resource, &want) < 0)
			return -1;
	}
	*index = -1;
	return 0;
}
