/* lightning.cu - lightning attention on sm_90a: chunked forward, backward and
 * decode with bf16 tensor-core products, fp32 accumulation and an fp32 state.
 * The function is in lightning.h.
 *
 * One kernel does all the work. A CTA (4 warps) owns one (sequence, head,
 * 64-column block of v, sequence segment) and walks the segment's chunks of
 * C = 64 tokens in order, keeping the D x 64 state block in registers (fp32)
 * and a bf16 copy in shared memory for the tensor cores:
 *
 *   S = (Q K^T) .* Dec           Dec_ij = lambda^(i-j) for i >= j, else 0   (C x C)
 *   O = lambda^(i+1) .* (Q KV) + S V                                       (C x 64)
 *   KV = lambda^m KV + (K .* lambda^(m-1-j))^T V      m = valid rows of the chunk
 *
 * No T x T matrix exists anywhere; the C x C block lives in registers. The
 * state update of a chunk is issued beside S (they are independent) while the
 * bf16 copy still holds the previous state for Q KV. Three forms of the main
 * kernel: V3 (the default, wg::kernel): one warpgroup issuing wgmma.mma_async
 * (m64n64k16) on 128-byte-swizzled shared-memory tiles, 2 CTAs per SM, in one
 * of several forms (SWERVE_LIGHTNING_WG_FORM, form 9 by default); and the
 * mma.sync kernels of the first two rounds (la_chunk_kernel): the first version
 * (2 CTAs per SM, everything double-buffered) and V2 (3 CTAs per SM, q and k
 * single-buffered). V4 (wg::kernel4, the fifth round) is a CTA of two
 * warpgroups walking chunks of 128 tokens (half the sequential steps; q, k, v
 * loaded once for both; at D = 128 the default for the forward where V3 would
 * run one CTA per SM, for the backward where one problem's grid would, and
 * wherever V3 would need segments). SWERVE_LIGHTNING_KERNEL=1|2|3|4|12 picks one
 * (benchmarks, tests).
 *
 * Long sequences are cut into G segments so that short batches still fill the
 * GPU: a first launch (state-only) computes each segment's own state
 * contribution Delta_g (its chunks from a zero state) into the workspace; the
 * main launch starts segment g from lambda^(g L) S0 + sum_{g'<g}
 * lambda^((g-1-g') L) Delta_g' (V3: a small prefix kernel turns the Delta_g
 * into those sums in place first, so each CTA reads one state). G = 1 (no
 * workspace) when the batch alone fills the GPU. Since the eighth round (V3
 * and V4) the state pass runs on F sub-segments of each segment (shorter
 * chains, more CTAs: state_plan) and reads only the tokens inside each head's
 * window before the next segment start (window_len: the tokens it skips add
 * at most 2^-32 max |k| |v| to a state element); prefix_kernel sums the
 * sub-segments' states. 1 x 32768 x 16 heads forward, layer 0's decay, one
 * H100 run: 0.234-0.254 ms against the seventh round's 0.286-0.290.
 *
 * Backward is three runs of the same kernel in one launch (no per-chunk
 * states are stored, everything is recomputed from q, k, v):
 *   dq = fwd(q <- dout, k <- v, v <- k, S0 <- S0^T)                 forward in time
 *   dv = fwd(q <- k, k <- q, v <- dout, S0 <- dS_T / lambda)         reversed in time
 *   dk = fwd(q <- v, k <- dout, v <- q, S0 <- dS_T^T / lambda)       reversed in time
 *   dS0 = lambda * (final state of the dv run)
 * since dq_t = sum_{s<=t} lambda^(t-s) (dout_t.v_s) k_s + lambda^(t+1) dout_t S0^T,
 * dv_s = sum_{t>=s} lambda^(t-s) (q_t.k_s) dout_t + lambda^(T-1-s) k_s dS_T, and
 * dk_s likewise with (dout_t.v_s) q_t and v_s dS_T^T.
 *
 * Round 14 (opt-in, /work/notes/la14.md): the policy layer's SiLU folded in
 * (swerve_lightning_forward_silu, _backward_silu, _backward_dsilu; V3 form 9
 * as wg::kernel_fu with a second parameter, la_fu): q, k, v read as
 * pre-activations from the projection's interleaved rows and SiLU'd in
 * shared memory after the load; the backward scales its outputs by SiLU'(pre)
 * in the epilogue and writes the interleaved d pre. H100, the policy's shape
 * (4 x 2048, 12 heads of 64), against the SiLU passes + the core: forward
 * 0.054-0.057 ms against 0.070, backward with the SiLU recomputed 0.113-0.117
 * against 0.108, the forward storing the activations and the backward
 * reading them (keep) 0.071 / 0.0995 against 0.070 / 0.1095. */
#include "kernels/lightning.h"
#include "kernels/pdl.cuh"
#include "kernels/ptx.cuh"
#include "kernels/tma.h"

#include <cuda.h> /* CUtensorMap and its encoder's types (the encoder is fetched at run time) */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <mutex>
#include <type_traits>

extern "C" {
#include "sandbox/error.h"
}

namespace
{
using namespace ptx;

constexpr int C = 64;   /* tokens per chunk */
constexpr int EB = 64;  /* columns of v (and of the state) per CTA */
constexpr int NT = 128; /* threads per CTA: 4 warps */
constexpr int MAX_PROB = 3;

struct la_prob {
	const __nv_bfloat16 *q, *k, *v;
	__nv_bfloat16 *o;
	const float *init; /* [B, H, D, D] or NULL */
	float *final;      /* [B, H, D, D] or NULL */
	float *seg;        /* workspace [B, H, G, D, D] when G > 1 */
	int reverse;       /* walk each sequence from its end */
	int init_t;        /* read init transposed */
	int init_div;      /* divide init by lambda */
	int final_mul;     /* multiply the final state by lambda */
};

struct la_params {
	/* V3 form 8 and up, V4 form 3: each problem's output o as a 2-D tensor
	 * [tokens, H D] of bf16, written by TMA tensor stores of 16 x 64 boxes
	 * (128-byte swizzle); made on the host (make_out_maps) */
	CUtensorMap otm[MAX_PROB];
	la_prob p[MAX_PROB];
	const int32_t *cu;
	const float *slopes;
	int B, H, G, seg_len;
	int mst; /* V3: stages of the main kernel (2, or 4 for one CTA per SM) */
	/* V3 and V4 with G > 1 (the eighth round): the state pass runs on F
	 * sub-segments of sub_len tokens per segment (the last one of a segment
	 * may be shorter; F = 1: the segments themselves), so the workspace holds
	 * G F states per (sequence, head, problem) and the main pass of segment g
	 * starts from the running sum at sub-segment g F - 1; win_bits > 0: the
	 * state pass skips the tokens outside each head's window (window_len);
	 * pfx: prefix_kernel runs between the passes */
	int F, sub_len, win_bits, pfx;
};

/* Round 14 (opt-in; swerve_lightning_forward_silu / _backward_silu): the
 * SiLU of the lightning layer folded into V3 (form 9, its state pass form 7),
 * a second kernel parameter of wg::kernel_fu only, so that the default
 * kernels keep their parameters and code. Per problem: the row strides of
 * its q', k', v' (elements: the interleaved projection output's 4 H D, or
 * H D), which of them are pre-activations (SiLU applied in shared memory
 * after the load), and for the backward the output's row stride and the
 * pre-activation the output is scaled by (o *= SiLU'(dact), read in the
 * epilogue). */
struct la_fu_prob {
	const __nv_bfloat16 *dact; /* o *= SiLU'(dact[t ldo + h D + e]); NULL: not */
	int ld[3];                 /* row strides of q', k', v' (elements) */
	int ldo;                   /* the output's row stride (elements) */
	int silu;                  /* bits 0, 1, 2: q', k', v' are pre-activations */
};
struct la_fu {
	/* POLICY_GPU_LW_SILU=keep (the forward, store set): the activated q, k, v
	 * also written, [tokens, H D] each (act), a full chunk's tiles by TMA
	 * tensor stores of 64 x 64 boxes (128-byte swizzle, amap), a partial
	 * chunk's rows by each thread from its registers */
	CUtensorMap amap[3];
	la_fu_prob p[MAX_PROB];
	__nv_bfloat16 *act[3];
	int store; /* 1: TMA for full chunks; 2 (SWERVE_LIGHTNING_SILU_STG=1, not
	            * yet run on a GPU): every chunk's rows by each thread */
	int early; /* SWERVE_LIGHTNING_SILU_EARLY=1: kernel_fu's EA form, see
	            * kernel_body; round 19 (SWERVE_LIGHTNING_DACT): 3 (smem) the
	            * backward's main pass is kernel_ds, 4 (l2) kernel_pf */
};

/* Head window of the state pass (the eighth round): a token t contributes
 * lambda^(E - 1 - t) k_t^T v_t to the state a segment starting at E begins
 * from; the tokens at distances E - 1 - t >= W, W the smallest integer with
 * lambda^W / (1 - lambda) <= 2^-bits, together add at most 2^-bits
 * max_t |k_t|_inf |v_t|_inf to each state element (a geometric tail). W =
 * ceil((bits ln 2 + ln(1 / (1 - lambda))) / slope), one token more for fp32
 * rounding; INT_MAX (no window) for bits 0, a slope <= 0, or W >= 2^30 (weak
 * decay: longer than any sequence). The same function in the state pass and
 * the prefix kernel, so both skip the same sub-segments. */
__device__ __forceinline__ int window_len(float slope, int bits)
{
	if (bits <= 0 || !(slope > 0.0f))
		return 0x7fffffff;
	const float w = ((float)bits * 0.693147181f - logf(-expm1f(-slope))) / slope;
	return w < 1.0e9f ? (int)ceilf(w) + 1 : 0x7fffffff;
}

/* Sub-segment s of the state pass: tokens [a, e) of a sequence, feeding the
 * segment that starts at E (the end of a's segment); first: the first token
 * it reads, rounded down to a chunk of C tokens from a (first >= e: none, the
 * whole sub-segment is outside the window and its state is zero) */
struct sub_range {
	int a, e, E, first;
};

__device__ __forceinline__ sub_range sub_seg(const la_params &P, int s, int wl)
{
	sub_range r;
	const int gm = s / P.F, j = s - gm * P.F;
	r.E = (gm + 1) * P.seg_len;
	r.a = gm * P.seg_len + j * P.sub_len;
	r.e = min(r.a + P.sub_len, r.E);
	const long t0 = (long)r.E - wl;
	r.first = t0 <= r.a ? r.a : t0 >= r.e ? r.e : r.a + (int)((t0 - r.a) / C) * C;
	return r;
}

/* V2 (the main pass since the second tuning round): q and k single-buffered,
 * v double-buffered, so that 3 CTAs fit in an SM's shared memory (70.5 KB
 * each at D = 128, against 104.5 KB with everything double-buffered). */
template <int D, bool SO, bool V2 = false> struct la_smem {
	static constexpr int QS = D + 8; /* padded row (elements): no ldmatrix bank conflicts */
	static constexpr int VS = EB + 8;
	static constexpr int QKST = V2 ? 1 : 2; /* stages of q and k */
	static constexpr int Q_OFF = 0; /* the state-only pass needs no Q and no bf16 state */
	static constexpr int K_OFF = Q_OFF + (SO ? 0 : QKST * C * QS);
	static constexpr int V_OFF = K_OFF + QKST * C * QS;
	static constexpr int KV_OFF = V_OFF + 2 * C * VS;
	static constexpr int END = KV_OFF + (SO ? 0 : D * VS); /* bf16 elements */
	static constexpr size_t BYTES = (size_t)END * 2 + (2 * C + 1) * sizeof(float);
};

/* two bf16 products in one instruction, each rounded once */
__device__ __forceinline__ uint32_t mul_bf16x2(uint32_t x, uint32_t f)
{
	__nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162 *>(&x),
	                           *reinterpret_cast<__nv_bfloat162 *>(&f));
	return *reinterpret_cast<uint32_t *>(&r);
}

__device__ __forceinline__ uint32_t scale_bf16x2(uint32_t x, float lo, float hi)
{
	__nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&x);
	float2 f = __bfloat1622float2(v);
	return pack_bf16(f.x * lo, f.y * hi);
}

/* One CTA: (e-block, segment) x head x (sequence, problem). STATE_ONLY writes
 * the segment's own state contribution to the workspace and nothing else.
 * V2 (main pass only): 3 CTAs per SM (168 registers, 70.5 KB of shared
 * memory), q and k single-buffered and loaded for the next chunk once every
 * warp is done with them (after S and the state update), the output written
 * straight from the accumulators. V2 = false is the first version (2 CTAs
 * per SM, everything double-buffered), kept for side-by-side benchmarks. */
template <int D, bool STATE_ONLY, bool V2>
__global__ void __launch_bounds__(NT, (STATE_ONLY || V2) ? 3 : 2)
        la_chunk_kernel(const __grid_constant__ la_params P)
{
	using L = la_smem<D, STATE_ONLY, V2>;
	constexpr int NEB = D / EB; /* e-blocks */
	constexpr int MT = D / 64;  /* 16-row tiles of the state per warp */
	constexpr int KQ = D / 16;  /* k-steps over D */
	extern __shared__ __align__(16) unsigned char smem_raw[];
	__nv_bfloat16 *sm = reinterpret_cast<__nv_bfloat16 *>(smem_raw);
	/* pw[n] = lambda^n for 0 <= n <= C and 0 for -C <= n < 0 (the causal mask) */
	float *pw = reinterpret_cast<float *>(smem_raw + (size_t)L::END * 2) + C;

	const int eb = blockIdx.x % NEB, g = blockIdx.x / NEB, h = blockIdx.y;
	const int b = blockIdx.z % P.B, pi = blockIdx.z / P.B;
	const la_prob &pr = P.p[pi];
	const int base = P.cu[b], T = P.cu[b + 1] - base;
	const int seg_start = g * P.seg_len;
	int seg_end;
	if (STATE_ONLY) {
		if ((g + 1) * P.seg_len >= T) /* no later segment needs this one */
			return;
		seg_end = seg_start + P.seg_len;
	} else {
		if (g > 0 && seg_start >= T)
			return;
		/* the last segment runs to the end even if max_seqlen was too small */
		seg_end = g == P.G - 1 ? T : min(seg_start + P.seg_len, T);
	}
	const int n_chunks = seg_end > seg_start ? (seg_end - seg_start + C - 1) / C : 0;
	const int H = P.H;
	const float slope = P.slopes[h];
	const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
	const int gq = lane >> 2, t4 = lane & 3;

	for (int n = tid - C; n <= C; n += NT)
		pw[n] = n >= 0 ? expf(-slope * (float)n) : 0.0f;

	/* ---- loads: chunk c of the segment into stage st -------------------- */
	auto row_token = [&](int pos) -> long {
		return pr.reverse ? (long)base + T - 1 - pos : (long)base + pos;
	};
	/* Each thread copies fixed 16-byte columns of rows r0, r0 + RPI, ...: the
	 * addresses of a chunk are one base pointer plus constant steps (rows of a
	 * reversed sequence step backwards), and only a partial last chunk needs
	 * per-row bounds. */
	constexpr int CPR = D / 8, RPI = NT / CPR, IT = C / RPI;       /* q, k */
	constexpr int VCPR = EB / 8, VRPI = NT / VCPR, VIT = C / VRPI; /* v */
	const int qr0 = tid / CPR, qcc = tid % CPR, vr0 = tid / VCPR, vcc = tid % VCPR;
	const long HD = (long)H * D;
	const long qstep = (pr.reverse ? -RPI : RPI) * HD, vstep = (pr.reverse ? -VRPI : VRPI) * HD;
	const uint32_t sq = smem_u32(sm + L::Q_OFF + qr0 * L::QS + qcc * 8);
	const uint32_t sk = smem_u32(sm + L::K_OFF + qr0 * L::QS + qcc * 8);
	const uint32_t sv = smem_u32(sm + L::V_OFF + vr0 * L::VS + vcc * 8);
	auto load_chunk = [&](int c, int st) {
		const int pos0 = seg_start + c * C;
		const bool full = pos0 + C <= seg_end;
		const long qoff = row_token(pos0 + qr0) * HD + h * D + qcc * 8;
		const long voff = row_token(pos0 + vr0) * HD + h * D + eb * EB + vcc * 8;
		if (!STATE_ONLY) {
#pragma unroll
			for (int it = 0; it < IT; it++) {
				const bool ok = full || pos0 + qr0 + it * RPI < seg_end;
				cp_async16(sq + ((V2 ? 0 : st) * C + it * RPI) * L::QS * 2,
				           ok ? pr.q + qoff + it * qstep : pr.q, ok);
			}
		}
#pragma unroll
		for (int it = 0; it < IT; it++) {
			const bool ok = full || pos0 + qr0 + it * RPI < seg_end;
			cp_async16(sk + ((V2 ? 0 : st) * C + it * RPI) * L::QS * 2,
			           ok ? pr.k + qoff + it * qstep : pr.k, ok);
		}
#pragma unroll
		for (int it = 0; it < VIT; it++) {
			const bool ok = full || pos0 + vr0 + it * VRPI < seg_end;
			cp_async16(sv + (st * C + it * VRPI) * L::VS * 2,
			           ok ? pr.v + voff + it * vstep : pr.v, ok);
		}
	};

	if (n_chunks > 0)
		load_chunk(0, 0);
	cp_commit();

	/* ---- the starting state: rows d of this warp, columns of this e-block - */
	float kv[MT][8][4];
	const size_t sbase = ((size_t)b * H + h) * D * D;
#pragma unroll
	for (int mt = 0; mt < MT; mt++)
#pragma unroll
		for (int nt = 0; nt < 8; nt++)
#pragma unroll
			for (int r = 0; r < 4; r++) {
				const int d = w * (D / 4) + mt * 16 + gq + (r >= 2 ? 8 : 0);
				const int e = eb * EB + nt * 8 + 2 * t4 + (r & 1);
				float val = 0.0f;
				if (!STATE_ONLY) {
					if (pr.init) {
						float s0 =
						        pr.init_t
						                ? pr.init[sbase + (size_t)e * D + d]
						                : pr.init[sbase + (size_t)d * D +
						                          e];
						if (pr.init_div)
							s0 *= expf(slope);
						val = s0 * expf(-slope * (float)seg_start);
					}
					for (int gp = 0; gp < g; gp++)
						val += pr.seg[(((size_t)b * H + h) * P.G + gp) * D *
						                      D +
						              (size_t)d * D + e] *
						       expf(-slope *
						            (float)((g - 1 - gp) * P.seg_len));
				}
				kv[mt][nt][r] = val;
			}
	__nv_bfloat16 *kvs = sm + L::KV_OFF;
	auto store_kvs = [&]() {
#pragma unroll
		for (int mt = 0; mt < MT; mt++)
#pragma unroll
			for (int nt = 0; nt < 8; nt++) {
				const int d = w * (D / 4) + mt * 16 + gq;
				const int e = nt * 8 + 2 * t4;
				*reinterpret_cast<uint32_t *>(kvs + d * L::VS + e) =
				        pack_bf16(kv[mt][nt][0], kv[mt][nt][1]);
				*reinterpret_cast<uint32_t *>(kvs + (d + 8) * L::VS + e) =
				        pack_bf16(kv[mt][nt][2], kv[mt][nt][3]);
			}
	};
	if (!STATE_ONLY)
		store_kvs();

	/* KV = lambda^m KV + (K .* lambda^(m-1-j))^T V, in registers */
	auto kv_update = [&](const __nv_bfloat16 *Ks, const __nv_bfloat16 *Vs, int m) {
		const float bd = pw[m];
#pragma unroll
		for (int mt = 0; mt < MT; mt++)
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int r = 0; r < 4; r++)
					kv[mt][nt][r] *= bd;
#pragma unroll
		for (int kk = 0; kk < 4; kk++) {
			if (kk * 16 >= m)
				continue;
			uint32_t vb[4][4];
			const int q8 = lane >> 3;
#pragma unroll
			for (int np = 0; np < 4; np++)
				ldsm_x4_t(vb[np],
				          smem_u32(Vs +
				                   (kk * 16 + (q8 & 1) * 8 + (lane & 7)) * L::VS +
				                   np * 16 + (q8 >> 1) * 8));
			const int j = kk * 16 + 2 * t4;
			const float f0 = pw[m - 1 - j], f1 = pw[m - 2 - j];
			const float f2 = pw[m - 9 - j], f3 = pw[m - 10 - j];
#pragma unroll
			for (int mt = 0; mt < MT; mt++) {
				const int d0 = w * (D / 4) + mt * 16;
				uint32_t a[4];
				ldsm_x4_t(a,
				          smem_u32(Ks +
				                   (kk * 16 + (q8 >> 1) * 8 + (lane & 7)) * L::QS +
				                   d0 + (q8 & 1) * 8));
				a[0] = scale_bf16x2(a[0], f0, f1);
				a[1] = scale_bf16x2(a[1], f0, f1);
				a[2] = scale_bf16x2(a[2], f2, f3);
				a[3] = scale_bf16x2(a[3], f2, f3);
#pragma unroll
				for (int np = 0; np < 4; np++) {
					mma16816(kv[mt][2 * np], a, vb[np][0], vb[np][1]);
					mma16816(kv[mt][2 * np + 1], a, vb[np][2], vb[np][3]);
				}
			}
		}
	};

	for (int c = 0; c < n_chunks; c++) {
		const int st = c & 1, qst = V2 ? 0 : st;
		if (!V2) {
			if (c + 1 < n_chunks)
				load_chunk(c + 1, st ^ 1);
			cp_commit();
			cp_wait<1>();
		} else {
			cp_wait<0>(); /* V2 loads the next chunk in the middle of this one */
		}
		__syncthreads();
		const int m = min(C, seg_end - (seg_start + c * C));
		const __nv_bfloat16 *Qs = sm + L::Q_OFF + qst * C * L::QS;
		const __nv_bfloat16 *Ks = sm + L::K_OFF + qst * C * L::QS;
		const __nv_bfloat16 *Vs = sm + L::V_OFF + st * C * L::VS;

		if (!STATE_ONLY) {
			const int i0 = w * 16;
			/* Q fragments of this warp's 16 rows, reused by both products */
			uint32_t qa[KQ][4];
#pragma unroll
			for (int kk = 0; kk < KQ; kk++)
				ldsm_x4(qa[kk], smem_u32(Qs + (i0 + (lane & 15)) * L::QS + kk * 16 +
				                         (lane >> 4) * 8));
			/* S = Q K^T on columns j <= i (n-tiles 0 .. 2w+1) */
			float s[8][4];
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int r = 0; r < 4; r++)
					s[nt][r] = 0.0f;
#pragma unroll
			for (int np = 0; np < 4; np++) {
				if (np <= w) {
#pragma unroll
					for (int kk = 0; kk < KQ; kk++) {
						uint32_t bf[4];
						const int q8 = lane >> 3;
						ldsm_x4(bf, smem_u32(Ks +
						                     (np * 16 + (q8 >> 1) * 8 +
						                      (lane & 7)) *
						                             L::QS +
						                     kk * 16 + (q8 & 1) * 8));
						mma16816(s[2 * np], qa[kk], bf[0], bf[1]);
						mma16816(s[2 * np + 1], qa[kk], bf[2], bf[3]);
					}
				}
			}
			/* the state update is independent of S: interleave it (kvs keeps
			 * the previous state for Q KV below until the barrier) */
			kv_update(Ks, Vs, m);
			/* decay mask, then the bf16 A fragments of P */
			uint32_t pa[4][4];
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int r = 0; r < 4; r++) {
					const int i = i0 + gq + (r >= 2 ? 8 : 0);
					const int j = nt * 8 + 2 * t4 + (r & 1);
					s[nt][r] *= pw[i - j];
				}
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
				pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
				pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
				pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
			}
			if (V2) {
				/* q and k are free (q lives on in qa): load the next chunk
				 * while Q KV and P V run (v into the other stage) */
				__syncthreads();
				if (c + 1 < n_chunks)
					load_chunk(c + 1, st ^ 1);
				cp_commit();
			}
			/* O = Q KV (the state before this chunk) */
			float o[8][4];
