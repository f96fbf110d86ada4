/* gpu_ew_dev.cuh - the residual / norm passes' row helpers (internal to
 * policy/): 4-column loads and stores in fp32 or bf16, rounding as a type
 * stores, and the add + RMSNorm's tail of a row. Included by gpu_ew.cu and
 * by gpu_route.cu (round 26: the ffn norm fused into the router's forward,
 * the same arithmetic, so the same bits). Static device functions: each
 * includer has its own. Needs EW-style rows: a warp a row, lane l owning
 * the 4-column chunks l + 32 k. */
#ifndef SWERVE_POLICY_GPU_EW_DEV_CUH
#define SWERVE_POLICY_GPU_EW_DEV_CUH

#include "policy/gpu_dev.cuh"

#include <stdint.h>

__device__ static void ew_st4(float *p, const float v[4])
{
	*(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ static void ew_st4(uint16_t *p, const float v[4])
{
	uint2 u;
	u.x = (uint32_t)f2bf(v[0]) | (uint32_t)f2bf(v[1]) << 16;
	u.y = (uint32_t)f2bf(v[2]) | (uint32_t)f2bf(v[3]) << 16;
	*(uint2 *)p = u;
}
__device__ static void ew_ld4(float v[4], const float *p)
{
	float4 f = *(const float4 *)p;
	v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
}
/* round 16 (POLICY_GPU_ACT16): 4 bf16 (8 bytes) as floats; ew_rnd: a value
 * as its type stores it (bf16: rounded to nearest even) */
__device__ static void ew_ld4(float v[4], const uint16_t *p)
{
	uint2 u = *(const uint2 *)p;
	v[0] = __uint_as_float(u.x << 16), v[1] = __uint_as_float(u.x & 0xffff0000u);
	v[2] = __uint_as_float(u.y << 16), v[3] = __uint_as_float(u.y & 0xffff0000u);
}
__device__ static float ew_rnd(float v, const float *)
{
	return v;
}
__device__ static float ew_rnd(float v, const uint16_t *)
{
	return bf2f(f2bf(v));
}

/* an add + norm's tail for row t at o (ew_add_rms, k_ew_add_rms16p): v
 * rounded as out stores it and stored there (where out is given; always
 * where OUT), 1/rms to rstd[t], v r w to y (and to yb where given);
 * returns 1/rms (round 26: gpu_route.cu's fused norm + router) */
template <typename TX, typename TO, int CH, bool OUT = false>
__device__ __forceinline__ static float
ew_norm_tail(float (&v)[CH][4], TX *__restrict__ out, TO *__restrict__ y, uint16_t *__restrict__ yb,
             float *__restrict__ rstd, const float *__restrict__ w, int lane, int C4, int C,
             size_t o, int t, float eps)
{
	float ss = 0, r;
#pragma unroll
	for (int k = 0; k < CH; k++) {
		int c = lane + 32 * k;
		if (c < C4) {
#pragma unroll
			for (int q = 0; q < 4; q++)
				v[k][q] = ew_rnd(v[k][q], out);
			if (OUT || out)
				ew_st4(out + o + c * 4, v[k]);
#pragma unroll
			for (int q = 0; q < 4; q++)
				ss += v[k][q] * v[k][q];
		}
	}
	r = warp_rstd(ss, C, eps, rstd, t, lane);
#pragma unroll
	for (int k = 0; k < CH; k++) {
		int c = lane + 32 * k;
		if (c < C4) {
			float yv[4];
#pragma unroll
			for (int q = 0; q < 4; q++)
				yv[q] = v[k][q] * r * w[c * 4 + q];
			ew_st4(y + o + c * 4, yv);
			if (yb)
				ew_st4(yb + o + c * 4, yv);
		}
	}
	return r;
}

#endif
