/* gpu_ew.cu - the residual stream's passes of the GPU policy (see gpu_ew.h).
 *
 * Round 8 (issue 10): gpu.cu's k_add_rms / k_add_rms_moe / k_rms_fwd ran a
 * block of 256 threads per row (3 columns a thread at D 768, two block
 * barriers a row, the row's second pass re-reading its own writes), the
 * fused RMSNorm backward 16 rows a block with a block barrier per row, the
 * embedding and its backward one element a thread with 64-bit div/mod.
 * Here every pass is a warp per row: a lane's chunks of 4 columns (CH of
 * them, C <= 128 CH) are all loaded (float4) before any use, the row's sum
 * of squares / dot product by warp shuffles, bf16 outputs stored 4 at a
 * time (8 bytes). The backward's weight gradient is kept per lane over a
 * warp's EW_WROW rows and summed over the block's warps in shared memory
 * (warp order), one atomic add per column and block. The embedding's
 * backward adds float4s atomically (sm_90) where the arena offset allows.
 *
 * Measured (H100, 2026-11-26, tests/bench/gpu_ew, T 8192, D 768, top-2,
 * old -> new us): embed + first norm 60.6 -> 30.0, add + ffn norm 48.7 ->
 * 45.4, combine + add + next norm 65.2 -> 46.6, norm bwd ffn 64.9 -> 49.0,
 * attn 60.6 -> 43.1, final 41.1 -> 37.1, embed bwd 29.3 -> 24.3; 3.00 -> 2.30
 * ms a micro-batch (~2.0-2.5 TB/s); gpu_train's K = 1 profile "other" 3.27
 * -> 2.51 ms, K = 4 24.7 -> 23.9 ms a micro-batch (same call). */
#include "policy/gpu_ew.h"
#include "policy/gpu_dev.cuh"
#include "policy/gpu_ew_dev.cuh"
#include "policy/gpu_util.h"
#include "kernels/pdl.cuh"

#include <math.h>
#include <stdint.h>

#define EW_NW   8 /* warps a block (a row each at a time) */
#define EW_WROW 4 /* rows a warp in the backward */
#define EW_CMAX 1024

/* x[t] = emb[tok[t]]: a warp per row; VEC: emb 16-byte aligned */
template <int VEC>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_embed(float *__restrict__ x, const float *__restrict__ emb,
                   const int *__restrict__ tok, int T, int C)
{
	int lane = threadIdx.x & 31, t = blockIdx.x * EW_NW + (threadIdx.x >> 5);
	if (t >= T)
		return;
	const float *e = emb + (size_t)tok[t] * C;
	float *xr = x + (size_t)t * C;
	if (VEC)
		for (int c = lane * 4; c < C; c += 128)
			*(float4 *)(xr + c) = *(const float4 *)(e + c);
	else
		for (int c = lane; c < C; c += 32)
			xr[c] = e[c];
}

/* demb[tok[t]] += dx[t]: a warp per row; VEC: float4 atomics (demb aligned) */
template <int VEC>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_embed_bwd(float *__restrict__ demb, const float *__restrict__ dx,
                       const int *__restrict__ tok, int T, int C)
{
	int lane = threadIdx.x & 31, t = blockIdx.x * EW_NW + (threadIdx.x >> 5);
	if (t >= T)
		return;
	float *e = demb + (size_t)tok[t] * C;
	const float *d = dx + (size_t)t * C;
	for (int c = lane * 4; c < C; c += 128) {
		float4 v = *(const float4 *)(d + c);
		if (VEC) {
			atomicAdd((float4 *)(e + c), v);
		} else {
			atomicAdd(e + c, v.x);
			atomicAdd(e + c + 1, v.y);
			atomicAdd(e + c + 2, v.z);
			atomicAdd(e + c + 3, v.w);
		}
	}
}

/* the add + RMSNorm (gpu_ew.h): a warp per row, CH chunks of 4 columns a
 * lane (chunk k of lane l: columns 4 (l + 32 k) ..); y of type TO; round
 * 16: the residual stream (a, out) of type TX, the slots yp of type TP
 * (bf16: the row's value rounded as stored before its norm) */