#pragma unroll
			for (int nt = 0; nt < 8; nt++)
#pragma unroll
				for (int r = 0; r < 4; r++)
					o[nt][r] = 0.0f;
#pragma unroll
			for (int kk = 0; kk < KQ; kk++)
#pragma unroll
				for (int np = 0; np < 4; np++) {
					uint32_t bf[4];
					const int q8 = lane >> 3;
					ldsm_x4_t(bf,
					          smem_u32(kvs +
					                   (kk * 16 + (q8 & 1) * 8 + (lane & 7)) *
					                           L::VS +
					                   np * 16 + (q8 >> 1) * 8));
					mma16816(o[2 * np], qa[kk], bf[0], bf[1]);
					mma16816(o[2 * np + 1], qa[kk], bf[2], bf[3]);
				}
			{
				const float f0 = pw[i0 + gq + 1], f1 = pw[i0 + gq + 9];
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					o[nt][0] *= f0;
					o[nt][1] *= f0;
					o[nt][2] *= f1;
					o[nt][3] *= f1;
				}
			}
			/* O += P V over key tiles kk <= w */
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				if (kk <= w) {
#pragma unroll
					for (int np = 0; np < 4; np++) {
						uint32_t bf[4];
						const int q8 = lane >> 3;
						ldsm_x4_t(bf, smem_u32(Vs +
						                       (kk * 16 + (q8 & 1) * 8 +
						                        (lane & 7)) *
						                               L::VS +
						                       np * 16 + (q8 >> 1) * 8));
						mma16816(o[2 * np], pa[kk], bf[0], bf[1]);
						mma16816(o[2 * np + 1], pa[kk], bf[2], bf[3]);
					}
				}
			}
			if (V2) {
				/* straight from the accumulators: rows i0 + gq and + 8, 16
				 * contiguous bytes per 4 lanes (q's buffer is loading) */
				const int ia = i0 + gq, ib = ia + 8;
				const long ta = row_token(seg_start + c * C + ia),
				           tb = row_token(seg_start + c * C + ib);
				__nv_bfloat16 *oa =
				        pr.o + ((size_t)ta * H + h) * D + eb * EB + 2 * t4;
				__nv_bfloat16 *ob =
				        pr.o + ((size_t)tb * H + h) * D + eb * EB + 2 * t4;
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					if (ia < m)
						*reinterpret_cast<uint32_t *>(oa + nt * 8) =
						        pack_bf16(o[nt][0], o[nt][1]);
					if (ib < m)
						*reinterpret_cast<uint32_t *>(ob + nt * 8) =
						        pack_bf16(o[nt][2], o[nt][3]);
				}
			} else {
				/* stage the warp's 16 x 64 output in its own Q rows, then write
				 * 16-byte pieces of whole rows */
				__nv_bfloat16 *stage = sm + L::Q_OFF + st * C * L::QS;
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					const int e = nt * 8 + 2 * t4;
					*reinterpret_cast<uint32_t *>(stage + (i0 + gq) * L::QS +
					                              e) =
					        pack_bf16(o[nt][0], o[nt][1]);
					*reinterpret_cast<uint32_t *>(stage +
					                              (i0 + gq + 8) * L::QS + e) =
					        pack_bf16(o[nt][2], o[nt][3]);
				}
				__syncwarp();
#pragma unroll
				for (int u = 0; u < 4; u++) {
					const int idx = lane + 32 * u, r = idx >> 3, cc = idx & 7;
					const int i = i0 + r;
					if (i < m) {
						const long tok = row_token(seg_start + c * C + i);
						*reinterpret_cast<uint4 *>(
						        pr.o + ((size_t)tok * H + h) * D + eb * EB +
						        cc * 8) =
						        *reinterpret_cast<const uint4 *>(
						                stage + i * L::QS + cc * 8);
					}
				}
			}
			__syncthreads(); /* every warp is done reading kvs */
		}

		if (STATE_ONLY)
			kv_update(Ks, Vs, m);
		if (!STATE_ONLY)
			store_kvs();
		if (!V2) /* V2: the next chunk's first barrier orders kvs */
			__syncthreads();
	}
	cp_wait<0>();

	/* ---- the state out: Delta_g, or the sequence's final state ----------- */
	float *dst = nullptr;
	float mul = 1.0f;
	if (STATE_ONLY) {
		dst = pr.seg + (((size_t)b * H + h) * P.G + g) * D * D;
	} else {
		const int last = T > 0 ? min((T - 1) / P.seg_len, P.G - 1) : 0;
		if (pr.final && g == last) {
			dst = pr.final + sbase;
			mul = pr.final_mul ? expf(-slope) : 1.0f;
		}
	}
	if (dst) {
#pragma unroll
		for (int mt = 0; mt < MT; mt++)
#pragma unroll
			for (int nt = 0; nt < 8; nt++) {
				const int d = w * (D / 4) + mt * 16 + gq;
				const int e = eb * EB + nt * 8 + 2 * t4;
				*reinterpret_cast<float2 *>(dst + (size_t)d * D + e) =
				        make_float2(kv[mt][nt][0] * mul, kv[mt][nt][1] * mul);
				*reinterpret_cast<float2 *>(dst + (size_t)(d + 8) * D + e) =
				        make_float2(kv[mt][nt][2] * mul, kv[mt][nt][3] * mul);
			}
	}
}

/* ---- V3: the Hopper warpgroup kernel (wgmma) ----------------------------------
 *
 * The same work split as above (a CTA per (e-block, segment) x head x (sequence,
 * problem), chunks of C = 64 tokens, the fp32 state in registers) but one
 * warpgroup issues asynchronous wgmma.mma_async products (m64n64k16, bf16, fp32
 * accumulators) instead of warp-level mma.sync chains:
 *
 *   S   = Q K^T            A = Q (smem), B = K (smem), both K-major   D/16 steps
 *   O   = Q KV             A = Q (smem), B = the bf16 state (smem, MN-major)
 *   KV  = lambda^m KV + (K .* lambda^(m-1-j))^T V
 *                          A = K^T scaled (registers, ldmatrix.trans), B = V
 *   O   = lambda^(i+1) O + P V   A = P (registers: S masked and decayed), B = V
 *
 * S, Q KV and the state update are issued back to back (interleaved) and
 * waited for once, so the tensor cores run them while the warps go on; 28
 * wgmma per chunk at D = 128. Every shared-memory tile uses the 128-byte
 * swizzle (rows of 64 bf16 = 128 bytes, 16-byte pieces XORed with row % 8),
 * which is what the descriptors say and keeps cp.async stores, ldmatrix and
 * the bf16 state stores conflict-free. The main kernel double-buffers q, k, v
 * with cp.async (D = 128: 97 KB of shared memory, 2 CTAs per SM); the
 * state-only pass has 4 stages of k, v. Measured on an H100 (RESULTS.md), a
 * chunk step is bound by the warps' instruction stream and its latencies,
 * not by the tensor cores or memory. */
namespace wg
{

__device__ __forceinline__ uint4 lds128(uint32_t a)
{
	uint4 x;
	asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(x.x), "=r"(x.y), "=r"(x.z), "=r"(x.w)
	             : "r"(a));
	return x;
}

/* round 19 (kernel_ds): not volatile, so that ptxas may issue the 16 reads
 * early; they follow the chunk's barrier in program order */
__device__ __forceinline__ uint32_t lds32(uint32_t a)
{
	uint32_t x;
	asm("ld.shared.b32 %0, [%1];\n" : "=r"(x) : "r"(a) : "memory");
	return x;
}

__device__ __forceinline__ void sts128(uint32_t a, uint4 x)
{
	asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(x.x), "r"(x.y),
	             "r"(x.z), "r"(x.w));
}

__device__ __forceinline__ void prefetch_l2(const void *p, uint32_t bytes)
{
	asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p), "r"(bytes));
}

/* ST stages of q, k, v (ST - 1 chunks loading while one is used); VT: a
 * decayed copy of the chunk's v for the state update (V3 form 2); OS: the
 * chunk's output, staged for row-wise bulk copies to global memory (forms 6
 * and up; 144-byte rows, so that stmatrix is free of bank conflicts) */
constexpr int OS_ROW = 144;
template <int D, bool SO, int ST, int VAR> struct smem {
	static constexpr bool VT = VAR == 2, OS = VAR >= 6 && !SO, TM = VAR >= 8 && !SO;
	static constexpr int TILE = C * 128;       /* 64 rows x 64 bf16: one swizzle atom column */
	static constexpr int QK = (D / 64) * TILE; /* one stage of q or k */
	static constexpr int Q_OFF = 0;            /* bytes from the 1024-aligned base */
	static constexpr int K_OFF = Q_OFF + (SO ? 0 : ST * QK);
	static constexpr int V_OFF = K_OFF + ST * QK;
	static constexpr int KV_OFF = V_OFF + ST * TILE; /* bf16 state [D][64], swizzled */
	static constexpr int VT_OFF = KV_OFF + (SO ? 0 : D * 128);
	static constexpr int OS_OFF = VT_OFF + (VT ? TILE : 0);
	/* form 8 and up: 128-byte swizzled rows, 16 a warp (the TMA box), from a
	 * 1024-aligned offset */
	static constexpr int PW_OFF = OS_OFF + (TM ? C * 128 : OS ? C * OS_ROW : 0);
	static constexpr size_t BYTES = PW_OFF + (2 * C + 1) * sizeof(float) + 1024;
	static_assert(OS_OFF % 1024 == 0, "the TMA's 128-byte swizzle needs 1024-aligned rows");
};

/* round 19 (kernel_ds): the SiLU' source stages (ST x 64 rows of 128 bytes)
 * after smem's regions, 1024-aligned; kernel_ds's dynamic shared memory is
 * OFF + ST C 128 + 1024 bytes */
template <int D, bool SO, int ST, int VAR> struct ds_layout {
	static constexpr int OFF =
	        (smem<D, SO, ST, VAR>::PW_OFF + (2 * C + 1) * (int)sizeof(float) + 1023) / 1024 *
	        1024;
};

/* byte offset of 16-byte piece c8 (0..7) of row r in a 128-byte-swizzled tile */
__device__ __forceinline__ uint32_t swz(int r, int c8)
{
	return (uint32_t)(r * 128 + ((c8 ^ (r & 7)) << 4));
}

template <bool SO, int VAR> struct L_OS {
	static constexpr bool value = VAR >= 6 && !SO;
};

__device__ __forceinline__ void cp_async16_full(uint32_t dst, const void *src)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}

/* a 128-byte row from shared to global memory through the bulk copy engine */
__device__ __forceinline__ void bulk_store128(void *dst, uint32_t src)
{
	asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], 128;\n" ::"l"(dst),
	             "r"(src)
	             : "memory");
}

/* 16 rows x 64 bf16 (128-byte swizzled, from smem src) to o[y .. y + 15][x .. x + 63]
 * through the tensor map (a TMA tensor store: one instruction for a warp's rows) */
__device__ __forceinline__ void tma_store_16x64(const CUtensorMap *map, int x, int y, uint32_t src)
{
	asm volatile(
	        "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::
	                "l"(map),
	        "r"(x), "r"(y), "r"(src)
	        : "memory");
}

__device__ __forceinline__ void bulk_commit()
{
	asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}

