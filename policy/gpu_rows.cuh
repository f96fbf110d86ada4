/* gpu_rows.cuh - the policy's row-wise and elementwise kernels of round 7
 * and before (internal to policy/; included by gpu.cu, and by the kernel
 * benches for their in-run baselines): the embedding, the block-per-row
 * RMSNorm forward / backward with its weight gradient and their fused
 * residual adds (the fp32 mode, the unfused path, POLICY_GPU_EW=old and
 * widths gpu_ew.cu does not take), and the lightning layer's SiLU, output
 * norm + gate and gate backward passes (POLICY_GPU_LIN_EW=old, and the fp32
 * lightning kernel's path). Static kernels: each includer has its own. */
#ifndef SWERVE_POLICY_GPU_ROWS_CUH
#define SWERVE_POLICY_GPU_ROWS_CUH

#include "policy/gpu_dev.cuh"
#include "policy/gpu_stream.h"

#include <stddef.h>
#include <stdint.h>

__global__ static void k_embed(float *x, const float *emb, const int *tok, int T, int D)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < (size_t)T * D)
		x[i] = emb[(size_t)tok[i / D] * D + i % D];
}

__global__ static void k_embed_bwd(float *demb, const float *dx, const int *tok, int T, int D)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < (size_t)T * D)
		atomicAdd(&demb[(size_t)tok[i / D] * D + i % D], dx[i]);
}

__global__ static void k_add(float *y, const float *x, size_t n)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n)
		y[i] += x[i];
}

/* y = x * rstd * w, one block per row; y of type TO */
template <typename TO>
__global__ static void k_rms_fwd(void *yv, float *rstd, const float *x, const float *w, int C,
                                 float eps)
{
	const float *xr = x + (size_t)blockIdx.x * C;
	TO *y = (TO *)yv;
	float ss = 0, r;
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		ss += xr[i] * xr[i];
	r = block_rstd(ss, C, eps, rstd);
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		stf(&y[(size_t)blockIdx.x * C + i], xr[i] * r * w[i]);
}

/* gn = x * rstd * w * sigmoid(gate) (the lightning output norm and gate in
 * one pass), gate at pre + t * ldp + goff; one block per row */
template <typename TA>
__global__ static void k_rms_gate(void *gnv, float *rstd, const float *x, const float *w,
                                  const void *prev, int C, int ldp, int goff, float eps)
{
	const float *xr = x + (size_t)blockIdx.x * C;
	const TA *gp = (const TA *)prev + (size_t)blockIdx.x * ldp + goff;
	TA *gn = (TA *)gnv + (size_t)blockIdx.x * C;
	float ss = 0, r;
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		ss += xr[i] * xr[i];
	r = block_rstd(ss, C, eps, rstd);
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		stf(&gn[i], xr[i] * r * w[i] * sigm(ldf(gp[i])));
}

/* v = r dy w - r^3 x (sum dy w x) / C, one block per row; dx = v (acc 0) or
 * dx += v (acc 1) where dx is not NULL, and the result in bf16 to xb where
 * xb is not NULL */
__global__ static void k_rms_bwd(float *dx, uint16_t *xb, int acc, const float *dy, const float *x,
                                 const float *w, const float *rstd, int C)
{
	size_t o = (size_t)blockIdx.x * C;
	float r = rstd[blockIdx.x], dot = 0;
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		dot += dy[o + i] * w[i] * x[o + i];
	dot = block_sum(dot);
	for (int i = threadIdx.x; i < C; i += blockDim.x) {
		float v = r * dy[o + i] * w[i] - r * r * r * x[o + i] * dot / C;
		if (dx && acc)
			v += dx[o + i];
		if (dx)
			dx[o + i] = v;
		if (xb)
			xb[o + i] = f2bf(v);
	}
}

/* dw[c] += sum_t dy x rstd: a thread per column and block of 64 rows, one
 * atomic add per (column, block) */
