/* gpu_bench.cuh - what the GPU benchmarks share: stop on a CUDA or swerve
 * error with the call and its message, median timers (each call timed
 * alone; bench_flushed_us after an L2 flush), and fill a device buffer
 * with normal numbers (a hash per element, so any grid gives the same
 * values for a seed). Header-only: one per benchmark binary. */
#ifndef SWERVE_GPU_BENCH_CUH
#define SWERVE_GPU_BENCH_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "sandbox/error.h"
}

/* stop with a printf-style message */
#define DIE(...)                                                                                   \
	do {                                                                                       \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		exit(1);                                                                           \
	} while (0)

/* a CUDA runtime call */
#define CK(call)                                                                                   \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
			        cudaGetErrorString(e_));                                           \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* a swerve call returning 0 or a negative code with swerve_error_last() */
#define SW(call)                                                                                   \
	do {                                                                                       \
		if ((call) != 0) {                                                                 \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,              \
			        swerve_error_last());                                              \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* the median of n times (sorted in place: n is small) */
static inline double bench_median(float *t, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
			float x = t[j];
			t[j] = t[j - 1];
			t[j - 1] = x;
		}
	return t[n / 2];
}

/* the median of reps timed calls of f in ms, each timed alone with CUDA
 * events on the default stream after prep() and, where flush is set, a
 * memset of its flush_bytes (pushes the inputs out of L2, as ncu does);
 * warm untimed prep() and f() first */
template <typename P, typename F>
static double bench_median_each(P prep, void *flush, size_t flush_bytes, F f, int reps, int warm)
{
	cudaEvent_t a, b;
	float *t = (float *)malloc(sizeof(float) * (size_t)reps);
	if (!t)
		DIE("out of memory");
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	for (int i = 0; i < warm; i++) {
		prep();
		f();
	}
	CK(cudaDeviceSynchronize());
	for (int i = 0; i < reps; i++) {
		prep();
		if (flush)
			CK(cudaMemsetAsync(flush, i & 0xff, flush_bytes));
		CK(cudaEventRecord(a));
		f();
		CK(cudaEventRecord(b));
		CK(cudaEventSynchronize(b));
		CK(cudaEventElapsedTime(&t[i], a, b));
	}
	CK(cudaGetLastError());
	double m = bench_median(t, reps);
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	free(t);
	return m;
}

/* the median us of reps launches of f, each after prep() and an L2 flush
 * (a memset of flush_bytes of flush); one untimed prep() and f() first */
template <typename P, typename F>
static double bench_flushed_us(void *flush, size_t flush_bytes, P prep, F f, int reps = 25)
{
	return bench_median_each(prep, flush, flush_bytes, f, reps, 1) * 1e3;
}

/* a 128 MiB buffer whose memset pushes a pass's inputs out of the H100's
 * 50 MB L2, allocated at the first call; *bytes its size */
static inline void *bench_l2_flush_buf(size_t *bytes)
{
	static void *buf;
	*bytes = (size_t)128 << 20;
	if (!buf)
		CK(cudaMalloc(&buf, *bytes));
	return buf;
}

/* bench_flushed_us with that buffer: the median us of reps launches of f,
 * each after prep() and an L2 flush */
template <typename P, typename F> static double bench_cold_us(P prep, F f, int reps = 25)
{
	size_t n;
	void *buf = bench_l2_flush_buf(&n);
	return bench_flushed_us(buf, n, prep, f, reps);
}

/* the median over reps timed calls of f (CUDA events on the default
 * stream), in ms, after warm warm-up calls */
template <typename F> static double bench_median_ms(F f, int reps = 20, int warm = 1)
{
	auto none = [] {};
	return bench_median_each(none, nullptr, 0, f, reps, warm);
}

__global__ static void fill_normal(float *x, size_t n, float scale, uint64_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint64_t s = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
		s ^= s >> 33, s *= 0xff51afd7ed558ccdull, s ^= s >> 33, s *= 0xc4ceb9fe1a85ec53ull,
		        s ^= s >> 33;
		float u1 = ((s >> 40) + 1) * (1.0f / 16777217.0f),
		      u2 = ((s >> 16) & 0xffffff) * (1.0f / 16777216.0f);
		x[i] = scale * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
	}
}

#endif