/* acc += a x over a warp's CH float4 columns */
template <int CH>
__device__ __forceinline__ static void ew_axpy(float (&acc)[CH][4], float a,
                                               const float (&x)[CH][4])
{
#pragma unroll
	for (int k = 0; k < CH; k++)
#pragma unroll
		for (int q = 0; q < 4; q++)
			acc[k][q] += a * x[k][q];
}
/* acc += x */
template <int CH>
__device__ __forceinline__ static void ew_acc(float (&acc)[CH][4], const float (&x)[CH][4])
{
#pragma unroll
	for (int k = 0; k < CH; k++)
#pragma unroll
		for (int q = 0; q < 4; q++)
			acc[k][q] += x[k][q];
}
template <typename TO, int CH, typename TX, typename TP>
__device__ __forceinline__ static void
ew_add_rms(TX *__restrict__ out, TO *__restrict__ y, uint16_t *__restrict__ yb,
           float *__restrict__ rstd, const TX *__restrict__ a, const float *__restrict__ emb,
           const int *__restrict__ tok, const float *__restrict__ b, const TP *__restrict__ yp,
           const float *__restrict__ gate, int K, const float *__restrict__ w, int T, int C,
           float eps)
{
	int lane = threadIdx.x & 31, t = blockIdx.x * EW_NW + (threadIdx.x >> 5), C4 = C / 4;
	float v[CH][4], bv[CH][4];
	size_t o = (size_t)t * C;
	if (t >= T) /* warp-uniform */
		return;
	if constexpr (sizeof(TX) == 4) { /* fp32: one row pointer (the old kernel) */
		const float *ar = a ? (const float *)a + o : emb + (size_t)tok[t] * C;
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				ew_ld4(v[k], ar + c * 4);
				if (b)
					ew_ld4(bv[k], b + o + c * 4);
			}
		}
	} else {
		const float *er = a ? NULL : emb + (size_t)tok[t] * C;
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				if (a)
					ew_ld4(v[k], a + o + c * 4);
				else
					ew_ld4(v[k], er + c * 4);
				if (b)
					ew_ld4(bv[k], b + o + c * 4);
			}
		}
	}
	if (b)
		ew_acc<CH>(v, bv);
	if (yp) { /* the combine, j in order, then added to a (k_add_rms_moe's order) */
#pragma unroll
		for (int k = 0; k < CH; k++)
#pragma unroll
			for (int q = 0; q < 4; q++)
				bv[k][q] = 0;
		for (int j = 0; j < K; j++) {
			size_t tj = (size_t)t * K + j;
			float gj = gate[tj], yv[CH][4];
#pragma unroll
			for (int k = 0; k < CH; k++) {
				int c = lane + 32 * k;
				if (c < C4)
					ew_ld4(yv[k], yp + tj * C + c * 4);
			}
			ew_axpy<CH>(bv, gj, yv);
		}
		ew_acc<CH>(v, bv);
	}
	ew_norm_tail<TX, TO, CH>(v, out, y, yb, rstd, w, lane, C4, C, o, t, eps);
}

template <typename TO, int CH>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_add_rms(float *__restrict__ out, TO *__restrict__ y, uint16_t *__restrict__ yb,
                     float *__restrict__ rstd, const float *__restrict__ a,
                     const float *__restrict__ emb, const int *__restrict__ tok,
                     const float *__restrict__ b, const float *__restrict__ yp,
                     const float *__restrict__ gate, int K, const float *__restrict__ w, int T,
                     int C, float eps)
{
	ew_add_rms<TO, CH, float, float>(out, y, yb, rstd, a, emb, tok, b, yp, gate, K, w, T, C,
	                                 eps);
}

/* round 16 (POLICY_GPU_ACT16): the same with a bf16 residual stream (TX)
 * and / or bf16 slots (TP) */
template <typename TO, int CH, typename TX, typename TP>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_add_rms16(TX *__restrict__ out, TO *__restrict__ y, uint16_t *__restrict__ yb,
                       float *__restrict__ rstd, const TX *__restrict__ a,
                       const float *__restrict__ emb, const int *__restrict__ tok,
                       const float *__restrict__ b, const TP *__restrict__ yp,
                       const float *__restrict__ gate, int K, const float *__restrict__ w, int T,
                       int C, float eps)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	ew_add_rms<TO, CH, TX, TP>(out, y, yb, rstd, a, emb, tok, b, yp, gate, K, w, T, C, eps);
}

/* the RMSNorm backward (gpu_ew.h): a warp per row, EW_WROW rows a warp, CH
 * chunks of 4 columns a lane; the weight gradient's partial sums per lane,
 * summed over the block's warps in shared memory (warp order) */
template <int CH, typename TX, typename TD = float, typename TB = uint16_t, typename TY = float>
__device__ __forceinline__ static void
ew_rms_bwd(TD *__restrict__ dx, TB *__restrict__ xb, int acc, float *__restrict__ dw,
           const TY *__restrict__ dy, const TX *__restrict__ x, const float *__restrict__ w,
           const float *__restrict__ rstd, int T, int C)
{
	extern __shared__ float s_part[]; /* (EW_NW, C) where dw */
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, C4 = C / 4;
	int t0 = (blockIdx.x * EW_NW + wi) * EW_WROW;
	float part[CH][4];
#pragma unroll
	for (int k = 0; k < CH; k++)
#pragma unroll
		for (int q = 0; q < 4; q++)
			part[k][q] = 0;
	for (int i = 0; i < EW_WROW; i++) {
		int t = t0 + i;
		size_t o = (size_t)t * C;
		float dv[CH][4], xv[CH][4], av[CH][4], dot = 0, r;
		/* round 19 (TD bf16): x and the old dx kept as loaded (2 registers
		 * a chunk each), widened where used */
		uint2 xr[CH], ar[CH];
		if (t >= T) /* warp-uniform */
			break;
		r = rstd[t];
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				ew_ld4(dv[k], dy + o + c * 4);
				if constexpr (sizeof(TD) == 2) {
					xr[k] = *(const uint2 *)(x + o + c * 4);
					if (acc)
						ar[k] = *(const uint2 *)(dx + o + c * 4);
				} else {
					ew_ld4(xv[k], x + o + c * 4);
					if (dx && acc)
						ew_ld4(av[k], dx + o + c * 4);
				}
			}
		}
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				if constexpr (sizeof(TD) == 2)
					ew_ld4(xv[k], (const uint16_t *)&xr[k]);
#pragma unroll
				for (int q = 0; q < 4; q++)
					dot += dv[k][q] * w[c * 4 + q] * xv[k][q];
			}
		}
		dot = warp_sum(dot);
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				float vv[4];
				if constexpr (sizeof(TD) == 2) {
					ew_ld4(xv[k], (const uint16_t *)&xr[k]);
					if (acc)
						ew_ld4(av[k], (const uint16_t *)&ar[k]);
				}
