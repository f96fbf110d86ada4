/* gpu_dev.cuh - device helpers shared by policy/'s CUDA files (gpu.cu,
 * gpu_linew.cu, gpu_ew.cu, gpu_route.cu): warp and block reductions, the
 * SiLU pieces, bf16 <-> fp32 (round to nearest even, NaN kept), and the
 * activation-typed loads and stores (TA float or uint16_t = bf16), and
 * the launchers' size dispatch (DEV_DISPATCH4). Each includer gets its own
 * static copies. */
#ifndef SWERVE_POLICY_GPU_DEV_CUH
#define SWERVE_POLICY_GPU_DEV_CUH

#include <math.h>
#include <stdint.h>

/* host: CALL(S1), CALL(S2), CALL(S3) or CALL(S4), the first of the
 * ascending sizes that is at least N, S4 above S3 (the launchers' chunk
 * counts: gpu_ew.cu's EW_DISPATCH, gpu_gate.cu's GT_DISPATCH) */
#define DEV_DISPATCH4(N, S1, S2, S3, S4, CALL)                                                     \
	do {                                                                                       \
		const int n_ = (N);                                                                \
		if (n_ <= (S1)) {                                                                  \
			CALL(S1);                                                                  \
		} else if (n_ <= (S2)) {                                                           \
			CALL(S2);                                                                  \
		} else if (n_ <= (S3)) {                                                           \
			CALL(S3);                                                                  \
		} else {                                                                           \
			CALL(S4);                                                                  \
		}                                                                                  \
	} while (0)

__device__ static float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* sum over a block of up to 1024 threads (a multiple of 32); every thread
 * gets the result. The leading barrier makes back-to-back calls safe. */
__device__ static float block_sum(float v)
{
	__shared__ float s[33];
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_sum(v);
	__syncthreads();
	if (lane == 0)
		s[w] = v;
	__syncthreads();
	if (w == 0) {
		v = lane < nw ? s[lane] : 0.0f;
		v = warp_sum(v);
		if (lane == 0)
			s[32] = v;
	}
	__syncthreads();
	return s[32];
}

/* an RMSNorm row's scale 1 / sqrt(mean square + eps) from this lane's part
 * ss of its sum of squares (a warp a row: summed over the warp; lane 0
 * stores it in rstd[t]); every lane gets it */
__device__ __forceinline__ static float warp_rstd(float ss, int C, float eps, float *rstd, size_t t,
                                                  int lane)
{
	float r;
	ss = warp_sum(ss);
	r = rsqrtf(ss / C + eps);
	if (lane == 0)
		rstd[t] = r;
	return r;
}

/* the same for a block a row (block_sum; thread 0 stores rstd[blockIdx.x]) */
__device__ __forceinline__ static float block_rstd(float ss, int C, float eps, float *rstd)
{
	float r;
	ss = block_sum(ss);
	r = rsqrtf(ss / C + eps);
	if (threadIdx.x == 0)
		rstd[blockIdx.x] = r;
	return r;
}

__device__ static float block_max(float v)
{
	__shared__ float s[33];
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	__syncthreads();
	if (lane == 0)
		s[w] = v;
	__syncthreads();
	if (w == 0) {
		v = lane < nw ? s[lane] : -INFINITY;
		for (int o = 16; o > 0; o >>= 1)
			v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
		if (lane == 0)
			s[32] = v;
	}
	__syncthreads();
	return s[32];
}

__device__ static float sigm(float x)
{
	return 1.0f / (1.0f + expf(-x));
}
__device__ static float dsilu(float a)
{
	float s = sigm(a);
	return s * (1.0f + a * (1.0f - s));
}

__device__ static uint16_t f2bf(float f)
{
	uint32_t u = __float_as_uint(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return 0x7fc0;
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}
__device__ static float bf2f(uint16_t h)
{
	return __uint_as_float((uint32_t)h << 16);
}

/* activation-typed loads and stores: TA is float or uint16_t (bf16) */
__device__ static float ldf(float x)
{
	return x;
}
__device__ static float ldf(uint16_t x)
{
	return bf2f(x);
}
__device__ static void stf(float *p, float v)
{
	*p = v;
}
__device__ static void stf(uint16_t *p, float v)
{
	*p = f2bf(v);
}

#endif