#define RMS_DW_ROWS 64
__global__ static void k_rms_dw(float *dw, const float *dy, const float *x, const float *rstd,
                                int T, int C)
{
	int c = blockIdx.x * blockDim.x + threadIdx.x, t0 = blockIdx.y * RMS_DW_ROWS;
	int t1 = t0 + RMS_DW_ROWS < T ? t0 + RMS_DW_ROWS : T;
	float s = 0;
	if (c >= C)
		return;
	for (int t = t0; t < t1; t++)
		s += dy[(size_t)t * C + c] * x[(size_t)t * C + c] * rstd[t];
	atomicAdd(&dw[c], s);
}

static inline void rms_dw(float *dw, const float *dy, const float *x, const float *rstd, int T,
                          int C)
{
	dim3 grid((unsigned)((C + 255) / 256), (unsigned)((T + RMS_DW_ROWS - 1) / RMS_DW_ROWS));
	k_rms_dw<<<grid, 256, 0, PST>>>(dw, dy, x, rstd, T, C);
}

/* the residual add fused with the next RMSNorm: out = a + b (the stream's
 * next value, a new buffer: no copy of the stream is kept separately), y =
 * out * rstd * w in type TO; one block per row */
template <typename TO>
__global__ static void k_add_rms(float *out, void *yv, float *rstd, const float *a, const float *b,
                                 const float *w, int C, float eps)
{
	size_t o = (size_t)blockIdx.x * C;
	TO *y = (TO *)yv + o;
	float ss = 0, r;
	for (int i = threadIdx.x; i < C; i += blockDim.x) {
		float v = a[o + i] + b[o + i];
		out[o + i] = v;
		ss += v * v;
	}
	r = block_rstd(ss, C, eps, rstd);
	for (int i = threadIdx.x; i < C; i += blockDim.x) /* this thread's own writes */
		stf(&y[i], out[o + i] * r * w[i]);
}

/* k_add_rms with the grouped MoE around it (round 6): with yp, b is the
 * MoE's combine, sum_j gate[t K + j] yp[(t K + j) C + i] in k_mg_combine's
 * order (the y pass and its (T, C) fp32 round trip fused away); with yb, a
 * bf16 copy of y (the experts' input: the x -> bf16 pass fused) */
template <typename TO>
__global__ static void k_add_rms_moe(float *out, void *yv, uint16_t *yb, float *rstd,
                                     const float *a, const float *b, const float *yp,
                                     const float *gate, int K, const float *w, int C, float eps)
{
	size_t o = (size_t)blockIdx.x * C;
	TO *y = (TO *)yv + o;
	float ss = 0, r;
	for (int i = threadIdx.x; i < C; i += blockDim.x) {
		float bv = 0;
		if (yp)
			for (int j = 0; j < K; j++) {
				size_t tj = (size_t)blockIdx.x * K + j;
				bv += gate[tj] * yp[tj * C + i];
			}
		else
			bv = b[o + i];
		float v = a[o + i] + bv;
		out[o + i] = v;
		ss += v * v;
	}
	r = block_rstd(ss, C, eps, rstd);
	for (int i = threadIdx.x; i < C; i += blockDim.x) { /* this thread's own writes */
		float v = out[o + i] * r * w[i];
		stf(&y[i], v);
		if (yb)
			yb[o + i] = f2bf(v);
	}
}

/* k_rms_bwd and k_rms_dw in one pass over dy and x: a block per
 * RMS_BWD_ROWS rows, each thread keeps the weight-gradient partial sums of
 * its columns (c = threadIdx.x + j blockDim.x, C <= RMS_BWD_COLS blockDim.x)
 * and adds them once per block */