#pragma unroll
				for (int q = 0; q < 4; q++) {
					vv[q] = r * dv[k][q] * w[c * 4 + q] -
					        r * r * r * xv[k][q] * dot / C;
					part[k][q] += dv[k][q] * xv[k][q] * r;
					if (dx && acc)
						vv[q] += av[k][q];
					/* round 19 (level all): the fp32 copy is the
					 * value the bf16 gradient stores */
					if constexpr (sizeof(TD) == 2)
						vv[q] = ew_rnd(vv[q], dx);
				}
				if (dx)
					ew_st4(dx + o + c * 4, vv);
				if (xb)
					ew_st4(xb + o + c * 4, vv);
			}
		}
	}
	if (!dw)
		return;
#pragma unroll
	for (int k = 0; k < CH; k++) {
		int c = lane + 32 * k;
		if (c < C4)
#pragma unroll
			for (int q = 0; q < 4; q++)
				s_part[wi * C + c * 4 + q] = part[k][q];
	}
	__syncthreads();
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float s = 0;
		for (int q = 0; q < EW_NW; q++)
			s += s_part[q * C + c];
		atomicAdd(&dw[c], s);
	}
}

template <int CH>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_rms_bwd(float *__restrict__ dx, uint16_t *__restrict__ xb, int acc,
                     float *__restrict__ dw, const float *__restrict__ dy,
                     const float *__restrict__ x, const float *__restrict__ w,
                     const float *__restrict__ rstd, int T, int C)
{
	ew_rms_bwd<CH, float>(dx, xb, acc, dw, dy, x, w, rstd, T, C);
}

/* round 16 (POLICY_GPU_ACT16=resid): the residual stream's value x in bf16 */
template <int CH>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_rms_bwd16(float *__restrict__ dx, uint16_t *__restrict__ xb, int acc,
                       float *__restrict__ dw, const float *__restrict__ dy,
                       const uint16_t *__restrict__ x, const float *__restrict__ w,
                       const float *__restrict__ rstd, int T, int C)
{
	ew_rms_bwd<CH, uint16_t>(dx, xb, acc, dw, dy, x, w, rstd, T, C);
}

/* round 19 (POLICY_GPU_ACT16=all): the residual gradient dx in bf16 (read
 * where acc, the fp32 sum rounded once as stored), its optional fp32 copy
 * xf (the stored value), x in bf16. Two blocks an SM (<= 128 registers):
 * without the bound CH 6 took 150 registers, one block an SM, and its 256
 * blocks ran in two waves (H100, 2026-11-27, gpu_act16: 37.9 us for 62.9 MB,
 * 2.0x its floor, where k_ew_rms_bwd16<6> at 128 registers fits one wave).
 * Round 25 (POLICY_GPU_DN16): TY uint16_t reads the incoming gradient dy in
 * bf16 (12.6 of the 62.9 MB fewer at 8192 x 768); float is round 19's
 * kernel, unchanged */
template <int CH, typename TY = float>
__global__ static void __launch_bounds__(EW_NW * 32, CH <= 6 ? 2 : 1)
        k_ew_rms_bwd16g(uint16_t *__restrict__ dx, float *__restrict__ xf, int acc,
                        float *__restrict__ dw, const TY *__restrict__ dy,
                        const uint16_t *__restrict__ x, const float *__restrict__ w,
                        const float *__restrict__ rstd, int T, int C)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	ew_rms_bwd<CH, uint16_t, uint16_t, float, TY>(dx, xf, acc, dw, dy, x, w, rstd, T, C);
}

/* round 19: demb[tok[t]] += dx[t] with dx in bf16 (8-byte loads, 4 columns
 * a lane; VEC: float4 atomics) */
template <int VEC>
__global__ static void __launch_bounds__(EW_NW * 32)
        k_ew_embed_bwd16(float *__restrict__ demb, const uint16_t *__restrict__ dx,
                         const int *__restrict__ tok, int T, int C)
{
	int lane = threadIdx.x & 31, t = blockIdx.x * EW_NW + (threadIdx.x >> 5);
	if (t >= T)
		return;
	float *e = demb + (size_t)tok[t] * C;
	const uint16_t *d = dx + (size_t)t * C;
	for (int c = lane * 4; c < C; c += 128) {
		float v[4];
		ew_ld4(v, d + c);
		if (VEC) {
			atomicAdd((float4 *)(e + c), make_float4(v[0], v[1], v[2], v[3]));
		} else {
			atomicAdd(e + c, v[0]);
			atomicAdd(e + c + 1, v[1]);
			atomicAdd(e + c + 2, v[2]);
			atomicAdd(e + c + 3, v[3]);
		}
	}
}

