/* gpu_linew.cu - the lightning layer's elementwise passes (see gpu_linew.h).
 *
 * Round 7 (issue 10): SiLU and its backward move 16 bytes of bf16 a thread
 * with 32-bit index arithmetic (gpu.cu's k_silu_bf16 / k_dsilu: one element
 * and several 64-bit divisions a thread); the output norm reads the core's
 * bf16 output directly (no fp32 copy of it is written or read); the gate's
 * and the norm's backward are one pass over a row (no fp32 d(norm) tensor
 * in between). Every value is computed with the same formulas as gpu.cu's
 * kernels and rounded to bf16 the same way (bitwise equality with the old
 * passes is expected for SiLU, its backward and the norm + gate, but was not
 * checked on the device); the gate backward recomputes the normalised o
 * (o rstd w) instead of dividing the bf16 gn by the gate.
 *
 * Measured (H100, 2026-11-26, tests/bench/gpu_route, one layer of the
 * benchmark's shape, T 8192, Hd 768): SiLU 92.3 -> 35.0 us, norm + gate
 * (with the old k_to_f32) 60.4 -> 34.0, gate + norm backward 91.7 -> 75.2,
 * SiLU backward 98.4 -> 45.4; 342.8 -> 189.7 us a layer in all. */
#include "policy/gpu_linew.h"
#include "policy/gpu_dev.cuh"
#include "policy/gpu_util.h"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#define LW_ROWS 16 /* rows a block in the fused backward */
#define LW_COLS 4  /* columns a thread: Hd <= LW_COLS x 256 */

