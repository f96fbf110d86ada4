/* policy_loss.cu - the fused policy loss on the GPU (see policy_loss.h).
 *
 * The products are cuBLAS GEMMs on tensor cores; one custom kernel does all
 * the per-token work. Per chunk of C tokens (c = this chunk's rows):
 *
 *   1. Z    (c, V)  = X_c W^T                  GEMM, fp32 out
 *   2. row kernel, one block per token: online max / sum exp / sum p z over
 *      the row (pass 1), logp, entropy, the per-token loss math shared with
 *      the CPU reference (swerve_pl_token_eval), then (pass 2) the logit
 *      gradient dZ = dlogp * (onehot - p), written split into bf16 parts
 *   3. dX_c (c, d)  = dZ W                     GEMMs, fp32 out
 *   4. dW   (V, d) += dZ^T X_c                 GEMM,  fp32 out
 * then one block sums the per-token loss terms in double (deterministic).
 *
 * FP32 accuracy from bf16 tensor cores: X is bf16, so exact. W is split
 * into PW = 2 bf16 parts (w = w0 + w1 + r, |w1| <= 2^-9 |w0|, |r| <= 2^-18
 * |w|; round 20: SWERVE_PL_WPARTS=3 adds w2 = r rounded, all 24 bits, the
 * rounds 9-19 default) and dZ into PZ = 2 (16 bits, the rest is <= 2^-18):
 *   forward  Z  = [X X] [W0 W1]^T                  one GEMM, K = 2d
 *   dW          = [dZ0; dZ1]^T [X; X]               one GEMM, K = 2c
 *   dX          = dZ0 W0 + dZ0 W1 + dZ1 W0           three GEMMs a block of
 *                 8192 vocabulary entries (dropped terms: about 2^-18)
 * The split W lives in the workspace as rows [W0 | W1] (V, 2d), which
 * serves both the forward (K-concatenated) and dX (column blocks, ld 2d).
 * The tensor cores accumulate in fp32 with truncation (not rounding), an
 * error that grows with the accumulation length: measured on an H100, dX over
 * K = V = 131072 in one GEMM was 1.4e-4 off (max/max), so dX sums K in
 * blocks; logits stay a few 1e-6 off. That truncation, not the dropped third
 * part, bounds the forward: against float64, logp with 2 parts (K = 2d) is
 * 1.25e-6 off where 3 parts (K = 3d) are 2.05e-6, and 5.7e-6 against 8.3e-6
 * with logits 4x larger (H100, 2026-11-27, gpu_policy_loss; RESULTS.md), at
 * two thirds of the forward GEMM's work. The target's logit is
 * recomputed exactly (fp32 FMAs, d per token): its error does not average out
 * as the log-sum-exp's does (TF32 mode: logp error 1.1e-4 -> 2.8e-6).
 * TF32 mode runs plain cuBLAS TF32 GEMMs on fp32 operands (dZ in place of Z);
 * BF16 mode is PW = PZ = 1. FP32_FWD mode is PW = 2 (3), PZ = 1: the forward
 * (and so logp, entropy, ratio, loss, clip flags) exactly as FP32, then
 *   dX          = dZ0 W0                            one GEMM, K = V
 *   dW          = dZ0^T X                           one GEMM, K = c
 * at bf16 product precision (dZ0 rounds dZ to 8 bits, 2^-9 relative: the
 * accumulator's truncation over K = V sits far under that, so no blocking).
 *
 * Sub-chunks: the forward GEMM and the row kernel run on R <= C rows at a
 * time (swerve_pl_row_tokens), writing their dZ rows into the chunk's dZ
 * buffer; dX and dW then run once per chunk. The logits buffer is R x V.
 *
 * Memory: the workspace (swerve_pl_workspace_size) is all there is; nothing
 * here allocates except cuBLAS's own handle workspace. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "kernels/gemm_tune.h"
#include "kernels/policy_loss.h"
#include "kernels/ptx.cuh"

extern "C" {
#include "sandbox/error.h"
}

#define ROW_THREADS 512
#define DX_KBLOCK   8192 /* FP32 mode: vocabulary entries per dX GEMM */
#define LOG2E       1.4426950408889634f

struct swerve_pl_ctx {
	cublasHandle_t h;
	int prof, pf_blocks[3]; /* profiling on; the prefetching row kernel's grid by PZ */
	cudaEvent_t ev[2];      /* made when profiling is first switched on */
	double prof_ms[SWERVE_PL_NPHASES];
	/* the last split of W written (opts.w_split_ready): its source, parts,
	 * shape and workspace; parts 0 = none */
	const float *split_w;
	const void *split_ws;
	__nv_bfloat16 *split_wp; /* where in split_ws the parts lie (layout_of's wp) */
	int split_parts, split_v, split_d;
	int gemm_tune; /* SWERVE_GEMM_TUNE (kernels/gemm_tune.h) as the context was made */
};

/* ---- workspace layout ------------------------------------------------------ */

struct pl_layout {
	int PW, PZ; /* bf16 parts of W and of dZ; 0 = TF32 (fp32 operands) */
	int C;      /* tokens per chunk (dX, dW) */
	int R;      /* tokens per sub-chunk (forward GEMM, row kernel; R <= C) */
	size_t wp, z, dzs, x3, x3r, xf, terms, count, total; /* offsets; total = size */
};

static size_t al256(size_t x)
{
	return (x + 255) & ~(size_t)255;
}

/* SWERVE_PL_WPARTS = 2 | 3: the bf16 parts of W in the FP32 and FP32_FWD
 * forwards (and FP32's dX), read at each call; unset or empty: 2 (round 20;
 * 3 was the default before). Anything else: wparts_checked refuses it by
 * name (layout_of, which cannot fail, takes it as the default). */
static int wparts_env(void)
{
	const char *e = getenv("SWERVE_PL_WPARTS");
	if (!e || !*e)
		return 2;
	return !strcmp(e, "2") ? 2 : !strcmp(e, "3") ? 3 : -1;
}

static int wparts_checked(void)
{
	if (wparts_env() > 0)
		return 0;
	return swerve_error_set(SWERVE_EINVAL, "policy loss: SWERVE_PL_WPARTS=%s: must be 2 or 3",
	                        getenv("SWERVE_PL_WPARTS"));
}

static int w_parts(const struct swerve_pl_opts *o)
{
	switch (o->precision) {
	case SWERVE_PL_FP32:
	case SWERVE_PL_FP32_FWD: return wparts_env() == 3 ? 3 : 2;
	case SWERVE_PL_BF16: return 1;
	default: return 0;
	}
}

static int dz_parts(const struct swerve_pl_opts *o)
{
	switch (o->precision) {
	case SWERVE_PL_FP32: return 2;
	case SWERVE_PL_FP32_FWD:
	case SWERVE_PL_BF16: return 1;
	default: return 0;
	}
}

static struct pl_layout layout_of(const struct swerve_pl_batch *b, const struct swerve_pl_opts *o)
{
	struct pl_layout L;
	const size_t N = (size_t)b->n_tokens, d = (size_t)b->d, V = (size_t)b->vocab;
	const int S = b->seq_idx ? b->n_seqs : 1;
	L.PW = w_parts(o);
	L.PZ = dz_parts(o);
	L.C = swerve_pl_chunk_tokens(b->n_tokens, b->vocab, o);
	L.R = swerve_pl_row_tokens(b->n_tokens, b->vocab, o);
	const size_t PW = (size_t)L.PW, PZ = (size_t)L.PZ, C = (size_t)L.C, R = (size_t)L.R;
	const int grad = !o->logprob_only;
	size_t off = 0;
	L.wp = off;
	off += al256(V * PW * d * 2); /* (V, PW d) bf16 */
	L.z = off;
	off += al256(R * V * 4); /* (R, V) fp32 */
	L.dzs = off;
	off += grad ? al256(PZ * C * V * 2) : 0; /* (PZ C, V) bf16 */
	L.x3 = off;
	off += PW > 1 ? al256(C * PW * d * 2) : 0; /* (C, PW d) bf16 */
	L.x3r = off;
	off += grad && PZ > 1 ? al256(PZ * C * d * 2) : 0; /* (PZ C, d) bf16 */
	L.xf = off;
	off += PW == 0 ? al256(C * d * 4) : 0; /* (C, d) fp32 */
	L.terms = off;
	off += al256(N * 8); /* (N) double loss terms */
	L.count = off;
	off += al256(((size_t)S + 1) * 4); /* (S + 1) masked tokens per sequence, total */
	L.total = off;
	return L;
}