/* ---- round 20 (issue 10, POLICY_GPU_EW20, opt-in): the backward passes
 * pipelined ------------------------------------------------------------------
 * k_ew_rms_bwd16g's time is not its bytes (H100, 2026-11-27, gpu_act16: 33.3
 * us for 62.9 MB, 1.78x its floor): 256 blocks in one wave, each warp 4 rows
 * in series, each row a full DRAM round trip (and rstd's) before its
 * reduction. Here a persistent grid (one block of EP_NW warps an SM where
 * the stages take most of the shared memory), each warp taking rows gw,
 * gw + W, .. (W warps in all) through EP_S stages of shared memory: row i
 * + EP_S - 1's loads (dy, x, the old dx, rstd; cp.async, each lane the
 * bytes it later reads) are issued before row i's math, so a warp keeps
 * EP_S - 1 rows in flight. Each row's arithmetic is k_ew_rms_bwd16g's
 * (same order: dx and its fp32 copy bit for bit); the weight gradient's
 * partial sums are kept per lane over a warp's rows and reduced once a
 * block (its order differs: within fp32 rounding, atomics as before).
 *
 * Measured (H100, 2026-11-27, gpu_act16, T 8192, D 768, off -> ew20 us):
 * no gain. After bench_cold_us's memset flush ffn / attn form 33.2 -> 33.4,
 * final 28.2 -> 28.3; after a clean flush 27.6 -> 26.9, 24.1 -> 24.6 (a
 * device copy of the same bytes: 20.0 / 16.4); forward add + norm after
 * the attention 26.2 -> 26.8, after the MoE 29.0 -> 27.8 (clean);
 * gpu_train x K = 4: 19.5 ms a micro-batch both. Round 19's "1.78x the
 * floor" was mostly the memset's dirty lines written back inside the
 * timed launch (~5 us) and the floor taken at 3.35 TB/s; what remains
 * (~1.35x a copy) is not the per-row latency this form hides. Kept opt-in
 * as that evidence (notes/ew20.md). */
#define EP_NW 8 /* warps a block */
#define EP_S  3 /* stages a warp */

__device__ __forceinline__ static void ep_cp16(uint32_t d, const void *s)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(s) : "memory");
}
__device__ __forceinline__ static void ep_cp8(uint32_t d, const void *s)
{
	asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(d), "l"(s) : "memory");
}
__device__ __forceinline__ static void ep_cp4(uint32_t d, const void *s)
{
	asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(s) : "memory");
}
__device__ __forceinline__ static void ep_commit()
{
	asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> __device__ __forceinline__ static void ep_wait()
{
	asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* a stage of the norm backward: dy (C fp32), x (C bf16), the old dx (C
 * bf16), rstd (16 bytes) */
__host__ __device__ static inline size_t ep_rms_stage(int C)
{
	return (size_t)8 * C + 16;
}

template <int CH>
__global__ static void __launch_bounds__(EP_NW * 32, 1)
        k_ew_rms_bwd16p(uint16_t *__restrict__ dx, float *__restrict__ xf, int acc,
                        float *__restrict__ dw, const float *__restrict__ dy,
                        const uint16_t *__restrict__ x, const float *__restrict__ w,
                        const float *__restrict__ rstd, int T, int C)
{
	extern __shared__ __align__(16) unsigned char s_ep[];
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, C4 = C / 4;
	int W = gridDim.x * EP_NW, gw = blockIdx.x * EP_NW + wi;
	size_t sst = ep_rms_stage(C);
	unsigned char *sw = s_ep + (size_t)wi * EP_S * sst;
	uint32_t sb = (uint32_t)__cvta_generic_to_shared(sw);
	float part[CH][4], wv[CH][4];
#pragma unroll
	for (int k = 0; k < CH; k++) {
		int c = lane + 32 * k;
#pragma unroll
		for (int q = 0; q < 4; q++) {
			part[k][q] = 0;
			wv[k][q] = c < C4 ? w[c * 4 + q] : 0.0f;
		}
	}
	/* row t's loads into stage s (a group committed either way) */
	auto issue = [&](int t, int s) {
		if (t < T) {
			size_t o = (size_t)t * C;
			uint32_t st = sb + (uint32_t)(s * sst);
#pragma unroll
			for (int k = 0; k < CH; k++) {
				int c = lane + 32 * k;
				if (c < C4) {
					ep_cp16(st + 16u * c, dy + o + c * 4);
					ep_cp8(st + 4u * C + 8u * c, x + o + c * 4);
					if (acc)
						ep_cp8(st + 6u * C + 8u * c, dx + o + c * 4);
				}
			}
			if (lane == 0)
				ep_cp4(st + 8u * C, rstd + t);
		}
		ep_commit();
	};
#pragma unroll
	for (int s = 0; s < EP_S - 1; s++)
		issue(gw + s * W, s);
	for (int i = 0;; i++) {
		int t = gw + i * W;
		if (t >= T)
			break;
		__syncwarp(); /* the stage refilled below was read by all lanes (rstd) */
		issue(gw + (i + EP_S - 1) * W, (i + EP_S - 1) % EP_S);
		ep_wait<EP_S - 1>();
		__syncwarp(); /* lane 0's rstd copy */
		const unsigned char *sr = sw + (size_t)(i % EP_S) * sst;
		size_t o = (size_t)t * C;
		float dv[CH][4], xv[CH][4], av[CH][4], dot = 0, r = *(const float *)(sr + 8 * C);
		uint2 xr[CH], ar[CH];
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				ew_ld4(dv[k], (const float *)sr + c * 4);
				xr[k] = *(const uint2 *)(sr + 4 * C + 8 * c);
				if (acc)
					ar[k] = *(const uint2 *)(sr + 6 * C + 8 * c);
			}
		}
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				ew_ld4(xv[k], (const uint16_t *)&xr[k]);
#pragma unroll
				for (int q = 0; q < 4; q++)
					dot += dv[k][q] * wv[k][q] * xv[k][q];
			}
		}
		dot = warp_sum(dot);
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				float vv[4];
				ew_ld4(xv[k], (const uint16_t *)&xr[k]);
				if (acc)
					ew_ld4(av[k], (const uint16_t *)&ar[k]);
