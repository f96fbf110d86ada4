/* verdict.c - verdict names, step names and result disposal. Cannot fail. */
#include "sandbox/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *swerve_verdict_name(enum swerve_verdict v)
{
	static const char *const names[] = {"OK", "RE", "SG", "TO", "ML", "OL", "SV", "XX"};
	if ((unsigned)v >= sizeof(names) / sizeof(names[0]))
		return "??";
	return names[v];
}

const char *sb_step_name(int step)
{
	static const char *const names[SB_STEP_COUNT] = {
	        [SB_STEP_NONE] = "none",
	        [SB_STEP_RELEASE] = "waiting for uid/gid maps",
	        [SB_STEP_SETGID] = "switching to the sandbox user",
	        [SB_STEP_HOSTNAME] = "sethostname",
	        [SB_STEP_MOUNT] = "mount",
	        [SB_STEP_PIVOT] = "pivot_root",
	        [SB_STEP_NET] = "loopback up",
	        [SB_STEP_SETNS] = "joining the worker's namespaces",
	        [SB_STEP_PIDMAX] = "pid namespace process cap",
	        [SB_STEP_FORK] = "fork of the command",
	        [SB_STEP_CWD] = "chdir to the working directory",
	        [SB_STEP_STDIO] = "stdio setup",
	        [SB_STEP_RLIMIT] = "setrlimit",
	        [SB_STEP_SETSID] = "setsid / parent-death signal",
	        [SB_STEP_CAPS] = "dropping capabilities",
	        [SB_STEP_NNP] = "no_new_privs",
	        [SB_STEP_SECCOMP] = "seccomp filter",
	        [SB_STEP_EXEC] = "execve",
	};
	if (step < 0 || step >= SB_STEP_COUNT || !names[step])
		return "unknown step";
	return names[step];
}

uint64_t sb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void swerve_sandbox_result_dispose(struct swerve_sandbox_result *r)
{
	if (!r)
		return;
	free(r->out.data);
	free(r->err.data);
	r->out.data = r->err.data = NULL;
	r->out.len = r->err.len = 0;
}