extern "C" size_t swerve_pl_workspace_size(const struct swerve_pl_batch *b,
                                           const struct swerve_pl_opts *o)
{
	if (!b || !o || b->n_tokens <= 0 || b->d <= 0 || b->vocab <= 0)
		return 0;
	return layout_of(b, o).total;
}

/* ---- kernels --------------------------------------------------------------- */

/* Running (max, sum e^(z-m), sum e^(z-m) (z-m)) of a row. */
struct lse3 {
	float m, s, sz;
};

__device__ __forceinline__ void lse_add(lse3 &a, float x)
{
	if (x > a.m) {
		float dm = a.m - x; /* -inf on the first element: c = 0 */
		float c = exp2f(dm * LOG2E);
		a.sz = a.s > 0.f ? c * (a.sz + dm * a.s) : 0.f;
		a.s *= c;
		a.m = x;
	}
	float dx = x - a.m;
	float e = exp2f(dx * LOG2E);
	a.s += e;
	a.sz += e * dx;
}

__device__ __forceinline__ void lse_merge(lse3 &a, lse3 b)
{
	if (!(b.s > 0.f) && !isnan(b.s))
		return;
	if (!(a.s > 0.f) && !isnan(a.s)) {
		a = b;
		return;
	}
	if (b.m > a.m) {
		lse3 t = a;
		a = b;
		b = t;
	}
	float dm = b.m - a.m;
	float c = exp2f(dm * LOG2E);
	a.sz += c * (b.sz + dm * b.s);
	a.s += c * b.s;
}

struct row_args {
	float *Z;               /* (r, V) logits in (the sub-chunk); TF32: dZ out in place */
	__nv_bfloat16 *dzs;     /* (PZ c, V) split dZ out; the sub-chunk's rows from r0 */
	const __nv_bfloat16 *X; /* (N, d) */
	const float *W;         /* (V, d) */
	int d;
	size_t piece_stride;           /* c V */
	int V, t0, r0, S, adv_per_seq; /* t0: the sub-chunk's first token, r0: its row in dzs */
	const int32_t *targets;
	const float *logp_old, *adv;
	const int32_t *seq_idx;
	const uint8_t *mask;
	const int *count; /* (S + 1) */
	float *logp, *entropy, *ratio;
	uint8_t *clipped;
	double *terms; /* (N) */
	struct swerve_pl_opts opts;
};

/* Writes g (the logit gradient of element (r, v)) as P bf16 parts, or in
 * place as fp32 for P = 0. */
template <int P> __device__ __forceinline__ void put_grad(const row_args &a, int r, int v, float g)
{
	if (P == 0) {
		a.Z[(size_t)r * a.V + v] = g;
	} else {
		__nv_bfloat16 *o = a.dzs + (size_t)(r + a.r0) * a.V + v;
#pragma unroll
		for (int k = 0; k < P; k++) {
			__nv_bfloat16 h = __float2bfloat16_rn(g);
			o[k * a.piece_stride] = h;
			g -= __bfloat162float(h);
		}
	}
}

/* CS: evict-first stores (st.global.cs, round 19's stream row kernel) */
template <int P, bool CS = false>
__device__ __forceinline__ void put_grad4(const row_args &a, int r, int v, float4 g)
{
	if (P == 0) {
		if (CS)
			__stcs((float4 *)(a.Z + (size_t)r * a.V + v), g);
		else
			*(float4 *)(a.Z + (size_t)r * a.V + v) = g;
	} else {
		__nv_bfloat16 *o = a.dzs + (size_t)(r + a.r0) * a.V + v;
#pragma unroll
		for (int k = 0; k < P; k++) {
			__nv_bfloat162 h01 = __floats2bfloat162_rn(g.x, g.y);
			__nv_bfloat162 h23 = __floats2bfloat162_rn(g.z, g.w);
			union {
				__nv_bfloat162 h[2];
				uint2 u;
			} pk;
			pk.h[0] = h01;
			pk.h[1] = h23;
			if (CS)
				__stcs((uint2 *)(o + k * a.piece_stride), pk.u);
			else
				*(uint2 *)(o + k * a.piece_stride) = pk.u;
			float2 f01 = __bfloat1622float2(h01), f23 = __bfloat1622float2(h23);
			g.x -= f01.x;
			g.y -= f01.y;
			g.z -= f23.x;
			g.w -= f23.y;
		}
	}
}

/* The per-token part of the row kernel (thread 0 of the token's block), given
 * the row's (max, sum e^(z-m), sum e^(z-m) (z-m)) and the exact target logit:
 * writes logp, entropy, ratio, clipped and the loss term; returns the
 * logit-gradient coefficient dlogp, with ln(sum) in *ls and the target (or
 * -1 when out of range) in *yo. */
__device__ float row_token(const row_args &a, int t, lse3 acc, double zyd, double *ls_out, int *yo)
{
	const int V = a.V;
	const double ls = log((double)acc.s);
	const double lse = (double)acc.m + ls;
	const int y = a.targets[t];
	const int yok = y >= 0 && y < V;
	const double logp = yok ? zyd - lse : (double)NAN;
	a.logp[t] = (float)logp;
	if (a.entropy)
		a.entropy[t] = (float)(ls - (double)acc.sz / (double)acc.s);
	float coef = 0.f;
	if (!a.opts.logprob_only) {
		const int on = !a.mask || a.mask[t];
		const int seq = a.seq_idx ? a.seq_idx[t] : 0;
		double norm = 0.0, A = (double)NAN;
		if (seq >= 0 && seq < a.S) {
			if (on && a.opts.norm == SWERVE_PL_NORM_SEQUENCE)
				norm = 1.0 / ((double)a.S * (double)a.count[seq]);
			else if (on)
				norm = 1.0 / (double)a.count[a.S];
			A = (double)a.adv[a.adv_per_seq ? seq : t];
		} else {
			norm = (double)NAN;
		}
		struct swerve_pl_token tk =
		        swerve_pl_token_eval(&a.opts, logp, (double)a.logp_old[t], A, norm);
		if (a.ratio)
			a.ratio[t] = (float)tk.ratio;
		if (a.clipped)
			a.clipped[t] = (uint8_t)tk.clipped;
		a.terms[t] = tk.loss;
		coef = (float)tk.dlogp;
	}
	*ls_out = ls;
	*yo = yok ? y : -1;
	return coef;
}

/* This block's part of the target's logit, exactly: x_t . W[y] in fp32 FMAs
 * (thread-strided over d), summed over the warp; lane 0 holds it. */
__device__ __forceinline__ float target_logit(const row_args &a, int t)
{
	const int yt = a.targets[t];
	float zy = 0.f;
	if (yt >= 0 && yt < a.V) {
		const __nv_bfloat16 *x = a.X + (size_t)t * a.d;
		const float *w = a.W + (size_t)yt * a.d;
		for (int k = threadIdx.x; k < a.d; k += ROW_THREADS)
			zy = fmaf(__bfloat162float(x[k]), w[k], zy);
	}
#pragma unroll
	for (int off = 16; off > 0; off >>= 1)
		zy += __shfl_xor_sync(0xffffffffu, zy, off);
	return zy;
}