#pragma unroll
				for (int q = 0; q < 4; q++) {
					vv[q] = r * dv[k][q] * wv[k][q] -
					        r * r * r * xv[k][q] * dot / C;
					part[k][q] += dv[k][q] * xv[k][q] * r;
					if (acc)
						vv[q] += av[k][q];
					vv[q] = ew_rnd(vv[q], dx);
				}
				ew_st4(dx + o + c * 4, vv);
				if (xf)
					ew_st4(xf + o + c * 4, vv);
			}
		}
	}
	ep_wait<0>();
	if (!dw)
		return;
	/* the block's partial sums: each warp's in its own stages (C floats) */
	__syncwarp();
#pragma unroll
	for (int k = 0; k < CH; k++) {
		int c = lane + 32 * k;
		if (c < C4)
#pragma unroll
			for (int q = 0; q < 4; q++)
				((float *)sw)[c * 4 + q] = part[k][q];
	}
	__syncthreads();
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float s = 0;
		for (int q = 0; q < EP_NW; q++)
			s += ((const float *)(s_ep + (size_t)q * EP_S * sst))[c];
		atomicAdd(&dw[c], s);
	}
}

/* round 20 (POLICY_GPU_EW20=fwd / all): policy_ew_add_rms16's two forms in
 * every layer under POLICY_GPU_ACT16=resid / all (the stream a and out in
 * bf16: a + b with b fp32 after the attention, a + the combine of K <= 2
 * bf16 slots after the MoE) through the same pipeline: a persistent grid,
 * each warp's rows gw, gw + W, .. staged by cp.async (a, b or the K slot
 * rows, the K gates) EP_S - 1 rows ahead of its math; each row's
 * arithmetic is ew_add_rms's (out, y and rstd bit for bit) */
/* a stage: KY 0: b (C fp32) then a (C bf16); else a then the KY slot rows
 * (C bf16 each); rounded up to 16 bytes, then the gates (16 bytes) */
__host__ __device__ static inline size_t ep_fwd_stage(int C, int KY)
{
	return ((size_t)2 * C + (KY ? (size_t)2 * C * KY : (size_t)4 * C) + 15) / 16 * 16 + 16;
}

template <typename TO, int CH, int KY>
__global__ static void __launch_bounds__(EP_NW * 32, 1)
        k_ew_add_rms16p(uint16_t *__restrict__ out, TO *__restrict__ y, float *__restrict__ rstd,
                        const uint16_t *__restrict__ a, const float *__restrict__ b,
                        const uint16_t *__restrict__ yp, const float *__restrict__ gate,
                        const float *__restrict__ w, int T, int C, float eps)
{
	extern __shared__ __align__(16) unsigned char s_ep[];
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, C4 = C / 4;
	int W = gridDim.x * EP_NW, gw = blockIdx.x * EP_NW + wi;
	size_t sst = ep_fwd_stage(C, KY);
	unsigned char *sw = s_ep + (size_t)wi * EP_S * sst;
	uint32_t sb = (uint32_t)__cvta_generic_to_shared(sw);
	auto issue = [&](int t, int s) {
		if (t < T) {
			size_t o = (size_t)t * C;
			uint32_t st = sb + (uint32_t)(s * sst);
#pragma unroll
			for (int k = 0; k < CH; k++) {
				int c = lane + 32 * k;
				if (c < C4) {
					ep_cp8(st + (KY ? 0u : 4u * C) + 8u * c, a + o + c * 4);
					if (KY == 0)
						ep_cp16(st + 16u * c, b + o + c * 4);
#pragma unroll
					for (int j = 0; j < KY; j++)
						ep_cp8(st + 2u * C * (1 + j) + 8u * c,
						       yp + ((size_t)t * KY + j) * C + c * 4);
				}
			}
			if (KY && lane < KY)
				ep_cp4(st + (uint32_t)(sst - 16) + 4u * lane,
				       gate + (size_t)t * KY + lane);
		}
		ep_commit();
	};
#pragma unroll
	for (int s = 0; s < EP_S - 1; s++)
		issue(gw + s * W, s);
	for (int i = 0;; i++) {
		int t = gw + i * W;
		if (t >= T)
			break;
		__syncwarp(); /* the stage refilled below was read by all lanes (gate) */
		issue(gw + (i + EP_S - 1) * W, (i + EP_S - 1) % EP_S);
		ep_wait<EP_S - 1>();
		__syncwarp(); /* the gates' copies */
		const unsigned char *sr = sw + (size_t)(i % EP_S) * sst;
		const uint16_t *ar = (const uint16_t *)(sr + (KY ? 0 : 4 * C));
		size_t o = (size_t)t * C;
		float v[CH][4], bv[CH][4];
#pragma unroll
		for (int k = 0; k < CH; k++) {
			int c = lane + 32 * k;
			if (c < C4) {
				ew_ld4(v[k], ar + c * 4);
				if (KY == 0)
					ew_ld4(bv[k], (const float *)sr + c * 4);
			}
		}
		if (KY == 0) {
			ew_acc<CH>(v, bv);
		} else { /* the combine, j in order, then added to a */
			const float *sg = (const float *)(sr + sst - 16);
#pragma unroll
			for (int k = 0; k < CH; k++)
#pragma unroll
				for (int q = 0; q < 4; q++)
					bv[k][q] = 0;
#pragma unroll
			for (int j = 0; j < KY; j++) {
				float gj = sg[j], yv[CH][4];
				const uint16_t *yr = (const uint16_t *)(sr + 2 * C * (1 + j));
#pragma unroll
				for (int k = 0; k < CH; k++) {
					int c = lane + 32 * k;
					if (c < C4)
						ew_ld4(yv[k], yr + c * 4);
				}
				ew_axpy<CH>(bv, gj, yv);
			}
			ew_acc<CH>(v, bv);
		}
		ew_norm_tail<uint16_t, TO, CH, true>(v, out, y, (uint16_t *)nullptr, rstd, w, lane,
		                                     C4, C, o, t, eps);
	}
	ep_wait<0>();
}

