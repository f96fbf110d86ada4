/* gpu_check.h - the GPU tests' harness (the GPU machine has no Criterion).
 * Each test is a function returning 0 (pass), 1 (fail) or 77 (skip); main()
 * runs them all and prints "N passed, N failed, N skipped", the line that
 * tests/run.sh reads. Header-only on purpose: one per test binary. */
#ifndef SWERVE_GPU_CHECK_H
#define SWERVE_GPU_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#ifdef __cplusplus
/* a variable set to v (nullptr: unset) for the object's scope, then put
 * back as it was (a whole binary may run under a switch) */
struct env_override {
	const char *name;
	char *old;
	env_override(const char *n, const char *v) : name(n), old(nullptr)
	{
		const char *o = getenv(n);
		old = o ? strdup(o) : nullptr;
		if (v)
			setenv(n, v, 1);
		else
			unsetenv(n);
	}
	~env_override()
	{
		if (old)
			setenv(name, old, 1);
		else
			unsetenv(name);
		free(old);
	}
	env_override(const env_override &) = delete;
	env_override &operator=(const env_override &) = delete;
};
#endif

#ifdef __CUDACC__
#include <cuda_runtime.h>
/* a CUDA runtime call inside a test: on an error, print it and fail the test */
#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
			        cudaGetErrorString(e_));                                           \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)
#endif

/* Fresh random inputs every run: an xorshift64 generator seeded from the
 * clock by gpu_rng_seed(), which prints the seed (to replay a failure, set
 * gpu_rng_state to it instead). */
static uint64_t gpu_rng_state = 1;

static inline void gpu_rng_seed(void)
{
	gpu_rng_state = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)clock();
	if (!gpu_rng_state)
		gpu_rng_state = 1;
	printf("seed %llu\n", (unsigned long long)gpu_rng_state);
}

/* uniform in [0, 1) with 53 bits */
static inline double gpu_urand(void)
{
	gpu_rng_state ^= gpu_rng_state << 13;
	gpu_rng_state ^= gpu_rng_state >> 7;
	gpu_rng_state ^= gpu_rng_state << 17;
	return (double)(gpu_rng_state >> 11) / 9007199254740992.0;
}

/* standard normal (Box-Muller) */
static inline double gpu_nrand(void)
{
	double u = gpu_urand() + 1e-300, v = gpu_urand();
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* host-side bf16: float -> bf16 rounded to nearest even (finite values, as
 * the kernels' __float2bfloat16_rn) and back */
static inline uint16_t gpu_f2bf(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}
static inline float gpu_bf2f(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

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