/* One block per token of the chunk. */
template <int P, bool VEC> __global__ void __launch_bounds__(ROW_THREADS) pl_row_kernel(row_args a)
{
	const int r = blockIdx.x, t = a.t0 + r, V = a.V;
	const float *z = a.Z + (size_t)r * V;
	__shared__ lse3 sh_part[ROW_THREADS / 32];
	__shared__ float sh_zy[ROW_THREADS / 32];
	__shared__ float sh_coef, sh_m, sh_ls2;
	__shared__ int sh_y;

	/* pass 1: online log-sum-exp and sum p z */
	lse3 acc = {-INFINITY, 0.f, 0.f};
	if (VEC) {
		const float4 *z4 = (const float4 *)z;
		for (int i = threadIdx.x; i < V / 4; i += ROW_THREADS) {
			float4 q = z4[i];
			lse_add(acc, q.x);
			lse_add(acc, q.y);
			lse_add(acc, q.z);
			lse_add(acc, q.w);
		}
	} else {
		for (int i = threadIdx.x; i < V; i += ROW_THREADS)
			lse_add(acc, z[i]);
	}
#pragma unroll
	for (int off = 16; off > 0; off >>= 1) {
		lse3 o;
		o.m = __shfl_xor_sync(0xffffffffu, acc.m, off);
		o.s = __shfl_xor_sync(0xffffffffu, acc.s, off);
		o.sz = __shfl_xor_sync(0xffffffffu, acc.sz, off);
		lse_merge(acc, o);
	}
	if ((threadIdx.x & 31) == 0)
		sh_part[threadIdx.x / 32] = acc;
	/* the target's logit again, exactly */
	const float zy = target_logit(a, t);
	if ((threadIdx.x & 31) == 0)
		sh_zy[threadIdx.x / 32] = zy;
	__syncthreads();
	if (threadIdx.x == 0) {
		double zyd = 0.0;
		for (int w = 0; w < ROW_THREADS / 32; w++)
			zyd += (double)sh_zy[w];
		for (int w = 1; w < ROW_THREADS / 32; w++)
			lse_merge(acc, sh_part[w]);
		double ls;
		sh_coef = row_token(a, t, acc, zyd, &ls, &sh_y);
		sh_m = acc.m;
		sh_ls2 = (float)(ls * 1.4426950408889634);
	}
	__syncthreads();
	if (a.opts.logprob_only)
		return;

	/* pass 2: dZ = coef * (onehot - p), p = 2^((z - m) log2 e - log2 s) */
	const float coef = sh_coef, m = sh_m, ls2 = sh_ls2;
	const int y = sh_y;
	if (VEC) {
		const float4 *z4 = (const float4 *)z;
		for (int i = threadIdx.x; i < V / 4; i += ROW_THREADS) {
			float4 g = make_float4(0.f, 0.f, 0.f, 0.f);
			if (coef != 0.f) {
				float4 q = z4[i];
				g.x = -coef * exp2f((q.x - m) * LOG2E - ls2);
				g.y = -coef * exp2f((q.y - m) * LOG2E - ls2);
				g.z = -coef * exp2f((q.z - m) * LOG2E - ls2);
				g.w = -coef * exp2f((q.w - m) * LOG2E - ls2);
				int v = 4 * i;
				if (y == v)
					g.x += coef;
				else if (y == v + 1)
					g.y += coef;
				else if (y == v + 2)
					g.z += coef;
				else if (y == v + 3)
					g.w += coef;
			}
			put_grad4<P>(a, r, 4 * i, g);
		}
	} else {
		for (int v = threadIdx.x; v < V; v += ROW_THREADS) {
			float g = 0.f;
			if (coef != 0.f) {
				g = -coef * exp2f((z[v] - m) * LOG2E - ls2);
				if (v == y)
					g += coef;
			}
			put_grad<P>(a, r, v, g);
		}
	}
}

/* The same with the row held in registers (V % 4 == 0, V <= 4 NC
 * ROW_THREADS): the logits are read once, the max taken first, and e^(z-m)
 * kept for the gradient pass (no second read, no second exp). */
/* The row math of both register-held row kernels, on the row's logits in
 * q (NC float4 a thread, -inf past V): the max, e = e^(z - m) in place, the
 * sums of e and e (z - m), row_token by thread 0, then dZ = coef (onehot -
 * p) into row r (unless logprob-only). The shared scalars are the caller's;
 * every thread calls it, and it ends after a barrier, so the caller may
 * reuse them once every thread has read sh_coef, sh_inv_s and sh_y. */
template <int P, int NC>
__device__ __forceinline__ void row_math(const row_args &a, int r, int t, float4 (&q)[NC], int V4,
                                         float *sh_a, float *sh_b, float *sh_zy, float &sh_coef,
                                         float &sh_inv_s, float &sh_mx, int &sh_y)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
	float m = -INFINITY;
#pragma unroll
	for (int j = 0; j < NC; j++)
		m = fmaxf(m, fmaxf(fmaxf(q[j].x, q[j].y), fmaxf(q[j].z, q[j].w)));
#pragma unroll
	for (int off = 16; off > 0; off >>= 1)
		m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
	const float zy = target_logit(a, t);
	if (lane == 0) {
		sh_a[warp] = m;
		sh_zy[warp] = zy;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		float mm = sh_a[0];
		for (int w = 1; w < ROW_THREADS / 32; w++)
			mm = fmaxf(mm, sh_a[w]);
		sh_mx = mm;
	}
	__syncthreads();
	m = sh_mx;
	/* e = e^(z - m) in place; sums of e and e (z - m) */
	float se = 0.f, sz = 0.f;
#pragma unroll
	for (int j = 0; j < NC; j++) {
		if (threadIdx.x + j * ROW_THREADS < V4) {
			float d0 = q[j].x - m, d1 = q[j].y - m, d2 = q[j].z - m, d3 = q[j].w - m;
			q[j].x = exp2f(d0 * LOG2E);
			q[j].y = exp2f(d1 * LOG2E);
			q[j].z = exp2f(d2 * LOG2E);
			q[j].w = exp2f(d3 * LOG2E);
			se += (q[j].x + q[j].y) + (q[j].z + q[j].w);
			sz += (q[j].x * d0 + q[j].y * d1) + (q[j].z * d2 + q[j].w * d3);
		}
	}
#pragma unroll
	for (int off = 16; off > 0; off >>= 1) {
		se += __shfl_xor_sync(0xffffffffu, se, off);
		sz += __shfl_xor_sync(0xffffffffu, sz, off);
	}
	__syncthreads(); /* sh_a was read by thread 0 above */
	if (lane == 0) {
		sh_a[warp] = se;
		sh_b[warp] = sz;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		lse3 acc = {m, 0.f, 0.f};
		double zyd = 0.0;
		for (int w = 0; w < ROW_THREADS / 32; w++) {
			acc.s += sh_a[w];
			acc.sz += sh_b[w];
			zyd += (double)sh_zy[w];
		}
		double ls;
		sh_coef = row_token(a, t, acc, zyd, &ls, &sh_y);
		sh_inv_s = 1.0f / acc.s;
	}
	__syncthreads();
	if (a.opts.logprob_only)
		return;

	/* dZ = coef * (onehot - p), p = e / s */
	const float coef = sh_coef, cs = -sh_coef * sh_inv_s;
	const int y = sh_y;
#pragma unroll
	for (int j = 0; j < NC; j++) {
		const int i = threadIdx.x + j * ROW_THREADS;
		if (i < V4) {
			float4 g = make_float4(0.f, 0.f, 0.f, 0.f);
			if (coef != 0.f) {
				g = make_float4(cs * q[j].x, cs * q[j].y, cs * q[j].z, cs * q[j].w);
				const int v = 4 * i;
				if (y == v)
					g.x += coef;
				else if (y == v + 1)
					g.y += coef;
				else if (y == v + 2)
					g.z += coef;
				else if (y == v + 3)
					g.w += coef;
			}
			put_grad4<P>(a, r, 4 * i, g);
		}
	}
}

template <int P, int NC>
__global__ void __launch_bounds__(ROW_THREADS) pl_row_kernel_reg(row_args a)
{
	const int r = blockIdx.x, t = a.t0 + r, V4 = a.V / 4;
	const float4 *z4 = (const float4 *)(a.Z + (size_t)r * a.V);
	__shared__ float sh_a[ROW_THREADS / 32], sh_b[ROW_THREADS / 32], sh_zy[ROW_THREADS / 32];
	__shared__ float sh_coef, sh_inv_s, sh_mx;
	__shared__ int sh_y;

	float4 q[NC];
#pragma unroll
	for (int j = 0; j < NC; j++) {
		const int i = threadIdx.x + j * ROW_THREADS;
		q[j] = i < V4 ? z4[i] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
	}
	row_math<P, NC>(a, r, t, q, V4, sh_a, sh_b, sh_zy, sh_coef, sh_inv_s, sh_mx, sh_y);
}