#define RMS_BWD_ROWS 16
#define RMS_BWD_COLS 4
__global__ static void __launch_bounds__(256)
        k_rms_bwd_dw(float *dx, uint16_t *xb, int acc, float *dw, const float *dy, const float *x,
                     const float *w, const float *rstd, int T, int C)
{
	float part[RMS_BWD_COLS], wc[RMS_BWD_COLS], dv[RMS_BWD_COLS], xv[RMS_BWD_COLS];
	int t0 = blockIdx.x * RMS_BWD_ROWS, t1 = t0 + RMS_BWD_ROWS < T ? t0 + RMS_BWD_ROWS : T;
#pragma unroll
	for (int j = 0; j < RMS_BWD_COLS; j++) {
		int c = threadIdx.x + j * blockDim.x;
		part[j] = 0;
		wc[j] = c < C ? w[c] : 0;
	}
	for (int t = t0; t < t1; t++) {
		size_t o = (size_t)t * C;
		float r = rstd[t], dot = 0;
#pragma unroll
		for (int j = 0; j < RMS_BWD_COLS; j++) {
			int c = threadIdx.x + j * blockDim.x;
			dv[j] = c < C ? dy[o + c] : 0;
			xv[j] = c < C ? x[o + c] : 0;
			dot += dv[j] * wc[j] * xv[j];
		}
		dot = block_sum(dot);
#pragma unroll
		for (int j = 0; j < RMS_BWD_COLS; j++) {
			int c = threadIdx.x + j * blockDim.x;
			if (c < C) {
				float v = r * dv[j] * wc[j] - r * r * r * xv[j] * dot / C;
				part[j] += dv[j] * xv[j] * r;
				if (dx && acc)
					v += dx[o + c];
				if (dx)
					dx[o + c] = v;
				if (xb)
					xb[o + c] = f2bf(v);
			}
		}
	}
#pragma unroll
	for (int j = 0; j < RMS_BWD_COLS; j++) {
		int c = threadIdx.x + j * blockDim.x;
		if (c < C)
			atomicAdd(&dw[c], part[j]);
	}
}

/* the interleaved (T, 4 Hd) pre-activations: element (j, t, c) of the planar
 * (3, T, Hd) q, k, v lives at pre[t * 4 Hd + j * Hd + c] */
__device__ static size_t qkv_at(size_t i, size_t n, int Hd)
{
	size_t j = i / n, r = i % n;
	return r / Hd * 4 * Hd + j * Hd + r % Hd;
}

/* planar bf16 q, k, v = SiLU(pre) for kernels/lightning; n = T Hd, i < 3n */
template <typename TA>
__global__ static void k_silu_bf16(uint16_t *out, const void *prev, size_t n, int Hd)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < 3 * n) {
		float a = ldf(((const TA *)prev)[qkv_at(i, n, Hd)]);
		out[i] = f2bf(a * sigm(a));
	}
}

__global__ static void k_to_bf16(uint16_t *out, const float *in, size_t n)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = f2bf(in[i]);
}

__global__ static void k_to_f32(float *out, const uint16_t *in, size_t n)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = bf2f(in[i]);
}

/* interleaved d_pre (T, 4 Hd), columns [0, 3 Hd) = planar d_post (TP: bf16
 * from kernels/lightning or fp32) * silu'(pre); n = T Hd, i < 3n */
template <typename TA, typename TP>
__global__ static void k_dsilu(void *dprev, const TP *dpost, const void *prev, size_t n, int Hd)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < 3 * n) {
		size_t at = qkv_at(i, n, Hd);
		stf((TA *)dprev + at, ldf(dpost[i]) * dsilu(ldf(((const TA *)prev)[at])));
	}
}

/* from dgn: dn = dgn g (into dn), dgpre = dgn n g (1 - g) with n = gn / g,
 * into column block 3 of the interleaved (T, 4 Hd) dpre; gpre likewise in
 * pre. n = T Hd */
template <typename TA>
__global__ static void k_gate_bwd(float *dn, void *dprev, const float *dgn, const void *gnv,
                                  const void *prev, size_t n, int Hd)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n) {
		size_t at = i / Hd * 4 * Hd + 3 * Hd + i % Hd;
		float g = sigm(ldf(((const TA *)prev)[at]));
		float nn = g > 0 ? ldf(((const TA *)gnv)[i]) / g : 0.0f;
		dn[i] = dgn[i] * g;
		stf((TA *)dprev + at, dgn[i] * nn * g * (1.0f - g));
	}
}

#endif