/* the source of every bulk copy issued so far has been read */
__device__ __forceinline__ void bulk_wait_read()
{
	asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

__device__ __forceinline__ void bulk_wait()
{
	asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}

/* VAR: the form of V3. 0: each product's wgmma steps issued in turn (the first
 * V3); 1 (the default until the sixth round): S, Q KV and the state update
 * interleaved, P V in two chains; 2 (an experiment, correct but measured 1.4x
 * slower on an H100, see tests/bench/RESULTS.md): as 1, plus the state update
 * from shared memory only (A = K^T read M-major, B = a decayed copy of v
 * written each chunk behind an extra barrier: no register operands, half the
 * scaling work), P V in one chain, the bf16 state stored with stmatrix, the
 * chunk after next prefetched into L2. Forms 0 and 1 measure the same: the
 * chunk step is bound by the warps' instruction stream (~1125 SASS
 * instructions per warp per chunk, one warp per scheduler issuing every 3.4
 * cycles), not by the tensor cores (a wgmma m64n64k16 costs 40 cycles, 28 of
 * them per chunk). The sixth round's forms, each on top of the one before,
 * from Nsight Compute's stall samples of form 1 (a lone CTA, 4 x 8192):
 *   3: the state decayed before the first product of the chunk (form 1's
 *      decay after S's first half made ptxas inject a warpgroup.wait, C7517;
 *      measured level);
 *   4: a full chunk's cp.async addresses from per-thread bases and constant
 *      steps (form 1's loads were 324 SASS instructions, 17% of the samples);
 *   5: the bf16 state stored with stmatrix (8 instructions, not 32 STS);
 *   6: the output staged in shared memory (stmatrix) and written by 128-byte
 *      bulk copies, a row a lane (form 1's 16 4-byte STG per thread held their
 *      registers until the store queue took them: with the STS of the state,
 *      32% of the samples). Left in it (ncu of form 7): the wait for the
 *      previous chunk's copies compiles to DEPBAR.LE SB0, 0, which also waits
 *      for the cp.async loads in flight (13% of the samples with 2 CTAs per
 *      SM), and ptxas issues the per-lane copies one lane at a time (a
 *      uniform-register loop, 10-15% for a lone CTA): two staging buffers and
 *      a TMA tensor store per warp would remove both;
 *   7 (the sixth round's default): K^T for the state update scaled by bf16x2
 *      products (one HMUL2 per register instead of unpack, two FMUL and a
 *      pack).
 * Form 7 against form 1, one H100 run: -13% forward and backward at
 * 8 x 2048, -11% / -10% at 1 x 32768, 3% at 4 x 8192 (a lone CTA per SM,
 * where the chain's latency stays), 26% fewer instructions. The seventh
 * round's, on form 7:
 *   8: a warp's 16 output rows staged in 128-byte swizzled rows (in token
 *      order, reversed for a reversed walk) and written by one TMA tensor
 *      store from lane 0 (the per-problem tensor maps in la_params), a partial
 *      chunk's warps storing from registers: no per-lane copy loop;
 *   9 (the default): and the wait for the previous chunk's store to have read
 *      its rows at the top of the chunk, before the next chunk's loads are
 *      issued (the bulk-group wait compiles to a scoreboard wait that also
 *      covers the cp.async loads in flight).
 * Form 9 against form 7, one H100 run: 8 x 2048 fwd 0.105 against 0.113 ms,
 * fb 0.383 against 0.406; level with form 8 within the run's noise (fwd
 * 0.105 against 0.107). */
/* SiLU with one MUFU op: x sigmoid(x) = h + h tanh(h), h = x / 2 (halving a
 * bf16 pair is exact); tanh.approx.f32's relative error ~2^-11 (the result
 * is rounded to bf16) */
__device__ __forceinline__ float tanh_fast(float x)
{
	float y;
	asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
	return y;
}

__device__ __forceinline__ uint32_t silu_bf16x2(uint32_t x)
{
	const uint32_t h = mul_bf16x2(x, 0x3f003f00u); /* x / 2, both halves */
	const float lo = __uint_as_float(h << 16), hi = __uint_as_float(h & 0xffff0000u);
	return pack_bf16(fmaf(lo, tanh_fast(lo), lo), fmaf(hi, tanh_fast(hi), hi));
}

/* SiLU'(a) = s (1 + a (1 - s)), s = sigmoid(a) = (1 + tanh(a / 2)) / 2 */
__device__ __forceinline__ float dsilu_fast(float a)
{
	const float s = fmaf(0.5f, tanh_fast(0.5f * a), 0.5f);
	return s * fmaf(a, 1.0f - s, 1.0f);
}

/* 8 bf16 in shared memory (16 bytes at a) replaced by their SiLU (returned) */
__device__ __forceinline__ uint4 silu_piece(uint32_t a)
{
	uint4 x = lds128(a);
	x.x = silu_bf16x2(x.x);
	x.y = silu_bf16x2(x.y);
	x.z = silu_bf16x2(x.z);
	x.w = silu_bf16x2(x.w);
	sts128(a, x);
	return x;
}

__device__ __forceinline__ uint32_t ldg_nc32(const void *p)
{
	uint32_t x;
	asm volatile("ld.global.nc.b32 %0, [%1];\n" : "=r"(x) : "l"(p));
	return x;
}

/* the body of V3's kernels: kernel (FU false: F unused, may be NULL) and
 * kernel_fu (round 14: SiLU folded in, la_fu) */
template <int D, bool SO, int ST, int VAR, bool FU, bool EA = false, bool DS = false,
          bool PF = false, int SP = 0>
__device__ __forceinline__ void kernel_body(const la_params &P, const la_fu *F)
{
	/* forms 4..7 build on form 3: FL fast loads, SM the bf16 state stored
	 * with stmatrix, OS the output staged in shared memory and written by
	 * row-wise bulk copies, HM the bf16x2 scaling (see the form list above) */
	constexpr bool ILV = VAR >= 1, OPT = VAR == 2, DF = VAR >= 3, FL = VAR >= 4, SM = VAR >= 5,
	               OS = L_OS<SO, VAR>::value, HM = VAR >= 7;
	/* form 8: a warp's 16 output rows by one TMA tensor store (lane 0) instead
	 * of 16 per-lane bulk copies; form 9: and the wait for the previous
	 * chunk's store to have read its staging rows moved to the top of the
	 * chunk, before the next chunk's loads are issued */
	constexpr bool TM = smem<D, SO, ST, VAR>::TM, EW = TM && VAR >= 9;
	using L = smem<D, SO, ST, VAR>;
	constexpr int NEB = D / EB, MB = D / 64, KQ = D / 16;
	/* DS (round 19): the backward's SiLU' source tiles, a stage each, after
	 * the other regions (ds_layout) */
	constexpr int DA_OFF = DS ? ds_layout<D, SO, ST, VAR>::OFF : 0;
	extern __shared__ __align__(1024) unsigned char smem_raw[];
	const uint32_t base = (smem_u32(smem_raw) + 1023) & ~1023u;
	unsigned char *sbase_ptr = smem_raw + (base - smem_u32(smem_raw));
	float *pw = reinterpret_cast<float *>(sbase_ptr + L::PW_OFF) + C;

	const int eb = blockIdx.x % NEB, g = blockIdx.x / NEB, h = blockIdx.y;
	const int b = blockIdx.z % P.B, pi = blockIdx.z / P.B;
	const la_prob &pr = P.p[pi];
	const int T0 = P.cu[b], T = P.cu[b + 1] - T0;
	const float slope = P.slopes[h];
	int seg_start, seg_end;
	if (SO) {
		/* g is sub-segment g of the state pass (g / F of the segments): its
		 * chunks within the head's window of the next segment's start, from
		 * a zero state, decayed to the sub-segment's end */
		if ((g / P.F + 1) * P.seg_len >= T)
			return; /* no later segment needs this one */
		const sub_range r = sub_seg(P, g, window_len(slope, P.win_bits));
		if (r.first >= r.e && P.pfx)
			return; /* outside the window: prefix_kernel counts it as zero */
		seg_start = r.first;
		seg_end = r.e;
	} else {
		seg_start = g * P.seg_len;
		if (g > 0 && seg_start >= T)
			return;
		seg_end = g == P.G - 1 ? T : min(seg_start + P.seg_len, T);
	}
	const int n_chunks = seg_end > seg_start ? (seg_end - seg_start + C - 1) / C : 0;
	const int H = P.H;
	const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
	const int gq = lane >> 2, t4 = lane & 3;

	for (int n = tid - C; n <= C; n += NT)
		pw[n] = n >= 0 ? expf(-slope * (float)n) : 0.0f;

	auto row_token = [&](int pos) -> long {
		return pr.reverse ? (long)T0 + T - 1 - pos : (long)T0 + pos;
	};
	/* loads: fixed 16-byte columns of rows r0, r0 + RPI, ... (RPI a multiple
	 * of 8, so the swizzle of a thread's pieces is the same in every row) */
	constexpr int CPR = D / 8, RPI = NT / CPR, IT = C / RPI;
	constexpr int VCPR = EB / 8, VRPI = NT / VCPR, VIT = C / VRPI;
	static_assert(RPI % 8 == 0 && VRPI % 8 == 0, "row steps keep the swizzle");
	const int qr0 = tid / CPR, qcc = tid % CPR, vr0 = tid / VCPR, vcc = tid % VCPR;
	const long HD = (long)H * D;
	const long qstep = (pr.reverse ? -RPI : RPI) * HD, vstep = (pr.reverse ? -VRPI : VRPI) * HD;
	const uint32_t qk_sm = (qcc >> 3) * L::TILE + swz(qr0, qcc & 7);
	const uint32_t v_sm = swz(vr0, vcc);
	/* forms 4 and up: a full chunk's rows are one base per tensor (this
	 * thread's first row of chunk 0, kept in registers) plus constant steps,
	 * with no bounds checks; the partial last chunk takes the general path.
	 * Row steps in bytes fit 32 bits (RPI H D 2 < 2^31 for H <= 65535). */
	const long cstep = (pr.reverse ? -C : C) * HD; /* elements per chunk */
	const int rstep = (pr.reverse ? -RPI : RPI) * (int)HD * 2,
	          vrstep = (pr.reverse ? -VRPI : VRPI) * (int)HD * 2;
	const char *q0 = nullptr, *k0 = nullptr, *v0 = nullptr, *da0 = nullptr;
	/* round 14 (FU): each of q', k', v' with its own row stride */
	const la_fu_prob *fp = FU ? &F->p[pi] : nullptr;
	/* SP (round 20, SWERVE_LIGHTNING_FU_CODE=split, kernel_sp): the fused
	 * forward's (1) and the SiLU' backward's (2) own code: la_fu's run-time
	 * choices that one of them never takes compiled out (1: every q', k',
	 * v' a pre-activation, no SiLU' epilogue; 2: no SiLU on the loads, no
	 * activation stores, every output scaled by SiLU'); 0: run-time */
	constexpr bool SPF = SP == 1, SPB = SP == 2;
	/* DS: the SiLU' source rows ride the stage pipeline, laid out as v's */
	const bool dsa = DS && !SO && (SPB || fp->dact);
	const long LDQ = FU ? fp->ld[0] : HD, LDK = FU ? fp->ld[1] : HD, LDV = FU ? fp->ld[2] : HD;
	const int sgn = pr.reverse ? -1 : 1;
	if (FU && FL) {
		q0 = reinterpret_cast<const char *>(pr.q + row_token(seg_start + qr0) * LDQ +
		                                    h * D + qcc * 8);
		k0 = reinterpret_cast<const char *>(pr.k + row_token(seg_start + qr0) * LDK +
		                                    h * D + qcc * 8);
		v0 = reinterpret_cast<const char *>(pr.v + row_token(seg_start + vr0) * LDV +
		                                    h * D + eb * EB + vcc * 8);
		if (dsa)
			da0 = reinterpret_cast<const char *>(fp->dact +
			                                     row_token(seg_start + vr0) * fp->ldo +
			                                     h * D + eb * EB + vcc * 8);
	} else if (FL) {
		const long qo = row_token(seg_start + qr0) * HD + h * D + qcc * 8;
		q0 = reinterpret_cast<const char *>(pr.q + qo);
		k0 = reinterpret_cast<const char *>(pr.k + qo);
		v0 = reinterpret_cast<const char *>(pr.v + row_token(seg_start + vr0) * HD + h * D +
		                                    eb * EB + vcc * 8);
	}
	auto load_chunk = [&](int c, int st) {
		const int pos0 = seg_start + c * C;
		const bool full = pos0 + C <= seg_end;
		if constexpr (FU) {
			if (FL && full) {
				const char *qa = q0 + (long)c * sgn * C * LDQ * 2,
				           *ka = k0 + (long)c * sgn * C * LDK * 2,
				           *va = v0 + (long)c * sgn * C * LDV * 2;
				const int qs = sgn * RPI * (int)LDQ * 2,
				          ks = sgn * RPI * (int)LDK * 2,
				          vs = sgn * VRPI * (int)LDV * 2;
#pragma unroll
				for (int it = 0; it < IT; it++) {
					const uint32_t dst = qk_sm + st * L::QK + it * RPI * 128;
					if (!SO)
						cp_async16_full(base + L::Q_OFF + dst,
						                qa + it * qs);
					cp_async16_full(base + L::K_OFF + dst, ka + it * ks);
				}
#pragma unroll
				for (int it = 0; it < VIT; it++)
					cp_async16_full(base + L::V_OFF + st * L::TILE + v_sm +
					                        it * VRPI * 128,
					                va + it * vs);
				if (dsa) {
					const char *da = da0 + (long)c * sgn * C * fp->ldo * 2;
					const int ds = sgn * VRPI * fp->ldo * 2;
#pragma unroll
					for (int it = 0; it < VIT; it++)
						cp_async16_full(base + DA_OFF + st * L::TILE +
						                        v_sm + it * VRPI * 128,
						                da + it * ds);
				}
				return;
			}
#pragma unroll
			for (int it = 0; it < IT; it++) {
				const bool ok = full || pos0 + qr0 + it * RPI < seg_end;
				const uint32_t dst = qk_sm + st * L::QK + it * RPI * 128;
				const long t = ok ? row_token(pos0 + qr0 + it * RPI) : 0;
				if (!SO)
					cp_async16(base + L::Q_OFF + dst,
					           ok ? pr.q + t * LDQ + h * D + qcc * 8 : pr.q,
					           ok);
				cp_async16(base + L::K_OFF + dst,
				           ok ? pr.k + t * LDK + h * D + qcc * 8 : pr.k, ok);
			}
#pragma unroll
			for (int it = 0; it < VIT; it++) {
				const bool ok = full || pos0 + vr0 + it * VRPI < seg_end;
				const long t = ok ? row_token(pos0 + vr0 + it * VRPI) : 0;
				cp_async16(base + L::V_OFF + st * L::TILE + v_sm + it * VRPI * 128,
				           ok ? pr.v + t * LDV + h * D + eb * EB + vcc * 8 : pr.v,
				           ok);
				if (dsa) /* rows past the segment: 0 (unused) */
					cp_async16(base + DA_OFF + st * L::TILE + v_sm +
					                   it * VRPI * 128,
					           ok ? fp->dact + t * fp->ldo + h * D + eb * EB +
					                           vcc * 8
					              : fp->dact,
					           ok);
			}
			return;
		}
		if (FL && full) {
			const long cb = c * cstep * 2;
			const char *qa = q0 + cb, *ka = k0 + cb, *va = v0 + cb;
#pragma unroll
			for (int it = 0; it < IT; it++) {
				const uint32_t dst = qk_sm + st * L::QK + it * RPI * 128;
				if (!SO)
					cp_async16_full(base + L::Q_OFF + dst, qa + it * rstep);
				cp_async16_full(base + L::K_OFF + dst, ka + it * rstep);
			}
#pragma unroll
			for (int it = 0; it < VIT; it++)
				cp_async16_full(base + L::V_OFF + st * L::TILE + v_sm +
				                        it * VRPI * 128,
				                va + it * vrstep);
			return;
		}
		const long qoff = row_token(pos0 + qr0) * HD + h * D + qcc * 8;
		const long voff = row_token(pos0 + vr0) * HD + h * D + eb * EB + vcc * 8;
#pragma unroll
		for (int it = 0; it < IT; it++) {
			const bool ok = full || pos0 + qr0 + it * RPI < seg_end;
			const uint32_t dst = qk_sm + st * L::QK + it * RPI * 128;
			if (!SO)
				cp_async16(base + L::Q_OFF + dst,
				           ok ? pr.q + qoff + it * qstep : pr.q, ok);
			cp_async16(base + L::K_OFF + dst, ok ? pr.k + qoff + it * qstep : pr.k, ok);
		}
#pragma unroll
		for (int it = 0; it < VIT; it++) {
			const bool ok = full || pos0 + vr0 + it * VRPI < seg_end;
			cp_async16(base + L::V_OFF + st * L::TILE + v_sm + it * VRPI * 128,
			           ok ? pr.v + voff + it * vstep : pr.v, ok);
		}
	};

#pragma unroll
	for (int c = 0; c < ST - 1; c++) {
		if (c < n_chunks)
			load_chunk(c, c);
		cp_commit();
	}

	/* the state: kv[mb][4 nt + r] is row d = 64 mb + 16 w + gq (+8 for r >= 2),
	 * column e = 8 nt + 2 t4 (+1 for odd r) of this e-block (the wgmma
	 * accumulator layout) */
	float kv[MB][32];
	const size_t sbase = ((size_t)b * H + h) * D * D;
#pragma unroll
	for (int mb = 0; mb < MB; mb++)
#pragma unroll
		for (int i = 0; i < 32; i++) {
			const int d = mb * 64 + w * 16 + gq + ((i & 2) ? 8 : 0);
			const int e = eb * EB + (i >> 2) * 8 + 2 * t4 + (i & 1);
			float val = 0.0f;
			if (!SO) {
				if (pr.init) {
					float s0 = pr.init_t ? pr.init[sbase + (size_t)e * D + d]
					                     : pr.init[sbase + (size_t)d * D + e];
					if (pr.init_div)
						s0 *= expf(slope);
					val = s0 * expf(-slope * (float)seg_start);
				}
				if (g > 0) /* the earlier segments, combined by prefix_kernel */
					val += pr.seg[(((size_t)b * H + h) * P.G * P.F + g * P.F -
					               1) * D *
					                      D +
					              (size_t)d * D + e];
			}
			kv[mb][i] = val;
		}
	/* the bf16 copy for Q KV: [d][e], 128-byte rows, swizzled */
	auto store_kvs = [&]() {
		if (OPT || SM) { /* four 8 x 8 blocks (rows d, 16-byte pieces of e) per stmatrix */
			const int q = lane >> 3;
#pragma unroll
			for (int mb = 0; mb < MB; mb++)
#pragma unroll
				for (int np = 0; np < 4; np++) {
					const float *a = kv[mb] + 8 * np;
					stsm_x4(base + L::KV_OFF +
					                swz(mb * 64 + w * 16 + (q & 1) * 8 +
					                            (lane & 7),
					                    2 * np + (q >> 1)),
					        pack_bf16(a[0], a[1]), pack_bf16(a[2], a[3]),
					        pack_bf16(a[4], a[5]), pack_bf16(a[6], a[7]));
				}
		} else {
#pragma unroll
			for (int mb = 0; mb < MB; mb++)
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					const int d = mb * 64 + w * 16 + gq;
					asm volatile(
					        "st.shared.b32 [%0], %1;\n" ::"r"(
					                base + L::KV_OFF + swz(d, nt) + 4 * t4),
					        "r"(pack_bf16(kv[mb][4 * nt], kv[mb][4 * nt + 1])));
					asm volatile(
					        "st.shared.b32 [%0], %1;\n" ::"r"(
					                base + L::KV_OFF + swz(d + 8, nt) + 4 * t4),
					        "r"(pack_bf16(kv[mb][4 * nt + 2],
					                      kv[mb][4 * nt + 3])));
				}
		}
	};
	if (!SO) {
		store_kvs();
		fence_proxy_async();
	}

	/* round 14, backward: the pre-activations of this thread's output
	 * elements of chunk cc (rows w 16 + gq and + 8, column pairs 8 nt +
	 * 2 t4), for the epilogue's SiLU' (0 past the segment) */
	auto load_dact = [&](int cc, uint32_t *dst) {
		const int mc = min(C, seg_end - (seg_start + cc * C));
		const int ia = w * 16 + gq, ib = ia + 8;
		const long ldo = fp->ldo;
		const __nv_bfloat16 *ra = fp->dact +
		                          (ia < mc ? row_token(seg_start + cc * C + ia) : 0) * ldo +
		                          h * D + eb * EB + 2 * t4;
		const __nv_bfloat16 *rb = fp->dact +
		                          (ib < mc ? row_token(seg_start + cc * C + ib) : 0) * ldo +
		                          h * D + eb * EB + 2 * t4;
#pragma unroll
		for (int nt = 0; nt < 8; nt++) {
			dst[nt] = ia < mc ? ldg_nc32(ra + nt * 8) : 0u;
			dst[8 + nt] = ib < mc ? ldg_nc32(rb + nt * 8) : 0u;
		}
	};
	/* EA (SWERVE_LIGHTNING_SILU_EARLY=1, not yet run on a GPU): chunk c's
	 * pre-activations loaded during chunk c - 1 (dpa), turned into the 32
	 * SiLU' factors (dsf) while chunk c's products run, so that the epilogue
	 * keeps 32 multiplies (keep's backward measured +32 us over the core
	 * with the SiLU' in the epilogue) */
	uint32_t dpa[16];
	float dsf[32];
	if constexpr (FU && EA && !SO) {
		if (fp->dact && n_chunks > 0)
			load_dact(0, dpa);
	}
	for (int c = 0; c < n_chunks; c++) {
		const int st = c % ST;
		/* form 9: the staging rows free again before the loads are issued (a
		 * bulk-group wait also waits for the cp.async loads in flight) */
		if (EW && c > 0)
			bulk_wait_read();
		/* into the stage chunk c - 1 used: every warp is past it (barrier below) */
		if (c + ST - 1 < n_chunks)
			load_chunk(c + ST - 1, (c + ST - 1) % ST);
		cp_commit();
		if constexpr (FU && PF && !SO) {
			/* PF (round 19, SWERVE_LIGHTNING_DACT=l2): the next chunk's SiLU'
			 * source rows into L2 (a row of this e-block a thread), so that
			 * its epilogue's LDGs hit L2 */
			if (fp->dact && tid < C && c + 1 < n_chunks) {
				const int pos = seg_start + (c + 1) * C + tid;
				if (pos < seg_end)
					prefetch_l2(fp->dact + row_token(pos) * fp->ldo + h * D +
					                    eb * EB,
					            EB * 2);
			}
		}
		if (OPT && c + ST < n_chunks) { /* the chunk after: into L2, a row a thread */
			const int r = tid & 63, pos = seg_start + (c + ST) * C + r;
			if (pos < seg_end) {
				const long tok = row_token(pos) * HD + h * D;
				if (tid < 64) {
					if (!SO)
						prefetch_l2(pr.q + tok, D * 2);
					prefetch_l2(pr.v + tok + eb * EB, EB * 2);
				} else {
					prefetch_l2(pr.k + tok, D * 2);
				}
			}
		}
		cp_wait<ST - 1>();
		if constexpr (FU) {
			/* round 14: SiLU of the pre-activations in place, each thread on
			 * the 16-byte pieces it loaded itself (visible to it after the
			 * wait; zero-filled rows stay 0), before the barrier; keep: a
			 * partial chunk's valid rows also stored by each thread (q and
			 * k by e-block 0 only) */
			const int sm = SPF   ? 7
			               : SPB ? 0
			                     : fp->silu,
			          mm = min(C, seg_end - (seg_start + c * C));
			const bool pst = !SO && !SPB && F->store && (mm < C || F->store == 2);
			auto piece = [&](uint32_t a, __nv_bfloat16 *g, int r) {
				const uint4 x = silu_piece(a);
				if (pst && g && r < mm)
					*reinterpret_cast<uint4 *>(
					        g + row_token(seg_start + c * C + r) * HD) = x;
			};
			__nv_bfloat16 *gq = nullptr, *gk = nullptr, *gv = nullptr;
			if (pst) {
				if (eb == 0) {
					gq = F->act[0] + h * D + qcc * 8;
					gk = F->act[1] + h * D + qcc * 8;
				}
				gv = F->act[2] + h * D + eb * EB + vcc * 8;
			}
			if (!SO && (sm & 1))
#pragma unroll
				for (int it = 0; it < IT; it++)
					piece(base + L::Q_OFF + qk_sm + st * L::QK + it * RPI * 128,
					      gq, qr0 + it * RPI);
			if (sm & 2)
#pragma unroll
				for (int it = 0; it < IT; it++)
					piece(base + L::K_OFF + qk_sm + st * L::QK + it * RPI * 128,
					      gk, qr0 + it * RPI);
			if (sm & 4)
#pragma unroll
				for (int it = 0; it < VIT; it++)
					piece(base + L::V_OFF + st * L::TILE + v_sm +
					              it * VRPI * 128,
					      gv, vr0 + it * VRPI);
		}
		fence_proxy_async(); /* cp.async wrote generic-proxy; wgmma reads async */
		__syncthreads();
		const int m = min(C, seg_end - (seg_start + c * C));
		/* round 14, backward: the pre-activations of this thread's output
		 * elements (rows w 16 + gq and + 8, column pairs 8 nt + 2 t4), read
		 * now for the epilogue's SiLU' */
		/* keep: a full chunk's activated tiles written by one thread (tid 1:
		 * no other bulk copies) through TMA tensor stores; it waits for
		 * them to have read the stage before the chunk's last barrier */
		bool ast = false;
		if constexpr (FU && !SO)
			ast = !SPB && F->store == 1 && m == C && tid == 1;
		if (ast) {
			const int t0 = (int)row_token(seg_start + c * C);
			if (eb == 0)
#pragma unroll
				for (int j = 0; j < D / 64; j++) {
					tma_store_16x64(&F->amap[0], h * D + j * 64, t0,
					                base + L::Q_OFF + st * L::QK + j * L::TILE);
					tma_store_16x64(&F->amap[1], h * D + j * 64, t0,
					                base + L::K_OFF + st * L::QK + j * L::TILE);
				}
			tma_store_16x64(&F->amap[2], h * D + eb * EB, t0,
			                base + L::V_OFF + st * L::TILE);
			bulk_commit();
		}
		uint32_t dpv[16];
		if (FU && !DS && !SO && !SPF &&
		    (SPB || fp->dact)) /* EA: chunk c + 1's, used next chunk */
			load_dact(EA ? c + 1 : c, dpv);
		const uint32_t Qs = base + L::Q_OFF + st * L::QK, Ks = base + L::K_OFF + st * L::QK;
		const uint32_t Vs = base + L::V_OFF + st * L::TILE;

		/* A fragments of (K .* lambda^(m-1-j))^T: rows d of this warp, k = j,
		 * and the decay of the state */
		uint32_t ka[MB][4][4];
		auto prep_state_update = [&]() {
			const int q8 = lane >> 3;
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				const int j = kk * 16 + (q8 >> 1) * 8 + (lane & 7);
				const int j0 = kk * 16 + 2 * t4;
				const float f0 = pw[m - 1 - j0], f1 = pw[m - 2 - j0];
				const float f2 = pw[m - 9 - j0], f3 = pw[m - 10 - j0];
#pragma unroll
				for (int mb = 0; mb < MB; mb++) {
					ldsm_x4_t(ka[mb][kk],
					          Ks + mb * L::TILE + swz(j, 2 * w + (q8 & 1)));
					if (HM) { /* form 7: bf16 pairs times bf16 factor pairs */
						const uint32_t fa = pack_bf16(f0, f1),
						               fb = pack_bf16(f2, f3);
						ka[mb][kk][0] = mul_bf16x2(ka[mb][kk][0], fa);
						ka[mb][kk][1] = mul_bf16x2(ka[mb][kk][1], fa);
						ka[mb][kk][2] = mul_bf16x2(ka[mb][kk][2], fb);
						ka[mb][kk][3] = mul_bf16x2(ka[mb][kk][3], fb);
						continue;
					}
					ka[mb][kk][0] = scale_bf16x2(ka[mb][kk][0], f0, f1);
					ka[mb][kk][1] = scale_bf16x2(ka[mb][kk][1], f0, f1);
					ka[mb][kk][2] = scale_bf16x2(ka[mb][kk][2], f2, f3);
					ka[mb][kk][3] = scale_bf16x2(ka[mb][kk][3], f2, f3);
				}
			}
			const float bd = pw[m];
#pragma unroll
			for (int mb = 0; mb < MB; mb++) {
				if (!DF) /* form 3 decays the state before the first product */
#pragma unroll
					for (int i = 0; i < 32; i++)
						kv[mb][i] *= bd;
				reg_fence(kv[mb]);
#pragma unroll
				for (int kk = 0; kk < 4; kk++)
					reg_fence(ka[mb][kk]);
			}
		};
		/* form 2: Vt = v .* lambda^(m-1-j) by rows (16-byte pieces, same
		 * swizzle), and the decay of the state */
		const uint32_t Vt = base + L::VT_OFF;
		const uint32_t qlo = dlo(Qs), klo = dlo(Ks), vlo = dlo(Vs), vtlo = dlo(Vt),
		               kvlo = dlo(base + L::KV_OFF);
		auto prep_vt = [&]() {
#pragma unroll
			for (int it = 0; it < 4; it++) {
				const int r = (tid >> 3) + 16 * it;
				const float f = pw[m - 1 - r];
				uint4 x = lds128(Vs + swz(r, tid & 7));
				x.x = scale_bf16x2(x.x, f, f);
				x.y = scale_bf16x2(x.y, f, f);
				x.z = scale_bf16x2(x.z, f, f);
				x.w = scale_bf16x2(x.w, f, f);
				sts128(Vt + swz(r, tid & 7), x);
			}
			const float bd = pw[m];
#pragma unroll
			for (int mb = 0; mb < MB; mb++) {
#pragma unroll
				for (int i = 0; i < 32; i++)
					kv[mb][i] *= bd;
				reg_fence(kv[mb]);
			}
		};
		float s[32], o[32];
		uint32_t pa[4][4];
		auto mma_s =
		        [&](int kk) { /* S = Q K^T */
			              mma_ss<0, 0>(s, dsc(qlo, (kk >> 2) * L::TILE + (kk & 3) * 32),
			                           dsc(klo, (kk >> 2) * L::TILE + (kk & 3) * 32),
			                           kk > 0);
		        };
		auto mma_o =
		        [&](int kk) { /* O = Q KV (the state before the chunk) */
			              mma_ss<0, 1>(o, dsc(qlo, (kk >> 2) * L::TILE + (kk & 3) * 32),
			                           dsc(kvlo, kk * 2048), kk > 0);
		        };
		if (DF) {
			/* form 3: the state's decay before any product of this chunk is
			 * issued; in form 1 it comes after S and Q KV's first half, and
			 * ptxas injects a warpgroup.wait there (C7517: kv was last written
			 * by a wgmma), so those products finish before the state update's
			 * are issued */
			const float bd = pw[m];
#pragma unroll
			for (int mb = 0; mb < MB; mb++) {
#pragma unroll
				for (int i = 0; i < 32; i++)
					kv[mb][i] *= bd;
				reg_fence(kv[mb]);
			}
		}
		if (ILV) {
			/* Independent accumulators back to back: a wgmma that adds into the
			 * accumulator of the one before waits for it, so S, O and the two
			 * state halves take turns; the first rounds of S and O are issued
			 * before the state update's operands are ready */
			constexpr int H1 = SO ? 0 : KQ / 2;
			if (!SO) {
				fence();
#pragma unroll
				for (int kk = 0; kk < H1; kk++) {
					mma_s(kk);
					mma_o(kk);
				}
			}
			if (OPT) {
				prep_vt();
				fence_proxy_async();
				__syncthreads(); /* all of Vt written */
			} else {
				prep_state_update();
			}
			fence();
			constexpr int R = (KQ - H1) > 4 ? (KQ - H1) : 4;
#pragma unroll
			for (int r = 0; r < R; r++) {
				if (!SO && H1 + r < KQ) {
					mma_s(H1 + r);
					mma_o(H1 + r);
				}
				if (r < 4)
#pragma unroll
					for (int mb = 0; mb < MB; mb++) {
						if (OPT) /* A = K^T, M-major; B = Vt */
							mma_ss<1, 1>(
							        kv[mb],
							        dsc(klo, mb * L::TILE + r * 2048),
							        dsc(vtlo, r * 2048), 1);
						else
							mma_rs(kv[mb], ka[mb][r],
							       dsc(vlo, r * 2048));
					}
			}
			commit();
		} else {
			/* the first V3: each product's steps one after the other */
			prep_state_update();
			fence();
			if (!SO) {
#pragma unroll
				for (int kk = 0; kk < KQ; kk++)
					mma_s(kk);
				commit();
#pragma unroll
				for (int kk = 0; kk < KQ; kk++)
					mma_o(kk);
				commit();
			}
#pragma unroll
			for (int mb = 0; mb < MB; mb++) /* the state update */
#pragma unroll
				for (int kk = 0; kk < 4; kk++)
					mma_rs(kv[mb], ka[mb][kk], dsc(vlo, kk * 2048));
			commit();
		}

		if constexpr (FU && EA && !SO) {
			if (fp->dact) /* while the products run */
#pragma unroll
				for (int i = 0; i < 16; i++) {
					dsf[2 * i] = dsilu_fast(__uint_as_float(dpa[i] << 16));
					dsf[2 * i + 1] =
					        dsilu_fast(__uint_as_float(dpa[i] & 0xffff0000u));
				}
		}
		if (!SO) {
			if (ILV)
				wait<0>();
			else
				wait<2>();
			reg_fence(s);
			/* decay mask, then the bf16 A fragments of P */
			const int i0 = w * 16 + gq;
#pragma unroll
			for (int i = 0; i < 32; i++)
				s[i] *= pw[i0 + ((i & 2) ? 8 : 0) -
				           ((i >> 2) * 8 + 2 * t4 + (i & 1))];
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				pa[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
				pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
				pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
				pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
			}
			if (!ILV)
				wait<1>();
			reg_fence(o);
			const float f0 = pw[i0 + 1], f1 = pw[i0 + 9];
#pragma unroll
			for (int i = 0; i < 32; i++)
				o[i] *= (i & 2) ? f1 : f0;
			reg_fence(o);
			reg_fence(s);
#pragma unroll
			for (int kk = 0; kk < 4; kk++)
				reg_fence(pa[kk]);
			fence();
			if (ILV && !OPT) {
				/* O += P V as two chains: key tiles 0, 1 into o, 2, 3 into s
				 * (free once P is packed), summed below */
#pragma unroll
				for (int kk = 0; kk < 2; kk++) {
					mma_rs(o, pa[kk], dsc(vlo, kk * 2048));
					mma_rs(s, pa[kk + 2], dsc(vlo, (kk + 2) * 2048), kk > 0);
				}
			} else {
#pragma unroll
				for (int kk = 0; kk < 4; kk++) /* O += P V */
					mma_rs(o, pa[kk], dsc(vlo, kk * 2048));
			}
			commit();
		}
		wait<0>();
		/* the register operands are read asynchronously: keep them live to here */
#pragma unroll
		for (int mb = 0; mb < MB; mb++) {
			reg_fence(kv[mb]);
			if (!OPT)
#pragma unroll
				for (int kk = 0; kk < 4; kk++)
					reg_fence(ka[mb][kk]);
		}
		if (!SO) {
			reg_fence(o);
			reg_fence(s);
#pragma unroll
			for (int kk = 0; kk < 4; kk++)
				reg_fence(pa[kk]);
			if (ILV && !OPT)
#pragma unroll
				for (int i = 0; i < 32; i++)
					o[i] += s[i];
			if (FU && EA && fp->dact)
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					o[4 * nt] *= dsf[2 * nt];
					o[4 * nt + 1] *= dsf[2 * nt + 1];
					o[4 * nt + 2] *= dsf[16 + 2 * nt];
					o[4 * nt + 3] *= dsf[16 + 2 * nt + 1];
				}
			if (FU && DS &&
			    (SPB || fp->dact)) /* DS: this stage's rows, swizzled as v's */
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					const int ia = w * 16 + gq;
					const uint32_t da = base + DA_OFF + st * L::TILE + 4 * t4;
					dpv[nt] = lds32(da + swz(ia, nt));
					dpv[8 + nt] = lds32(da + swz(ia + 8, nt));
				}
			if (FU && !EA && !SPF && (SPB || fp->dact))
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					const uint32_t a = dpv[nt], b2 = dpv[8 + nt];
					o[4 * nt] *= dsilu_fast(__uint_as_float(a << 16));
					o[4 * nt + 1] *=
					        dsilu_fast(__uint_as_float(a & 0xffff0000u));
					o[4 * nt + 2] *= dsilu_fast(__uint_as_float(b2 << 16));
					o[4 * nt + 3] *=
					        dsilu_fast(__uint_as_float(b2 & 0xffff0000u));
				}
			/* form 8 and up: a warp whose 16 rows are all in the chunk stages
			 * them (stmatrix into 128-byte swizzled rows, in token order:
			 * reversed for a reversed walk) and lane 0 writes them with one
			 * TMA tensor store; a partial chunk's warps store from registers */
			const bool tm_rows = TM && w * 16 + 15 < m;
			if (tm_rows) {
				const int q = lane >> 3, r = (q & 1) * 8 + (lane & 7);
				const int br = pr.reverse ? 15 - r : r;
				const uint32_t wst = base + L::OS_OFF + w * 2048;
				if (!EW)
					bulk_wait_read();
				__syncwarp();
#pragma unroll
				for (int np = 0; np < 4; np++) {
					const float *a = o + 8 * np;
					stsm_x4(wst + swz(br, 2 * np + (q >> 1)),
					        pack_bf16(a[0], a[1]), pack_bf16(a[2], a[3]),
					        pack_bf16(a[4], a[5]), pack_bf16(a[6], a[7]));
				}
				fence_proxy_async();
				__syncwarp();
				if (lane == 0) {
					const long t0 = row_token(seg_start + c * C + w * 16 +
					                          (pr.reverse ? 15 : 0));
					tma_store_16x64(&P.otm[pi], h * D + eb * EB, (int)t0, wst);
					bulk_commit();
				}
			}
			if (OS && !TM) {
				/* the warp's 16 rows into the staging rows (stmatrix, the
				 * layout of the state's), then one 128-byte bulk copy per
				 * row; the previous chunk's copies have read it by now */
				const int q = lane >> 3;
				const uint32_t ost = base + L::OS_OFF;
				bulk_wait_read();
				__syncwarp();
#pragma unroll
				for (int np = 0; np < 4; np++) {
					const float *a = o + 8 * np;
					stsm_x4(ost + (w * 16 + (q & 1) * 8 + (lane & 7)) * OS_ROW +
					                (2 * np + (q >> 1)) * 16,
					        pack_bf16(a[0], a[1]), pack_bf16(a[2], a[3]),
					        pack_bf16(a[4], a[5]), pack_bf16(a[6], a[7]));
				}
				fence_proxy_async();
				__syncwarp();
				const int i = w * 16 + lane;
				if (lane < 16 && i < m) {
					const long t = row_token(seg_start + c * C + i);
					bulk_store128(pr.o + ((size_t)t * H + h) * D + eb * EB,
					              ost + i * OS_ROW);
					bulk_commit();
				}
			}
			/* o straight from the accumulators: rows i0 and i0 + 8 */
			const int ia = w * 16 + gq, ib = ia + 8;
			const long ta = row_token(seg_start + c * C + ia),
			           tb = row_token(seg_start + c * C + ib);
			__nv_bfloat16 *oa =
			        FU ? pr.o + ta * (long)fp->ldo + h * D + eb * EB + 2 * t4
			           : pr.o + ((size_t)ta * H + h) * D + eb * EB + 2 * t4;
			__nv_bfloat16 *ob =
			        FU ? pr.o + tb * (long)fp->ldo + h * D + eb * EB + 2 * t4
			           : pr.o + ((size_t)tb * H + h) * D + eb * EB + 2 * t4;
			if (!OS || (TM && !tm_rows))
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					if (ia < m)
						*reinterpret_cast<uint32_t *>(oa + nt * 8) =
						        pack_bf16(o[4 * nt], o[4 * nt + 1]);
					if (ib < m)
						*reinterpret_cast<uint32_t *>(ob + nt * 8) =
						        pack_bf16(o[4 * nt + 2], o[4 * nt + 3]);
				}
		}
		if constexpr (FU && EA && !SO) {
			if (fp->dact)
#pragma unroll
				for (int i = 0; i < 16; i++)
					dpa[i] = dpv[i];
		}
		if (ast)
			bulk_wait_read(); /* the stage is loaded again after the barrier */
		__syncthreads(); /* every warp's products are done with kvs and this stage */
		if (!SO) {
			store_kvs();
			fence_proxy_async();
		}
	}
	cp_wait<0>();
	if (OS || (FU && !SO && !SPB && F->store))
		bulk_wait(); /* the output's last rows are written before the CTA ends */

	float *dst = nullptr;
	float mul = 1.0f;
	if (SO) {
		dst = pr.seg + (((size_t)b * H + h) * P.G * P.F + g) * D * D;
	} else {
		const int last = T > 0 ? min((T - 1) / P.seg_len, P.G - 1) : 0;
		if (pr.final && g == last) {
			dst = pr.final + sbase;
			mul = pr.final_mul ? expf(-slope) : 1.0f;
		}
	}
	if (dst) {
#pragma unroll
		for (int mb = 0; mb < MB; mb++)
#pragma unroll
			for (int nt = 0; nt < 8; nt++) {
				const int d = mb * 64 + w * 16 + gq;
				const int e = eb * EB + nt * 8 + 2 * t4;
				*reinterpret_cast<float2 *>(dst + (size_t)d * D + e) =
				        make_float2(kv[mb][4 * nt] * mul, kv[mb][4 * nt + 1] * mul);
				*reinterpret_cast<float2 *>(dst + (size_t)(d + 8) * D + e) =
				        make_float2(kv[mb][4 * nt + 2] * mul,
				                    kv[mb][4 * nt + 3] * mul);
			}
	}
}

