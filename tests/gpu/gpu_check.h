/* gpu_check.h - the GPU tests' harness (the GPU machine has no Criterion).
 * Each test is a function returning 0 (pass), 1 (fail) or 77 (skip); main()
 * runs them all and prints "N passed, N failed, N skipped", the line that
 * tests/run.sh reads. Header-only on purpose: one per test binary. */
#ifndef SWERVE_GPU_CHECK_H
#define SWERVE_GPU_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define GPU_SKIP 77

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

struct gpu_test {
	const char *name;
	int (*fn)(void);
};

static inline int gpu_run_tests(const struct gpu_test *tests, int n)
{
	int p = 0, f = 0, s = 0;
	for (int i = 0; i < n; i++) {
		int rc = tests[i].fn();
		const char *what = rc == 0 ? "ok" : rc == GPU_SKIP ? "skip" : "FAIL";
		printf("[%s] %s\n", what, tests[i].name);
		fflush(stdout);
		if (rc == 0)
			p++;
		else if (rc == GPU_SKIP)
			s++;
		else
			f++;
	}
	printf("%d passed, %d failed, %d skipped\n", p, f, s);
	return f ? 1 : 0;
}

#endif