/* W (V, d) fp32 -> Wp (V, P d) bf16 rows [W0 | W1 | ...], W = W0 + W1 + ... */
template <int P>
__global__ void pl_split_w(const float *__restrict__ W, size_t V, int d,
                           __nv_bfloat16 *__restrict__ Wp)
{
	const size_t n = V * (size_t)d;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		size_t v = i / (size_t)d, k = i % (size_t)d;
		float w = W[i];
		__nv_bfloat16 *o = Wp + v * (size_t)P * d + k;
#pragma unroll
		for (int p = 0; p < P; p++) {
			__nv_bfloat16 h = __float2bfloat16_rn(w);
			o[(size_t)p * d] = h;
			w -= __bfloat162float(h);
		}
	}
}

__global__ void pl_bf16_to_f32(const __nv_bfloat16 *__restrict__ x, size_t n, float *__restrict__ y)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __bfloat162float(x[i]);
}

/* count[s] = masked tokens of sequence s, count[S] = all masked tokens */
__global__ void pl_count(const uint8_t *mask, const int32_t *seq_idx, int N, int S, int *count)
{
	for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < N; t += gridDim.x * blockDim.x) {
		if (mask && !mask[t])
			continue;
		int s = seq_idx ? seq_idx[t] : 0;
		if (s < 0 || s >= S)
			continue;
		atomicAdd(&count[s], 1);
		atomicAdd(&count[S], 1);
	}
}

/* One block: loss = sum of the per-token terms, in double, fixed order. */
__global__ void __launch_bounds__(1024) pl_loss_sum(const double *terms, int N, float *loss)
{
	__shared__ double sh[1024];
	double acc = 0.0;
	for (int t = threadIdx.x; t < N; t += 1024)
		acc += terms[t];
	sh[threadIdx.x] = acc;
	__syncthreads();
	for (int s = 512; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0)
		*loss = (float)sh[0];
}

/* ---- the persistent row kernel with the next row prefetched (row_reread = 2) ----
 *
 * Opt-in (SWERVE_PL_ROWS_PREFETCH; the policy's POLICY_GPU_HEAD_ROWS=prefetch).
 * Measured (H100, 2026-11-27, T 8192 V 32000 FP32_FWD): bit-identical to the
 * register kernel on every output byte; the row phase 0.87 -> 0.77 ms (the
 * prediction was 0.60: the per-row critical path, not the load, limits it),
 * the whole head 3.71 -> 3.68 ms, and no gain end to end (gpu_train K = 4
 * 23.3 / 23.5 ms, within noise): kept opt-in. The register
 * kernel above runs one 512-thread block a row and fits one block an SM (128
 * registers a thread), so a row's load, its reductions and the per-token math
 * never overlap (H100: 0.83 ms for 8192 x 32000, ~1.9 TB/s). Here one block an
 * SM walks rows r = blockIdx.x, + gridDim.x, ...: row k+1 is bulk-copied
 * (cp.async.bulk, completion counted on an mbarrier) into shared memory while
 * row k, already copied into registers, is reduced and its dZ written. The
 * math after the load is the register kernel's, line for line (same
 * reductions, same order, row_token, put_grad4): the outputs are bit-identical
 * to SWERVE_PL_ROWS_REG's. Shared memory: one row (V 4 bytes, <= 128 KiB).
 *
 * Why no wait can hang (each block, independently): the barrier is set up
 * with an arrival count of 1. Phase k of it is the block's k-th row
 * r_k = blockIdx.x + k gridDim.x. Thread 0 gives phase k its one arrival
 * (mbarrier.arrive.expect_tx with exactly V 4 bytes) and issues copies that
 * total exactly V 4 bytes (pf_load_row: pieces of PF_PIECE, the last one
 * the rest, all multiples of 16 since V % 4 == 0): for k = 0 before the loop
 * under r_0 < rows, for k >= 1 in iteration k-1 under r_{k-1} + gridDim.x
 * < rows, i.e. r_k < rows, the very condition under which iteration k runs
 * and waits on phase k (parity k & 1). The conditions depend only on
 * blockIdx, gridDim and rows (uniform in the block); the loop has no break,
 * return or continue, and logprob_only only skips the dZ stores. Phase k+1's
 * arrival is issued after thread 0 itself passed phase k's wait, so at most
 * one phase is ever pending and a parity wait cannot confuse k with k+2.
 * The copy into the buffer that row k was read from happens after a
 * __syncthreads that follows every thread's reads of it (and a
 * fence.proxy.async, since the copy is an async-proxy write). A faulting
 * copy (bad Z) traps the kernel (an error from the next CUDA call), it does
 * not hang. */

#define PF_PIECE 32768u /* bytes per bulk copy; a row is V 4 bytes */

__device__ __forceinline__ uint32_t pf_smem(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void pf_bar_init(uint32_t bar, uint32_t count)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
	asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void pf_l1(const void *p)
{
	asm volatile("prefetch.global.L1 [%0];\n" ::"l"(p));
}

/* thread 0 only: phase's one arrival, expecting `bytes`, then the copies of
 * the row (bytes in all) from global src into shared dst */
__device__ __forceinline__ void pf_load_row(uint32_t bar, uint32_t dst, const float *src,
                                            uint32_t bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
	             "r"(bytes)
	             : "memory");
	for (uint32_t off = 0; off < bytes; off += PF_PIECE) {
		const uint32_t n = bytes - off < PF_PIECE ? bytes - off : PF_PIECE;
		asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
		             "[%0], [%1], %2, [%3];\n" ::"r"(dst + off),
		             "l"((const char *)src + off), "r"(n), "r"(bar)
		             : "memory");
	}
}

/* rows: the sub-chunk's rows; the grid is at most rows blocks (one an SM) */
template <int P, int NC>
__global__ void __launch_bounds__(ROW_THREADS, 1) pl_row_kernel_pf(row_args a, int rows)
{
	extern __shared__ __align__(128) float4 sh_row[]; /* (V / 4) the row in flight */
	__shared__ __align__(8) uint64_t sh_bar;
	__shared__ float sh_a[ROW_THREADS / 32], sh_b[ROW_THREADS / 32], sh_zy[ROW_THREADS / 32];
	__shared__ float sh_coef, sh_inv_s, sh_mx;
	__shared__ int sh_y;
	const int V4 = a.V / 4;
	const uint32_t bar = pf_smem(&sh_bar), buf = pf_smem(sh_row);
	const uint32_t bytes = (uint32_t)a.V * 4u;

	if (threadIdx.x == 0)
		pf_bar_init(bar, 1);
	__syncthreads();
	if (threadIdx.x == 0 && (int)blockIdx.x < rows) /* phase 0: row r_0 */
		pf_load_row(bar, buf, a.Z + (size_t)blockIdx.x * a.V, bytes);
	uint32_t parity = 0;
	for (int r = blockIdx.x; r < rows; r += gridDim.x) {
		const int t = a.t0 + r;
		ptx::mbar_wait(bar, parity);
		parity ^= 1u;
		float4 q[NC];
#pragma unroll
		for (int j = 0; j < NC; j++) {
			const int i = threadIdx.x + j * ROW_THREADS;
			q[j] = i < V4 ? sh_row[i]
			              : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
		}
		/* every thread's reads of sh_row done (and of last row's shared scalars) */
		__syncthreads();
		if (threadIdx.x == 0 && r + (int)gridDim.x < rows) { /* phase k+1: row r_{k+1} */
			asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
			pf_load_row(bar, buf, a.Z + (size_t)(r + gridDim.x) * a.V, bytes);
		}

		/* the per-token scalars thread 0 reads in row_token, one dependent
		 * global load after another: asked into L1 now, ~2 reductions ahead */
		if (threadIdx.x == 32 && !a.opts.logprob_only) { /* valid addresses only */
			const int seq = a.seq_idx ? a.seq_idx[t] : 0;
			pf_l1(a.logp_old + t);
			if (!a.adv_per_seq)
				pf_l1(a.adv + t);
			else if (seq >= 0 && seq < a.S)
				pf_l1(a.adv + seq);
			if (a.mask)
				pf_l1(a.mask + t);
		}

		row_math<P, NC>(a, r, t, q, V4, sh_a, sh_b, sh_zy, sh_coef, sh_inv_s, sh_mx, sh_y);
		/* the next iteration's first shared write (sh_a) comes after its
		 * __syncthreads, which every thread reaches after row_math's reads */
	}
}