template <int D, bool SO, int ST, int VAR>
__global__ void __launch_bounds__(NT, ST == 2 ? 2 : 1) kernel(const __grid_constant__ la_params P)
{
	kernel_body<D, SO, ST, VAR, false>(P, nullptr);
}

/* round 14: V3 with the layer's SiLU folded in (see la_fu) */
template <int D, bool SO, int ST, int VAR, bool EA>
__global__ void __launch_bounds__(NT, ST == 2 ? 2 : 1)
        kernel_fu(const __grid_constant__ la_params P, const __grid_constant__ la_fu F)
{
	kernel_body<D, SO, ST, VAR, true, EA>(P, &F);
}

/* round 19 (SWERVE_LIGHTNING_DACT=smem): kernel_fu's main pass with the
 * backward's SiLU' source (pre) loaded by cp.async with each chunk's stage
 * into shared memory (ds_layout::OFF), read in the epilogue from there; keep's
 * backward measured 18% of its warp samples waiting for the LDGs the default
 * issues at the chunk's start (H100, ncu, lc19) */
template <int D, bool SO, int ST, int VAR>
__global__ void __launch_bounds__(NT, ST == 2 ? 2 : 1)
        kernel_ds(const __grid_constant__ la_params P, const __grid_constant__ la_fu F)
{
	kernel_body<D, SO, ST, VAR, true, false, true>(P, &F);
}

/* round 19 (SWERVE_LIGHTNING_DACT=l2; measured slower by lc20: keep's backward
 * 0.1171 against 0.0954 ms, cold 108.6 against 92.7 us, H100): kernel_fu's main
 * pass with the next chunk's SiLU' source rows prefetched into L2 at each
 * chunk's top (no more shared memory than kernel_fu) */
template <int D, bool SO, int ST, int VAR>
__global__ void __launch_bounds__(NT, ST == 2 ? 2 : 1)
        kernel_pf(const __grid_constant__ la_params P, const __grid_constant__ la_fu F)
{
	kernel_body<D, SO, ST, VAR, true, false, false, true>(P, &F);
}

/* round 20 (SWERVE_LIGHTNING_FU_CODE=split): kernel_fu with the fused
 * forward's (SP 1: forward_silu, both passes) or the SiLU' backward's (SP 2:
 * backward_dsilu with the LDG epilogue) run-time choices compiled in, so
 * that neither carries the other's code (kernel_fu: one body of ~5700 SASS
 * instructions for both; ncu of keep's forward main pass: 27% of its warp
 * samples waiting for instruction fetch, lc19). The same arithmetic in the
 * same order: bit for bit kernel_fu's results. DSX: SP 2 with round 19's
 * DACT=smem (kernel_ds's SiLU' source stages; its dynamic shared memory).
 * H100, policy shape (4 x 2048, 12 heads of 64), ms, lc20: keep's forward
 * 0.0712 against 0.0733; backward with DACT=smem 0.0791 against kernel_ds's
 * 0.0863 and the default's 0.0985 (cold L2: 73.2 against 94.2 us); but SP 2
 * with the LDG epilogue 0.1175 against 0.1004 (209 registers against 187):
 * use split with DACT=smem. gpu_train K = 4 x 8192, both switches: 77.5 /
 * 77.6 ms a step against the default's 78.1 / 78.2 in the same run. */
template <int D, bool SO, int ST, int VAR, int SP, bool DSX = false>
__global__ void __launch_bounds__(NT, ST == 2 ? 2 : 1)
        kernel_sp(const __grid_constant__ la_params P, const __grid_constant__ la_fu F)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	kernel_body<D, SO, ST, VAR, true, false, DSX, false, SP>(P, &F);
}

/* Between the state pass and the main pass (V3 and V4): the sub-segments' own
 * contributions Delta_s (s < (nseg - 1) F, those that exist for the
 * sequence) become running sums P_s = lambda^len_s P_{s-1} + Delta_s, written
 * in place where the main pass reads them (s = g F - 1, the start of segment
 * g), so that it starts segment g from lambda^(g L) S0 + P_{gF-1} with one
 * read. A sub-segment outside the head's window (window_len) was not written
 * by the state pass and counts as zero. The sums go through a thread's
 * registers, the states read 8 at a time (independent loads in flight). A
 * thread per 4 state elements, 256 threads, grid (D D / 1024, H, B x
 * problems). With F = 1 and no window: the seventh round's combine. */
__global__ void __launch_bounds__(256) prefix_kernel(const __grid_constant__ la_params P, int D)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	const int h = blockIdx.y, b = blockIdx.z % P.B, pi = blockIdx.z / P.B;
	const int T = P.cu[b + 1] - P.cu[b];
	const int nseg = min(T > 0 ? (T + P.seg_len - 1) / P.seg_len : 0, P.G);
	const size_t n4 = (size_t)D * D / 4, i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n4 || nseg < 2)
		return;
	const float slope = P.slopes[h];
	const int wl = window_len(slope, P.win_bits), nsub = (nseg - 1) * P.F;
	float4 *st =
	        reinterpret_cast<float4 *>(P.p[pi].seg + ((size_t)b * P.H + h) * P.G * P.F * D * D);
	float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
	constexpr int BATCH = 8;
	for (int s0 = 0; s0 < nsub; s0 += BATCH) {
		float4 x[BATCH];
		float lam[BATCH];
#pragma unroll
		for (int u = 0; u < BATCH; u++) {
			const int s = s0 + u;
			x[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
			lam[u] = 1.0f;
			if (s < nsub) {
				const sub_range r = sub_seg(P, s, wl);
				lam[u] = expf(-slope * (float)(r.e - r.a));
				if (r.first < r.e)
					x[u] = st[s * n4 + i];
			}
		}
#pragma unroll
		for (int u = 0; u < BATCH; u++) {
			const int s = s0 + u;
			if (s >= nsub)
				break;
			acc = make_float4(lam[u] * acc.x + x[u].x, lam[u] * acc.y + x[u].y,
			                  lam[u] * acc.z + x[u].z, lam[u] * acc.w + x[u].w);
			if (s % P.F == P.F - 1)
				st[s * n4 + i] = acc;
		}
	}
}

/* ---- V4: two warpgroups, chunks of 128 tokens -----------------------------------
 *
 * A CTA of 8 warps (two warpgroups) owns the same (e-block, segment) x head x
 * (sequence, problem) as V3 but walks chunks of C4 = 128 tokens, halving the
 * sequential steps of a segment. q, k and v of a chunk are loaded once into
 * shared memory (128-byte-swizzled 64-row tiles, two stages) and shared by both
 * warpgroups; warpgroup w owns rows 64 w .. 64 w + 63 of the chunk:
 *
 *   warpgroup 0: S00 = Q0 K0^T (masked), O0 = Q0 KV, O0 += P00 V0
 *   warpgroup 1: S11 = Q1 K1^T (masked), S10 = Q1 K0^T (no mask, decay
 *                lambda^(64 + i - j)), O1 = Q1 KV, O1 += P11 V1 + P10 V0
 *
 * and the state update KV = lambda^m KV + (K .* lambda^(m-1-j))^T V over the
 * chunk's 128 tokens is split by state rows: at D = 128 warpgroup w holds rows
 * 64 w .. 64 w + 63 (fp32, registers), at D = 64 warpgroup 0 holds all of it
 * (warpgroup 1 has the extra cross block). Per chunk at D = 128: 28 wgmma
 * (warpgroup 0) and 40 (warpgroup 1), m64n64k16; two barriers per chunk, as
 * V3. One CTA per SM at D = 128 (178 KB of shared memory; 196 KB in form 2).
 * Segments (G > 1) use V3's state-only pass and prefix kernel (segment
 * lengths are multiples of 128 tokens). Form 2 (the sixth round) has V3 form
 * 7's changes: 0.241 ms against form 1's 0.268 for the 4 x 8192 forward
 * (H100, one run), 60.6M instructions against 75.5M. Form 3 (the default
 * since the seventh round) has V3 form 8's output path (one TMA tensor store
 * per warp): 4 x 8192 fwd 0.195 against form 2's 0.237 ms, fb 0.742 against
 * 0.932 (H100, one run, V4 forced for both passes). */
constexpr int C4 = 128;  /* V4: tokens per chunk */
constexpr int NT4 = 256; /* V4: threads per CTA, two warpgroups */

/* F: V4's form, 1 (the fifth round's), 2 (the sixth round's: V3 form 7's
 * changes, with the output staged in OS_OFF for row-wise bulk copies) or 3
 * (the seventh round's: V3 form 8's TMA tensor stores of the output) */
template <int D, int F> struct smem4 {
	static constexpr int TILE = C * 128;        /* 64 rows x 64 bf16, one swizzle atom column */
	static constexpr int HQK = (D / 64) * TILE; /* 64 rows of q or k */
	static constexpr int QK = 2 * HQK;          /* a stage of q or k: 128 rows */
	static constexpr int VST = 2 * TILE;        /* a stage of v: 128 rows x 64 columns */
	static constexpr int Q_OFF = 0;             /* bytes from the 1024-aligned base */
	static constexpr int K_OFF = Q_OFF + 2 * QK;
	static constexpr int V_OFF = K_OFF + 2 * QK;
	static constexpr int KV_OFF = V_OFF + 2 * VST; /* bf16 state [D][64], swizzled */
	static constexpr int OS_OFF = KV_OFF + D * 128;
	/* form 3: 128-byte swizzled rows for the TMA tensor stores (V3 form 8) */
	static constexpr int PW_OFF = OS_OFF + (F >= 3 ? C4 * 128 : F >= 2 ? C4 * OS_ROW : 0);
	static constexpr size_t BYTES = PW_OFF + (2 * C4 + 1) * sizeof(float) + 1024;
	static_assert(OS_OFF % 1024 == 0, "the TMA's 128-byte swizzle needs 1024-aligned rows");
};