int policy_ew_supported(int C)
{
	return C >= 4 && C % 4 == 0 && C <= EW_CMAX;
}

int policy_ew20_mode(void)
{
	static const char *const names[] = {"off", "rms", "comb", "bwd", "fwd", "all"};
	static const int bits[] = {0, 1, 2, 3, 4, 7};
	int m = policy_env_choice("POLICY_GPU_EW20", names, 6, 0);
	return m < 0 ? m : bits[m];
}

/* round 20: a persistent grid for kern (threads a block, smem bytes of
 * dynamic shared memory): the blocks an SM can hold times the SMs, at most
 * want; the shared-memory limit raised once a kernel and size (cached) */
int policy_ew20_grid(const void *kern, int threads, size_t smem, int want, unsigned *nb)
{
	static struct {
		const void *k;
		size_t smem;
		int threads, occ;
	} memo[16];
	static int nsm;
	int i, occ = 0;
	if (!nsm) {
		int dev;
		CK(cudaGetDevice(&dev));
		CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
	}
	for (i = 0; i < 16 && memo[i].k; i++)
		if (memo[i].k == kern && memo[i].smem == smem && memo[i].threads == threads)
			break;
	if (i < 16 && memo[i].k) {
		occ = memo[i].occ;
	} else {
		CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        (int)smem));
		CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, threads, smem));
		if (occ < 1)
			return swerve_error_set(SWERVE_EINVAL,
			                        "gpu residual passes: %zu bytes of shared memory a "
			                        "block do not fit an SM",
			                        smem);
		if (i < 16)
			memo[i].k = kern, memo[i].smem = smem, memo[i].threads = threads,
			memo[i].occ = occ;
	}
	*nb = (unsigned)(want < occ * nsm ? want : occ * nsm);
	if (*nb < 1)
		*nb = 1;
	return 0;
}

static int ew_check(int T, int C, const void *p16a, const void *p16b)
{
	if (!policy_ew_supported(C) || T < 0)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu residual passes: T %d, C %d not supported (C a "
		                        "multiple of 4, at most %d)",
		                        T, C, EW_CMAX);
	if (((uintptr_t)p16a | (uintptr_t)p16b) & 15)
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu residual passes: an activation is not 16-byte aligned");
	return 0;
}

#define EW_BLOCKS(T) (unsigned)(((T) + EW_NW - 1) / EW_NW), EW_NW * 32

int policy_ew_embed(float *x, const float *emb, const int *tok, int T, int C)
{
	CKR(ew_check(T, C, x, NULL));
	if (T < 1)
		return 0;
	if ((uintptr_t)emb & 15)
		k_ew_embed<0><<<EW_BLOCKS(T), 0, PST>>>(x, emb, tok, T, C);
	else
		k_ew_embed<1><<<EW_BLOCKS(T), 0, PST>>>(x, emb, tok, T, C);
	LAUNCHED();
	return 0;
}

int policy_ew_embed_bwd(float *demb, const float *dx, const int *tok, int T, int C)
{
	CKR(ew_check(T, C, dx, NULL));
	if (T < 1)
		return 0;
	if ((uintptr_t)demb & 15)
		k_ew_embed_bwd<0><<<EW_BLOCKS(T), 0, PST>>>(demb, dx, tok, T, C);
	else
		k_ew_embed_bwd<1><<<EW_BLOCKS(T), 0, PST>>>(demb, dx, tok, T, C);
	LAUNCHED();
	return 0;
}

/* CH = the chunks a lane needs, rounded up to 2, 4, 6 or 8 */
#define EW_DISPATCH(C, CALL) DEV_DISPATCH4(((C) + 127) / 128, 2, 4, 6, 8, CALL)

/* the residual add's inputs: 0 to launch, 1 when there are no rows, else
 * the error (set) */
static int ew_add_rms_args(int T, int C, const void *out, const void *y, const void *a,
                           const void *b, const void *yp, const void *yb, const float *emb,
                           const int *tok)
{
	CKR(ew_check(T, C, out, y));
	if (((uintptr_t)a | (uintptr_t)b | (uintptr_t)yp | (uintptr_t)yb) & 15)
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu residual passes: an activation is not 16-byte aligned");
	if (!a && (!emb || !tok))
		return swerve_error_set(SWERVE_EINVAL, "gpu residual passes: no input rows");
	if (!a && ((uintptr_t)emb & 15))
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu residual passes: the embedding is not 16-byte aligned");
	return T < 1;
}