/* ---- round 19: the lean row kernels (row_reread 3 and 4) -------------------
 *
 * Opt-in (SWERVE_PL_ROWS_LEAN / _STREAM, or the env switch SWERVE_PL_ROWS=
 * lean|stream read by swerve_policy_loss_cuda). The register kernel spends a
 * row's time mostly outside its load (one block an SM, 128 registers a
 * thread): five barriers, the target logit's loads issued only after the max
 * (a second memory latency), and thread 0's row_token, which loads the
 * token's mask, sequence, count, advantage and old log-prob one after the
 * other (each store to an output may alias them). Both kernels here:
 *   - load the per-token inputs (tok_load) and issue the target logit's loads
 *     at the start, beside the row's own loads;
 *   - have every thread read the 16 warps' partials after one barrier (the
 *     same values in the same order as thread 0 in row_math) and evaluate
 *     the token itself (tok_eval: row_token's double math on the preloaded
 *     values), so two barriers a row instead of five; thread 0 writes the
 *     per-token outputs.
 * LEAN holds the row in registers like the register kernel (one block an SM).
 * STREAM holds none of it: 64 registers a thread, two blocks an SM, so one
 * row's load overlaps the other's math; it reads the row three times (max;
 * e^(z-m) and its sums; the gradient, recomputing e^(z-m) by the same
 * expression), the second and third from L2 (2 rows an SM = 34 MB at V
 * 32000), the third and the dZ stores with evict-first hints.
 * Each thread covers the same elements (i = tid + 512 j) in the same order
 * with the same expressions as row_math, so the outputs are meant to be bit
 * for bit the register kernel's (test_policy_loss compares every byte). */

/* row_token's inputs that do not depend on the row */
struct tok_in {
	int y, yok;
	double norm, A, old;
};

__device__ __forceinline__ tok_in tok_load(const row_args &a, int t)
{
	tok_in k;
	k.y = a.targets[t];
	k.yok = k.y >= 0 && k.y < a.V;
	k.norm = 0.0;
	k.A = (double)NAN;
	k.old = 0.0;
	if (!a.opts.logprob_only) {
		const int on = !a.mask || a.mask[t];
		const int seq = a.seq_idx ? a.seq_idx[t] : 0;
		if (seq >= 0 && seq < a.S) {
			if (on && a.opts.norm == SWERVE_PL_NORM_SEQUENCE)
				k.norm = 1.0 / ((double)a.S * (double)a.count[seq]);
			else if (on)
				k.norm = 1.0 / (double)a.count[a.S];
			k.A = (double)a.adv[a.adv_per_seq ? seq : t];
		} else {
			k.norm = (double)NAN;
		}
		k.old = (double)a.logp_old[t];
	}
	return k;
}

/* row_token on preloaded inputs, by every thread (the same result in each);
 * thread 0 writes the outputs. Returns coef (dlogp as float). */
__device__ __forceinline__ float tok_eval(const row_args &a, int t, const tok_in &k, lse3 acc,
                                          double zyd)
{
	const double ls = log((double)acc.s);
	const double lse = (double)acc.m + ls;
	const double logp = k.yok ? zyd - lse : (double)NAN;
	const bool w0 = threadIdx.x == 0;
	if (w0) {
		a.logp[t] = (float)logp;
		if (a.entropy)
			a.entropy[t] = (float)(ls - (double)acc.sz / (double)acc.s);
	}
	float coef = 0.f;
	if (!a.opts.logprob_only) {
		struct swerve_pl_token tk = swerve_pl_token_eval(&a.opts, logp, k.old, k.A, k.norm);
		if (w0) {
			if (a.ratio)
				a.ratio[t] = (float)tk.ratio;
			if (a.clipped)
				a.clipped[t] = (uint8_t)tk.clipped;
			a.terms[t] = tk.loss;
		}
		coef = (float)tk.dlogp;
	}
	return coef;
}

/* target_logit with the target already loaded */
__device__ __forceinline__ float target_logit_y(const row_args &a, int t, int yt)
{
	float zy = 0.f;
	if (yt >= 0 && yt < a.V) {
		const __nv_bfloat16 *x = a.X + (size_t)t * a.d;
		const float *w = a.W + (size_t)yt * a.d;
		for (int k = threadIdx.x; k < a.d; k += ROW_THREADS)
			zy = fmaf(__bfloat162float(x[k]), w[k], zy);
	}
#pragma unroll
	for (int off = 16; off > 0; off >>= 1)
		zy += __shfl_xor_sync(0xffffffffu, zy, off);
	return zy;
}

/* e = e^(z - m) of one float4 in place, adding to the sums (row_math's
 * expressions) */
__device__ __forceinline__ void exp_sum4(float4 &q, float m, float &se, float &sz)
{
	float d0 = q.x - m, d1 = q.y - m, d2 = q.z - m, d3 = q.w - m;
	q.x = exp2f(d0 * LOG2E);
	q.y = exp2f(d1 * LOG2E);
	q.z = exp2f(d2 * LOG2E);
	q.w = exp2f(d3 * LOG2E);
	se += (q.x + q.y) + (q.z + q.w);
	sz += (q.x * d0 + q.y * d1) + (q.z * d2 + q.w * d3);
}

/* dZ of one float4 of e (row_math's expressions) */
__device__ __forceinline__ float4 grad4(float4 e, float coef, float cs, int y, int i)
{
	float4 g = make_float4(cs * e.x, cs * e.y, cs * e.z, cs * e.w);
	const int v = 4 * i;
	if (y == v)
		g.x += coef;
	else if (y == v + 1)
		g.y += coef;
	else if (y == v + 2)
		g.z += coef;
	else if (y == v + 3)
		g.w += coef;
	return g;
}

#define LEAN_NB 8 /* STREAM: float4 loads in flight a thread (a batch) */

/* HINT (STREAM only): the third read and the dZ stores evict-first
 * (ld/st.global.cs); false = plain loads and stores (STREAM_PLAIN) */