template <int D, int F>
__global__ void __launch_bounds__(NT4, 1) kernel4(const __grid_constant__ la_params P)
{
	using L = smem4<D, F>;
	constexpr bool NEW = F >= 2; /* form 2: fast loads, stmatrix, staged output, bf16x2 */
	constexpr bool TM = F >= 3;  /* form 3: a warp's output rows by one TMA tensor store */
	constexpr int NEB = D / EB, MB = D / 64, KQ = D / 16;
	constexpr int MBW = MB > 1 ? MB / 2 : 1; /* state row blocks per warpgroup */
	extern __shared__ __align__(1024) unsigned char smem_raw[];
	const uint32_t base = (smem_u32(smem_raw) + 1023) & ~1023u;
	float *pw =
	        reinterpret_cast<float *>(smem_raw + (base - smem_u32(smem_raw)) + L::PW_OFF) + C4;

	const int eb = blockIdx.x % NEB, g = blockIdx.x / NEB, h = blockIdx.y;
	const int b = blockIdx.z % P.B, pi = blockIdx.z / P.B;
	const la_prob &pr = P.p[pi];
	const int T0 = P.cu[b], T = P.cu[b + 1] - T0;
	const int seg_start = g * P.seg_len;
	if (g > 0 && seg_start >= T)
		return;
	const int seg_end = g == P.G - 1 ? T : min(seg_start + P.seg_len, T);
	const int n_chunks = seg_end > seg_start ? (seg_end - seg_start + C4 - 1) / C4 : 0;
	const int H = P.H;
	const float slope = P.slopes[h];
	/* the warpgroup index through a shuffle: the compiler then knows it is
	 * warp-uniform, and the wgmma in branches on it are not serialized */
	const int tid = threadIdx.x, lane = tid & 31, w = (tid >> 5) & 3,
	          wgi = __shfl_sync(0xffffffffu, tid >> 7, 0);
	const int gq = lane >> 2, t4 = lane & 3;
	/* this warpgroup holds state row blocks wgi * MBW .. (D = 64: warpgroup 0 only) */
	const bool hs = MB > 1 || wgi == 0;

	for (int n = tid - C4; n <= C4; n += NT4)
		pw[n] = n >= 0 ? expf(-slope * (float)n) : 0.0f;

	auto row_token = [&](int pos) -> long {
		return pr.reverse ? (long)T0 + T - 1 - pos : (long)T0 + pos;
	};
	/* loads: fixed 16-byte columns of rows r0, r0 + RPI, ...; RPI divides 64,
	 * so iteration it's rows lie in half (it RPI) / 64 of the chunk */
	constexpr int CPR = D / 8, RPI = NT4 / CPR, IT = C4 / RPI;
	constexpr int VCPR = EB / 8, VRPI = NT4 / VCPR, VIT = C4 / VRPI;
	static_assert(RPI % 8 == 0 && VRPI % 8 == 0 && C % RPI == 0 && C % VRPI == 0,
	              "row steps keep the swizzle and the halves");
	const int qr0 = tid / CPR, qcc = tid % CPR, vr0 = tid / VCPR, vcc = tid % VCPR;
	const long HD = (long)H * D;
	const long qstep = (pr.reverse ? -RPI : RPI) * HD, vstep = (pr.reverse ? -VRPI : VRPI) * HD;
	const uint32_t qk_sm = (qcc >> 3) * L::TILE + swz(qr0, qcc & 7);
	const uint32_t v_sm = swz(vr0, vcc);
	/* form 2: full chunks from per-thread bases and constant steps (V3 form 4) */
	const long cstep = (pr.reverse ? -C4 : C4) * HD;
	const int rstep = (pr.reverse ? -RPI : RPI) * (int)HD * 2,
	          vrstep = (pr.reverse ? -VRPI : VRPI) * (int)HD * 2;
	const char *q0 = nullptr, *k0 = nullptr, *v0 = nullptr;
	if (NEW) {
		const long qo = row_token(seg_start + qr0) * HD + h * D + qcc * 8;
		q0 = reinterpret_cast<const char *>(pr.q + qo);
		k0 = reinterpret_cast<const char *>(pr.k + qo);
		v0 = reinterpret_cast<const char *>(pr.v + row_token(seg_start + vr0) * HD + h * D +
		                                    eb * EB + vcc * 8);
	}
	auto load_chunk = [&](int c, int st) {
		const int pos0 = seg_start + c * C4;
		const bool full = pos0 + C4 <= seg_end;
		if (NEW && full) {
			const long cb = c * cstep * 2;
			const char *qa = q0 + cb, *ka = k0 + cb, *va = v0 + cb;
#pragma unroll
			for (int it = 0; it < IT; it++) {
				const int r = it * RPI;
				const uint32_t dst =
				        qk_sm + st * L::QK + (r / C) * L::HQK + (r % C) * 128;
				cp_async16_full(base + L::Q_OFF + dst, qa + it * rstep);
				cp_async16_full(base + L::K_OFF + dst, ka + it * rstep);
			}
#pragma unroll
			for (int it = 0; it < VIT; it++) {
				const int r = it * VRPI;
				cp_async16_full(base + L::V_OFF + st * L::VST + (r / C) * L::TILE +
				                        v_sm + (r % C) * 128,
				                va + it * vrstep);
			}
			return;
		}
		const long qoff = row_token(pos0 + qr0) * HD + h * D + qcc * 8;
		const long voff = row_token(pos0 + vr0) * HD + h * D + eb * EB + vcc * 8;
#pragma unroll
		for (int it = 0; it < IT; it++) {
			const int r = it * RPI;
			const bool ok = full || pos0 + qr0 + r < seg_end;
			const uint32_t dst = qk_sm + st * L::QK + (r / C) * L::HQK + (r % C) * 128;
			cp_async16(base + L::Q_OFF + dst, ok ? pr.q + qoff + it * qstep : pr.q, ok);
			cp_async16(base + L::K_OFF + dst, ok ? pr.k + qoff + it * qstep : pr.k, ok);
		}
#pragma unroll
		for (int it = 0; it < VIT; it++) {
			const int r = it * VRPI;
			const bool ok = full || pos0 + vr0 + r < seg_end;
			cp_async16(base + L::V_OFF + st * L::VST + (r / C) * L::TILE + v_sm +
			                   (r % C) * 128,
			           ok ? pr.v + voff + it * vstep : pr.v, ok);
		}
	};

	if (n_chunks > 0)
		load_chunk(0, 0);
	cp_commit();

	/* the state: kv[i][4 nt + r] is row d = 64 (wgi MBW + i) + 16 w + gq (+8 for
	 * r >= 2), column e = 8 nt + 2 t4 (+1 for odd r) of this e-block */
	float kv[MBW][32];
	const size_t sbase = ((size_t)b * H + h) * D * D;
#pragma unroll
	for (int mi = 0; mi < MBW; mi++)
#pragma unroll
		for (int i = 0; i < 32; i++) {
			const int d = (wgi * MBW + mi) * 64 + w * 16 + gq + ((i & 2) ? 8 : 0);
			const int e = eb * EB + (i >> 2) * 8 + 2 * t4 + (i & 1);
			float val = 0.0f;
			if (hs) {
				if (pr.init) {
					float s0 = pr.init_t ? pr.init[sbase + (size_t)e * D + d]
					                     : pr.init[sbase + (size_t)d * D + e];
					if (pr.init_div)
						s0 *= expf(slope);
					val = s0 * expf(-slope * (float)seg_start);
				}
				if (g > 0) /* the earlier segments, combined by prefix_kernel */
					val += pr.seg[(((size_t)b * H + h) * P.G * P.F + g * P.F -
					               1) * D *
					                      D +
					              (size_t)d * D + e];
			}
			kv[mi][i] = val;
		}
	auto store_kvs = [&]() {
		if (NEW) { /* stmatrix, as V3 form 5 */
			const int q = lane >> 3;
#pragma unroll
			for (int mi = 0; mi < MBW; mi++)
#pragma unroll
				for (int np = 0; np < 4; np++) {
					const float *a = kv[mi] + 8 * np;
					stsm_x4(base + L::KV_OFF +
					                swz((wgi * MBW + mi) * 64 + w * 16 +
					                            (q & 1) * 8 + (lane & 7),
					                    2 * np + (q >> 1)),
					        pack_bf16(a[0], a[1]), pack_bf16(a[2], a[3]),
					        pack_bf16(a[4], a[5]), pack_bf16(a[6], a[7]));
				}
		} else {
#pragma unroll
			for (int mi = 0; mi < MBW; mi++)
#pragma unroll
				for (int nt = 0; nt < 8; nt++) {
					const int d = (wgi * MBW + mi) * 64 + w * 16 + gq;
					asm volatile(
					        "st.shared.b32 [%0], %1;\n" ::"r"(
					                base + L::KV_OFF + swz(d, nt) + 4 * t4),
					        "r"(pack_bf16(kv[mi][4 * nt], kv[mi][4 * nt + 1])));
					asm volatile(
					        "st.shared.b32 [%0], %1;\n" ::"r"(
					                base + L::KV_OFF + swz(d + 8, nt) + 4 * t4),
					        "r"(pack_bf16(kv[mi][4 * nt + 2],
					                      kv[mi][4 * nt + 3])));
				}
		}
	};
	if (hs)
		store_kvs();
	fence_proxy_async();

	for (int c = 0; c < n_chunks; c++) {
		const int st = c & 1;
		/* into the stage chunk c - 1 used: every warp is past it (barrier below) */
		if (c + 1 < n_chunks)
			load_chunk(c + 1, st ^ 1);
		cp_commit();
		cp_wait<1>();
		fence_proxy_async(); /* cp.async wrote generic-proxy; wgmma reads async */
		__syncthreads();
		const int m = min(C4, seg_end - (seg_start + c * C4));
		const uint32_t Qs = base + L::Q_OFF + st * L::QK, Ks = base + L::K_OFF + st * L::QK;
		const uint32_t Vs = base + L::V_OFF + st * L::VST;
		const uint32_t qlo = dlo(Qs + wgi * L::HQK), k0lo = dlo(Ks),
		               kwlo = dlo(Ks + wgi * L::HQK), vlo = dlo(Vs),
		               kvlo = dlo(base + L::KV_OFF);

		/* A fragments of (K .* lambda^(m-1-j))^T over the 128 tokens j: rows d
		 * of this warp in this warpgroup's state blocks */
		uint32_t ka[MBW][8][4];
		auto prep_state_update = [&]() {
			const int q8 = lane >> 3;
#pragma unroll
			for (int kk = 0; kk < 8; kk++) {
				const int jl = (kk & 3) * 16 + (q8 >> 1) * 8 + (lane & 7);
				const int j0 = kk * 16 + 2 * t4;
				const float f0 = pw[m - 1 - j0], f1 = pw[m - 2 - j0];
				const float f2 = pw[m - 9 - j0], f3 = pw[m - 10 - j0];
#pragma unroll
				for (int mi = 0; mi < MBW; mi++) {
					ldsm_x4_t(ka[mi][kk], Ks + (kk >> 2) * L::HQK +
					                              (wgi * MBW + mi) * L::TILE +
					                              swz(jl, 2 * w + (q8 & 1)));
					if (NEW) { /* bf16x2 products, as V3 form 7 */
						const uint32_t fa = pack_bf16(f0, f1),
						               fb = pack_bf16(f2, f3);
						ka[mi][kk][0] = mul_bf16x2(ka[mi][kk][0], fa);
						ka[mi][kk][1] = mul_bf16x2(ka[mi][kk][1], fa);
						ka[mi][kk][2] = mul_bf16x2(ka[mi][kk][2], fb);
						ka[mi][kk][3] = mul_bf16x2(ka[mi][kk][3], fb);
						continue;
					}
					ka[mi][kk][0] = scale_bf16x2(ka[mi][kk][0], f0, f1);
					ka[mi][kk][1] = scale_bf16x2(ka[mi][kk][1], f0, f1);
					ka[mi][kk][2] = scale_bf16x2(ka[mi][kk][2], f2, f3);
					ka[mi][kk][3] = scale_bf16x2(ka[mi][kk][3], f2, f3);
				}
			}
#pragma unroll
			for (int mi = 0; mi < MBW; mi++)
#pragma unroll
				for (int kk = 0; kk < 8; kk++)
					reg_fence(ka[mi][kk]);
		};
		float s[32], s2[32], o[32];
		uint32_t pa[4][4], pb[4][4];
		auto kstep = [&](int kk) {
			return (uint32_t)((kk >> 2) * L::TILE + (kk & 3) * 32);
		};
		/* products, issued as V3 form 1 does: independent accumulators back to
		 * back, the first half of the Q products before the state update's
		 * operands are prepared */
		constexpr int H1 = KQ / 2, R = (KQ - H1) > 8 ? (KQ - H1) : 8;
		auto products = [&](auto cross_tag) {
			constexpr bool CROSS = decltype(cross_tag)::value;
			constexpr bool HS = !CROSS || MB > 1; /* = hs */
			/* the state's decay first: kv was last written by a wgmma, and
			 * touching it while this chunk's products are in flight would
			 * make the compiler wait for them (V3 form 1 does) */
			if (HS) {
				const float bd = pw[m];
#pragma unroll
				for (int mi = 0; mi < MBW; mi++) {
#pragma unroll
					for (int i = 0; i < 32; i++)
						kv[mi][i] *= bd;
					reg_fence(kv[mi]);
				}
			}
			fence();
#pragma unroll
			for (int kk = 0; kk < H1; kk++) {
				mma_ss<0, 0>(s, dsc(qlo, kstep(kk)), dsc(kwlo, kstep(kk)), kk > 0);
				if (CROSS)
					mma_ss<0, 0>(s2, dsc(qlo, kstep(kk)), dsc(k0lo, kstep(kk)),
					             kk > 0);
				mma_ss<0, 1>(o, dsc(qlo, kstep(kk)), dsc(kvlo, kk * 2048), kk > 0);
			}
			if (HS)
				prep_state_update();
			fence();
#pragma unroll
			for (int r = 0; r < R; r++) {
				if (H1 + r < KQ) {
					const int kk = H1 + r;
					mma_ss<0, 0>(s, dsc(qlo, kstep(kk)), dsc(kwlo, kstep(kk)),
					             1);
					if (CROSS)
						mma_ss<0, 0>(s2, dsc(qlo, kstep(kk)),
						             dsc(k0lo, kstep(kk)), 1);
					mma_ss<0, 1>(o, dsc(qlo, kstep(kk)), dsc(kvlo, kk * 2048),
					             1);
				}
				if (r < 8 && HS)
#pragma unroll
					for (int mi = 0; mi < MBW; mi++)
						mma_rs(kv[mi], ka[mi][r],
						       dsc(vlo,
						           (r >> 2) * L::TILE + (r & 3) * 2048));
			}
			commit();
			wait<0>();
			reg_fence(s);
			if (CROSS)
				reg_fence(s2);
			reg_fence(o);
			if (HS)
#pragma unroll
				for (int mi = 0; mi < MBW; mi++) {
					reg_fence(kv[mi]);
#pragma unroll
					for (int kk = 0; kk < 8; kk++)
						reg_fence(ka[mi][kk]);
				}
		};
		if (wgi == 0)
			products(std::integral_constant<bool, false>());
		else
			products(std::integral_constant<bool, true>());

		/* decay masks, then the bf16 A fragments of P (rows i of this
		 * warpgroup's half, keys j of the own half; of half 0 for the cross
		 * block: lambda^(64 + i - j), never masked) */
		const int i0 = w * 16 + gq;
#pragma unroll
		for (int i = 0; i < 32; i++) {
			const int di = i0 + ((i & 2) ? 8 : 0) - ((i >> 2) * 8 + 2 * t4 + (i & 1));
			s[i] *= pw[di];
			if (wgi)
				s2[i] *= pw[C + di];
		}
#pragma unroll
		for (int kk = 0; kk < 4; kk++) {
			pa[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
			pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
			pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
			pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
		}
		if (wgi)
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				pb[kk][0] = pack_bf16(s2[8 * kk + 0], s2[8 * kk + 1]);
				pb[kk][1] = pack_bf16(s2[8 * kk + 2], s2[8 * kk + 3]);
				pb[kk][2] = pack_bf16(s2[8 * kk + 4], s2[8 * kk + 5]);
				pb[kk][3] = pack_bf16(s2[8 * kk + 6], s2[8 * kk + 7]);
			}
		{
			const float f0 = pw[wgi * C + i0 + 1], f1 = pw[wgi * C + i0 + 9];
#pragma unroll
			for (int i = 0; i < 32; i++)
				o[i] *= (i & 2) ? f1 : f0;
		}
		reg_fence(o);
		reg_fence(s);
#pragma unroll
		for (int kk = 0; kk < 4; kk++) {
			reg_fence(pa[kk]);
			reg_fence(pb[kk]);
		}
		fence();
		if (wgi == 0) {
			/* O0 += P00 V0 as two chains: key tiles 0, 1 into o, 2, 3 into s */
#pragma unroll
			for (int kk = 0; kk < 2; kk++) {
				mma_rs(o, pa[kk], dsc(vlo, kk * 2048));
				mma_rs(s, pa[kk + 2], dsc(vlo, (kk + 2) * 2048), kk > 0);
			}
		} else {
			/* O1 += P11 V1 into o, P10 V0 into s */
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				mma_rs(o, pa[kk], dsc(vlo, L::TILE + kk * 2048));
				mma_rs(s, pb[kk], dsc(vlo, kk * 2048), kk > 0);
			}
		}
		commit();
		wait<0>();
		/* the register operands are read asynchronously: keep them live to here */
		reg_fence(o);
		reg_fence(s);
#pragma unroll
		for (int kk = 0; kk < 4; kk++) {
			reg_fence(pa[kk]);
			reg_fence(pb[kk]);
		}
#pragma unroll
		for (int i = 0; i < 32; i++)
			o[i] += s[i];
		/* form 3: as V3 form 8 (whole warps: one TMA tensor store by lane 0) */
		const bool tm_rows = TM && wgi * C + w * 16 + 15 < m;
		if (tm_rows) {
			const int q = lane >> 3, r = (q & 1) * 8 + (lane & 7);
			const int br = pr.reverse ? 15 - r : r;
			const uint32_t wst = base + L::OS_OFF + (wgi * 4 + w) * 2048;
			bulk_wait_read();
			__syncwarp();
#pragma unroll
			for (int np = 0; np < 4; np++) {
				const float *a = o + 8 * np;
				stsm_x4(wst + swz(br, 2 * np + (q >> 1)), pack_bf16(a[0], a[1]),
				        pack_bf16(a[2], a[3]), pack_bf16(a[4], a[5]),
				        pack_bf16(a[6], a[7]));
			}
			fence_proxy_async();
			__syncwarp();
			if (lane == 0) {
				const long t0 = row_token(seg_start + c * C4 + wgi * C + w * 16 +
				                          (pr.reverse ? 15 : 0));
				tma_store_16x64(&P.otm[pi], h * D + eb * EB, (int)t0, wst);
				bulk_commit();
			}
		}
		if (NEW && !TM) {
			/* the warp's 16 rows staged (stmatrix), then a 128-byte bulk copy
			 * per row, as V3 form 6 */
			const int q = lane >> 3, r0 = wgi * C + w * 16;
			const uint32_t ost = base + L::OS_OFF;
			bulk_wait_read();
			__syncwarp();
#pragma unroll
			for (int np = 0; np < 4; np++) {
				const float *a = o + 8 * np;
				stsm_x4(ost + (r0 + (q & 1) * 8 + (lane & 7)) * OS_ROW +
				                (2 * np + (q >> 1)) * 16,
				        pack_bf16(a[0], a[1]), pack_bf16(a[2], a[3]),
				        pack_bf16(a[4], a[5]), pack_bf16(a[6], a[7]));
			}
			fence_proxy_async();
			__syncwarp();
			const int i = r0 + lane;
			if (lane < 16 && i < m) {
				const long t = row_token(seg_start + c * C4 + i);
				bulk_store128(pr.o + ((size_t)t * H + h) * D + eb * EB,
				              ost + i * OS_ROW);
				bulk_commit();
			}
		}
		/* o straight from the accumulators: rows ia and ia + 8 of the chunk */
		const int ia = wgi * C + i0, ib = ia + 8;
		const long ta = row_token(seg_start + c * C4 + ia),
		           tb = row_token(seg_start + c * C4 + ib);
		__nv_bfloat16 *oa = pr.o + ((size_t)ta * H + h) * D + eb * EB + 2 * t4;
		__nv_bfloat16 *ob = pr.o + ((size_t)tb * H + h) * D + eb * EB + 2 * t4;
		if (!NEW || (TM && !tm_rows))
#pragma unroll
			for (int nt = 0; nt < 8; nt++) {
				if (ia < m)
					*reinterpret_cast<uint32_t *>(oa + nt * 8) =
					        pack_bf16(o[4 * nt], o[4 * nt + 1]);
				if (ib < m)
					*reinterpret_cast<uint32_t *>(ob + nt * 8) =
					        pack_bf16(o[4 * nt + 2], o[4 * nt + 3]);
			}
		__syncthreads(); /* both warpgroups' products are done with kvs and this stage */
		if (hs)
			store_kvs();
		fence_proxy_async();
	}
	cp_wait<0>();
	if (NEW)
		bulk_wait(); /* the output's last rows are written before the CTA ends */

	const int last = T > 0 ? min((T - 1) / P.seg_len, P.G - 1) : 0;
	if (pr.final && g == last && hs) {
		float *dst = pr.final + sbase;
		const float mul = pr.final_mul ? expf(-slope) : 1.0f;
#pragma unroll
		for (int mi = 0; mi < MBW; mi++)
#pragma unroll
			for (int nt = 0; nt < 8; nt++) {
				const int d = (wgi * MBW + mi) * 64 + w * 16 + gq;
				const int e = eb * EB + nt * 8 + 2 * t4;
				*reinterpret_cast<float2 *>(dst + (size_t)d * D + e) =
				        make_float2(kv[mi][4 * nt] * mul, kv[mi][4 * nt + 1] * mul);
				*reinterpret_cast<float2 *>(dst + (size_t)(d + 8) * D + e) =
				        make_float2(kv[mi][4 * nt + 2] * mul,
				                    kv[mi][4 * nt + 3] * mul);
			}
	}
}

} // namespace wg

/* Decode: one CTA per (sequence, head, half of the columns), 256 threads; each
 * thread owns 4 adjacent columns of D/RG rows, so every state element is read
 * and written once with 16-byte accesses, all of a thread's loads are in
 * flight before its first store, and o's column sums meet in shared memory. */
template <int D>
__global__ void __launch_bounds__(256)
        la_decode_kernel(__nv_bfloat16 *o, float *state, const __nv_bfloat16 *q,
                         const __nv_bfloat16 *k, const __nv_bfloat16 *v, const float *slopes, int H)
{
	constexpr int HALF = D / 2, CG = HALF / 4, RG = 256 / CG, RPT = D / RG;
	__shared__ float red[RG][HALF];
	const int bh = blockIdx.x >> 1, h = bh % H, c0 = (blockIdx.x & 1) * HALF;
	const int cg = threadIdx.x % CG, rg = threadIdx.x / CG;
	const float lam = expf(-slopes[h]);
	float4 *S = reinterpret_cast<float4 *>(state + (size_t)bh * D * D + c0);
	const __nv_bfloat16 *qr = q + (size_t)bh * D, *kr = k + (size_t)bh * D;
	const __nv_bfloat162 *vr =
	        reinterpret_cast<const __nv_bfloat162 *>(v + (size_t)bh * D + c0);
	float4 s[RPT];
#pragma unroll
	for (int r = 0; r < RPT; r++) {
		const float4 *src = S + (size_t)(rg + r * RG) * (D / 4) + cg;
		asm volatile("ld.global.v4.f32 {%0,%1,%2,%3}, [%4];\n"
		             : "=f"(s[r].x), "=f"(s[r].y), "=f"(s[r].z), "=f"(s[r].w)
		             : "l"(src));
	}
	const float2 v01 = __bfloat1622float2(vr[cg * 2]), v23 = __bfloat1622float2(vr[cg * 2 + 1]);
	float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
	for (int r = 0; r < RPT; r++) {
		const int d = rg + r * RG;
		const float kd = __bfloat162float(kr[d]), qd = __bfloat162float(qr[d]);
		float4 x = s[r];
		x.x = lam * x.x + kd * v01.x;
		x.y = lam * x.y + kd * v01.y;
		x.z = lam * x.z + kd * v23.x;
		x.w = lam * x.w + kd * v23.y;
		asm volatile("st.global.v4.f32 [%0], {%1,%2,%3,%4};\n" ::"l"(
		                     S + (size_t)d * (D / 4) + cg),
		             "f"(x.x), "f"(x.y), "f"(x.z), "f"(x.w)
		             : "memory");
		acc.x += qd * x.x;
		acc.y += qd * x.y;
		acc.z += qd * x.z;
		acc.w += qd * x.w;
	}
	*reinterpret_cast<float4 *>(&red[rg][cg * 4]) = acc;
	__syncthreads();
	for (int col = threadIdx.x; col < HALF; col += 256) {
		float sum = 0.0f;
#pragma unroll
		for (int r = 0; r < RG; r++)
			sum += red[r][col];
		o[(size_t)bh * D + c0 + col] = __float2bfloat16(sum);
	}
}

/* ---- host side -------------------------------------------------------------- */

int sm_count()
{
	int dev = 0, n = 0;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
	    n <= 0)
		n = 132;
	return n;
}

/* Segments: G is chosen by a small cost model of the two launches, in units
 * of one chunk step of the main kernel when it fills the GPU (per_sm resident
 * CTAs per SM: 2 for the first version and V3, 3 for V2), times the chunks per
 * segment. The main pass costs (waves of CTAs); with `tail` (V3, fitted on an
 * H100 in the fourth tuning round) its cost is that of the SMs with the most
 * CTAs, k = ceil(CTAs / SMs): k / per_sm full rounds plus a last round of
 * r = k mod per_sm CTAs that costs wide_cost for one alone (a CTA alone on an
 * SM runs a chunk in wide_cost of the time two sharing it take), more for
 * more; without it (the mma.sync kernels and V3 until the third round), whole
 * waves, and wide_cost for a grid of at most one CTA per SM. The state-only
 * pass costs so_cost of that with its own so_per_sm; the combine of the
 * segment states costs prefix_cost chunk steps per 6.25 MB of states read and
 * written (prefix_kernel, V3) or half a wave per segment (each CTA reading
 * them). V3 form 1 also has a 4-stage main kernel (one CTA per SM, 177 KB of
 * shared memory at D = 128), used where the grid has at most one CTA per SM and
 * wide4_cost < wide_cost. G = 1 (no state pass, no workspace) whenever that
 * is as cheap. SWERVE_LIGHTNING_SEGMENTS=<G> forces G and
 * SWERVE_LIGHTNING_WG_STAGES=2|4 the main kernel's stages (4: for any grid)
 * where `force` is set (benchmarks and tests). */