/* 8 consecutive values (16-byte aligned for bf16, 32 for fp32) */
__device__ static void ld8(float *v, const uint16_t *p)
{
	uint4 u = *(const uint4 *)p;
	uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
	for (int k = 0; k < 4; k++) {
		v[2 * k] = __uint_as_float(w[k] << 16);
		v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
	}
}
__device__ static void ld8(float *v, const float *p)
{
	float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
	v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
	v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ static void st8(uint16_t *p, const float *v)
{
	uint4 u;
	u.x = f2bf(v[0]) | (uint32_t)f2bf(v[1]) << 16;
	u.y = f2bf(v[2]) | (uint32_t)f2bf(v[3]) << 16;
	u.z = f2bf(v[4]) | (uint32_t)f2bf(v[5]) << 16;
	u.w = f2bf(v[6]) | (uint32_t)f2bf(v[7]) << 16;
	*(uint4 *)p = u;
}
__device__ static void st8(float *p, const float *v)
{
	*(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
	*(float4 *)(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}

/* chunk u of the (T, 3 Hd / 8) q|k|v chunks: row t, column rem 8 of the
 * interleaved row, planar element (j, t, c) */
struct lw_at {
	size_t il, pl; /* interleaved offset in pre, planar offset */
};
__device__ static struct lw_at lw_index(unsigned u, int T, int Hd)
{
	unsigned h8 = (unsigned)Hd / 8, per = 3 * h8, t = u / per, rem = u % per;
	unsigned j = rem / h8, c = rem % h8 * 8;
	struct lw_at a;
	a.il = (size_t)t * 4 * Hd + (size_t)rem * 8;
	a.pl = (size_t)j * T * Hd + (size_t)t * Hd + c;
	return a;
}

template <typename TA, typename TO>
__global__ static void k_lw_silu(TO *out, const TA *pre, int T, int Hd)
{
	unsigned u = blockIdx.x * blockDim.x + threadIdx.x;
	float v[8];
	if (u >= (unsigned)T * 3 * (Hd / 8))
		return;
	struct lw_at a = lw_index(u, T, Hd);
	ld8(v, pre + a.il);
#pragma unroll
	for (int k = 0; k < 8; k++)
		v[k] = v[k] * sigm(v[k]);
	st8(out + a.pl, v);
}

template <typename TA, typename TP>
__global__ static void k_lw_dsilu(TA *dpre, const TP *dpost, const TA *pre, int T, int Hd)
{
	unsigned u = blockIdx.x * blockDim.x + threadIdx.x;
	float a[8], d[8];
	if (u >= (unsigned)T * 3 * (Hd / 8))
		return;
	struct lw_at at = lw_index(u, T, Hd);
	ld8(a, pre + at.il);
	ld8(d, dpost + at.pl);
#pragma unroll
	for (int k = 0; k < 8; k++)
		d[k] = d[k] * dsilu(a[k]);
	st8(dpre + at.il, d);
}

/* gpu.cu's k_rms_gate with o of type TX: a block per row */
template <typename TA, typename TX>
__global__ static void k_lw_rms_gate(TA *gn, float *rstd, const TX *o, const float *w,
                                     const TA *pre, int C, float eps)
{
	const TX *xr = o + (size_t)blockIdx.x * C;
	const TA *gp = pre + (size_t)blockIdx.x * 4 * C + 3 * C;
	TA *y = gn + (size_t)blockIdx.x * C;
	float ss = 0, r;
	for (int i = threadIdx.x; i < C; i += blockDim.x) {
		float v = ldf(xr[i]);
		ss += v * v;
	}
	r = block_rstd(ss, C, eps, rstd);
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		stf(&y[i], ldf(xr[i]) * r * w[i] * sigm(ldf(gp[i])));
}

/* a block per LW_ROWS rows, columns c = tid + j 256: g = sigmoid(gate
 * pre), n = o r w, dn = dgn g, d gate pre = dgn n g (1 - g); then the
 * RMSNorm backward of dn: dO = r dn w - r^3 o (sum dn w o) / C, and the
 * weight gradient's partial sums dn o r, added once per block */
template <typename TA, typename TX>
__global__ static void __launch_bounds__(256)
        k_lw_gate_rms_bwd(TX *dO, float *dw, TA *dpre, const float *dgn, const TX *o, const TA *pre,
                          const float *w, const float *rstd, int T, int C)
{
	float part[LW_COLS], wc[LW_COLS], dv[LW_COLS], xv[LW_COLS];
	int t0 = blockIdx.x * LW_ROWS, t1 = t0 + LW_ROWS < T ? t0 + LW_ROWS : T;
#pragma unroll
	for (int j = 0; j < LW_COLS; j++) {
		int c = threadIdx.x + j * blockDim.x;
		part[j] = 0;
		wc[j] = c < C ? w[c] : 0;
	}
	for (int t = t0; t < t1; t++) {
		size_t ro = (size_t)t * C, go = (size_t)t * 4 * C + 3 * C;
		float r = rstd[t], dot = 0;
#pragma unroll
		for (int j = 0; j < LW_COLS; j++) {
			int c = threadIdx.x + j * blockDim.x;
			dv[j] = xv[j] = 0;
			if (c < C) {
				float xo = ldf(o[ro + c]), g = sigm(ldf(pre[go + c]));
				float dg = dgn[ro + c];
				stf(&dpre[go + c], dg * (xo * r * wc[j]) * g * (1.0f - g));
				dv[j] = dg * g;
				xv[j] = xo;
				dot += dv[j] * wc[j] * xo;
			}
		}
		dot = block_sum(dot);
#pragma unroll
		for (int j = 0; j < LW_COLS; j++) {
			int c = threadIdx.x + j * blockDim.x;
			if (c < C) {
				part[j] += dv[j] * xv[j] * r;
				stf(&dO[ro + c], r * dv[j] * wc[j] - r * r * r * xv[j] * dot / C);
			}
		}
	}
#pragma unroll
	for (int j = 0; j < LW_COLS; j++) {
		int c = threadIdx.x + j * blockDim.x;
		if (c < C)
			atomicAdd(&dw[c], part[j]);
	}
}

/* ---- v2 (POLICY_GPU_LIN_EW=v2; written after round 7's device run, which
 * measured the two kernels above at ~1.0-1.1 TB/s: a block per row or per 16
 * rows with two barriers a row). A warp per row: each lane loads its
 * LW_CH chunks of 8 columns (16-byte loads of bf16, 32 of fp32) before any
 * use, the row's sums by warp shuffles, no barrier per row. Not yet run. */
#define LW_CH   4 /* chunks of 8 columns a lane: Hd <= 32 x 8 x LW_CH */
#define LW_WROW 4 /* rows a warp in the backward */
#define LW_NW   8 /* warps a block */

/* the norm and gate: a warp per row */
template <typename TA, typename TX>
__global__ static void __launch_bounds__(LW_NW * 32)
        k_lw_rms_gate2(TA *__restrict__ gn, float *__restrict__ rstd, const TX *__restrict__ o,
                       const float *__restrict__ w, const TA *__restrict__ pre, int T, int C,
                       float eps)
{
	int lane = threadIdx.x & 31, t = blockIdx.x * LW_NW + (threadIdx.x >> 5), C8 = C / 8;
	float xv[LW_CH][8], gv[LW_CH][8], ss = 0, r;
	if (t >= T) /* warp-uniform */
		return;
#pragma unroll
	for (int k = 0; k < LW_CH; k++) {
		int c = lane + 32 * k;
		if (c < C8) {
			ld8(xv[k], o + (size_t)t * C + c * 8);
			ld8(gv[k], pre + (size_t)t * 4 * C + 3 * C + c * 8);
		}
	}
#pragma unroll
	for (int k = 0; k < LW_CH; k++)
		if (lane + 32 * k < C8)
#pragma unroll
			for (int q = 0; q < 8; q++)
				ss += xv[k][q] * xv[k][q];
	r = warp_rstd(ss, C, eps, rstd, t, lane);
#pragma unroll
	for (int k = 0; k < LW_CH; k++) {
		int c = lane + 32 * k;
		if (c < C8) {
			float y[8];
#pragma unroll
			for (int q = 0; q < 8; q++)
				y[q] = xv[k][q] * r * w[c * 8 + q] * sigm(gv[k][q]);
			st8(gn + (size_t)t * C + c * 8, y);
		}
	}
}

/* the gate and norm backward: a warp per row, LW_WROW rows a warp; the
 * weight gradient's partial sums per lane, summed over the block's warps in
 * shared memory (warp order) and added once per block */
template <typename TA, typename TX>
__global__ static void __launch_bounds__(LW_NW * 32)
        k_lw_gate_rms_bwd2(TX *__restrict__ dO, float *__restrict__ dw, TA *__restrict__ dpre,
                           const float *__restrict__ dgn, const TX *__restrict__ o,
                           const TA *__restrict__ pre, const float *__restrict__ w,
                           const float *__restrict__ rstd, int T, int C)
{
	extern __shared__ float s_part[]; /* (LW_NW, C) */
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, C8 = C / 8;
	int t0 = (blockIdx.x * LW_NW + wi) * LW_WROW;
	float part[LW_CH][8];
#pragma unroll
	for (int k = 0; k < LW_CH; k++)
#pragma unroll
		for (int q = 0; q < 8; q++)
			part[k][q] = 0;
	for (int i = 0; i < LW_WROW; i++) {
		int t = t0 + i;
		float dg[LW_CH][8], xo[LW_CH][8], gp[LW_CH][8], dot = 0, r;
		if (t >= T) /* warp-uniform */
			break;
		r = rstd[t];
#pragma unroll
		for (int k = 0; k < LW_CH; k++) {
			int c = lane + 32 * k;
			if (c < C8) {
				ld8(dg[k], dgn + (size_t)t * C + c * 8);
				ld8(xo[k], o + (size_t)t * C + c * 8);
				ld8(gp[k], pre + (size_t)t * 4 * C + 3 * C + c * 8);
			}
		}
#pragma unroll
		for (int k = 0; k < LW_CH; k++) {
			int c = lane + 32 * k;
			if (c < C8) {
				float dgp[8];
#pragma unroll
				for (int q = 0; q < 8; q++) {
					float wc = w[c * 8 + q], g = sigm(gp[k][q]);
					dgp[q] = dg[k][q] * (xo[k][q] * r * wc) * g * (1.0f - g);
					dg[k][q] *= g; /* now d of the normed output */
					dot += dg[k][q] * wc * xo[k][q];
				}
				st8(dpre + (size_t)t * 4 * C + 3 * C + c * 8, dgp);
			}
		}
		dot = warp_sum(dot);
#pragma unroll
		for (int k = 0; k < LW_CH; k++) {
			int c = lane + 32 * k;
			if (c < C8) {
				float v[8];
#pragma unroll
				for (int q = 0; q < 8; q++) {
					float wc = w[c * 8 + q];
					part[k][q] += dg[k][q] * xo[k][q] * r;
					v[q] = r * dg[k][q] * wc - r * r * r * xo[k][q] * dot / C;
				}
				st8(dO + (size_t)t * C + c * 8, v);
			}
		}
	}
#pragma unroll
	for (int k = 0; k < LW_CH; k++) {
		int c = lane + 32 * k;
		if (c < C8)
#pragma unroll
			for (int q = 0; q < 8; q++)
				s_part[wi * C + c * 8 + q] = part[k][q];
	}
	__syncthreads();
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float s = 0;
		for (int q = 0; q < LW_NW; q++)
			s += s_part[q * C + c];
		atomicAdd(&dw[c], s);
	}
}

int policy_lin_ew_supported(int T, int Hd)
{
	return Hd >= 8 && Hd % 8 == 0 && Hd <= LW_COLS * 256 && (long long)3 * T * Hd < (1LL << 31);
}

static int lw_check(int T, int Hd)
{
	if (!policy_lin_ew_supported(T, Hd))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu lightning passes: T %d, Hd %d not supported (Hd a "
		                        "multiple of 8, at most %d)",
		                        T, Hd, LW_COLS * 256);
	return 0;
}

#define LW_GRID(T, Hd) (unsigned)(((size_t)(T)*3 * ((Hd) / 8) + 255) / 256), 256

int policy_lin_silu(void *out, int out_bf16, const void *pre, int a_bf16, int T, int Hd)
{
	CKR(lw_check(T, Hd));
	if (T < 1)
		return 0;
	if (a_bf16 && out_bf16)
		k_lw_silu<<<LW_GRID(T, Hd), 0, PST>>>((uint16_t *)out, (const uint16_t *)pre, T,
		                                      Hd);
	else if (a_bf16)
		k_lw_silu<<<LW_GRID(T, Hd), 0, PST>>>((float *)out, (const uint16_t *)pre, T, Hd);
	else if (out_bf16)
		k_lw_silu<<<LW_GRID(T, Hd), 0, PST>>>((uint16_t *)out, (const float *)pre, T, Hd);
	else
		k_lw_silu<<<LW_GRID(T, Hd), 0, PST>>>((float *)out, (const float *)pre, T, Hd);
	LAUNCHED();
	return 0;
}

/* round 14: POLICY_GPU_LW_SILU=keep (the default from the lead's round-14
 * run to round 25; round 26's auto takes it below POLICY_LIN_SILU_CORE_T
 * tokens a micro-batch, core from there) | pass (rounds 7-13: the two passes above) |
 * core (kernels/lightning's swerve_lightning_forward_silu /
 * _backward_silu apply the SiLU on their loads and SiLU' in the backward's
 * epilogue) | keep (the forward as core, also writing the activated q, k,
 * v; the backward reads them, SiLU' in its epilogue:
 * swerve_lightning_backward_dsilu); gpu.cu takes them in bf16 mode with the
 * bf16 core */
int policy_lin_silu_mode(void)
{
	static const char *const names[] = {"pass", "core", "keep", "auto"};
	return policy_env_choice("POLICY_GPU_LW_SILU", names, 4, 3); /* auto: the default */
}

int policy_lin_silu_pick(int mode, int T)
{
	if (mode != 3)
		return mode;
	return T >= POLICY_LIN_SILU_CORE_T ? 1 : 2;
}

int policy_lin_dsilu(void *dpre, int a_bf16, const void *dpost, int post_bf16, const void *pre,
                     int T, int Hd)
{
	CKR(lw_check(T, Hd));
	if (T < 1)
		return 0;
	if (a_bf16 && post_bf16)
		k_lw_dsilu<<<LW_GRID(T, Hd), 0, PST>>>((uint16_t *)dpre, (const uint16_t *)dpost,
		                                       (const uint16_t *)pre, T, Hd);
	else if (a_bf16)
		k_lw_dsilu<<<LW_GRID(T, Hd), 0, PST>>>((uint16_t *)dpre, (const float *)dpost,
		                                       (const uint16_t *)pre, T, Hd);
	else if (post_bf16)
		k_lw_dsilu<<<LW_GRID(T, Hd), 0, PST>>>((float *)dpre, (const uint16_t *)dpost,
		                                       (const float *)pre, T, Hd);
	else
		k_lw_dsilu<<<LW_GRID(T, Hd), 0, PST>>>((float *)dpre, (const float *)dpost,
		                                       (const float *)pre, T, Hd);
	LAUNCHED();
	return 0;
}

int policy_lin_rms_gate(void *gn, float *rstd, const void *o, int o_bf16, const float *w,
                        const void *pre, int a_bf16, int T, int Hd, float eps, int v2)
{
	CKR(lw_check(T, Hd));
	if (T < 1)
		return 0;
	if (v2) {
		unsigned nb = (unsigned)((T + LW_NW - 1) / LW_NW);
		if (a_bf16 && o_bf16)
			k_lw_rms_gate2<<<nb, LW_NW * 32, 0, PST>>>(
			        (uint16_t *)gn, rstd, (const uint16_t *)o, w, (const uint16_t *)pre,
			        T, Hd, eps);
		else if (a_bf16)
			k_lw_rms_gate2<<<nb, LW_NW * 32, 0, PST>>>(
			        (uint16_t *)gn, rstd, (const float *)o, w, (const uint16_t *)pre, T,
			        Hd, eps);
		else if (o_bf16)
			k_lw_rms_gate2<<<nb, LW_NW * 32, 0, PST>>>((float *)gn, rstd,
			                                           (const uint16_t *)o, w,
			                                           (const float *)pre, T, Hd, eps);
		else
			k_lw_rms_gate2<<<nb, LW_NW * 32, 0, PST>>>((float *)gn, rstd,
			                                           (const float *)o, w,
			                                           (const float *)pre, T, Hd, eps);
		LAUNCHED();
		return 0;
	}
	if (a_bf16 && o_bf16)
		k_lw_rms_gate<<<T, 256, 0, PST>>>((uint16_t *)gn, rstd, (const uint16_t *)o, w,
		                                  (const uint16_t *)pre, Hd, eps);
	else if (a_bf16)
		k_lw_rms_gate<<<T, 256, 0, PST>>>((uint16_t *)gn, rstd, (const float *)o, w,
		                                  (const uint16_t *)pre, Hd, eps);
	else if (o_bf16)
		k_lw_rms_gate<<<T, 256, 0, PST>>>((float *)gn, rstd, (const uint16_t *)o, w,
		                                  (const float *)pre, Hd, eps);
	else
		k_lw_rms_gate<<<T, 256, 0, PST>>>((float *)gn, rstd, (const float *)o, w,
		                                  (const float *)pre, Hd, eps);
	LAUNCHED();
	return 0;
}

int policy_lin_gate_rms_bwd(void *dO, float *dw, void *dpre, int a_bf16, const float *dgn,
                            const void *o, int o_bf16, const void *pre, const float *w,
                            const float *rstd, int T, int Hd, int v2)
{
	unsigned nb = (unsigned)((T + LW_ROWS - 1) / LW_ROWS);
	CKR(lw_check(T, Hd));
	if (T < 1)
		return 0;
	if (v2) {
		unsigned nb2 = (unsigned)((T + LW_NW * LW_WROW - 1) / (LW_NW * LW_WROW));
		size_t sm = (size_t)LW_NW * Hd * 4;
		if (a_bf16 && o_bf16)
			k_lw_gate_rms_bwd2<<<nb2, LW_NW * 32, sm, PST>>>(
			        (uint16_t *)dO, dw, (uint16_t *)dpre, dgn, (const uint16_t *)o,
			        (const uint16_t *)pre, w, rstd, T, Hd);
		else if (a_bf16)
			k_lw_gate_rms_bwd2<<<nb2, LW_NW * 32, sm, PST>>>(
			        (float *)dO, dw, (uint16_t *)dpre, dgn, (const float *)o,
			        (const uint16_t *)pre, w, rstd, T, Hd);
		else if (o_bf16)
			k_lw_gate_rms_bwd2<<<nb2, LW_NW * 32, sm, PST>>>(
			        (uint16_t *)dO, dw, (float *)dpre, dgn, (const uint16_t *)o,
			        (const float *)pre, w, rstd, T, Hd);
		else
			k_lw_gate_rms_bwd2<<<nb2, LW_NW * 32, sm, PST>>>(
			        (float *)dO, dw, (float *)dpre, dgn, (const float *)o,
			        (const float *)pre, w, rstd, T, Hd);
		LAUNCHED();
		return 0;
	}
	if (a_bf16 && o_bf16)
		k_lw_gate_rms_bwd<<<nb, 256, 0, PST>>>((uint16_t *)dO, dw, (uint16_t *)dpre, dgn,
		                                       (const uint16_t *)o, (const uint16_t *)pre,
		                                       w, rstd, T, Hd);
	else if (a_bf16)
		k_lw_gate_rms_bwd<<<nb, 256, 0, PST>>>((float *)dO, dw, (uint16_t *)dpre, dgn,
		                                       (const float *)o, (const uint16_t *)pre, w,
		                                       rstd, T, Hd);
	else if (o_bf16)
		k_lw_gate_rms_bwd<<<nb, 256, 0, PST>>>((uint16_t *)dO, dw, (float *)dpre, dgn,
		                                       (const uint16_t *)o, (const float *)pre, w,
		                                       rstd, T, Hd);
	else
		k_lw_gate_rms_bwd<<<nb, 256, 0, PST>>>((float *)dO, dw, (float *)dpre, dgn,
		                                       (const float *)o, (const float *)pre, w,
		                                       rstd, T, Hd);
	LAUNCHED();
	return 0;
}