template <int P, int NC, bool STREAM, bool HINT = true>
__global__ void __launch_bounds__(ROW_THREADS, STREAM ? 2 : 1) pl_row_kernel_lean(row_args a)
{
	const int r = blockIdx.x, t = a.t0 + r, V4 = a.V / 4;
	const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
	const float4 *z4 = (const float4 *)(a.Z + (size_t)r * a.V);
	__shared__ float sh_m[ROW_THREADS / 32], sh_zy[ROW_THREADS / 32];
	__shared__ float sh_s[ROW_THREADS / 32], sh_sz[ROW_THREADS / 32];
	static_assert(NC % LEAN_NB == 0, "NC must be a multiple of LEAN_NB");

	const tok_in k = tok_load(a, t);
	float4 q[STREAM ? LEAN_NB : NC];
	float m = -INFINITY;
	if (!STREAM) {
#pragma unroll
		for (int j = 0; j < NC; j++) {
			const int i = threadIdx.x + j * ROW_THREADS;
			q[j] = i < V4 ? z4[i]
			              : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
		}
	}
	const float zy = target_logit_y(a, t, k.y);
	if (!STREAM) {
#pragma unroll
		for (int j = 0; j < NC; j++)
			m = fmaxf(m, fmaxf(fmaxf(q[j].x, q[j].y), fmaxf(q[j].z, q[j].w)));
	} else {
#pragma unroll 1
		for (int j0 = 0; j0 < NC; j0 += LEAN_NB) {
#pragma unroll
			for (int j = 0; j < LEAN_NB; j++) {
				const int i = threadIdx.x + (j0 + j) * ROW_THREADS;
				q[j] = i < V4 ? z4[i]
				              : make_float4(-INFINITY, -INFINITY, -INFINITY,
				                            -INFINITY);
			}
#pragma unroll
			for (int j = 0; j < LEAN_NB; j++)
				m = fmaxf(m, fmaxf(fmaxf(q[j].x, q[j].y), fmaxf(q[j].z, q[j].w)));
		}
	}
#pragma unroll
	for (int off = 16; off > 0; off >>= 1)
		m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
	if (lane == 0) {
		sh_m[warp] = m;
		sh_zy[warp] = zy;
	}
	__syncthreads();
	{
		float mm = sh_m[0];
		for (int w = 1; w < ROW_THREADS / 32; w++)
			mm = fmaxf(mm, sh_m[w]);
		m = mm;
	}
	/* e = e^(z - m); sums of e and e (z - m), in row_math's order */
	float se = 0.f, sz = 0.f;
	if (!STREAM) {
#pragma unroll
		for (int j = 0; j < NC; j++)
			if (threadIdx.x + j * ROW_THREADS < V4)
				exp_sum4(q[j], m, se, sz);
	} else {
#pragma unroll 1
		for (int j0 = 0; j0 < NC; j0 += LEAN_NB) {
#pragma unroll
			for (int j = 0; j < LEAN_NB; j++) {
				const int i = threadIdx.x + (j0 + j) * ROW_THREADS;
				if (i < V4)
					q[j] = z4[i];
			}
#pragma unroll
			for (int j = 0; j < LEAN_NB; j++)
				if (threadIdx.x + (j0 + j) * ROW_THREADS < V4)
					exp_sum4(q[j], m, se, sz);
		}
	}
#pragma unroll
	for (int off = 16; off > 0; off >>= 1) {
		se += __shfl_xor_sync(0xffffffffu, se, off);
		sz += __shfl_xor_sync(0xffffffffu, sz, off);
	}
	if (lane == 0) {
		sh_s[warp] = se;
		sh_sz[warp] = sz;
	}
	__syncthreads();
	lse3 acc = {m, 0.f, 0.f};
	double zyd = 0.0;
	for (int w = 0; w < ROW_THREADS / 32; w++) {
		acc.s += sh_s[w];
		acc.sz += sh_sz[w];
		zyd += (double)sh_zy[w];
	}
	const float coef = tok_eval(a, t, k, acc, zyd);
	if (a.opts.logprob_only)
		return;

	/* dZ = coef * (onehot - p), p = e / s */
	const float inv_s = 1.0f / acc.s, cs = -coef * inv_s;
	const int y = k.yok ? k.y : -1;
	if (!STREAM) {
#pragma unroll
		for (int j = 0; j < NC; j++) {
			const int i = threadIdx.x + j * ROW_THREADS;
			if (i < V4) {
				float4 g = make_float4(0.f, 0.f, 0.f, 0.f);
				if (coef != 0.f)
					g = grad4(q[j], coef, cs, y, i);
				put_grad4<P>(a, r, 4 * i, g);
			}
		}
	} else {
#pragma unroll 1
		for (int j0 = 0; j0 < NC; j0 += LEAN_NB) {
			if (coef != 0.f) {
#pragma unroll
				for (int j = 0; j < LEAN_NB; j++) {
					const int i = threadIdx.x + (j0 + j) * ROW_THREADS;
					if (i < V4)
						q[j] = HINT ? __ldcs(z4 + i) : z4[i];
				}
			}
#pragma unroll
			for (int j = 0; j < LEAN_NB; j++) {
				const int i = threadIdx.x + (j0 + j) * ROW_THREADS;
				if (i < V4) {
					float4 g = make_float4(0.f, 0.f, 0.f, 0.f);
					if (coef != 0.f) {
						float e0 = 0.f,
						      e1 = 0.f; /* the sums are not needed */
						exp_sum4(q[j], m, e0, e1);
						g = grad4(q[j], coef, cs, y, i);
					}
					if (HINT)
						put_grad4<P, true>(a, r, 4 * i, g);
					else
						put_grad4<P>(a, r, 4 * i, g);
				}
			}
		}
	}
}

/* ---- host side ------------------------------------------------------------- */

extern "C" int swerve_pl_check_args(const struct swerve_pl_out *out,
                                    const struct swerve_pl_batch *b, const void *X, const void *W,
                                    const struct swerve_pl_opts *o);

#define CUDA_TRY(call, what)                                                                       \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess)                                                             \
			return swerve_error_set(SWERVE_ERROR, "policy loss: %s: %s", what,         \
			                        cudaGetErrorString(e_));                           \
	} while (0)

#define BLAS_TRY(call, what)                                                                       \
	do {                                                                                       \
		cublasStatus_t s_ = (call);                                                        \
		if (s_ != CUBLAS_STATUS_SUCCESS)                                                   \
			return swerve_error_set(SWERVE_ERROR, "policy loss: cuBLAS %s: %s", what,  \
			                        cublasGetStatusString(s_));                        \
	} while (0)

/* W (ctx->split_w) into its ctx->split_parts bf16 parts at ctx->split_wp
 * (in ctx->split_ws); the kept split forgotten if the launch fails */
static int split_w_launch(struct swerve_pl_ctx *ctx, cudaStream_t st)
{
	const int PW = ctx->split_parts, d = ctx->split_d;
	const size_t V = (size_t)ctx->split_v, n = V * d;
	const float *W = ctx->split_w;
	__nv_bfloat16 *Wp = ctx->split_wp;
	int blocks = (int)((n + 255) / 256 < 132 * 16 ? (n + 255) / 256 : 132 * 16);
	if (PW == 3)
		pl_split_w<3><<<blocks, 256, 0, st>>>(W, V, d, Wp);
	else if (PW == 2)
		pl_split_w<2><<<blocks, 256, 0, st>>>(W, V, d, Wp);
	else
		pl_split_w<1><<<blocks, 256, 0, st>>>(W, V, d, Wp);
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess) {
		ctx->split_parts = 0;
		return swerve_error_set(SWERVE_ERROR, "policy loss: split W kernel: %s",
		                        cudaGetErrorString(e));
	}
	return 0;
}

extern "C" int swerve_pl_resplit_w(struct swerve_pl_ctx *ctx, struct CUstream_st *stream)
{
	if (!ctx || !ctx->split_parts)
		return 0;
	int rc = split_w_launch(ctx, (cudaStream_t)stream);
	return rc ? rc : 1;
}

extern "C" int swerve_pl_ctx_new(struct swerve_pl_ctx **out)
{
	int tune;
	if (swerve_gemm_tune_setting(&tune))
		return SWERVE_EINVAL;
	struct swerve_pl_ctx *c = new (std::nothrow) swerve_pl_ctx;
	if (!c)
		return swerve_error_set(SWERVE_ENOMEM, "policy loss: out of memory for a context");
	cublasStatus_t st = cublasCreate(&c->h);
	if (st != CUBLAS_STATUS_SUCCESS) {
		delete c;
		return swerve_error_set(SWERVE_ERROR, "policy loss: cublasCreate: %s",
		                        cublasGetStatusString(st));
	}
	cublasSetMathMode(c->h, (cublasMath_t)(CUBLAS_DEFAULT_MATH |
	                                       CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
	c->gemm_tune = tune;
	c->prof = 0;
	c->ev[0] = c->ev[1] = NULL;
	c->pf_blocks[0] = c->pf_blocks[1] = c->pf_blocks[2] = 0;
	c->split_w = NULL;
	c->split_ws = NULL;
	c->split_wp = NULL;
	c->split_parts = c->split_v = c->split_d = 0;
	for (int i = 0; i < SWERVE_PL_NPHASES; i++)
		c->prof_ms[i] = 0.0;
	*out = c;
	return 0;
}

extern "C" void swerve_pl_ctx_free(struct swerve_pl_ctx *c)
{
	if (!c)
		return;
	cublasDestroy(c->h);
	for (int i = 0; i < 2; i++)
		if (c->ev[i])
			cudaEventDestroy(c->ev[i]);
	delete c;
}

extern "C" const char *swerve_pl_phase_name(int ph)
{
	static const char *const names[SWERVE_PL_NPHASES] = {"prep (count, split W)",
	                                                     "X copies",
	                                                     "forward GEMM",
	                                                     "row kernel",
	                                                     "dX GEMM",
	                                                     "dW GEMM",
	                                                     "loss sum"};
	return ph >= 0 && ph < SWERVE_PL_NPHASES ? names[ph] : "?";
}

extern "C" int swerve_pl_profile(struct swerve_pl_ctx *c, int on)
{
	if (!c)
		return swerve_error_set(SWERVE_EINVAL, "policy loss: profile: no context");
	for (int i = 0; i < 2 && on; i++)
		if (!c->ev[i])
			CUDA_TRY(cudaEventCreate(&c->ev[i]), "profile: cudaEventCreate");
	c->prof = on;
	for (int i = 0; i < SWERVE_PL_NPHASES; i++)
		c->prof_ms[i] = 0.0;
	return 0;
}

extern "C" void swerve_pl_profile_read(const struct swerve_pl_ctx *c, double ms[SWERVE_PL_NPHASES])
{
	for (int i = 0; i < SWERVE_PL_NPHASES; i++)
		ms[i] = c ? c->prof_ms[i] : 0.0;
}

/* profiling: the GPU time since the last mark (or the call's start) goes to
 * phase ph; a no-op unless profiling is on */
static int prof_mark(struct swerve_pl_ctx *c, int ph, cudaStream_t st)
{
	if (!c->prof)
		return 0;
	float t = 0.f;
	CUDA_TRY(cudaEventRecord(c->ev[1], st), "profile: event record");
	CUDA_TRY(cudaEventSynchronize(c->ev[1]), "profile: event sync");
	if (ph >= 0) {
		CUDA_TRY(cudaEventElapsedTime(&t, c->ev[0], c->ev[1]), "profile: elapsed");
		c->prof_ms[ph] += t;
	}
	CUDA_TRY(cudaEventRecord(c->ev[0], st), "profile: event record");
	return 0;
}

#define ROW_NC 16 /* float4 a thread in the register-held row kernel: V <= 32768 */

/* the persistent kernel's blocks a multiprocessor (one: 512 threads of up
 * to 128 registers, up to 128 KiB of shared memory) times the
 * multiprocessors; asked once a context (the first launch; its profile
 * counts it in the row phase), each launch then takes at most its rows.
 * The shared-memory limit is set for the largest row, V = 4 ROW_NC
 * ROW_THREADS, so it holds for every V the kernel runs. */
template <int P> static int pf_blocks(int *blocks)
{
	const size_t smem = (size_t)ROW_NC * ROW_THREADS * 16;
	int dev = 0, sms = 0, per_sm = 0;
	CUDA_TRY(cudaGetDevice(&dev), "row kernel: cudaGetDevice");
	CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
	         "row kernel: multiprocessor count");
	CUDA_TRY(cudaFuncSetAttribute(pl_row_kernel_pf<P, ROW_NC>,
	                              cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
	         "row kernel: shared memory size");
	CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, pl_row_kernel_pf<P, ROW_NC>,
	                                                       ROW_THREADS, smem),
	         "row kernel: occupancy");
	if (per_sm < 1 || sms < 1)
		return swerve_error_set(SWERVE_ERROR,
		                        "policy loss: row kernel: the prefetching kernel does not "
		                        "fit a multiprocessor (%zu bytes of shared memory)",
		                        smem);
	*blocks = sms * per_sm;
	return 0;
}