struct cost_model {
	int per_sm, so_per_sm;
	double so_cost, wide_cost;
	bool prefix;       /* V3: segment states combined by prefix_kernel, else by each CTA */
	bool tail = false; /* V3 since the fourth round: partly filled last rounds (above) */
	double prefix_cost = 1.0; /* prefix_kernel, chunk steps per 6.25 MB of states */
	bool stages4 = false;     /* V3 form 1: the 4-stage main kernel exists */
	double wide4_cost = 0.0;  /* ... and costs this per chunk, alone on an SM (0: never) */
	int chunk = C;            /* tokens per chunk step of the main kernel (V4: 128) */
	double launch_cost = 0.0; /* per extra launch (state pass, prefix kernel), chunk steps */
};

void plan(const swerve_lightning_dims *d, int nprob, const cost_model &cm, bool force, int *G,
          int *seg_len, int *mst = nullptr, const char *seg_env = "SWERVE_LIGHTNING_SEGMENTS")
{
	const long maxT = d->max_seqlen > 0 ? d->max_seqlen : 1;
	const int CH = cm.chunk;
	const long chunks = (maxT + CH - 1) / CH;
	const long ctas = (long)d->batch * d->heads * (d->dim / EB) * nprob, n = sm_count();
	const long slots = (long)cm.per_sm * n, so_slots = (long)cm.so_per_sm * n;
	const char *fs = force && cm.stages4 ? getenv("SWERVE_LIGHTNING_WG_STAGES") : nullptr;
	const int fst = fs && (strcmp(fs, "2") == 0 || strcmp(fs, "4") == 0) ? fs[0] - '0' : 0;
	const bool four = fst != 2 && cm.stages4 && cm.wide4_cost > 0 &&
	                  cm.wide4_cost < cm.wide_cost; /* where the grid allows */
	/* a launch of `total` CTAs, per_sm of them resident per SM: cost per chunk */
	auto rounds = [&](long total, int per) -> double {
		const long k = (total + n - 1) / n, full = k / per, r = k % per;
		return (double)full + (r ? cm.wide_cost + (1.0 - cm.wide_cost) * (double)(r - 1) /
		                                                  (per > 1 ? per - 1 : 1)
		                         : 0.0);
	};
	double best = 1e300;
	long best_seg = chunks;
	for (long g = 1; g <= 32 && g <= chunks; g++) {
		const long seg = (chunks + g - 1) / g, gg = (chunks + seg - 1) / seg;
		const long waves = (ctas * gg + slots - 1) / slots;
		double cost;
		if (cm.tail && four && ctas * gg <= n)
			cost = cm.wide4_cost * seg;
		else if (cm.tail)
			cost = rounds(ctas * gg, cm.per_sm) * seg;
		else
			cost = cm.wide_cost > 0 && ctas * gg <= n ? cm.wide_cost * seg
			                                          : (double)waves * seg;
		if (gg > 1) {
			const long so = ctas * (gg - 1);
			cost += cm.so_cost * seg *
			        (cm.tail ? rounds(so, cm.so_per_sm)
			                 : (double)((so + so_slots - 1) / so_slots));
			cost += cm.prefix ? cm.prefix_cost * (double)ctas / (d->dim / EB) *
			                            (gg - 1) * d->dim * d->dim * 8 / 6.25e6
			                  : 0.5 * (gg - 1) * (double)waves;
			cost += cm.launch_cost * (gg > 2 ? 2 : 1);
		}
		if (cost < best - 1e-9) {
			best = cost;
			best_seg = seg;
		}
	}
	const char *fg = force ? getenv(seg_env) : nullptr;
	if (fg && atol(fg) > 0) {
		const long g = atol(fg) < chunks ? atol(fg) : chunks;
		best_seg = (chunks + g - 1) / g;
	}
	*seg_len = (int)(best_seg * CH);
	*G = (int)((chunks + best_seg - 1) / best_seg);
	if (mst)
		*mst = fst == 4 || (four && ctas * *G <= n) ? 4 : 2;
}

/* Which main kernel: 1 = the first version (mma.sync, 2 CTAs per SM), 2 = V2
 * (mma.sync, 3 CTAs per SM), 3 = V3 (wgmma, the default), 4 = V4 (wgmma, two
 * warpgroups, 128-token chunks).
 *
 * Between the two mma.sync forms: V2 runs a CTA ~1.6x slower than the first
 * version when both fill the GPU, so it pays only where the first version's
 * waves quantize badly or segments are needed (measured on an H100,
 * tests/bench/RESULTS.md: forward 17% slower at 8 x 2048, level elsewhere;
 * backward 0-6% slower at 8 x 2048, 8% faster at 4 x 8192, 13% faster at
 * 1 x 32768); the second round's default (`mma_choice`) ran the first version
 * for the forward and V2 for the backward where the first version needs
 * segments or twice V2's waves. SWERVE_LIGHTNING_KERNEL=1, 2, 3 or 4 forces one
 * kernel, =12 the second round's choice (benchmarks only). */
int mma_choice(const swerve_lightning_dims *d, int nprob)
{
	if (nprob != MAX_PROB)
		return 1;
	int G, len;
	plan(d, nprob, cost_model{2, 2, 0.6, 0.0, false}, false, &G, &len);
	if (G > 1)
		return 2;
	const long ctas = (long)d->batch * d->heads * (d->dim / EB) * nprob, n = sm_count();
	return (ctas + 2 * n - 1) / (2 * n) >= 2 * ((ctas + 3 * n - 1) / (3 * n)) ? 2 : 1;
}

int wg_per_sm(int dim, bool so);

/* V3's cost model (see plan), fitted on an H100 (fourth tuning round,
 * tests/bench/RESULTS.md) to two G sweeps of the forward and the backward alone
 * at the three benchmark shapes (88 points): a CTA alone on an SM runs a chunk
 * in 0.54 of a full-GPU chunk step (3.3-4.2 us), a state-only chunk costs 0.3
 * of that, the prefix kernel 1.5 chunk steps per 6.25 MB of states (rms error
 * 6% forward, 4% backward). Fitted apart, forward and backward gave 0.54 /
 * 0.36 / 1.5 and 0.64 / 0.46 / 2.0, which choose the same G except the
 * backward at 1 x 32768 (5 against 11, measured within 1%); one set serves
 * both. The 4-stage main kernel ran a lone CTA's chunk 1-3% faster than the
 * 2-stage one (three paired measurements at 4 x 8192, G = 1). Sixth round
 * (form 7, one H100 sweep of the three shapes and the policy's D = 64 shape,
 * /work/notes/la6.md): the prefix kernel 2.0, 2 chunk steps per extra launch
 * (state pass, prefix kernel), and at D = 64 a lone CTA costs 0.7 of a full
 * step (its chunk step is cheaper, the latency of a lone CTA's chain is not):
 * the best measured G at 7 of the 8 (shape, pass) points (D = 64: forward
 * G = 5, 0.044 ms against the old choice's G = 8, 0.050; backward G = 1, 0.077
 * against G = 4, 0.099; 1 x 32768 backward G = 5, 0.868 against G = 11,
 * 0.921), the eighth (4 x 8192 forward) is V4's. The third round's model
 * (whole waves, state chunk 0.3, fitted on an H200) stays selectable with
 * SWERVE_LIGHTNING_WG_PLAN=3 (benchmarks only), the fourth and fifth rounds'
 * constants with =5. */
constexpr double WG_SO_COST = 0.3, WG_WIDE_COST = 0.54, WG_PREFIX_COST = 2.0, WG_WIDE4_COST = 0.53,
                 WG_LAUNCH_COST = 2.0, WG_WIDE_COST_D64 = 0.7, WG_WIDE4_COST_D64 = 0.69;

int kernel_choice(const swerve_lightning_dims *d, int nprob)
{
	const char *e = getenv("SWERVE_LIGHTNING_KERNEL");
	if (e && strcmp(e, "12") == 0)
		return mma_choice(d, nprob);
	if (e && (e[0] == '1' || e[0] == '2' || e[0] == '3' || e[0] == '4') && e[1] == 0)
		return e[0] - '0';
	return 3;
}

int wg4_per_sm(int dim);

/* V4's cost model (see plan and wg::kernel4), in units of one V4 chunk step
 * (128 tokens, one CTA per SM at D = 128), predicted from V3's fit before V4
 * ran (a V4 step ~1.2x a lone V3 64-token step; V3's state-only pass runs 128
 * tokens in ~0.9 and its prefix kernel 2.2 V4 steps per 6.25 MB). A V4 step
 * measured ~2x a lone V3 step (4.2 us), but the G sweep of V4 at the three
 * benchmark shapes (fifth round) put these choices within 2% of the best forced
 * G (fwd G = 1 / 1 / 4, bwd 1 / 1 / 1, best bwd at 1 x 32768: G = 4, 2% faster) */
constexpr double WG4_SO_COST = 0.9, WG4_PREFIX_COST = 2.2;

int wg_form();

void plan_for(const swerve_lightning_dims *d, int nprob, int *kver, int *G, int *seg_len, int *mst,
              bool fused = false)
{
	/* round 14's fused SiLU exists in V3 form 9 only: V3, whatever is forced */
	*kver = fused ? 3 : kernel_choice(d, nprob);
	*mst = 2;
	if (*kver == 3) {
		const char *e = getenv("SWERVE_LIGHTNING_WG_PLAN");
		/* =3: the third round's model; =5: the fourth and fifth rounds' constants */
		const bool third = e && strcmp(e, "3") == 0, fifth = e && strcmp(e, "5") == 0;
		const bool d64 = d->dim == 64 && !fifth;
		cost_model cm{wg_per_sm(d->dim, false), wg_per_sm(d->dim, true),
		              third ? 0.3 : WG_SO_COST,
		              third ? 0.6
		              : d64 ? WG_WIDE_COST_D64
		                    : WG_WIDE_COST,
		              true};
		cm.tail = !third;
		cm.prefix_cost = third ? 1.0 : fifth ? 1.5 : WG_PREFIX_COST;
		cm.stages4 = fused || (wg_form() != 0 && wg_form() != 2);
		cm.wide4_cost = third ? 0.0 : d64 ? WG_WIDE4_COST_D64 : WG_WIDE4_COST;
		cm.launch_cost = third || fifth ? 0.0 : WG_LAUNCH_COST;
		/* round 19: SWERVE_LIGHTNING_FWD_SEGMENTS=<G> forces the fused
		 * forward's segments alone (the policy's keep forward: G = 5 of
		 * 448 tokens by the model at 4 x 2048 x 12 heads of 64; its state
		 * pass and prefix kernel are 21 of its ~60 us under ncu, lc19) */
		const char *fs =
		        fused && nprob == 1 ? getenv("SWERVE_LIGHTNING_FWD_SEGMENTS") : nullptr;
		plan(d, nprob, cm, true, G, seg_len, mst,
		     fs && *fs ? "SWERVE_LIGHTNING_FWD_SEGMENTS" : "SWERVE_LIGHTNING_SEGMENTS");
		/* V4 where it measured faster (fifth round, H100, tests/bench/RESULTS.md):
		 * the forward at D = 128 where V3 runs one segment as a grid of at most
		 * one CTA per SM (its 4-stage kernel), e.g. 4 x 8192 x 16 heads: 0.266 /
		 * 0.268 / 0.269 ms against V3's 0.274 / 0.274 / 0.286 in one run; level or
		 * slower everywhere else (backward, 2 CTAs per SM, segments). Sixth
		 * round (H100, one run, both in their new forms): V4 0.241 / 0.242 ms
		 * against V3 0.281. (V4 form 2 also ran the 4 x 8192 backward faster,
		 * fb 0.891 / 0.897 against 0.973 / 0.975 with V3's backward, but not
		 * the 8 x 2048, 1 x 32768 or D = 64 ones.) Seventh round (H100, one
		 * run, V4 form 3 against V3 form 9, both with TMA-stored output), two
		 * more rules at D = 128: V4 for the backward where V3's plan is one
		 * segment and one problem's grid has at most one CTA per SM (4 x 8192
		 * x 16 heads: 128 CTAs a problem; fb 0.753 / 0.761 ms against 0.856
		 * with V3's backward), and V4 (with its own plan) for both passes
		 * wherever V3's plan needs segments (1 x 32768: fwd 0.279 against
		 * 0.310 / 0.308, fb 0.965 against 1.120 / 1.113); V3 stays where its
		 * grid fills whole rounds of two CTAs per SM (8 x 2048: V4 0.108 /
		 * 0.400 against 0.105 / 0.383) and at D = 64 (V4 1.4-1.7x slower).
		 * SWERVE_LIGHTNING_V4_RULES=6 keeps the sixth round's rule only. Not
		 * when a kernel or V3's stages are forced. */
		const char *ke = getenv("SWERVE_LIGHTNING_KERNEL"),
		           *se = getenv("SWERVE_LIGHTNING_WG_STAGES"),
		           *re = getenv("SWERVE_LIGHTNING_V4_RULES");
		const bool forced = (ke && *ke) || (se && *se), r6 = re && strcmp(re, "6") == 0;
		const long per_prob = (long)d->batch * d->heads * (d->dim / EB);
		if (d->dim == 128 && !forced && !fused) {
			if (nprob == 1 && *G == 1 && *mst == 4)
				*kver = 4;
			else if (!r6 && nprob == MAX_PROB && *G == 1 && per_prob <= sm_count())
				*kver = 4;
			else if (!r6 && *G > 1)
				*kver = 4;
		}
	}
	if (*kver == 4) {
		cost_model cm{wg4_per_sm(d->dim), wg_per_sm(d->dim, true), WG4_SO_COST,
		              WG_WIDE_COST, true};
		cm.tail = true;
		cm.prefix_cost = WG4_PREFIX_COST;
		cm.chunk = wg::C4;
		*mst = 2;
		plan(d, nprob, cm, true, G, seg_len, mst);
	} else if (*kver != 3)
		plan(d, nprob, cost_model{*kver == 2 ? 3 : 2, *kver == 2 ? 3 : 2, 0.6, 0.0, false},
		     true, G, seg_len);
}

/* The eighth round's state pass (V3 and V4, G > 1): F sub-segments per
 * segment and the head window's bits (la_params). The state pass costs the
 * longer of its slowest CTA's chain (sub_len / 64 state-only chunk steps of a
 * lone CTA, ~0.55 us each on an H100: 1 x 32768 at G = 4, one 8192-token
 * segment a CTA, ran ~70 us) and its bytes (k and v of the tokens inside the
 * windows before each segment start: 37 MB = 13 us at 2.8 TB/s with layer 0's
 * slopes at 1 x 32768 x 16 heads, G = 4, against 201 MB without the window).
 * Rule: the smallest power of two F (at most 32) that cuts the segments into
 * sub-segments of at most 1024 tokens (16 steps, ~9 us: below the bytes'
 * time at layer 0's decay, far below it at weak decay); each sub-segment
 * adds one 4 D^2-byte state per head to write and read (F = 8 at 1 x 32768:
 * <= 25 MB, 6.5 MB inside layer 0's windows). The window: 2^-32 of
 * max |k| |v| per state element (window_len). SWERVE_LIGHTNING_STATE_SPLIT=<F>
 * forces F (1: the seventh round's state pass), SWERVE_LIGHTNING_WINDOW=<bits>
 * the window's bound (0: no window); benchmarks and tests. */
void state_plan(int kver, int G, int seg_len, int *F, int *sub_len, int *bits)
{
	*F = 1;
	*sub_len = seg_len;
	*bits = 0;
	if ((kver != 3 && kver != 4) || G <= 1)
		return;
	const char *fe = getenv("SWERVE_LIGHTNING_STATE_SPLIT"),
	           *we = getenv("SWERVE_LIGHTNING_WINDOW");
	int f = 1;
	if (fe && atoi(fe) > 0)
		f = atoi(fe) < 1024 ? atoi(fe) : 1024;
	else
		while (f < 32 && (seg_len + f - 1) / f > 1024)
			f *= 2;
	*bits = we && *we ? (atoi(we) > 0 ? (atoi(we) < 120 ? atoi(we) : 120) : 0) : 32;
	/* sub-segments: whole chunks of the state pass, the last one of a
	 * segment the rest */
	const int sl = ((seg_len + f - 1) / f + C - 1) / C * C;
	*sub_len = sl < seg_len ? sl : seg_len;
	*F = (seg_len + *sub_len - 1) / *sub_len;
}

/* Round 13 (opt-in, SWERVE_LIGHTNING_BWD_SPLIT; not yet run on a GPU): the
 * backward's overflow split. At the policy's shape (4 x 2048, 12 heads of 64:
 * 3 problems x 4 sequences x 12 heads = 144 chains of one CTA each, G = 1)
 * 144 CTAs meet 132 SMs: 12 SMs hold two chains, and a CTA sharing an SM takes
 * a full chunk step where a lone one takes ~0.7 of it (WG_WIDE_COST_D64), so
 * the whole pass runs at the paired rate (32 steps x ~1.75 us = 56 us, ncu)
 * although 120 SMs hold one chain. Segments for all chains (G >= 2) pay a
 * state pass and a prefix kernel over every chain and leave 288+ CTAs on 264
 * slots (measured slower at this shape, la6). The split keeps G = 1 for the
 * chains that fill the SMs once (the last `oz` (sequence, problem) pairs left
 * out: the last oz sequences of the last problem, dk) and cuts only the
 * overflow chains into G2 segments (auto: as many pieces as there are SMs,
 * 12 chains x 11 segments of 192 tokens = 132 pieces), run on a side stream
 * (state pass, prefix kernel, main pass over those pairs alone, through
 * cu_seqlens + the first overflow sequence) beside the main pass of the
 * others: each SM runs one whole chain alone for most of its chunks and
 * shares it with one short piece. The whole chains are the default's kernel
 * with the default's arithmetic (bit for bit); the overflow pairs start their
 * segments from the state pass's sums (within the segmented path's
 * tolerance). SWERVE_LIGHTNING_BWD_SPLIT=1: the rule (V3 form 9, G = 1,
 * SMs < chains <= 2 SMs, the overflow within the last problem's sequences);
 * =<G2> (>= 2) forces G2; SWERVE_LIGHTNING_BWD_SPLIT_Z=<oz> forces the number
 * of overflow pairs whatever the SM count (tests at small shapes). */
struct bwd_split {
	int oz = 0;   /* overflow (sequence, problem) pairs; 0: no split */
	int G2 = 1;   /* their segments */
	int seg2 = 0; /* tokens per segment */
};

bwd_split split_plan(const swerve_lightning_dims *d, int nprob, int kver, int G, bool fused = false)
{
	bwd_split s;
	const char *e = getenv("SWERVE_LIGHTNING_BWD_SPLIT");
	if (!e || atoi(e) <= 0 || nprob != MAX_PROB || kver != 3 || G != 1 ||
	    (!fused && wg_form() != 9) || d->max_seqlen <= 0)
		return s;
	const long cz = (long)d->heads * (d->dim / EB), nz = (long)d->batch * nprob;
	const long n = sm_count(), chunks = ((long)d->max_seqlen + C - 1) / C;
	const char *ze = getenv("SWERVE_LIGHTNING_BWD_SPLIT_Z");
	long oz;
	if (ze && atoi(ze) > 0) {
		oz = atoi(ze);
	} else {
		if (cz * nz <= n || cz * nz > 2 * n)
			return s;
		oz = (cz * nz - n + cz - 1) / cz;
	}
	if (oz > d->batch || oz >= nz || chunks < 2)
		return s;
	long g2 = atoi(e) >= 2 ? atoi(e) : n / (oz * cz);
	g2 = g2 < 32 ? g2 : 32;
	g2 = g2 < chunks ? g2 : chunks;
	if (g2 < 2)
		return s;
	const long seg = (chunks + g2 - 1) / g2;
	s.oz = (int)oz;
	s.seg2 = (int)(seg * C);
	s.G2 = (int)((chunks + seg - 1) / seg);
	return s;
}

/* workspace of the overflow pairs' segment states (one problem, oz sequences) */
size_t split_workspace(const swerve_lightning_dims *d, const bwd_split &s)
{
	if (!s.oz)
		return 0;
	int F, sub, bits;
	state_plan(3, s.G2, s.seg2, &F, &sub, &bits);
	return (size_t)s.oz * d->heads * s.G2 * F * d->dim * d->dim * sizeof(float);
}

size_t workspace_for(const swerve_lightning_dims *d, int nprob, bool fused = false)
{
	int G, len, kver, mst, F, sub, bits;
	plan_for(d, nprob, &kver, &G, &len, &mst, fused);
	if (G <= 1)
		return split_workspace(d, split_plan(d, nprob, kver, G, fused));
	state_plan(kver, G, len, &F, &sub, &bits);
	return (size_t)nprob * d->batch * d->heads * G * F * d->dim * d->dim * sizeof(float);
}

int check(const swerve_lightning_dims *d, const char *fn)
{
	if (!d)
		return swerve_error_set(SWERVE_EINVAL, "%s: dims: NULL", fn);
	if (d->dim != 64 && d->dim != 128)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "%s: head dim %d: the GPU kernels support 64 and 128", fn,
		                        d->dim);
	if (d->batch <= 0 || d->heads <= 0 || d->max_seqlen < 0)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: dims: batch %d, heads %d, max_seqlen %d: batch and "
		                        "heads must be > 0, max_seqlen >= 0",
		                        fn, d->batch, d->heads, d->max_seqlen);
	if ((long)d->batch * MAX_PROB > 65535 || d->heads > 65535)
		return swerve_error_set(SWERVE_ELIMIT, "%s: batch %d or heads %d too large", fn,
		                        d->batch, d->heads);
	return 0;
}

template <int D, bool SO, bool V2> int set_smem()
{
	static bool done = false;
	if (done)
		return 0;
	cudaError_t e = cudaFuncSetAttribute(la_chunk_kernel<D, SO, V2>,
	                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
	                                     (int)la_smem<D, SO, V2>::BYTES);
	if (e == cudaSuccess) /* the largest shared-memory carveout: 3 CTAs of 70.5 KB */
		e = cudaFuncSetAttribute(la_chunk_kernel<D, SO, V2>,
		                         cudaFuncAttributePreferredSharedMemoryCarveout,
		                         (int)cudaSharedmemCarveoutMaxShared);
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "lightning: shared memory of %zu bytes: %s",
		                        la_smem<D, SO, V2>::BYTES, cudaGetErrorString(e));
	done = true;
	return 0;
}

template <int D, bool SO, int ST, int VAR> int wg_set_smem()
{
	using L = wg::smem<D, SO, ST, VAR>;
	static bool done = false;
	if (done)
		return 0;
	cudaError_t e =
	        cudaFuncSetAttribute(wg::kernel<D, SO, ST, VAR>,
	                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::BYTES);
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(wg::kernel<D, SO, ST, VAR>,
		                         cudaFuncAttributePreferredSharedMemoryCarveout,
		                         (int)cudaSharedmemCarveoutMaxShared);
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "lightning: shared memory of %zu bytes: %s",
		                        L::BYTES, cudaGetErrorString(e));
	done = true;
	return 0;
}