int policy_ew_add_rms(float *out, void *y, int y_bf16, uint16_t *yb, float *rstd, const float *a,
                      const float *emb, const int *tok, const float *b, const float *yp,
                      const float *gate, int K, const float *w, int T, int C, float eps)
{
	{
		int rc = ew_add_rms_args(T, C, out, y, a, b, yp, yb, emb, tok);
		if (rc)
			return rc < 0 ? rc : 0;
	}
#define EW_FWD(CH)                                                                                 \
	do {                                                                                       \
		if (y_bf16)                                                                        \
			k_ew_add_rms<uint16_t, CH>                                                 \
			        <<<EW_BLOCKS(T), 0, PST>>>(out, (uint16_t *)y, yb, rstd, a, emb,   \
			                                   tok, b, yp, gate, K, w, T, C, eps);     \
		else                                                                               \
			k_ew_add_rms<float, CH>                                                    \
			        <<<EW_BLOCKS(T), 0, PST>>>(out, (float *)y, yb, rstd, a, emb, tok, \
			                                   b, yp, gate, K, w, T, C, eps);          \
	} while (0)
	EW_DISPATCH(C, EW_FWD);
#undef EW_FWD
	LAUNCHED();
	return 0;
}

int policy_ew_add_rms16(void *out, int x16, void *y, int y_bf16, uint16_t *yb, float *rstd,
                        const void *a, const float *emb, const int *tok, const float *b,
                        const void *yp, int yp16, const float *gate, int K, const float *w, int T,
                        int C, float eps)
{
	int mode = policy_ew20_mode(); /* round 20: POLICY_GPU_EW20 */
	if (mode < 0)
		return mode;
	if (!x16 && !yp16)
		return policy_ew_add_rms((float *)out, y, y_bf16, yb, rstd, (const float *)a, emb,
		                         tok, b, (const float *)yp, gate, K, w, T, C, eps);
	if (x16 && yp && !yp16)
		return swerve_error_set(SWERVE_EINVAL, "gpu residual passes: a bf16 residual "
		                                       "stream takes bf16 slots only");
	{
		int rc = ew_add_rms_args(T, C, out, y, a, b, yp, yb, emb, tok);
		if (rc)
			return rc < 0 ? rc : 0;
	}
	/* round 20 (POLICY_GPU_EW20=fwd / all): the layers' two forms pipelined */
	if ((mode & 4) && x16 && out && a && !yb &&
	    ((b && !yp) || (!b && yp && K >= 1 && K <= 2))) {
		int ky = yp ? K : 0;
		size_t sp = (size_t)EP_NW * EP_S * ep_fwd_stage(C, ky);
		unsigned nb;
#define EW_FWDP3(TO, CH, KY)                                                                       \
	do {                                                                                       \
		CKR(policy_ew20_grid((const void *)k_ew_add_rms16p<TO, CH, KY>, EP_NW * 32, sp,    \
		                     (T + EP_NW - 1) / EP_NW, &nb));                               \
		k_ew_add_rms16p<TO, CH, KY><<<nb, EP_NW * 32, sp, PST>>>(                          \
		        (uint16_t *)out, (TO *)y, rstd, (const uint16_t *)a, b,                    \
		        (const uint16_t *)yp, gate, w, T, C, eps);                                 \
	} while (0)
#define EW_FWDP2(TO, CH)                                                                           \
	do {                                                                                       \
		if (ky == 0)                                                                       \
			EW_FWDP3(TO, CH, 0);                                                       \
		else if (ky == 1)                                                                  \
			EW_FWDP3(TO, CH, 1);                                                       \
		else                                                                               \
			EW_FWDP3(TO, CH, 2);                                                       \
	} while (0)
#define EW_FWDP(CH)                                                                                \
	do {                                                                                       \
		if (y_bf16)                                                                        \
			EW_FWDP2(uint16_t, CH);                                                    \
		else                                                                               \
			EW_FWDP2(float, CH);                                                       \
	} while (0)
		EW_DISPATCH(C, EW_FWDP);
#undef EW_FWDP
#undef EW_FWDP2
#undef EW_FWDP3
		LAUNCHED();
		return 0;
	}
#define EW_FWD16(CH, TX)                                                                           \
	do {                                                                                       \
		if (y_bf16)                                                                        \
			CK(pdl::launch(k_ew_add_rms16<uint16_t, CH, TX, uint16_t>,                 \
			               dim3((T + EW_NW - 1) / EW_NW), dim3(EW_NW * 32), 0, PST,    \
			               (TX *)out, (uint16_t *)y, yb, rstd, (const TX *)a, emb,     \
			               tok, b, (const uint16_t *)yp, gate, K, w, T, C, eps));      \
		else                                                                               \
			CK(pdl::launch(k_ew_add_rms16<float, CH, TX, uint16_t>,                    \
			               dim3((T + EW_NW - 1) / EW_NW), dim3(EW_NW * 32), 0, PST,    \
			               (TX *)out, (float *)y, yb, rstd, (const TX *)a, emb, tok,   \
			               b, (const uint16_t *)yp, gate, K, w, T, C, eps));           \
	} while (0)
#define EW_FWD16X(CH) EW_FWD16(CH, uint16_t)
#define EW_FWD16S(CH) EW_FWD16(CH, float)
	if (x16)
		EW_DISPATCH(C, EW_FWD16X);
	else
		EW_DISPATCH(C, EW_FWD16S);
#undef EW_FWD16S
#undef EW_FWD16X
#undef EW_FWD16
	LAUNCHED();
	return 0;
}

/* the RMSNorm backward's launch, x in fp32 (k_ew_rms_bwd) or, under
 * POLICY_GPU_ACT16's bf16 stream, in bf16 (k_ew_rms_bwd16) */