/* mode: opts.row_reread (SWERVE_PL_ROWS_*; PREFETCH goes to launch_rows_pf
 * where the row fits) */
template <int P>
static void launch_rows(const row_args &a, int rows, bool vec, int mode, cudaStream_t st)
{
	if (vec && mode == SWERVE_PL_ROWS_REG && a.V / 4 <= ROW_NC * ROW_THREADS)
		pl_row_kernel_reg<P, ROW_NC><<<rows, ROW_THREADS, 0, st>>>(a);
	else if (vec && mode == SWERVE_PL_ROWS_LEAN && a.V / 4 <= ROW_NC * ROW_THREADS)
		pl_row_kernel_lean<P, ROW_NC, false><<<rows, ROW_THREADS, 0, st>>>(a);
	else if (vec && mode == SWERVE_PL_ROWS_STREAM && a.V / 4 <= ROW_NC * ROW_THREADS)
		pl_row_kernel_lean<P, ROW_NC, true><<<rows, ROW_THREADS, 0, st>>>(a);
	else if (vec && mode == SWERVE_PL_ROWS_STREAM_PLAIN && a.V / 4 <= ROW_NC * ROW_THREADS)
		pl_row_kernel_lean<P, ROW_NC, true, false><<<rows, ROW_THREADS, 0, st>>>(a);
	else if (vec)
		pl_row_kernel<P, true><<<rows, ROW_THREADS, 0, st>>>(a);
	else
		pl_row_kernel<P, false><<<rows, ROW_THREADS, 0, st>>>(a);
}

/* SWERVE_PL_ROWS_PREFETCH (V % 4 == 0, V <= 4 ROW_NC ROW_THREADS); *blocks:
 * the context's pf_blocks[P], asked on the first launch */
template <int P>
static int launch_rows_pf(const row_args &a, int rows, int *blocks, cudaStream_t st)
{
	int rc;
	if (!*blocks && (rc = pf_blocks<P>(blocks)))
		return rc;
	const int grid = *blocks < rows ? *blocks : rows;
	pl_row_kernel_pf<P, ROW_NC><<<grid, ROW_THREADS, (size_t)a.V * 4, st>>>(a, rows);
	return 0;
}

/* SWERVE_PL_ROWS = reg | twopass | prefetch | lean | stream | stream-plain picks the row
 * kernel in place of opts.row_reread (SWERVE_PL_ROWS_*, in that order), read
 * at each call so that a caller that does not set row_reread (the policy)
 * can be switched; unset or empty: opts.row_reread. Anything else is an
 * error naming it. */
static int rows_mode(const struct swerve_pl_opts *o, int *mode)
{
	static const char *const names[] = {"reg",  "twopass", "prefetch",
	                                    "lean", "stream",  "stream-plain"};
	const char *e = getenv("SWERVE_PL_ROWS");
	*mode = o->row_reread;
	if (!e || !*e)
		return 0;
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (!strcmp(e, names[i])) {
			*mode = i;
			return 0;
		}
	return swerve_error_set(SWERVE_EINVAL,
	                        "policy loss: SWERVE_PL_ROWS=%s: must be reg, twopass, prefetch, "
	                        "lean, stream or stream-plain",
	                        e);
}

/* fp32 C = op(A) op(B) + beta C, A and B of type at, on the context's handle
 * (its stream set by the caller) */
static int gemm(const struct swerve_pl_ctx *ctx, cublasOperation_t ta, cublasOperation_t tb, int m,
                int n, int k, const void *A, cudaDataType at, int lda, const void *B, int ldb,
                float beta, float *C, int ldc, cublasComputeType_t ct, const char *what)
{
	const struct swerve_gemm c = {ta, tb,   m, n,          k,   A, lda, 0,  B, ldb, 0,
	                              at, beta, C, CUDA_R_32F, ldc, 0, 1,   ct, 0, NULL};
	BLAS_TRY((cublasStatus_t)swerve_gemm_run(ctx->h, ctx->gemm_tune, NULL, 0, &c), what);
	return 0;
}