/* round 14: kernel_fu's attributes (the same shared memory as kernel's) */
template <int D, bool SO, int ST, int VAR, bool EA> int wg_fu_set_smem()
{
	using L = wg::smem<D, SO, ST, VAR>;
	static bool done = false;
	if (done)
		return 0;
	cudaError_t e =
	        cudaFuncSetAttribute(wg::kernel_fu<D, SO, ST, VAR, EA>,
	                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::BYTES);
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(wg::kernel_fu<D, SO, ST, VAR, EA>,
		                         cudaFuncAttributePreferredSharedMemoryCarveout,
		                         (int)cudaSharedmemCarveoutMaxShared);
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "lightning: shared memory of %zu bytes: %s",
		                        L::BYTES, cudaGetErrorString(e));
	done = true;
	return 0;
}

/* round 19: a kernel's dynamic shared memory attributes, once (done) */
template <typename K> int smem_attr(K k, size_t bytes, bool &done)
{
	if (done)
		return 0;
	cudaError_t e =
	        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(k, cudaFuncAttributePreferredSharedMemoryCarveout,
		                         (int)cudaSharedmemCarveoutMaxShared);
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "lightning: shared memory of %zu bytes: %s",
		                        bytes, cudaGetErrorString(e));
	done = true;
	return 0;
}

/* round 20: pdl::launch's error as this file reports launch errors */
static int pdl_rc(cudaError_t e)
{
	return e == cudaSuccess ? 0
	                        : swerve_error_set(SWERVE_ERROR, "lightning: launch: %s",
	                                           cudaGetErrorString(e));
}

template <int D, bool SO, int ST, int VAR> int wg_occupancy()
{
	int n = 0;
	if (wg_set_smem<D, SO, ST, VAR>() ||
	    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, wg::kernel<D, SO, ST, VAR>, NT,
	                                                  wg::smem<D, SO, ST, VAR>::BYTES) !=
	            cudaSuccess ||
	    n <= 0)
		return 1;
	return n;
}

/* V3's form (see wg::kernel): 9 by default (since the seventh round),
 * SWERVE_LIGHTNING_WG_FORM=0..9 forces another (benchmarks and tests) */
int wg_form()
{
	const char *e = getenv("SWERVE_LIGHTNING_WG_FORM");
	return e && e[0] >= '0' && e[0] <= '9' && e[1] == 0 ? e[0] - '0' : 9;
}

template <int VAR> int wg_occupancy_of(int dim, bool so)
{
	return dim == 64
	               ? (so ? wg_occupancy<64, true, 4, VAR>() : wg_occupancy<64, false, 2, VAR>())
	               : (so ? wg_occupancy<128, true, 4, VAR>()
	                     : wg_occupancy<128, false, 2, VAR>());
}

/* resident CTAs per SM of V3's kernels in the form in use: the main kernel (2
 * stages; 2 CTAs at D = 128) and the state-only pass (4 stages; 2 CTAs at
 * D = 128) */
int wg_per_sm(int dim, bool so)
{
	static int cached[10][2][2];
	const int f = wg_form();
	int &n = cached[f][dim == 64 ? 0 : 1][so ? 1 : 0];
	if (n <= 0)
		n = f == 9   ? wg_occupancy_of<9>(dim, so)
		    : f == 8 ? wg_occupancy_of<8>(dim, so)
		    : f == 7 ? wg_occupancy_of<7>(dim, so)
		    : f == 6 ? wg_occupancy_of<6>(dim, so)
		    : f == 5 ? wg_occupancy_of<5>(dim, so)
		    : f == 4 ? wg_occupancy_of<4>(dim, so)
		    : f == 3 ? wg_occupancy_of<3>(dim, so)
		    : f == 2 ? wg_occupancy_of<2>(dim, so)
		    : f == 1 ? wg_occupancy_of<1>(dim, so)
		             : wg_occupancy_of<0>(dim, so);
	return n;
}

/* V4's form (see wg::smem4): 3 by default (since the seventh round),
 * SWERVE_LIGHTNING_V4_FORM=1 the fifth round's, =2 the sixth round's
 * (benchmarks and tests) */
int wg4_form()
{
	const char *e = getenv("SWERVE_LIGHTNING_V4_FORM");
	return e && (e[0] == '1' || e[0] == '2') && e[1] == 0 ? e[0] - '0' : 3;
}

template <int D, int F> int wg4_set_smem()
{
	static bool done = false;
	if (done)
		return 0;
	cudaError_t e =
	        cudaFuncSetAttribute(wg::kernel4<D, F>, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                             (int)wg::smem4<D, F>::BYTES);
	if (e == cudaSuccess)
		e = cudaFuncSetAttribute(wg::kernel4<D, F>,
		                         cudaFuncAttributePreferredSharedMemoryCarveout,
		                         (int)cudaSharedmemCarveoutMaxShared);
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "lightning: shared memory of %zu bytes: %s",
		                        wg::smem4<D, F>::BYTES, cudaGetErrorString(e));
	done = true;
	return 0;
}

template <int D, int F> int wg4_occupancy()
{
	int n = 0;
	if (wg4_set_smem<D, F>() ||
	    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, wg::kernel4<D, F>, wg::NT4,
	                                                  wg::smem4<D, F>::BYTES) != cudaSuccess ||
	    n <= 0)
		return 1;
	return n;
}

/* resident CTAs per SM of V4's main kernel */
int wg4_per_sm(int dim)
{
	static int cached[3][2];
	const int f = wg4_form();
	int &n = cached[f - 1][dim == 64 ? 0 : 1];
	if (n <= 0)
		n = f == 1   ? (dim == 64 ? wg4_occupancy<64, 1>() : wg4_occupancy<128, 1>())
		    : f == 2 ? (dim == 64 ? wg4_occupancy<64, 2>() : wg4_occupancy<128, 2>())
		             : (dim == 64 ? wg4_occupancy<64, 3>() : wg4_occupancy<128, 3>());
	return n;
}

/* V4: V3's state-only pass and prefix kernel where G > 1, then kernel4 */
template <int D>
int wg4_run(const la_params &P, int nprob, const swerve_lightning_dims *d, cudaStream_t stream);

template <int D, bool SO, int ST, int VAR>
int wg_launch(dim3 grid, const la_params &P, cudaStream_t stream, const la_fu *F = nullptr)
{
	if constexpr ((!SO && VAR == 9) || (SO && VAR == 7)) {
		if (F) { /* round 14: the fused SiLU (form 9, its state pass form 7) */
			constexpr size_t B = wg::smem<D, SO, ST, VAR>::BYTES;
			int rc;
			if (F->early >= 5) { /* round 20: FU_CODE=split (7: with DACT=smem) */
				static bool done5 = false, done6 = false, done7 = false;
				if constexpr (!SO) {
					if (F->early == 7) {
						constexpr size_t DB =
						        (size_t)wg::ds_layout<D, SO, ST, VAR>::OFF +
						        ST * C * 128 + 1024;
						if (!(rc = smem_attr(wg::kernel_sp<D, SO, ST, VAR,
						                                   2, true>,
						                     DB, done7)))
							rc = pdl_rc(pdl::launch(
							        wg::kernel_sp<D, SO, ST, VAR, 2,
							                      true>,
							        grid, dim3(NT), DB, stream, P, *F));
						return rc;
					}
				}
				if (F->early == 5) {
					if (!(rc = smem_attr(wg::kernel_sp<D, SO, ST, VAR, 1>, B,
					                     done5)))
						rc = pdl_rc(pdl::launch(
						        wg::kernel_sp<D, SO, ST, VAR, 1>, grid,
						        dim3(NT), B, stream, P, *F));
				} else if (!(rc = smem_attr(wg::kernel_sp<D, SO, ST, VAR, 2>, B,
				                            done6))) {
					rc = pdl_rc(pdl::launch(wg::kernel_sp<D, SO, ST, VAR, 2>,
					                        grid, dim3(NT), B, stream, P, *F));
				}
				return rc;
			}
			if constexpr (!SO) {
				if (F->early == 3) { /* round 19: SWERVE_LIGHTNING_DACT=smem */
					constexpr size_t DB =
					        (size_t)wg::ds_layout<D, SO, ST, VAR>::OFF +
					        ST * C * 128 + 1024;
					static bool done = false;
					if (!(rc = smem_attr(wg::kernel_ds<D, SO, ST, VAR>, DB,
					                     done)))
						wg::kernel_ds<D, SO, ST, VAR>
						        <<<grid, NT, DB, stream>>>(P, *F);
					return rc;
				}
				if (F->early == 4) { /* round 19: SWERVE_LIGHTNING_DACT=l2 */
					static bool done = false;
					if (!(rc = smem_attr(wg::kernel_pf<D, SO, ST, VAR>, B,
					                     done)))
						wg::kernel_pf<D, SO, ST, VAR>
						        <<<grid, NT, B, stream>>>(P, *F);
					return rc;
				}
			}
			if (!SO && F->early) {
				if (!(rc = wg_fu_set_smem<D, SO, ST, VAR, !SO>()))
					wg::kernel_fu<D, SO, ST, VAR, !SO>
					        <<<grid, NT, B, stream>>>(P, *F);
			} else if (!(rc = wg_fu_set_smem<D, SO, ST, VAR, false>())) {
				wg::kernel_fu<D, SO, ST, VAR, false>
				        <<<grid, NT, B, stream>>>(P, *F);
			}
			return rc;
		}
	} else {
		if (F)
			return swerve_error_set(SWERVE_EUNSUPPORTED,
			                        "lightning: the fused SiLU needs V3 form 9");
	}
	int rc = wg_set_smem<D, SO, ST, VAR>();
	if (!rc)
		wg::kernel<D, SO, ST, VAR>
		        <<<grid, NT, wg::smem<D, SO, ST, VAR>::BYTES, stream>>>(P);
	return rc;
}

template <int D, int VAR>
int wg_run(const la_params &P, int nprob, const swerve_lightning_dims *d, cudaStream_t stream,
           const la_fu *F = nullptr)
{
	constexpr int NEB = D / EB;
	int rc = 0;
	if (P.G > 1) {
		/* the state-only pass of forms 5 and 6 is form 4's, of forms 8 and 9
		 * form 7's (no output, no bf16 state) */
		rc = wg_launch<D, true, 4,
		               (VAR == 5 || VAR == 6 ? 4
		                : VAR >= 8           ? 7
		                                     : VAR)>(
		        dim3(NEB * (P.G - 1) * P.F, d->heads, d->batch * nprob), P, stream, F);
		if (!rc && P.pfx)
			rc = pdl_rc(pdl::launch(
			        wg::prefix_kernel,
			        dim3((D * D / 4 + 255) / 256, d->heads, d->batch * nprob),
			        dim3(256), 0, stream, P, D));
	}
	const dim3 grid(NEB * P.G, d->heads, d->batch * nprob);
	if (!rc)
		rc = VAR != 0 && VAR != 2 && P.mst == 4
		             ? wg_launch<D, false, 4, VAR>(grid, P, stream, F)
		             : wg_launch<D, false, 2, VAR>(grid, P, stream, F);
	return rc;
}

template <int D>
int wg4_run(const la_params &P, int nprob, const swerve_lightning_dims *d, cudaStream_t stream)
{
	constexpr int NEB = D / EB;
	int rc = 0;
	const int f = wg4_form();
	if (P.G > 1) { /* V3's state pass: form 1's with V4 form 1, form 7's with forms 2, 3 */
		const dim3 sg(NEB * (P.G - 1) * P.F, d->heads, d->batch * nprob);
		rc = f == 1 ? wg_launch<D, true, 4, 1>(sg, P, stream)
		            : wg_launch<D, true, 4, 7>(sg, P, stream);
		if (!rc && P.pfx)
			wg::prefix_kernel<<<dim3((D * D / 4 + 255) / 256, d->heads,
			                         d->batch * nprob),
			                    256, 0, stream>>>(P, D);
	}
	const dim3 grid(NEB * P.G, d->heads, d->batch * nprob);
	if (!rc)
		rc = f == 1   ? wg4_set_smem<D, 1>()
		     : f == 2 ? wg4_set_smem<D, 2>()
		              : wg4_set_smem<D, 3>();
	if (!rc && f == 1)
		wg::kernel4<D, 1><<<grid, wg::NT4, wg::smem4<D, 1>::BYTES, stream>>>(P);
	else if (!rc && f == 2)
		wg::kernel4<D, 2><<<grid, wg::NT4, wg::smem4<D, 2>::BYTES, stream>>>(P);
	else if (!rc)
		wg::kernel4<D, 3><<<grid, wg::NT4, wg::smem4<D, 3>::BYTES, stream>>>(P);
	return rc;
}

template <int D>
int launch(la_params &P, int nprob, int kver, const swerve_lightning_dims *d, cudaStream_t stream,
           const char *fn, const la_fu *F = nullptr)
{
	constexpr int NEB = D / EB;
	int rc = 0;
	if (F) { /* round 14: V3 form 9 (plan_for's fused plan) */
		rc = wg_run<D, 9>(P, nprob, d, stream, F);
	} else if (kver == 4) {
		rc = wg4_run<D>(P, nprob, d, stream);
	} else if (kver == 3) {
		const int f = wg_form();
		rc = f == 9   ? wg_run<D, 9>(P, nprob, d, stream)
		     : f == 8 ? wg_run<D, 8>(P, nprob, d, stream)
		     : f == 7 ? wg_run<D, 7>(P, nprob, d, stream)
		     : f == 6 ? wg_run<D, 6>(P, nprob, d, stream)
		     : f == 5 ? wg_run<D, 5>(P, nprob, d, stream)
		     : f == 4 ? wg_run<D, 4>(P, nprob, d, stream)
		     : f == 3 ? wg_run<D, 3>(P, nprob, d, stream)
		     : f == 2 ? wg_run<D, 2>(P, nprob, d, stream)
		     : f == 1 ? wg_run<D, 1>(P, nprob, d, stream)
		              : wg_run<D, 0>(P, nprob, d, stream);
	} else {
		rc = P.G > 1 ? set_smem<D, true, false>() : 0;
		if (!rc)
			rc = kver == 1 ? set_smem<D, false, false>() : set_smem<D, false, true>();
		if (!rc && P.G > 1) {
			dim3 grid(NEB * (P.G - 1), d->heads, d->batch * nprob);
			la_chunk_kernel<D, true, false>
			        <<<grid, NT, la_smem<D, true, false>::BYTES, stream>>>(P);
		}
		dim3 grid(NEB * P.G, d->heads, d->batch * nprob);
		if (!rc && kver == 1)
			la_chunk_kernel<D, false, false>
			        <<<grid, NT, la_smem<D, false, false>::BYTES, stream>>>(P);
		else if (!rc)
			la_chunk_kernel<D, false, true>
			        <<<grid, NT, la_smem<D, false, true>::BYTES, stream>>>(P);
	}
	if (rc)
		return swerve_error_wrap("%s", fn);
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "%s: launch: %s", fn, cudaGetErrorString(e));
	return 0;
}

/* The output tensor maps of V3 form 8 and up and V4 form 3 (la_params::otm):
 * o of each problem as [rows, H D] bf16 with 16 x 64 boxes, 128-byte swizzle.
 * The row count is not known on the host (cu_seqlens is on the device) and a
 * store never covers a row past its sequence (partial chunks store from
 * registers), so the map's row bound is 2^31 - 1. The encoder: kernels/tma.h. */
int make_out_maps(la_params &P, int nprob, const swerve_lightning_dims *d, const char *fn,
                  const la_fu *F = nullptr)
{
	const swerve_tma_encode_fn encode = swerve_tma_encoder(fn);
	if (!encode)
		return SWERVE_ERROR;
	const cuuint64_t dim[2] = {(cuuint64_t)d->heads * d->dim, (cuuint64_t)0x7fffffff};
	const cuuint64_t stride[1] = {(cuuint64_t)d->heads * d->dim * 2};
	const cuuint32_t box[2] = {EB, 16}, estride[2] = {1, 1};
	for (int i = 0; i < nprob; i++) {
		/* round 14: the output's own row stride (the interleaved dpre) */
		const cuuint64_t fstride[1] = {F ? (cuuint64_t)F->p[i].ldo * 2 : stride[0]};
		CUresult r = encode(&P.otm[i], CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, P.p[i].o, dim,
		                    fstride, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE,
		                    CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
		                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
		if (r != CUDA_SUCCESS)
			return swerve_error_set(SWERVE_ERROR,
			                        "%s: output tensor map of problem %d: CUresult %d",
			                        fn, i, (int)r);
	}
	return 0;
}

/* The side stream and the fork / join events of the backward's overflow split,
 * one set per device, made on first use (never freed: they live as long as the
 * process). The mutex is held while a split is enqueued, so that two host
 * threads never interleave records of the same events. */
struct side_set {
	cudaStream_t s = nullptr;
	cudaEvent_t fork = nullptr, join = nullptr;
};
std::mutex side_mu;
side_set side_sets[64];

/* the overflow split (split_plan): the side stream runs the overflow pairs'
 * state pass, prefix kernel and main pass, the caller's stream the main pass
 * of the other pairs (G = 1, two stages, the default's kernel), joined before
 * return. Called with P set up for G = 1 (run) and its output maps made. */
template <int D>
int split_run(la_params &P, int nprob, const swerve_lightning_dims *d, const bwd_split &sp,
              void *ws, cudaStream_t stream, const char *fn, const la_fu *F = nullptr)
{
	constexpr int NEB = D / EB;
	la_params P2 = P;
	la_fu F2 = {};
	if (F) {
		F2.p[0] = F->p[nprob - 1];
		if (F->early >= 3) /* round 19: the overflow pieces' main pass too (round
		                    * 20: and FU_CODE=split's state pass) */
			F2.early = F->early;
	}
	const int b0 = d->batch - sp.oz;
	const size_t ss = (size_t)d->heads * d->dim * d->dim;
	P2.p[0] = P.p[nprob - 1];
	P2.otm[0] = P.otm[nprob - 1];
	P2.p[0].seg = reinterpret_cast<float *>(ws);
	if (P2.p[0].init)
		P2.p[0].init += (size_t)b0 * ss;
	if (P2.p[0].final)
		P2.p[0].final += (size_t)b0 * ss;
	P2.cu = P.cu + b0;
	P2.B = sp.oz;
	P2.G = sp.G2;
	P2.seg_len = sp.seg2;
	P2.mst = 2;
	state_plan(3, P2.G, P2.seg_len, &P2.F, &P2.sub_len, &P2.win_bits);
	P2.pfx = P2.G > 2 || P2.F > 1 || P2.win_bits > 0;
	const swerve_lightning_dims d2 = {sp.oz, d->heads, d->dim, d->max_seqlen};
	int dev = 0;
	if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64)
		return swerve_error_set(SWERVE_ERROR, "%s: split: no current device below 64", fn);
	std::lock_guard<std::mutex> lock(side_mu);
	side_set &S = side_sets[dev];
	cudaError_t e = cudaSuccess;
	if (!S.s && (e = cudaStreamCreateWithFlags(&S.s, cudaStreamNonBlocking)) != cudaSuccess)
		S.s = nullptr;
	if (e == cudaSuccess && !S.fork)
		e = cudaEventCreateWithFlags(&S.fork, cudaEventDisableTiming);
	if (e == cudaSuccess && !S.join)
		e = cudaEventCreateWithFlags(&S.join, cudaEventDisableTiming);
	if (e == cudaSuccess)
		e = cudaEventRecord(S.fork, stream);
	if (e == cudaSuccess)
		e = cudaStreamWaitEvent(S.s, S.fork, 0);
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "%s: split: side stream: %s", fn,
		                        cudaGetErrorString(e));
	/* the whole chains first, on an idle GPU: one CTA per SM (as the
	 * default's first SMs-many CTAs), then the overflow pairs' passes into
	 * the second slots */
	int rc = wg_launch<D, false, 2, 9>(dim3(NEB, d->heads, d->batch * nprob - sp.oz), P, stream,
	                                   F);
	if (!rc)
		rc = wg_run<D, 9>(P2, 1, &d2, S.s, F ? &F2 : nullptr);
	/* join even after a failed launch, so that the caller's stream never runs
	 * ahead of work already enqueued on the side stream */
	e = cudaEventRecord(S.join, S.s);
	if (e == cudaSuccess)
		e = cudaStreamWaitEvent(stream, S.join, 0);
	if (rc)
		return swerve_error_wrap("%s", fn);
	if (e == cudaSuccess)
		e = cudaGetLastError();
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "%s: split: launch: %s", fn,
		                        cudaGetErrorString(e));
	return 0;
}

int run(la_params &P, int nprob, const swerve_lightning_dims *d, void *ws, size_t ws_bytes,
        cudaStream_t stream, const char *fn, const la_fu *F = nullptr)
{
	int kver;
	const bool fu = F != nullptr;
	plan_for(d, nprob, &kver, &P.G, &P.seg_len, &P.mst, fu);
	const bwd_split sp = split_plan(d, nprob, kver, P.G, fu);
	size_t need = workspace_for(d, nprob, fu);
	if (need > 0 && (!ws || ws_bytes < need))
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: workspace of %zu bytes given, %zu needed "
		                        "(see swerve_lightning_*_workspace)",
		                        fn, ws ? ws_bytes : (size_t)0, need);
	size_t per = need / (nprob > 0 ? nprob : 1);
	for (int i = 0; i < nprob; i++)
		P.p[i].seg = need ? reinterpret_cast<float *>((char *)ws + per * i) : nullptr;
	P.B = d->batch;
	P.H = d->heads;
	if (d->max_seqlen == 0)
		P.seg_len = C; /* every sequence is empty: one segment still writes final states */
	state_plan(kver, P.G, P.seg_len, &P.F, &P.sub_len, &P.win_bits);
	/* the mma.sync kernels combine the segment states themselves (F = 1) */
	P.pfx = (kver == 3 || kver == 4) && P.G > 1 && (P.G > 2 || P.F > 1 || P.win_bits > 0);
	if (fu || (kver == 3 && wg_form() >= 8) || (kver == 4 && wg4_form() >= 3)) {
		const int rc = make_out_maps(P, nprob, d, fn, F);
		if (rc)
			return rc;
	}
	if (sp.oz) {
		P.mst = 2; /* the whole chains share their SMs with the pieces */
		return d->dim == 64 ? split_run<64>(P, nprob, d, sp, ws, stream, fn, F)
		                    : split_run<128>(P, nprob, d, sp, ws, stream, fn, F);
	}
	return d->dim == 64 ? launch<64>(P, nprob, kver, d, stream, fn, F)
	                    : launch<128>(P, nprob, kver, d, stream, fn, F);
}

/* cp.async and the vector accesses need 16-byte aligned tensors */
int misaligned(const char *fn, const char *name, const void *p)
{
	if (((uintptr_t)p & 15) == 0)
		return 0;
	return swerve_error_set(SWERVE_EINVAL, "%s: %s = %p: must be 16-byte aligned", fn, name, p);
}

const __nv_bfloat16 *bf(const uint16_t *p)
{
	return reinterpret_cast<const __nv_bfloat16 *>(p);
}

