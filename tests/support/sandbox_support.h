/* sandbox_support.h - helpers for tests that run programs in the sandbox
 * (tests/sandbox, tests/security). */
#ifndef SWERVE_TEST_SANDBOX_SUPPORT_H
#define SWERVE_TEST_SANDBOX_SUPPORT_H

#include "sandbox/sandbox.h"

/* Skips the calling Criterion test (with the probe's reason) when this host
 * cannot run sandboxes. */
#define TS_NEED_SANDBOX()                                                                          \
	do {                                                                                       \
		struct swerve_sandbox_probe ts_p_;                                                 \
		swerve_sandbox_probe(&ts_p_);                                                      \
		if (!ts_p_.userns || !ts_p_.seccomp)                                               \
			cr_skip_test("sandbox unavailable: %s", ts_p_.why);                        \
	} while (0)

/* Absolute path of the directory holding the security programs
 * ($BUILD/progs/security/progs), bound read-only at TS_PROGS inside. */
const char *ts_progs_dir(void);
#define TS_PROGS  "/opt/progs"
#define TS_ESCAPE TS_PROGS "/escape"

/* Runs TS_ESCAPE with args (NULL-terminated, after the program name) using
 * opts as a base (NULL: defaults, wall 10 s). The progs bind is added.
 * Returns swerve_sandbox_run's value. */
int ts_escape(struct swerve_sandbox_result *r, const struct swerve_sandbox_opts *base, ...);

#endif