extern "C" int swerve_policy_loss_cuda(struct swerve_pl_ctx *ctx, const struct swerve_pl_out *out,
                                       const struct swerve_pl_batch *b, const uint16_t *X,
                                       const float *W, const struct swerve_pl_opts *o,
                                       void *workspace, size_t workspace_bytes,
                                       struct CUstream_st *stream)
{
	int rc = swerve_pl_check_args(out, b, X, W, o);
	if (rc || (rc = wparts_checked()))
		return rc;
	if (!ctx)
		return swerve_error_set(SWERVE_EINVAL,
		                        "policy loss: no context (call swerve_pl_ctx_new)");
	const struct pl_layout L = layout_of(b, o);
	if (!workspace || workspace_bytes < L.total || ((uintptr_t)workspace & 255))
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "policy loss: workspace: %zu bytes at %p, need %zu bytes, 256-byte aligned",
		        workspace_bytes, workspace, L.total);
	cudaStream_t st = (cudaStream_t)stream;
	BLAS_TRY(cublasSetStream(ctx->h, st), "set stream");

	const int N = b->n_tokens, d = b->d, V = b->vocab, S = b->seq_idx ? b->n_seqs : 1;
	const int PW = L.PW, PZ = L.PZ, C = L.C, R = L.R, grad = !o->logprob_only;
	char *ws = (char *)workspace;
	__nv_bfloat16 *Wp = (__nv_bfloat16 *)(ws + L.wp);
	float *Z = (float *)(ws + L.z);
	__nv_bfloat16 *dzs = (__nv_bfloat16 *)(ws + L.dzs);
	__nv_bfloat16 *X3 = (__nv_bfloat16 *)(ws + L.x3);
	__nv_bfloat16 *X3r = (__nv_bfloat16 *)(ws + L.x3r);
	float *Xf = (float *)(ws + L.xf);
	double *terms = (double *)(ws + L.terms);
	int *count = (int *)(ws + L.count);
	const __nv_bfloat16 *Xb = (const __nv_bfloat16 *)X;
	const bool vec = V % 4 == 0;
	int rows_kind;
	if ((rc = rows_mode(o, &rows_kind)))
		return rc;
	/* the persistent prefetching row kernel, where asked for and the row fits */
	const bool pf =
	        vec && rows_kind == SWERVE_PL_ROWS_PREFETCH && V / 4 <= ROW_NC * ROW_THREADS;
	const cublasComputeType_t ct = PW == 0 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;

	if ((rc = prof_mark(ctx, -1, st)))
		return rc;
	if (grad) {
		CUDA_TRY(cudaMemsetAsync(count, 0, ((size_t)S + 1) * sizeof(int), st), "memset");
		pl_count<<<(N + 255) / 256, 256, 0, st>>>(b->mask, b->seq_idx, N, S, count);
		CUDA_TRY(cudaGetLastError(), "count kernel");
	}
	const bool split_kept = o->w_split_ready && ctx->split_parts == PW && ctx->split_w == W &&
	                        ctx->split_ws == workspace && ctx->split_v == V &&
	                        ctx->split_d == d;
	if (PW > 0 && !split_kept) {
		ctx->split_w = W;
		ctx->split_ws = workspace;
		ctx->split_wp = Wp;
		ctx->split_parts = PW;
		ctx->split_v = V;
		ctx->split_d = d;
		if ((rc = split_w_launch(ctx, st)))
			return rc;
	}
	if ((rc = prof_mark(ctx, SWERVE_PL_PH_PREP, st)))
		return rc;

	row_args a;
	a.Z = Z;
	a.dzs = dzs;
	a.X = Xb;
	a.W = W;
	a.d = d;
	a.V = V;
	a.S = S;
	a.adv_per_seq = b->adv_per_seq;
	a.targets = b->targets;
	a.logp_old = b->logp_old;
	a.adv = b->advantages;
	a.seq_idx = b->seq_idx;
	a.mask = b->mask;
	a.count = count;
	a.logp = out->logp;
	a.entropy = out->entropy;
	a.ratio = grad ? out->ratio : NULL;
	a.clipped = grad ? out->clipped : NULL;
	a.terms = terms;
	a.opts = *o;

	for (int t0 = 0; t0 < N; t0 += C) {
		const int c = N - t0 < C ? N - t0 : C;
		const __nv_bfloat16 *xc = Xb + (size_t)t0 * d; /* (c, d) */
		/* forward operand (c, PW d) [X X]; dW operand (PZ c, d) [X; X] */
		const void *xfwd = xc;
		const void *xdw = xc;
		if (PW > 1) {
			for (int k = 0; k < PW; k++)
				CUDA_TRY(cudaMemcpy2DAsync(X3 + (size_t)k * d, (size_t)PW * d * 2,
				                           xc, (size_t)d * 2, (size_t)d * 2, c,
				                           cudaMemcpyDeviceToDevice, st),
				         "copy X");
			xfwd = X3;
		}
		if (PZ > 1 && grad) {
			for (int k = 0; k < PZ; k++)
				CUDA_TRY(cudaMemcpyAsync(X3r + (size_t)k * c * d, xc,
				                         (size_t)c * d * 2,
				                         cudaMemcpyDeviceToDevice, st),
				         "copy X");
			xdw = X3r;
		}
		if (PW == 0) {
			size_t n = (size_t)c * d;
			int blocks = (int)((n + 255) / 256 < 132 * 8 ? (n + 255) / 256 : 132 * 8);
			pl_bf16_to_f32<<<blocks, 256, 0, st>>>(xc, n, Xf);
			CUDA_TRY(cudaGetLastError(), "convert X kernel");
			xfwd = Xf;
			xdw = Xf;
		}
		if ((rc = prof_mark(ctx, SWERVE_PL_PH_XCOPY, st)))
			return rc;

		/* 1-2 per sub-chunk of R rows: the logits buffer holds one sub-chunk, the
		 * split dZ the whole chunk (rows r0..) */
		a.piece_stride = (size_t)c * V;
		for (int r0 = 0; r0 < c; r0 += R) {
			const int rr = c - r0 < R ? c - r0 : R;
			/* 1. Z (rr, V) = X_s W^T; column-major: Z^T (V x rr) = W (V x Kd) . X^T */
			if (PW > 0)
				rc = gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, V, rr, PW * d, Wp,
				          CUDA_R_16BF, PW * d,
				          (const __nv_bfloat16 *)xfwd + (size_t)r0 * PW * d, PW * d,
				          0.f, Z, V, ct, "forward GEMM");
			else
				rc = gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, V, rr, d, W, CUDA_R_32F, d,
				          (const float *)xfwd + (size_t)r0 * d, d, 0.f, Z, V, ct,
				          "forward GEMM");
			if (rc)
				return rc;
			if ((rc = prof_mark(ctx, SWERVE_PL_PH_FWD, st)))
				return rc;

			/* 2. the row kernel */
			a.t0 = t0 + r0;
			a.r0 = r0;
			if (!pf) {
				if (PZ == 2)
					launch_rows<2>(a, rr, vec, rows_kind, st);
				else if (PZ == 1)
					launch_rows<1>(a, rr, vec, rows_kind, st);
				else
					launch_rows<0>(a, rr, vec, rows_kind, st);
			} else {
				int *nb = &ctx->pf_blocks[PZ]; /* asked once a context */
				rc = PZ == 2   ? launch_rows_pf<2>(a, rr, nb, st)
				     : PZ == 1 ? launch_rows_pf<1>(a, rr, nb, st)
				               : launch_rows_pf<0>(a, rr, nb, st);
				if (rc)
					return rc;
			}
			CUDA_TRY(cudaGetLastError(), "row kernel");
			if ((rc = prof_mark(ctx, SWERVE_PL_PH_ROW, st)))
				return rc;
		}
		if (!grad)
			continue;

		/* 3. dX_c (c, d) = dZ W; column-major: dX^T (d x c) = W^T (d x V) . dZ^T (V x c) */
		float *dxc = out->dX + (size_t)t0 * d;
		if (PW > 0) {
			static const int pairs[3][2] = {
			        {0, 0}, {0, 1}, {1, 0}}; /* (dZ part, W part) */
			const int np = PZ == 2 ? 3 : 1;
			/* FP32: K = V in blocks, summed through beta in rounded fp32, so the
			 * truncating tensor-core accumulator never runs longer than a block */
			const int kb = PZ == 2 ? DX_KBLOCK : V;
			for (int v0 = 0; v0 < V; v0 += kb) {
				const int k = V - v0 < kb ? V - v0 : kb;
				for (int q = 0; q < np; q++) {
					rc = gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, d, c, k,
					          Wp + (size_t)v0 * PW * d +
					                  (size_t)pairs[q][1] * d,
					          CUDA_R_16BF, PW * d,
					          dzs + (size_t)pairs[q][0] * c * V + v0, V,
					          q || v0 ? 1.f : 0.f, dxc, d, ct, "dX GEMM");
					if (rc)
						return rc;
				}
			}
		} else {
			rc = gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, d, c, V, W, CUDA_R_32F, d, Z, V,
			          0.f, dxc, d, ct, "dX GEMM");
			if (rc)
				return rc;
		}
		if ((rc = prof_mark(ctx, SWERVE_PL_PH_DX, st)))
			return rc;

		/* 4. dW (V, d) += dZ^T X_c; column-major: dW^T (d x V) = X^T (d x PZ c) . dZs */
		const float beta = (t0 > 0 || o->accumulate_dw) ? 1.f : 0.f;
		if (PZ > 0)
			rc = gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, d, V, PZ * c, xdw, CUDA_R_16BF, d,
			          dzs, V, beta, out->dW, d, ct, "dW GEMM");
		else
			rc = gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, d, V, c, xdw, CUDA_R_32F, d, Z, V,
			          beta, out->dW, d, ct, "dW GEMM");
		if (rc)
			return rc;
		if ((rc = prof_mark(ctx, SWERVE_PL_PH_DW, st)))
			return rc;
	}
	if (grad) {
		pl_loss_sum<<<1, 1024, 0, st>>>(terms, N, out->loss);
		CUDA_TRY(cudaGetLastError(), "loss kernel");
	}
	return prof_mark(ctx, SWERVE_PL_PH_LOSS, st);
}