template <typename TX>
static int ew_rms_bwd_run(float *dx, uint16_t *xb, int acc, float *dw, const float *dy, const TX *x,
                          const float *w, const float *rstd, int T, int C)
{
	unsigned nb;
	size_t sh = dw ? (size_t)EW_NW * C * sizeof(float) : 0;
	CKR(ew_check(T, C, dx, dy));
	if (((uintptr_t)x | (uintptr_t)xb) & 15)
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu residual passes: an activation is not 16-byte aligned");
	if (T < 1)
		return 0;
	nb = (unsigned)((T + EW_NW * EW_WROW - 1) / (EW_NW * EW_WROW));
#define EW_BWD(CH)                                                                                 \
	do {                                                                                       \
		if constexpr (sizeof(TX) == 2)                                                     \
			k_ew_rms_bwd16<CH><<<nb, EW_NW * 32, sh, PST>>>(dx, xb, acc, dw, dy, x, w, \
			                                                rstd, T, C);               \
		else                                                                               \
			k_ew_rms_bwd<CH><<<nb, EW_NW * 32, sh, PST>>>(dx, xb, acc, dw, dy, x, w,   \
			                                              rstd, T, C);                 \
	} while (0)
	EW_DISPATCH(C, EW_BWD);
#undef EW_BWD
	LAUNCHED();
	return 0;
}

int policy_ew_rms_bwd16(float *dx, uint16_t *xb, int acc, float *dw, const float *dy,
                        const uint16_t *x, const float *w, const float *rstd, int T, int C)
{
	return ew_rms_bwd_run(dx, xb, acc, dw, dy, x, w, rstd, T, C);
}

int policy_ew_rms_bwd(float *dx, uint16_t *xb, int acc, float *dw, const float *dy, const float *x,
                      const float *w, const float *rstd, int T, int C)
{
	return ew_rms_bwd_run(dx, xb, acc, dw, dy, x, w, rstd, T, C);
}

/* round 19 (POLICY_GPU_ACT16=all) */
int policy_ew_rms_bwd16g(uint16_t *dx, float *xf, int acc, float *dw, const float *dy,
                         const uint16_t *x, const float *w, const float *rstd, int T, int C)
{
	return policy_ew_rms_bwd16gy(dx, xf, acc, dw, dy, 0, x, w, rstd, T, C);
}

/* round 25 (POLICY_GPU_DN16): dy in bf16 where dy16 */
int policy_ew_rms_bwd16gy(uint16_t *dx, float *xf, int acc, float *dw, const void *dy, int dy16,
                          const uint16_t *x, const float *w, const float *rstd, int T, int C)
{
	unsigned nb;
	size_t sh = dw ? (size_t)EW_NW * C * sizeof(float) : 0;
	int mode = policy_ew20_mode(); /* round 20: POLICY_GPU_EW20 */
	if (mode < 0)
		return mode;
	CKR(ew_check(T, C, dx, dy));
	if (((uintptr_t)x | (uintptr_t)xf) & 15)
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu residual passes: an activation is not 16-byte aligned");
	if (!dx)
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu residual passes: the bf16 gradient's rms bwd needs dx");
	if (T < 1)
		return 0;
	if ((mode & 1) && !dy16) { /* round 20: pipelined (fp32 dy only) */
		size_t sp = (size_t)EP_NW * EP_S * ep_rms_stage(C);
#define EW_BWDP(CH)                                                                                \
	do {                                                                                       \
		CKR(policy_ew20_grid((const void *)k_ew_rms_bwd16p<CH>, EP_NW * 32, sp,            \
		                     (T + EP_NW - 1) / EP_NW, &nb));                               \
		k_ew_rms_bwd16p<CH><<<nb, EP_NW * 32, sp, PST>>>(                                  \
		        dx, xf, acc, dw, (const float *)dy, x, w, rstd, T, C);                     \
	} while (0)
		EW_DISPATCH(C, EW_BWDP);
#undef EW_BWDP
		LAUNCHED();
		return 0;
	}
	nb = (unsigned)((T + EW_NW * EW_WROW - 1) / (EW_NW * EW_WROW));
#define EW_BWDG(CH)                                                                                \
	do {                                                                                       \
		if (dy16)                                                                          \
			CK(pdl::launch(k_ew_rms_bwd16g<CH, uint16_t>, dim3(nb), dim3(EW_NW * 32),  \
			               sh, PST, dx, xf, acc, dw, (const uint16_t *)dy, x, w, rstd, \
			               T, C));                                                     \
		else                                                                               \
			CK(pdl::launch(k_ew_rms_bwd16g<CH>, dim3(nb), dim3(EW_NW * 32), sh, PST,   \
			               dx, xf, acc, dw, (const float *)dy, x, w, rstd, T, C));     \
	} while (0)
	EW_DISPATCH(C, EW_BWDG);
#undef EW_BWDG
	LAUNCHED();
	return 0;
}

int policy_ew_embed_bwd16(float *demb, const uint16_t *dx, const int *tok, int T, int C)
{
	CKR(ew_check(T, C, dx, NULL));
	if (T < 1)
		return 0;
	if ((uintptr_t)demb & 15)
		k_ew_embed_bwd16<0><<<EW_BLOCKS(T), 0, PST>>>(demb, dx, tok, T, C);
	else
		k_ew_embed_bwd16<1><<<EW_BLOCKS(T), 0, PST>>>(demb, dx, tok, T, C);
	LAUNCHED();
	return 0;
}