__nv_bfloat16 *bf_out(uint16_t *p)
{
	return reinterpret_cast<__nv_bfloat16 *>(p);
}

/* the forward's one problem (swerve_lightning_forward, _forward_silu) */
void forward_prob(la_params &P, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                  uint16_t *o, const float *initial_state, float *final_state,
                  const int32_t *cu_seqlens, const float *slopes)
{
	P.cu = cu_seqlens;
	P.slopes = slopes;
	P.p[0] = la_prob{bf(q), bf(k), bf(v), bf_out(o), initial_state, final_state, nullptr,
	                 0,     0,     0,     0};
}

/* the backward's three problems (swerve_lightning_backward and the fused
 * SiLU backwards, whose q, k, v and outputs are columns of pre and dpre) */
void backward_probs(la_params &P, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                    const uint16_t *dout, uint16_t *dq, uint16_t *dk, uint16_t *dv,
                    const float *initial_state, const float *dfinal_state, float *dinitial_state,
                    const int32_t *cu_seqlens, const float *slopes)
{
	P.cu = cu_seqlens;
	P.slopes = slopes;
	/* dq: forward in time with S0^T */
	P.p[0] = la_prob{bf(dout), bf(v), bf(k), bf_out(dq), initial_state, nullptr, nullptr,
	                 0,        1,     0,     0};
	/* dv: reversed, S_init = dS_T / lambda; its final state * lambda is dS0 */
	P.p[1] = la_prob{bf(k), bf(q), bf(dout), bf_out(dv), dfinal_state, dinitial_state, nullptr,
	                 1,     0,     1,        1};
	/* dk: reversed, S_init = dS_T^T / lambda */
	P.p[2] = la_prob{bf(v), bf(dout), bf(q), bf_out(dk), dfinal_state, nullptr, nullptr,
	                 1,     1,        1,     0};
}

/* the fused SiLU backwards: pre is read while dpre is written */
int check_dpre(const char *fn, const uint16_t *dpre, const uint16_t *pre)
{
	if (dpre != pre)
		return 0;
	return swerve_error_set(SWERVE_EINVAL,
	                        "%s: dpre and pre are the same buffer (pre is read while "
	                        "dpre is written)",
	                        fn);
}

} // namespace

/* Benchmarks only (not in lightning.h): resident CTAs per SM of main kernel
 * kver (1 = first version, 2 = V2, 3 = V3, wgmma) for head dim d. */
extern "C" int swerve_lightning_occupancy_(int d, int kver)
{
	if (kver == 3)
		return wg_per_sm(d, false);
	if (kver == 4)
		return wg4_per_sm(d);
	int n = -1;
	if (set_smem<64, false, false>() || set_smem<64, false, true>() ||
	    set_smem<128, false, false>() || set_smem<128, false, true>())
		return -1;
	const bool v1 = kver == 1;
	cudaError_t e;
	if (d == 64)
		e = v1 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		                 &n, la_chunk_kernel<64, false, false>, NT,
		                 la_smem<64, false, false>::BYTES)
		       : cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		                 &n, la_chunk_kernel<64, false, true>, NT,
		                 la_smem<64, false, true>::BYTES);
	else
		e = v1 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		                 &n, la_chunk_kernel<128, false, false>, NT,
		                 la_smem<128, false, false>::BYTES)
		       : cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		                 &n, la_chunk_kernel<128, false, true>, NT,
		                 la_smem<128, false, true>::BYTES);
	return e == cudaSuccess ? n : -1;
}

/* Benchmarks only (not in lightning.h): the plan for a forward (nprob 1) or
 * backward (3): returns the main kernel (1, 2, 3), sets the segment count and
 * V3's main-kernel stages. */
extern "C" int swerve_lightning_plan_(const struct swerve_lightning_dims *d, int nprob, int *G,
                                      int *stages)
{
	int kver, len;
	plan_for(d, nprob, &kver, G, &len, stages);
	return kver;
}

/* Benchmarks and tests only (not in lightning.h): the state pass's plan for a
 * forward (nprob 1) or backward (3): sub-segments per segment (returned),
 * their length in tokens and the window's bits (0: none). */
extern "C" int swerve_lightning_state_plan_(const struct swerve_lightning_dims *d, int nprob,
                                            int *sub_len, int *bits)
{
	int kver, G, len, mst, F;
	plan_for(d, nprob, &kver, &G, &len, &mst);
	state_plan(kver, G, len, &F, sub_len, bits);
	return F;
}

/* Benchmarks and tests only: the backward's overflow split (split_plan; round
 * 13, opt-in): the overflow (sequence, problem) pairs (0: no split), their
 * segments and segment length in tokens. */
extern "C" int swerve_lightning_bwd_split_(const struct swerve_lightning_dims *d, int *G2,
                                           int *seg_len)
{
	int kver, G, len, mst;
	plan_for(d, MAX_PROB, &kver, &G, &len, &mst);
	const bwd_split s = split_plan(d, MAX_PROB, kver, G);
	*G2 = s.G2;
	*seg_len = s.seg2;
	return s.oz;
}

extern "C" size_t swerve_lightning_forward_workspace(const struct swerve_lightning_dims *dims)
{
	return dims ? workspace_for(dims, 1) : 0;
}

extern "C" size_t swerve_lightning_backward_workspace(const struct swerve_lightning_dims *dims)
{
	return dims ? workspace_for(dims, 3) : 0;
}

extern "C" int swerve_lightning_forward(uint16_t *o, float *final_state, const uint16_t *q,
                                        const uint16_t *k, const uint16_t *v,
                                        const int32_t *cu_seqlens, const float *slopes,
                                        const float *initial_state,
                                        const struct swerve_lightning_dims *dims, void *workspace,
                                        size_t workspace_bytes, struct CUstream_st *stream)
{
	const char *fn = "lightning forward";
	int rc = check(dims, fn);
	if (rc)
		return rc;
	if (!o || !q || !k || !v || !cu_seqlens || !slopes)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: o, q, k, v, cu_seqlens and slopes must be set", fn);
	if ((rc = misaligned(fn, "o", o)) || (rc = misaligned(fn, "q", q)) ||
	    (rc = misaligned(fn, "k", k)) || (rc = misaligned(fn, "v", v)) ||
	    (rc = misaligned(fn, "final_state", final_state)) ||
	    (rc = misaligned(fn, "workspace", workspace)))
		return rc;
	la_params P = {};
	forward_prob(P, q, k, v, o, initial_state, final_state, cu_seqlens, slopes);
	return run(P, 1, dims, workspace, workspace_bytes, stream, fn);
}

extern "C" int swerve_lightning_backward(uint16_t *dq, uint16_t *dk, uint16_t *dv,
                                         float *dinitial_state, const uint16_t *q,
                                         const uint16_t *k, const uint16_t *v, const uint16_t *dout,
                                         const float *dfinal_state, const int32_t *cu_seqlens,
                                         const float *slopes, const float *initial_state,
                                         const struct swerve_lightning_dims *dims, void *workspace,
                                         size_t workspace_bytes, struct CUstream_st *stream)
{
	const char *fn = "lightning backward";
	int rc = check(dims, fn);
	if (rc)
		return rc;
	if (!dq || !dk || !dv || !q || !k || !v || !dout || !cu_seqlens || !slopes)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: dq, dk, dv, q, k, v, dout, cu_seqlens and slopes must "
		                        "be set",
		                        fn);
	if ((rc = misaligned(fn, "dq", dq)) || (rc = misaligned(fn, "dk", dk)) ||
	    (rc = misaligned(fn, "dv", dv)) || (rc = misaligned(fn, "q", q)) ||
	    (rc = misaligned(fn, "k", k)) || (rc = misaligned(fn, "v", v)) ||
	    (rc = misaligned(fn, "dout", dout)) ||
	    (rc = misaligned(fn, "dinitial_state", dinitial_state)) ||
	    (rc = misaligned(fn, "workspace", workspace)))
		return rc;
	la_params P = {};
	backward_probs(P, q, k, v, dout, dq, dk, dv, initial_state, dfinal_state, dinitial_state,
	               cu_seqlens, slopes);
	return run(P, 3, dims, workspace, workspace_bytes, stream, fn);
}

/* ---- round 14: the layer's SiLU folded into the core (opt-in) ---- */

namespace
{
/* SWERVE_LIGHTNING_SILU_EARLY=1 (not yet run on a GPU): the fused
 * backwards' SiLU' factors one chunk ahead (kernel_fu's EA form) */
int silu_early()
{
	const char *e = getenv("SWERVE_LIGHTNING_SILU_EARLY");
	return e && atoi(e) > 0;
}

/* Round 19: SWERVE_LIGHTNING_FWD_SEGMENTS=<G> (1..32; unset or empty: the
 * plan's) for the fused forwards (plan_for); anything else is refused */
int fwd_segments_check(const char *fn)
{
	const char *e = getenv("SWERVE_LIGHTNING_FWD_SEGMENTS");
	if (!e || !*e)
		return 0;
	char *end = nullptr;
	const long g = strtol(e, &end, 10);
	if (*end || g < 1 || g > 32)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: SWERVE_LIGHTNING_FWD_SEGMENTS=%s: not a segment count "
		                        "(1 to 32)",
		                        fn, e);
	return 0;
}

/* Round 19: where the fused backwards' epilogue reads SiLU's source (pre)
 * from. Round 20: smem is the default at D 64 (unset or empty; ldg at other
 * head sizes and where SWERVE_LIGHTNING_SILU_EARLY=1 asks for its form), measured with FU_CODE's
 * split: H100, lc20 / lead. SWERVE_LIGHTNING_DACT=ldg (rounds 14-19): 16 LDG.32 a thread issued
 * at the chunk's start (keep's backward at the policy's shape: 18% of its
 * warp samples wait for them in the epilogue, H100 ncu, lc19); =smem: the
 * rows ride each chunk's cp.async stage into shared memory (kernel_ds, 16 KB
 * more a CTA at 2 stages) and the epilogue reads them there; =l2 (slower,
 * lc20): the LDGs as ldg, the next chunk's rows prefetched into L2
 * at each chunk's top (kernel_pf, no more shared memory). smem and l2
 * override SWERVE_LIGHTNING_SILU_EARLY. Any other value is refused. Returns
 * la_fu::early's value for it (0 for ldg, 3 smem, 4 l2) or an error. */
int dact_mode(const char *fn, int D)
{
	const char *e = getenv("SWERVE_LIGHTNING_DACT");
	if (!e || !*e) /* round 20: smem by default at D 64, where it was measured (ldg
	                * elsewhere, and where SILU_EARLY asks for its form) */
		return silu_early() || D != 64 ? 0 : 3;
	if (strcmp(e, "ldg") == 0)
		return 0;
	if (strcmp(e, "smem") == 0)
		return 3;
	if (strcmp(e, "l2") == 0)
		return 4;
	return swerve_error_set(SWERVE_EINVAL,
	                        "%s: SWERVE_LIGHTNING_DACT=%s: unknown value (ldg, smem or l2)", fn,
	                        e);
}

/* Round 20 (measured, /work/notes/lc20.md): SWERVE_LIGHTNING_FU_CODE unset
 * or empty (the default, returns 2): split for the fused forward, and for
 * backward_dsilu where DACT is smem (split's LDG form is slower);
 * SWERVE_LIGHTNING_FU_CODE=shared (rounds 14-19: kernel_fu, one
 * body for the fused forward and backwards with their choices made at run
 * time) or split (kernel_sp: forward_silu's passes and backward_dsilu's
 * with their own code, each without the other's, backward_dsilu's also
 * with DACT=smem; backward_silu and the DACT=l2 and SILU_EARLY forms are
 * kernel_fu's / kernel_pf's as before). Any other
 * value is refused. Returns 1 for split, 0 for shared, 2 for the default,
 * or an error. */
int fu_code(const char *fn)
{
	const char *e = getenv("SWERVE_LIGHTNING_FU_CODE");
	if (!e || !*e) /* round 20: the default, split where it was measured faster */
		return 2;
	if (strcmp(e, "shared") == 0)
		return 0;
	if (strcmp(e, "split") == 0)
		return 1;
	return swerve_error_set(SWERVE_EINVAL,
	                        "%s: SWERVE_LIGHTNING_FU_CODE=%s: unknown value (shared or split)",
	                        fn, e);
}

/* pre's row stride: q, k, v's H D columns each, 16-byte rows */
int check_ld(const swerve_lightning_dims *d, int ld, const char *fn)
{
	if (ld < 3 * d->heads * d->dim || ld % 8 != 0 || ld > (1 << 24))
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: ld %d: must be a multiple of 8, at least 3 H D = %d "
		                        "and at most 2^24",
		                        fn, ld, 3 * d->heads * d->dim);
	return 0;
}
} // namespace

extern "C" size_t swerve_lightning_forward_silu_workspace(const struct swerve_lightning_dims *dims)
{
	return dims ? workspace_for(dims, 1, true) : 0;
}

extern "C" size_t swerve_lightning_backward_silu_workspace(const struct swerve_lightning_dims *dims)
{
	return dims ? workspace_for(dims, 3, true) : 0;
}

extern "C" int swerve_lightning_forward_silu(uint16_t *o, float *final_state, uint16_t *act_q,
                                             uint16_t *act_k, uint16_t *act_v, const uint16_t *pre,
                                             int ld, const int32_t *cu_seqlens, const float *slopes,
                                             const float *initial_state,
                                             const struct swerve_lightning_dims *dims,
                                             void *workspace, size_t workspace_bytes,
                                             struct CUstream_st *stream)
{
	const char *fn = "lightning forward (fused SiLU)";
	int rc = check(dims, fn);
	if (rc || (rc = check_ld(dims, ld, fn)) || (rc = fwd_segments_check(fn)))
		return rc;
	const int split = fu_code(fn);
	if (split < 0)
		return split;
	if (!o || !pre || !cu_seqlens || !slopes)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: o, pre, cu_seqlens and slopes must be set", fn);
	if ((rc = misaligned(fn, "o", o)) || (rc = misaligned(fn, "pre", pre)) ||
	    (rc = misaligned(fn, "act_q", act_q)) || (rc = misaligned(fn, "act_k", act_k)) ||
	    (rc = misaligned(fn, "act_v", act_v)) ||
	    (rc = misaligned(fn, "final_state", final_state)) ||
	    (rc = misaligned(fn, "workspace", workspace)))
		return rc;
	const long HD = (long)dims->heads * dims->dim;
	la_fu F = {};
	if (!act_q != !act_k || !act_q != !act_v)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: act_q, act_k and act_v must be all set or all NULL",
		                        fn);
	if (act_q) { /* keep: the activated q, k, v by TMA stores (la_fu::amap) */
		uint16_t *act[3] = {act_q, act_k, act_v};
		const swerve_tma_encode_fn encode = swerve_tma_encoder(fn);
		if (!encode)
			return SWERVE_ERROR;
		const cuuint64_t dim[2] = {(cuuint64_t)HD, (cuuint64_t)0x7fffffff};
		const cuuint64_t stride[1] = {(cuuint64_t)HD * 2};
		const cuuint32_t box[2] = {64, C}, estride[2] = {1, 1};
		for (int j = 0; j < 3; j++) {
			F.act[j] = reinterpret_cast<__nv_bfloat16 *>(act[j]);
			CUresult r =
			        encode(&F.amap[j], CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, act[j], dim,
			               stride, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE,
			               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE,
			               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
			if (r != CUDA_SUCCESS)
				return swerve_error_set(
				        SWERVE_ERROR,
				        "%s: tensor map of the activated %c: CUresult %d", fn,
				        "qkv"[j], (int)r);
		}
		/* SWERVE_LIGHTNING_SILU_STG=1 (not yet run on a GPU): every chunk's
		 * rows by each thread's stores, no TMA and no wait */
		const char *e = getenv("SWERVE_LIGHTNING_SILU_STG");
		F.store = e && atoi(e) > 0 ? 2 : 1;
	}
	la_params P = {};
	forward_prob(P, pre, pre + HD, pre + 2 * HD, o, initial_state, final_state, cu_seqlens,
	             slopes);
	F.p[0] = la_fu_prob{nullptr, {ld, ld, ld}, (int)HD, 7};
	F.early = split ? 5 : 0; /* round 20: kernel_sp<..., 1> (split or the default) */
	return run(P, 1, dims, workspace, workspace_bytes, stream, fn, &F);
}

extern "C" int swerve_lightning_backward_silu(uint16_t *dpre, float *dinitial_state,
                                              const uint16_t *pre, int ld, const uint16_t *dout,
                                              const float *dfinal_state, const int32_t *cu_seqlens,
                                              const float *slopes, const float *initial_state,
                                              const struct swerve_lightning_dims *dims,
                                              void *workspace, size_t workspace_bytes,
                                              struct CUstream_st *stream)
{
	const char *fn = "lightning backward (fused SiLU)";
	int rc = check(dims, fn);
	if (rc || (rc = check_ld(dims, ld, fn)))
		return rc;
	const int dsm = dact_mode(fn, dims->dim);
	if (dsm < 0)
		return dsm;
	if (!dpre || !pre || !dout || !cu_seqlens || !slopes)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: dpre, pre, dout, cu_seqlens and slopes must be set",
		                        fn);
	if ((rc = check_dpre(fn, dpre, pre)) || (rc = misaligned(fn, "dpre", dpre)) ||
	    (rc = misaligned(fn, "pre", pre)) || (rc = misaligned(fn, "dout", dout)) ||
	    (rc = misaligned(fn, "dinitial_state", dinitial_state)) ||
	    (rc = misaligned(fn, "workspace", workspace)))
		return rc;
	const long HD = (long)dims->heads * dims->dim;
	const uint16_t *q = pre, *k = pre + HD, *v = pre + 2 * HD;
	const int hd = (int)HD;
	la_params P = {};
	/* as swerve_lightning_backward, with q, k, v the SiLU of pre's columns
	 * and each output scaled by SiLU' of its own columns of pre */
	backward_probs(P, q, k, v, dout, dpre, dpre + HD, dpre + 2 * HD, initial_state,
	               dfinal_state, dinitial_state, cu_seqlens, slopes);
	la_fu F = {};
	F.p[0] = la_fu_prob{bf(q), {hd, ld, ld}, ld, 6};
	F.p[1] = la_fu_prob{bf(v), {ld, ld, hd}, ld, 3};
	F.p[2] = la_fu_prob{bf(k), {ld, hd, ld}, ld, 5};
	F.early = dsm ? dsm : silu_early(); /* 3: kernel_ds, 4: kernel_pf (round 19) */
	return run(P, 3, dims, workspace, workspace_bytes, stream, fn, &F);
}

extern "C" int swerve_lightning_backward_dsilu(
        uint16_t *dpre, float *dinitial_state, const uint16_t *q, const uint16_t *k,
        const uint16_t *v, const uint16_t *pre, int ld, const uint16_t *dout,
        const float *dfinal_state, const int32_t *cu_seqlens, const float *slopes,
        const float *initial_state, const struct swerve_lightning_dims *dims, void *workspace,
        size_t workspace_bytes, struct CUstream_st *stream)
{
	const char *fn = "lightning backward (fused SiLU')";
	int rc = check(dims, fn);
	if (rc || (rc = check_ld(dims, ld, fn)))
		return rc;
	const int dsm = dact_mode(fn, dims->dim), split = fu_code(fn);
	if (dsm < 0)
		return dsm;
	if (split < 0)
		return split;
	if (!dpre || !q || !k || !v || !pre || !dout || !cu_seqlens || !slopes)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: dpre, q, k, v, pre, dout, cu_seqlens and slopes must "
		                        "be set",
		                        fn);
	if ((rc = check_dpre(fn, dpre, pre)) || (rc = misaligned(fn, "dpre", dpre)) ||
	    (rc = misaligned(fn, "pre", pre)) || (rc = misaligned(fn, "q", q)) ||
	    (rc = misaligned(fn, "k", k)) || (rc = misaligned(fn, "v", v)) ||
	    (rc = misaligned(fn, "dout", dout)) ||
	    (rc = misaligned(fn, "dinitial_state", dinitial_state)) ||
	    (rc = misaligned(fn, "workspace", workspace)))
		return rc;
	const long HD = (long)dims->heads * dims->dim;
	const int hd = (int)HD;
	la_params P = {};
	/* as swerve_lightning_backward (activated q, k, v given), each output
	 * scaled by SiLU' of its own columns of pre */
	backward_probs(P, q, k, v, dout, dpre, dpre + HD, dpre + 2 * HD, initial_state,
	               dfinal_state, dinitial_state, cu_seqlens, slopes);
	la_fu F = {};
	F.p[0] = la_fu_prob{bf(pre), {hd, hd, hd}, ld, 0};
	F.p[1] = la_fu_prob{bf(pre + 2 * HD), {hd, hd, hd}, ld, 0};
	F.p[2] = la_fu_prob{bf(pre + HD), {hd, hd, hd}, ld, 0};
	F.early = dsm ? dsm : silu_early(); /* 3: kernel_ds, 4: kernel_pf (round 19) */
	/* round 20: kernel_sp<..., 2>; by default (split 2) only with DACT=smem:
	 * split's LDG epilogue measured +17% (lc20) */
	if ((split == 1 && (!F.early || F.early == 3)) || (split == 2 && F.early == 3))
		F.early = F.early == 3 ? 7 : 6; /* 7: with DACT=smem */
	return run(P, 3, dims, workspace, workspace_bytes, stream, fn, &F);
}

extern "C" int swerve_lightning_decode(uint16_t *o, float *state, const uint16_t *q,
                                       const uint16_t *k, const uint16_t *v, const float *slopes,
                                       int batch, int heads, int dim, struct CUstream_st *stream)
{
	const char *fn = "lightning decode";
	if (dim != 64 && dim != 128)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "%s: head dim %d: the GPU kernel supports 64 and 128", fn,
		                        dim);
	if (batch <= 0 || heads <= 0)
		return swerve_error_set(SWERVE_EINVAL, "%s: batch %d, heads %d: must be > 0", fn,
		                        batch, heads);
	if (!o || !state || !q || !k || !v || !slopes)
		return swerve_error_set(SWERVE_EINVAL,
		                        "%s: o, state, q, k, v and slopes must be set", fn);
	int rc;
	if ((rc = misaligned(fn, "state", state)) || (rc = misaligned(fn, "q", q)) ||
	    (rc = misaligned(fn, "k", k)) || (rc = misaligned(fn, "v", v)))
		return rc;
	auto ob = reinterpret_cast<__nv_bfloat16 *>(o);
	if (dim == 64)
		la_decode_kernel<64><<<batch * heads * 2, 256, 0, stream>>>(ob, state, bf(q), bf(k),
		                                                            bf(v), slopes, heads);
	else
		la_decode_kernel<128><<<batch * heads * 2, 256, 0, stream>>>(
		        ob, state, bf(q), bf(k), bf(v), slopes, heads);
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "%s: launch: %s", fn, cudaGetErrorString(e));
	return 0;
}
