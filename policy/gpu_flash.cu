/* gpu_flash.cu - tiled (flash) causal GQA softmax attention for the GPU
 * policy's softmax layers (bf16 mode, head_dim 64); see gpu_flash.h.
 *
 * Two implementations of the same three calls:
 *   fa2  (the default) FlashAttention-2 style: mma.sync m16n8k16 bf16 through
 *        inline PTX, ldmatrix fragments, S and P in registers (P reused as
 *        the A operand of P V), cp.async double-buffered tiles of bf16 copies
 *        made once per call (one launch; the forward reads q as fp32 straight
 *        into its fragments); forward query tiles of 128 rows (8 warps; fa2_64:
 *        64 rows, 4 warps), both at 128 registers; backward dK/dV per 64-key
 *        tile (K, V fragments held, 224 registers, 2 blocks an SM), dQ per
 *        64-query tile. H100, 4 x 2048 tokens, H 12, KV 4: fwd 0.132 ms, bwd
 *        0.359 ms (measured as two variants of one run), against the wmma
 *        kernels' 0.832 + 2.535 (/work/notes/flash2.md);
 *   wmma the first version (WMMA m16n16k16, every product through shared
 *        memory, fp32 inputs converted per tile), kept as the baseline.
 * POLICY_GPU_FLASH=fa2|fa2_64|fa2_par|wmma picks one at policy_flash_setup();
 * policy_flash_select() switches in-process (tests, benchmark). Round 19:
 * fa2_par = fa2 with the backward's dQ kernel on a second stream beside the
 * dK/dV kernel; POLICY_GPU_FLASH_ROPE=fused: the rotary embedding of q and k
 * in one launch, cos and sin once per (token, pair) (policy_flash_rope). */
#include "policy/gpu_flash.h"
#include "policy/gpu_util.h"

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

using namespace nvcuda;

/* ---- tiled (flash) softmax attention, bf16 mode, head_dim 64 ------------- */

/* Causal GQA attention over packed sequences without materialising the
 * scores: a block of 4 warps per 64-row tile, each warp 16 rows; bf16 tensor
 * cores (WMMA m16n16k16, fp32 accumulation) for every product; q, k, v, o,
 * lse, dO and the gradients stay in the layouts of the cuBLAS path (fp32,
 * (T, heads, 64); lse (T, H) of the scaled scores), so the two paths are
 * interchangeable (POLICY_GPU_ATTN=gemm selects cuBLAS). Forward: online
 * softmax over 64-key tiles (FlashAttention-2). Backward: one kernel per
 * key tile accumulates dK and dV over the query tiles and the group's heads
 * (no atomics), one per query tile accumulates dQ; both rebuild P from the
 * saved log-sum-exp. Row-wise work is done by lane pairs (a row each, the
 * columns interleaved between the two lanes). */
#define FA_T        64              /* rows of a query or key tile */
#define FA_D        64              /* head dim */
#define FA_LDH      72              /* bf16 shared-memory row stride */
#define FA_LDF      68              /* fp32 shared-memory row stride */
#define FA_TH       (FA_T * FA_LDH) /* elements of a bf16 tile */
#define FA_TF       (FA_T * FA_LDF) /* elements of an fp32 tile */
#define FA_FWD_SMEM (4 * FA_TH * 2 + 2 * FA_TF * 4)
#define FA_BKV_SMEM (6 * FA_TH * 2 + 2 * FA_TF * 4 + 2 * FA_T * 4)
#define FA_BQ_SMEM  (5 * FA_TH * 2 + 2 * FA_TF * 4 + 2 * FA_T * 4)

typedef __nv_bfloat16 fa_bf;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> fa_acc;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, fa_bf, wmma::row_major> fa_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, fa_bf, wmma::row_major> fa_br;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, fa_bf, wmma::col_major> fa_bc;

/* rows [r0, r0 + 64) of an fp32 (T, heads, 64) tensor, head hd, into a bf16
 * tile (rows at or past n: zero) */
__device__ static void fa_load(fa_bf *dst, const float *src, int t0, int r0, int n, int heads,
                               int hd)
{
	for (int i = threadIdx.x; i < FA_T * FA_D / 4; i += blockDim.x) {
		int r = i / (FA_D / 4), c = i % (FA_D / 4) * 4;
		float4 x = make_float4(0, 0, 0, 0);
		if (r0 + r < n)
			x = *(const float4 *)(src + ((size_t)(t0 + r0 + r) * heads + hd) * FA_D +
			                      c);
		fa_bf *d = dst + r * FA_LDH + c;
		d[0] = __float2bfloat16(x.x);
		d[1] = __float2bfloat16(x.y);
		d[2] = __float2bfloat16(x.z);
		d[3] = __float2bfloat16(x.w);
	}
}

/* out (16 x 64 fp32, ld FA_LDF) = A (16 x 64, row-major) B^T where B is a
 * 64 x 64 row-major tile (B^T read column-major): rows of A times rows of B */
__device__ static void fa_abt(float *out, const fa_bf *A, const fa_bf *B)
{
	fa_acc acc[4];
#pragma unroll
	for (int j = 0; j < 4; j++)
		wmma::fill_fragment(acc[j], 0.0f);
#pragma unroll
	for (int kk = 0; kk < 4; kk++) {
		fa_a a;
		wmma::load_matrix_sync(a, A + kk * 16, FA_LDH);
#pragma unroll
		for (int j = 0; j < 4; j++) {
			fa_bc b;
			wmma::load_matrix_sync(b, B + j * 16 * FA_LDH + kk * 16, FA_LDH);
			wmma::mma_sync(acc[j], a, b, acc[j]);
		}
	}
#pragma unroll
	for (int j = 0; j < 4; j++)
		wmma::store_matrix_sync(out + j * 16, acc[j], FA_LDF, wmma::mem_row_major);
}

/* acc (16 x 64, four fragments) += A (16 x 64, row-major) B (64 x 64, row-major) */
__device__ static void fa_ab(fa_acc *acc, const fa_bf *A, const fa_bf *B)
{
#pragma unroll
	for (int kk = 0; kk < 4; kk++) {
		fa_a a;
		wmma::load_matrix_sync(a, A + kk * 16, FA_LDH);
#pragma unroll
		for (int j = 0; j < 4; j++) {
			fa_br b;
			wmma::load_matrix_sync(b, B + kk * 16 * FA_LDH + j * 16, FA_LDH);
			wmma::mma_sync(acc[j], a, b, acc[j]);
		}
	}
}

/* grid (query tiles, sequences, H), 128 threads */
__global__ static void __launch_bounds__(128)
        k_flash_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                    const int *cu, int H, int KV, float scale)
{
	extern __shared__ __align__(128) unsigned char fa_sm[];
	fa_bf *Qs = (fa_bf *)fa_sm, *Ks = Qs + FA_TH, *Vs = Ks + FA_TH, *Ps = Vs + FA_TH;
	float *Ss = (float *)(Ps + FA_TH), *Os = Ss + FA_TF;
	/* the longest tiles (most key tiles) first */
	int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.z, t0 = cu[blockIdx.y];
	int L = cu[blockIdx.y + 1] - t0;
	int q0 = qt * FA_T, kh = h / (H / KV), w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int row = w * 16 + (lane >> 1), half = lane & 1, qpos = q0 + row;
	float m = -INFINITY, l = 0;
	if (q0 >= L)
		return;
	fa_load(Qs, q, t0, q0, L, H, h);
	for (int i = threadIdx.x; i < FA_T * FA_D; i += blockDim.x)
		Os[i / FA_D * FA_LDF + i % FA_D] = 0.0f;
	for (int kt = 0; kt <= qt; kt++) {
		int k0 = kt * FA_T;
		float *sr = Ss + row * FA_LDF, *orow = Os + row * FA_LDF, mx = -INFINITY, sum = 0;
		fa_bf *pr = Ps + row * FA_LDH;
		__syncthreads(); /* the last tile's K and V are no longer read */
		fa_load(Ks, k, t0, k0, L, KV, kh);
		fa_load(Vs, v, t0, k0, L, KV, kh);
		__syncthreads();
		fa_abt(Ss + w * 16 * FA_LDF, Qs + w * 16 * FA_LDH, Ks);
		__syncwarp();
		for (int i = 0; i < FA_T / 2; i++) {
			int c = 2 * i + half, kp = k0 + c;
			float x = kp <= qpos && kp < L ? sr[c] * scale : -INFINITY;
			sr[c] = x;
			mx = fmaxf(mx, x);
		}
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
		float mn = fmaxf(m, mx); /* finite: key k0 <= qpos is always in */
		float alpha = expf(m - mn);
		for (int i = 0; i < FA_T / 2; i++) {
			int c = 2 * i + half;
			float p = expf(sr[c] - mn);
			sum += p;
			pr[c] = __float2bfloat16(p);
			orow[c] *= alpha;
		}
		sum += __shfl_xor_sync(0xffffffffu, sum, 1);
		l = l * alpha + sum;
		m = mn;
		__syncwarp();
		{
			fa_acc acc[4];
			float *ow = Os + w * 16 * FA_LDF;
#pragma unroll
			for (int j = 0; j < 4; j++)
				wmma::load_matrix_sync(acc[j], ow + j * 16, FA_LDF,
				                       wmma::mem_row_major);
			fa_ab(acc, Ps + w * 16 * FA_LDH, Vs);
#pragma unroll
			for (int j = 0; j < 4; j++)
				wmma::store_matrix_sync(ow + j * 16, acc[j], FA_LDF,
				                        wmma::mem_row_major);
		}
		__syncwarp();
	}
	if (qpos < L) {
		float *orow = Os + row * FA_LDF, inv = 1.0f / l;
		float *dst = o + ((size_t)(t0 + qpos) * H + h) * FA_D;
		for (int i = 0; i < FA_D / 2; i++) {
			int c = 2 * i + half;
			dst[c] = orow[c] * inv;
		}
		if (half == 0)
			lse[(size_t)(t0 + qpos) * H + h] = m + logf(l);
	}
}

/* fp32 (16 x 64) fragments through shared memory to rows [r0, r0 + 64) of
 * an fp32 (T, heads, 64) tensor (rows at or past n skipped); warp w's rows */
__device__ static void fa_store(float *dst, fa_acc *acc, float *scr, int t0, int r0, int n,
                                int heads, int hd)
{
	int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	float *sw = scr + w * 16 * FA_LDF;
#pragma unroll
	for (int j = 0; j < 4; j++)
		wmma::store_matrix_sync(sw + j * 16, acc[j], FA_LDF, wmma::mem_row_major);
	__syncwarp();
	for (int i = lane; i < 16 * FA_D; i += 32) {
		int r = i / FA_D, c = i % FA_D, t = r0 + w * 16 + r;
		if (t < n)
			dst[((size_t)(t0 + t) * heads + hd) * FA_D + c] = sw[r * FA_LDF + c];
	}
}

/* dK, dV of one key tile: grid (key tiles, sequences, KV), 128 threads; warp
 * w owns keys [16 w, 16 w + 16) of the tile, over every later query tile of
 * each head of the group */
__global__ static void __launch_bounds__(128)
        k_flash_bwd_kv(float *dk, float *dv, const float *q, const float *k, const float *v,
                       const float *dout, const float *lse, const float *Dsum, const int *cu, int H,
                       int KV, float scale)
{
	extern __shared__ __align__(128) unsigned char fa_sm[];
	fa_bf *Ks = (fa_bf *)fa_sm, *Vs = Ks + FA_TH, *Qs = Vs + FA_TH, *dOs = Qs + FA_TH;
	fa_bf *PT = dOs + FA_TH, *dST = PT + FA_TH;
	float *ST = (float *)(dST + FA_TH), *dPT = ST + FA_TF, *ls = dPT + FA_TF, *Ds = ls + FA_T;
	int kt = blockIdx.x, kh = blockIdx.z, t0 = cu[blockIdx.y], L = cu[blockIdx.y + 1] - t0;
	int k0 = kt * FA_T, grp = H / KV, w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int kr = w * 16 + (lane >> 1), half = lane & 1, kpos = k0 + kr;
	fa_acc adk[4], adv[4];
	if (k0 >= L)
		return;
	fa_load(Ks, k, t0, k0, L, KV, kh);
	fa_load(Vs, v, t0, k0, L, KV, kh);
#pragma unroll
	for (int j = 0; j < 4; j++) {
		wmma::fill_fragment(adk[j], 0.0f);
		wmma::fill_fragment(adv[j], 0.0f);
	}
	for (int hh = 0; hh < grp; hh++) {
		int h = kh * grp + hh;
		for (int q0 = k0; q0 < L; q0 += FA_T) {
			__syncthreads(); /* the last tile's Q, dO, lse, D are no longer read */
			fa_load(Qs, q, t0, q0, L, H, h);
			fa_load(dOs, dout, t0, q0, L, H, h);
			for (int i = threadIdx.x; i < FA_T; i += blockDim.x) {
				int ok = q0 + i < L;
				ls[i] = ok ? lse[(size_t)(t0 + q0 + i) * H + h] : 0.0f;
				Ds[i] = ok ? Dsum[(size_t)(t0 + q0 + i) * H + h] : 0.0f;
			}
			__syncthreads();
			/* S^T = K Q^T and dP^T = V dO^T for this warp's keys */
			fa_abt(ST + w * 16 * FA_LDF, Ks + w * 16 * FA_LDH, Qs);
			fa_abt(dPT + w * 16 * FA_LDF, Vs + w * 16 * FA_LDH, dOs);
			__syncwarp();
			for (int i = 0; i < FA_T / 2; i++) {
				int c = 2 * i + half, qp = q0 + c;
				float p = 0.0f, ds = 0.0f;
				if (qp >= kpos && qp < L && kpos < L) {
					p = expf(ST[kr * FA_LDF + c] * scale - ls[c]);
					ds = p * (dPT[kr * FA_LDF + c] - Ds[c]) * scale;
				}
				PT[kr * FA_LDH + c] = __float2bfloat16(p);
				dST[kr * FA_LDH + c] = __float2bfloat16(ds);
			}
			__syncwarp();
			fa_ab(adv, PT + w * 16 * FA_LDH, dOs); /* dV += P^T dO */
			fa_ab(adk, dST + w * 16 * FA_LDH, Qs); /* dK += dS^T Q */
		}
	}
	fa_store(dk, adk, ST, t0, k0, L, KV, kh);
	fa_store(dv, adv, dPT, t0, k0, L, KV, kh);
}

/* dQ of one query tile: grid (query tiles, sequences, H), 128 threads */
__global__ static void __launch_bounds__(128)
        k_flash_bwd_q(float *dq, const float *q, const float *k, const float *v, const float *dout,
                      const float *lse, const float *Dsum, const int *cu, int H, int KV,
                      float scale)
{
	extern __shared__ __align__(128) unsigned char fa_sm[];
	fa_bf *Qs = (fa_bf *)fa_sm, *dOs = Qs + FA_TH, *Ks = dOs + FA_TH, *Vs = Ks + FA_TH;
	fa_bf *dSs = Vs + FA_TH;
	float *Ss = (float *)(dSs + FA_TH), *dPs = Ss + FA_TF, *ls = dPs + FA_TF, *Ds = ls + FA_T;
	int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.z, t0 = cu[blockIdx.y];
	int L = cu[blockIdx.y + 1] - t0;
	int q0 = qt * FA_T, kh = h / (H / KV), w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int qr = w * 16 + (lane >> 1), half = lane & 1, qpos = q0 + qr;
	fa_acc adq[4];
	if (q0 >= L)
		return;
	fa_load(Qs, q, t0, q0, L, H, h);
	fa_load(dOs, dout, t0, q0, L, H, h);
	for (int i = threadIdx.x; i < FA_T; i += blockDim.x) {
		int ok = q0 + i < L;
		ls[i] = ok ? lse[(size_t)(t0 + q0 + i) * H + h] : 0.0f;
		Ds[i] = ok ? Dsum[(size_t)(t0 + q0 + i) * H + h] : 0.0f;
	}
#pragma unroll
	for (int j = 0; j < 4; j++)
		wmma::fill_fragment(adq[j], 0.0f);
	for (int k0 = 0; k0 <= q0; k0 += FA_T) {
		__syncthreads(); /* the last tile's K and V are no longer read */
		fa_load(Ks, k, t0, k0, L, KV, kh);
		fa_load(Vs, v, t0, k0, L, KV, kh);
		__syncthreads();
		fa_abt(Ss + w * 16 * FA_LDF, Qs + w * 16 * FA_LDH, Ks);   /* S = Q K^T */
		fa_abt(dPs + w * 16 * FA_LDF, dOs + w * 16 * FA_LDH, Vs); /* dP = dO V^T */
		__syncwarp();
		for (int i = 0; i < FA_T / 2; i++) {
			int c = 2 * i + half, kp = k0 + c;
			float ds = 0.0f;
			if (kp <= qpos && kp < L && qpos < L) {
				float p = expf(Ss[qr * FA_LDF + c] * scale - ls[qr]);
				ds = p * (dPs[qr * FA_LDF + c] - Ds[qr]) * scale;
			}
			dSs[qr * FA_LDH + c] = __float2bfloat16(ds);
		}
		__syncwarp();
		fa_ab(adq, dSs + w * 16 * FA_LDH, Ks); /* dQ += dS K */
	}
	fa_store(dq, adq, Ss, t0, q0, L, H, h);
}

/* ---- FlashAttention-2: mma.sync m16n8k16, register-resident S and P ------- */

/* Each warp owns 16 rows (queries in the forward and dQ kernels, keys in the
 * dK/dV kernel) and keeps its scores, probabilities and accumulators in
 * mma.sync fragments: thread (g = lane / 4, t = lane % 4) holds rows g and
 * g + 8, columns 2t and 2t + 1 of each 8-column block. The C fragment of
 * S = Q K^T is, packed to bf16 pairs, the A fragment of P V, so P never
 * touches shared memory. Tiles are 64 keys (or queries) of bf16 rows padded
 * to 72 elements (144 B: the 8 rows an ldmatrix reads fall in distinct bank
 * groups), filled by cp.async (rows past the sequence zero-filled) one tile
 * ahead of the one in use. Softmax in base 2: s * scale * log2(e) and lse *
 * log2(e), so each probability is one exp2f of one FMA. */
#define F2_D     64
#define F2_LD    72             /* bf16 shared-memory row stride */
#define F2_T     64             /* rows of a key tile (and of a bwd query tile) */
#define F2_TILE  (F2_T * F2_LD) /* elements of a 64-row tile */
#define F2_LOG2E 1.4426950408889634f
#define F2_LN2   0.6931471805599453f

#define F2_FWD_SMEM (4 * F2_TILE * 2)
#define F2_BKV_SMEM (6 * F2_TILE * 2 + 4 * F2_T * 4)
#define F2_BQ_SMEM  (6 * F2_TILE * 2)

__device__ __forceinline__ static unsigned f2_smem(const void *p)
{
	return (unsigned)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, zero-filled when !ok (src is then not read) */
__device__ __forceinline__ static void f2_cp16(void *dst, const void *src, bool ok)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(f2_smem(dst)),
	             "l"(src), "r"(ok ? 16 : 0)
	             : "memory");
}

__device__ __forceinline__ static void f2_cp4(void *dst, const void *src, bool ok)
{
	asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(f2_smem(dst)), "l"(src),
	             "r"(ok ? 4 : 0)
	             : "memory");
}

__device__ __forceinline__ static void f2_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

__device__ __forceinline__ static void f2_wait_all(void)
{
	asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

__device__ __forceinline__ static void f2_ldsm(unsigned r[4], const fa_bf *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(f2_smem(p))
	             : "memory");
}

__device__ __forceinline__ static void f2_ldsm_t(unsigned r[4], const fa_bf *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(f2_smem(p))
	             : "memory");
}

/* c (16 x 8 fp32) += a (16 x 16 bf16, row) b (16 x 8 bf16, col) */
__device__ __forceinline__ static void f2_mma(float c[4], const unsigned a[4], unsigned b0,
                                              unsigned b1)
{
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
	    "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
	    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ static unsigned f2_pack(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *(unsigned *)&v;
}

/* the A fragment (16 rows x 16 columns) at a row-major tile: rows [0, 16) */
__device__ __forceinline__ static void f2_lda(unsigned a[4], const fa_bf *tile, int kk, int lane)
{
	f2_ldsm(a, tile + (lane & 15) * F2_LD + kk * 16 + (lane >> 4) * 8);
}

/* B fragments of two 8-column blocks, columns [n0, n0 + 16) of B = X^T for a
 * row-major X (rows are B's columns): X rows n0.., X columns 16 kk.. */
__device__ __forceinline__ static void f2_ldb(unsigned b[4], const fa_bf *X, int n0, int kk,
                                              int lane)
{
	f2_ldsm(b, X + (n0 + (lane & 7) + ((lane >> 4) << 3)) * F2_LD + kk * 16 +
	                   ((lane >> 3) & 1) * 8);
}

/* B fragments of two 8-column blocks of a row-major B: rows [16 kk, +16),
 * columns [n0, n0 + 16) */
__device__ __forceinline__ static void f2_ldb_t(unsigned b[4], const fa_bf *B, int n0, int kk,
                                                int lane)
{
	f2_ldsm_t(b, B + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * F2_LD + n0 +
	                     (lane >> 4) * 8);
}

/* acc (16 x 64) = A (16 x 64, fragments a[4]) X^T for a row-major 64 x 64 X */
__device__ __forceinline__ static void f2_abt(float acc[8][4], const unsigned a[4][4],
                                              const fa_bf *X, int lane)
{
#pragma unroll
	for (int j = 0; j < 8; j++)
		acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
#pragma unroll
	for (int kk = 0; kk < 4; kk++)
#pragma unroll
		for (int np = 0; np < 4; np++) {
			unsigned b[4];
			f2_ldb(b, X, np * 16, kk, lane);
			f2_mma(acc[2 * np], a[kk], b[0], b[1]);
			f2_mma(acc[2 * np + 1], a[kk], b[2], b[3]);
		}
}

/* acc (16 x 64) += P (16 x 64 fp32 C fragments, rounded to bf16) B for a
 * row-major 64 x 64 B */
__device__ __forceinline__ static void f2_pb(float acc[8][4], const float p[8][4], const fa_bf *B,
                                             int lane)
{
#pragma unroll
	for (int kk = 0; kk < 4; kk++) {
		unsigned a[4] = {f2_pack(p[2 * kk][0], p[2 * kk][1]),
		                 f2_pack(p[2 * kk][2], p[2 * kk][3]),
		                 f2_pack(p[2 * kk + 1][0], p[2 * kk + 1][1]),
		                 f2_pack(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
		for (int dp = 0; dp < 4; dp++) {
			unsigned b[4];
			f2_ldb_t(b, B, dp * 16, kk, lane);
			f2_mma(acc[2 * dp], a, b[0], b[1]);
			f2_mma(acc[2 * dp + 1], a, b[2], b[3]);
		}
	}
}

/* rows [r0, r0 + rows) of a bf16 (T, heads, 64) tensor, head hd, into a
 * tile (rows at or past n zero-filled); cp.async, not committed */
template <int ROWS, int NT>
__device__ __forceinline__ static void f2_load(fa_bf *dst, const fa_bf *src, int t0, int r0, int n,
                                               int heads, int hd)
{
	static_assert(ROWS * 8 % NT == 0, "whole rounds of 16-byte copies");
#pragma unroll
	for (int it = 0; it < ROWS * 8 / NT; it++) {
		int i = threadIdx.x + it * NT, r = i >> 3, c = (i & 7) * 8;
		bool ok = r0 + r < n;
		const fa_bf *s = ok ? src + ((size_t)(t0 + r0 + r) * heads + hd) * F2_D + c : src;
		f2_cp16(dst + r * F2_LD + c, s, ok);
	}
}

/* 64 values x[(t0 + r0 + i) * heads + hd] (zero past n) into dst; 64 threads */
__device__ __forceinline__ static void f2_load_row(float *dst, const float *x, int t0, int r0,
                                                   int n, int heads, int hd, int i)
{
	bool ok = r0 + i < n;
	f2_cp4(dst + i, ok ? x + (size_t)(t0 + r0 + i) * heads + hd : x, ok);
}

/* up to 4 fp32 -> bf16 conversions in one launch (blockIdx.y picks one) */
struct f2_jobs {
	fa_bf *dst[4];
	const float *src[4];
	int w[4]; /* row width, a multiple of 8 */
};

/* rows [0, cu[n_seqs]) (at most cap) of each job's fp32 (T, w) tensor */
__global__ static void k_f2_bf16(struct f2_jobs jb, const int *cu, int n_seqs, size_t cap)
{
	size_t rows = (size_t)cu[n_seqs];
	int y = blockIdx.y; /* constant indices: the parameter stays out of local memory */
	int w = y == 0 ? jb.w[0] : y == 1 ? jb.w[1] : y == 2 ? jb.w[2] : jb.w[3];
	const float4 *src = (const float4 *)(y == 0   ? jb.src[0]
	                                     : y == 1 ? jb.src[1]
	                                     : y == 2 ? jb.src[2]
	                                              : jb.src[3]);
	uint4 *dst = (uint4 *)(y == 0   ? jb.dst[0]
	                       : y == 1 ? jb.dst[1]
	                       : y == 2 ? jb.dst[2]
	                                : jb.dst[3]);
	size_t n = (rows < cap ? rows : cap) * (size_t)w / 8;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		float4 a = src[2 * i], b = src[2 * i + 1];
		uint4 o = make_uint4(f2_pack(a.x, a.y), f2_pack(a.z, a.w), f2_pack(b.x, b.y),
		                     f2_pack(b.z, b.w));
		dst[i] = o;
	}
}

/* forward: grid (H, sequences, query tiles of BM = 16 NW rows), the longest
 * tiles first (blockIdx.z is dispatched slowest) */
template <int NW>
__global__ static void __launch_bounds__(NW * 32, 512 / (NW * 32))
        k_f2_fwd(float *o, float *lse, const float *q, const fa_bf *k, const fa_bf *v,
                 const int *cu, int H, int KV, float sl2)
{
	constexpr int BM = NW * 16;
	extern __shared__ __align__(128) unsigned char f2_sm[];
	fa_bf *Ks = (fa_bf *)f2_sm, *Vs = Ks + 2 * F2_TILE;
	int h = blockIdx.x, t0 = cu[blockIdx.y], L = cu[blockIdx.y + 1] - t0;
	int q0 = (gridDim.z - 1 - blockIdx.z) * BM;
	if (q0 >= L)
		return;
	int kh = h / (H / KV), w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int g = lane >> 2, tq = lane & 3, wr0 = q0 + w * 16, row0 = wr0 + g;
	int kend = min(q0 + BM, L), nkt = (kend + F2_T - 1) / F2_T;
	unsigned qa[4][4];
	float oacc[8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

	f2_load<F2_T, NW * 32>(Ks, k, t0, 0, L, KV, kh);
	f2_load<F2_T, NW * 32>(Vs, v, t0, 0, L, KV, kh);
	f2_commit();
	/* the warp's 16 query rows, fp32 from global straight into A fragments:
	 * a[0] row g, a[1] row g + 8, columns 2t, 2t + 1; a[2], a[3] columns + 8 */
#pragma unroll
	for (int kk = 0; kk < 4; kk++)
#pragma unroll
		for (int i = 0; i < 4; i++) {
			int r = row0 + 8 * (i & 1);
			float2 x = make_float2(0.0f, 0.0f);
			if (r < L)
				x = *(const float2 *)(q + ((size_t)(t0 + r) * H + h) * F2_D +
				                      kk * 16 + (i >> 1) * 8 + 2 * tq);
			qa[kk][i] = f2_pack(x.x, x.y);
		}
#pragma unroll
	for (int j = 0; j < 8; j++)
		oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.0f;
	for (int kt = 0; kt < nkt; kt++) {
		int k0 = kt * F2_T;
		const fa_bf *Kb = Ks + (kt & 1) * F2_TILE, *Vb = Vs + (kt & 1) * F2_TILE;
		f2_wait_all();
		__syncthreads(); /* tile kt landed; tile kt - 1 is no longer read */
		if (kt + 1 < nkt) {
			f2_load<F2_T, NW * 32>(Ks + ((kt + 1) & 1) * F2_TILE, k, t0, k0 + F2_T, L,
			                       KV, kh);
			f2_load<F2_T, NW * 32>(Vs + ((kt + 1) & 1) * F2_TILE, v, t0, k0 + F2_T, L,
			                       KV, kh);
		}
		f2_commit();
		if (k0 > wr0 + 15)
			continue; /* every key of the tile is after this warp's rows */
		float s[8][4], mx[2] = {-INFINITY, -INFINITY}, sum[2] = {0.0f, 0.0f};
		f2_abt(s, qa, Kb, lane);
		bool diag = k0 + F2_T - 1 > wr0;
#pragma unroll
		for (int j = 0; j < 8; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float x = s[j][e] * sl2;
				if (diag && k0 + j * 8 + 2 * tq + (e & 1) > row0 + 8 * (e >> 1))
					x = -INFINITY;
				s[j][e] = x;
				mx[e >> 1] = fmaxf(mx[e >> 1], x);
			}
#pragma unroll
		for (int i = 0; i < 2; i++) {
			mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
			mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
			float mn =
			        fmaxf(m[i], mx[i]); /* finite: key 0 is in every row's first tile */
			mx[i] = exp2f(m[i] - mn);   /* the old accumulators' factor */
			m[i] = mn;
		}
#pragma unroll
		for (int j = 0; j < 8; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float p = exp2f(s[j][e] - m[e >> 1]);
				s[j][e] = p;
				sum[e >> 1] += p;
				oacc[j][e] *= mx[e >> 1];
			}
		l[0] = l[0] * mx[0] + sum[0];
		l[1] = l[1] * mx[1] + sum[1];
		f2_pb(oacc, s, Vb, lane);
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
		int r = row0 + 8 * i;
		l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
		l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
		if (r >= L)
			continue;
		float inv = 1.0f / l[i];
		float *dst = o + ((size_t)(t0 + r) * H + h) * F2_D + 2 * tq;
#pragma unroll
		for (int j = 0; j < 8; j++)
			*(float2 *)(dst + j * 8) =
			        make_float2(oacc[j][2 * i] * inv, oacc[j][2 * i + 1] * inv);
		if (tq == 0)
			lse[(size_t)(t0 + r) * H + h] = (m[i] + log2f(l[i])) * F2_LN2;
	}
}

/* 16 x 64 fp32 C fragments (times mul) to rows [r0, r0 + 16) of an fp32
 * (T, heads, 64) tensor, rows at or past n skipped */
__device__ __forceinline__ static void f2_store(float *dst, const float acc[8][4], float mul,
                                                int t0, int r0, int n, int heads, int hd, int lane)
{
	int g = lane >> 2, tq = lane & 3;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		int r = r0 + g + 8 * i;
		if (r >= n)
			continue;
		float *d = dst + ((size_t)(t0 + r) * heads + hd) * F2_D + 2 * tq;
#pragma unroll
		for (int j = 0; j < 8; j++)
			*(float2 *)(d + j * 8) =
			        make_float2(acc[j][2 * i] * mul, acc[j][2 * i + 1] * mul);
	}
}

/* dK, dV: grid (KV, sequences, key tiles), 128 threads, the longest (first)
 * key tiles first; warp w owns keys [16 w, 16 w + 16) of the tile and loops
 * over the group's heads and every query tile from the key tile's on. In the
 * warp's fragments rows are keys and columns queries: S^T = K Q^T, dP^T =
 * V dO^T, dV += P^T dO, dK += dS^T Q. */
__global__ static void __launch_bounds__(128, 2)
        k_f2_bwd_kv(float *dk, float *dv, const fa_bf *q, const fa_bf *k, const fa_bf *v,
                    const fa_bf *dout, const float *lse, const float *Dsum, const int *cu, int H,
                    int KV, float sl2, float scale)
{
	extern __shared__ __align__(128) unsigned char f2_sm[];
	fa_bf *Ks = (fa_bf *)f2_sm, *Vs = Ks + F2_TILE, *Qs = Vs + F2_TILE, *dOs = Qs + 2 * F2_TILE;
	float *ls = (float *)(dOs + 2 * F2_TILE), *Ds = ls + 2 * F2_T;
	int kh = blockIdx.x, t0 = cu[blockIdx.y], L = cu[blockIdx.y + 1] - t0;
	int kt = blockIdx.z, k0 = kt * F2_T;
	if (k0 >= L)
		return;
	int grp = H / KV, w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2,
	    tq = lane & 3;
	int nqt = (L + F2_T - 1) / F2_T - kt, n_it = grp * nqt, key0 = k0 + w * 16 + g;
	unsigned ka[4][4], va[4][4];
	float dka[8][4], dva[8][4];

	f2_load<F2_T, 128>(Ks, k, t0, k0, L, KV, kh);
	f2_load<F2_T, 128>(Vs, v, t0, k0, L, KV, kh);
	f2_load<F2_T, 128>(Qs, q, t0, k0, L, H, kh * grp);
	f2_load<F2_T, 128>(dOs, dout, t0, k0, L, H, kh * grp);
	if (threadIdx.x < F2_T)
		f2_load_row(ls, lse, t0, k0, L, H, kh * grp, threadIdx.x);
	else
		f2_load_row(Ds, Dsum, t0, k0, L, H, kh * grp, threadIdx.x - F2_T);
	f2_commit();
#pragma unroll
	for (int j = 0; j < 8; j++)
#pragma unroll
		for (int e = 0; e < 4; e++)
			dka[j][e] = dva[j][e] = 0.0f;
	for (int it = 0; it < n_it; it++) {
		int b = it & 1, qb0 = (kt + it % nqt) * F2_T;
		const fa_bf *Qb = Qs + b * F2_TILE, *dOb = dOs + b * F2_TILE;
		const float *lb = ls + b * F2_T, *Db = Ds + b * F2_T;
		f2_wait_all();
		__syncthreads(); /* iteration it's tiles landed; it - 1's are no longer read */
		if (it == 0)
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				f2_lda(ka[kk], Ks + w * 16 * F2_LD, kk, lane);
				f2_lda(va[kk], Vs + w * 16 * F2_LD, kk, lane);
			}
		if (it + 1 < n_it) {
			int h1 = kh * grp + (it + 1) / nqt, q1 = (kt + (it + 1) % nqt) * F2_T;
			f2_load<F2_T, 128>(Qs + (b ^ 1) * F2_TILE, q, t0, q1, L, H, h1);
			f2_load<F2_T, 128>(dOs + (b ^ 1) * F2_TILE, dout, t0, q1, L, H, h1);
			if (threadIdx.x < F2_T)
				f2_load_row(ls + (b ^ 1) * F2_T, lse, t0, q1, L, H, h1,
				            threadIdx.x);
			else
				f2_load_row(Ds + (b ^ 1) * F2_T, Dsum, t0, q1, L, H, h1,
				            threadIdx.x - F2_T);
		}
		f2_commit();
		/* one product at a time, so that S^T and dP^T are not live together
		 * with both fragment sets: S^T, P^T, dV; then dP^T, dS^T, dK */
		float s[8][4], dp[8][4];
		f2_abt(s, ka, Qb, lane); /* S^T = K Q^T */
		bool edge = qb0 == k0 || qb0 + F2_T > L;
#pragma unroll
		for (int j = 0; j < 8; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				int c = j * 8 + 2 * tq + (e & 1), qp = qb0 + c;
				float p = exp2f(fmaf(s[j][e], sl2, -lb[c] * F2_LOG2E));
				if (edge && (qp < key0 + 8 * (e >> 1) || qp >= L))
					p = 0.0f;
				s[j][e] = p;
			}
		f2_pb(dva, s, dOb, lane);  /* dV += P^T dO */
		f2_abt(dp, va, dOb, lane); /* dP^T = V dO^T */
#pragma unroll
		for (int j = 0; j < 8; j++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				dp[j][e] = s[j][e] * (dp[j][e] - Db[j * 8 + 2 * tq + (e & 1)]);
		f2_pb(dka, dp, Qb, lane); /* dK += dS^T Q */
	}
	f2_store(dk, dka, scale, t0, k0 + w * 16, L, KV, kh, lane);
	f2_store(dv, dva, 1.0f, t0, k0 + w * 16, L, KV, kh, lane);
}

/* dQ: grid (H, sequences, query tiles), 128 threads, the longest tiles
 * first; warp w owns queries [16 w, 16 w + 16): S = Q K^T, dP = dO V^T,
 * dQ += dS K */
__global__ static void __launch_bounds__(128)
        k_f2_bwd_q(float *dq, const fa_bf *q, const fa_bf *k, const fa_bf *v, const fa_bf *dout,
                   const float *lse, const float *Dsum, const int *cu, int H, int KV, float sl2,
                   float scale)
{
	extern __shared__ __align__(128) unsigned char f2_sm[];
	fa_bf *Qs = (fa_bf *)f2_sm, *dOs = Qs + F2_TILE, *Ks = dOs + F2_TILE,
	      *Vs = Ks + 2 * F2_TILE;
	int h = blockIdx.x, t0 = cu[blockIdx.y], L = cu[blockIdx.y + 1] - t0;
	int qt = gridDim.z - 1 - blockIdx.z, q0 = qt * F2_T;
	if (q0 >= L)
		return;
	int kh = h / (H / KV), w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
	int tq = lane & 3, row0 = q0 + w * 16 + g, nkt = qt + 1;
	unsigned qa[4][4], da[4][4];
	float dqa[8][4], l2[2], Dr[2];

	f2_load<F2_T, 128>(Qs, q, t0, q0, L, H, h);
	f2_load<F2_T, 128>(dOs, dout, t0, q0, L, H, h);
	f2_load<F2_T, 128>(Ks, k, t0, 0, L, KV, kh);
	f2_load<F2_T, 128>(Vs, v, t0, 0, L, KV, kh);
	f2_commit();
#pragma unroll
	for (int i = 0; i < 2; i++) {
		int r = row0 + 8 * i;
		l2[i] = r < L ? lse[(size_t)(t0 + r) * H + h] * F2_LOG2E : 0.0f;
		Dr[i] = r < L ? Dsum[(size_t)(t0 + r) * H + h] : 0.0f;
	}
#pragma unroll
	for (int j = 0; j < 8; j++)
		dqa[j][0] = dqa[j][1] = dqa[j][2] = dqa[j][3] = 0.0f;
	for (int kt = 0; kt < nkt; kt++) {
		int k0 = kt * F2_T;
		const fa_bf *Kb = Ks + (kt & 1) * F2_TILE, *Vb = Vs + (kt & 1) * F2_TILE;
		f2_wait_all();
		__syncthreads();
		if (kt == 0)
#pragma unroll
			for (int kk = 0; kk < 4; kk++) {
				f2_lda(qa[kk], Qs + w * 16 * F2_LD, kk, lane);
				f2_lda(da[kk], dOs + w * 16 * F2_LD, kk, lane);
			}
		if (kt + 1 < nkt) {
			f2_load<F2_T, 128>(Ks + ((kt + 1) & 1) * F2_TILE, k, t0, k0 + F2_T, L, KV,
			                   kh);
			f2_load<F2_T, 128>(Vs + ((kt + 1) & 1) * F2_TILE, v, t0, k0 + F2_T, L, KV,
			                   kh);
		}
		f2_commit();
		float s[8][4], dp[8][4];
		f2_abt(s, qa, Kb, lane);  /* S = Q K^T */
		f2_abt(dp, da, Vb, lane); /* dP = dO V^T */
		bool diag = kt == qt;
#pragma unroll
		for (int j = 0; j < 8; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float p = exp2f(fmaf(s[j][e], sl2, -l2[e >> 1]));
				if (diag && k0 + j * 8 + 2 * tq + (e & 1) > row0 + 8 * (e >> 1))
					p = 0.0f;
				dp[j][e] = p * (dp[j][e] - Dr[e >> 1]);
			}
		f2_pb(dqa, dp, Kb, lane); /* dQ += dS K */
	}
	f2_store(dq, dqa, scale, t0, q0 + w * 16, L, H, h, lane);
}

/* ---- round 19: the rotary embedding of q and k in one launch ---------------- */

/* rotate-half on the first 2 half dims of nh heads of d (row x, one token),
 * pair j: the loads of 4 heads before their stores (the stores may alias
 * later loads as far as the compiler knows) */
__device__ __forceinline__ static void f2_rope_heads(float *x, int nh, int d, int j, int half,
                                                     float cs, float sn)
{
	for (int h0 = 0; h0 < nh; h0 += 4) {
		float a[4] = {0.0f, 0.0f, 0.0f, 0.0f}, b[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
		for (int u = 0; u < 4; u++)
			if (h0 + u < nh) {
				a[u] = x[(size_t)(h0 + u) * d + j];
				b[u] = x[(size_t)(h0 + u) * d + j + half];
			}
#pragma unroll
		for (int u = 0; u < 4; u++)
			if (h0 + u < nh) {
				/* k_rope_elem's expressions */
				x[(size_t)(h0 + u) * d + j] = a[u] * cs - b[u] * sn;
				x[(size_t)(h0 + u) * d + j + half] = b[u] * cs + a[u] * sn;
			}
	}
}

/* a thread per (token t, pair j): the angle, cos and sin as gpu.cu's
 * k_rope_elem computes them (double, then rounded to float), applied to every
 * head of q and of k */
__global__ static void k_f2_rope(float *q, float *k, const int *pos, int T, int H, int KV, int d,
                                 int rd, float theta, int inverse)
{
	int half = rd / 2;
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)T * half)
		return;
	int j = (int)(i % half), t = (int)(i / half);
	double ang = pos[t] * pow((double)theta, -2.0 * j / rd);
	float cs = (float)cos(ang), sn = (float)(inverse ? -sin(ang) : sin(ang));
	if (q)
		f2_rope_heads(q + (size_t)t * H * d, H, d, j, half, cs, sn);
	if (k)
		f2_rope_heads(k + (size_t)t * KV * d, KV, d, j, half, cs, sn);
}

/* ---- dispatch ---------------------------------------------------------------- */

static enum policy_flash_impl f2_impl = POLICY_FLASH_FA2;

/* the bf16 copies of the inputs, per device: grown on demand and shared by
 * every caller, so a forward or backward holds f2_lock from taking the buffer
 * to its last launch (a grow frees the old buffer; cudaFree waits for the
 * kernels already queued, but another thread must not queue any on it
 * afterwards) */
#define F2_MAX_DEV 16
static fa_bf *f2_buf[F2_MAX_DEV];
static size_t f2_cap[F2_MAX_DEV];
static pthread_mutex_t f2_lock = PTHREAD_MUTEX_INITIALIZER;
/* fa2_par: per device, the second stream the dQ kernel runs on and the
 * events that fork it from and join it back to PST (created by
 * policy_flash_setup for the current device, outside any graph capture;
 * for another device on its first fa2_par backward) */
static cudaStream_t f2_side[F2_MAX_DEV];
static cudaEvent_t f2_fork[F2_MAX_DEV], f2_join[F2_MAX_DEV];
/* POLICY_GPU_FLASH_ROPE=fused */
static int f2_rope_fused;

static int f2_side_stream(int dev)
{
	if (dev < 0 || dev >= F2_MAX_DEV)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "gpu flash: device %d: at most %d devices", dev,
		                        F2_MAX_DEV);
	if (f2_side[dev])
		return 0;
	CK(cudaStreamCreateWithFlags(&f2_side[dev], cudaStreamNonBlocking));
	CK(cudaEventCreateWithFlags(&f2_fork[dev], cudaEventDisableTiming));
	CK(cudaEventCreateWithFlags(&f2_join[dev], cudaEventDisableTiming));
	return 0;
}

static int f2_scratch(fa_bf **out, size_t n)
{
	int dev = 0;
	CK(cudaGetDevice(&dev));
	if (dev < 0 || dev >= F2_MAX_DEV)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "gpu flash: device %d: at most %d devices", dev,
		                        F2_MAX_DEV);
	if (f2_cap[dev] < n) {
		if (f2_buf[dev])
			CK(cudaFree(f2_buf[dev]));
		f2_buf[dev] = NULL;
		f2_cap[dev] = 0;
		CK(cudaMalloc((void **)&f2_buf[dev], n * sizeof(fa_bf)));
		policy_gpu_alloc_gen++; /* gpu_util.h */
		f2_cap[dev] = n;
	}
	*out = f2_buf[dev];
	return 0;
}

/* bf16 copies of rows [0, cu[n_seqs]) (at most rows) of n fp32 tensors */
static int f2_convert(const struct f2_jobs *jb, int n, const int *cu, int n_seqs, size_t rows)
{
	size_t n8 = rows * (size_t)jb->w[0] / 8, blocks = (n8 + 255) / 256;
	dim3 grid((unsigned)(blocks < 528 ? (blocks ? blocks : 1) : 528), (unsigned)n);
	k_f2_bf16<<<grid, 256, 0, PST>>>(*jb, cu, n_seqs, rows);
	LAUNCHED();
	return 0;
}

int policy_flash_setup(void)
{
	const char *e = getenv("POLICY_GPU_FLASH");
	CK(cudaFuncSetAttribute(k_flash_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        FA_FWD_SMEM));
	CK(cudaFuncSetAttribute(k_flash_bwd_kv, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        FA_BKV_SMEM));
	CK(cudaFuncSetAttribute(k_flash_bwd_q, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        FA_BQ_SMEM));
	CK(cudaFuncSetAttribute(k_f2_fwd<4>, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        F2_FWD_SMEM));
	CK(cudaFuncSetAttribute(k_f2_fwd<8>, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        F2_FWD_SMEM));
	CK(cudaFuncSetAttribute(k_f2_bwd_kv, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        F2_BKV_SMEM));
	CK(cudaFuncSetAttribute(k_f2_bwd_q, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        F2_BQ_SMEM));
	if (!e || !*e || !strcmp(e, "fa2"))
		f2_impl = POLICY_FLASH_FA2;
	else if (!strcmp(e, "fa2_64"))
		f2_impl = POLICY_FLASH_FA2_64;
	else if (!strcmp(e, "fa2_par"))
		f2_impl = POLICY_FLASH_FA2_PAR;
	else if (!strcmp(e, "wmma"))
		f2_impl = POLICY_FLASH_WMMA;
	else
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "POLICY_GPU_FLASH=%s: unknown (fa2, fa2_64, fa2_par or wmma)", e);
	e = getenv("POLICY_GPU_FLASH_ROPE");
	if (!e || !*e || !strcmp(e, "fused")) /* the default since round 19 */
		f2_rope_fused = 1;
	else if (!strcmp(e, "elem"))
		f2_rope_fused = 0;
	else
		return swerve_error_set(SWERVE_EINVAL,
		                        "POLICY_GPU_FLASH_ROPE=%s: unknown (elem or fused)", e);
	{
		int dev = 0;
		CK(cudaGetDevice(&dev));
		CKR(f2_side_stream(dev));
	}
	return 0;
}

int policy_flash_rope_fused(void)
{
	return f2_rope_fused;
}

/* the arguments of both rotary forms: 0, or SWERVE_EINVAL naming them */
static int rope_args(int T, int H, int KV, int d, int rd, const int *pos)
{
	if (T < 0 || H < 1 || KV < 1 || rd < 2 || rd % 2 || rd > d || !pos)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu flash rope: T %d, H %d, KV %d, head_dim %d, rotary "
		                        "dims %d: need T >= 0, positive heads, an even rotary "
		                        "width within the head and positions",
		                        T, H, KV, d, rd);
	return 0;
}

int policy_flash_rope(float *q, float *k, const int *pos, int T, int H, int KV, int d, int rd,
                      float theta, int inverse)
{
	CKR(rope_args(T, H, KV, d, rd, pos));
	size_t n = (size_t)T * (rd / 2);
	if (!n || (!q && !k))
		return 0;
	k_f2_rope<<<(unsigned)((n + 255) / 256), 256, 0, PST>>>(q, k, pos, T, H, KV, d, rd, theta,
	                                                        inverse);
	LAUNCHED();
	return 0;
}

/* rotate-half on the first rd dims of each of H heads; inverse: R^T (the
 * elem form: policy/gpu.cu's k_rotary until round 19, a thread per (token,
 * head, pair)) */
__global__ static void k_rope_elem(float *x, const int *pos, int T, int H, int d, int rd,
                                   float theta, int inverse)
{
	int half = rd / 2;
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)T * H * half)
		return;
	int j = (int)(i % half), h = (int)(i / half % H), t = (int)(i / half / H);
	float *v = x + ((size_t)t * H + h) * d;
	double ang = pos[t] * pow((double)theta, -2.0 * j / rd);
	float cs = (float)cos(ang), sn = (float)(inverse ? -sin(ang) : sin(ang));
	float a = v[j], b = v[j + half];
	v[j] = a * cs - b * sn;
	v[j + half] = b * cs + a * sn;
}

int policy_flash_rope_elem(float *q, float *k, const int *pos, int T, int H, int KV, int d, int rd,
                           float theta, int inverse)
{
	CKR(rope_args(T, H, KV, d, rd, pos));
	if (q && T) {
		k_rope_elem<<<(unsigned)(((size_t)T * H * (rd / 2) + 255) / 256), 256, 0, PST>>>(
		        q, pos, T, H, d, rd, theta, inverse);
		LAUNCHED();
	}
	if (k && T) {
		k_rope_elem<<<(unsigned)(((size_t)T * KV * (rd / 2) + 255) / 256), 256, 0, PST>>>(
		        k, pos, T, KV, d, rd, theta, inverse);
		LAUNCHED();
	}
	return 0;
}

int policy_flash_select(enum policy_flash_impl impl)
{
	if (impl != POLICY_FLASH_FA2 && impl != POLICY_FLASH_FA2_64 &&
	    impl != POLICY_FLASH_FA2_PAR && impl != POLICY_FLASH_WMMA)
		return swerve_error_set(SWERVE_EINVAL, "gpu flash: implementation %d: unknown",
		                        (int)impl);
	f2_impl = impl;
	return 0;
}

enum policy_flash_impl policy_flash_selected(void)
{
	return f2_impl;
}

static int flash_args(int n_seqs, int maxlen, int H, int KV)
{
	if (n_seqs < 1 || maxlen < 1 || H < 1 || KV < 1 || H % KV)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu flash: n_seqs %d, maxlen %d, H %d, KV %d: need positive "
		        "sizes and H a multiple of KV",
		        n_seqs, maxlen, H, KV);
	return 0;
}

static int flash_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                     const int *cu, int n_seqs, int maxlen, int H, int KV)
{
	float scale = 1.0f / sqrtf((float)FA_D);
	CKR(flash_args(n_seqs, maxlen, H, KV));
	if (f2_impl == POLICY_FLASH_WMMA) {
		dim3 grid((unsigned)((maxlen + FA_T - 1) / FA_T), (unsigned)n_seqs, (unsigned)H);
		k_flash_fwd<<<grid, 128, FA_FWD_SMEM, PST>>>(o, lse, q, k, v, cu, H, KV, scale);
		LAUNCHED();
		return 0;
	}
	/* q is read as fp32 straight into fragments; k, v go through bf16 copies */
	size_t rows = (size_t)n_seqs * maxlen, nk = rows * KV * F2_D;
	fa_bf *b;
	CKR(f2_scratch(&b, 2 * nk));
	struct f2_jobs jb = {{b, b + nk}, {k, v}, {KV * F2_D, KV * F2_D}};
	CKR(f2_convert(&jb, 2, cu, n_seqs, rows));
	if (f2_impl == POLICY_FLASH_FA2_64) {
		dim3 grid((unsigned)H, (unsigned)n_seqs, (unsigned)((maxlen + 63) / 64));
		k_f2_fwd<4><<<grid, 128, F2_FWD_SMEM, PST>>>(o, lse, q, b, b + nk, cu, H, KV,
		                                             scale * F2_LOG2E);
	} else {
		dim3 grid((unsigned)H, (unsigned)n_seqs, (unsigned)((maxlen + 127) / 128));
		k_f2_fwd<8><<<grid, 256, F2_FWD_SMEM, PST>>>(o, lse, q, b, b + nk, cu, H, KV,
		                                             scale * F2_LOG2E);
	}
	LAUNCHED();
	return 0;
}

static int flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *Dsum,
                     const float *q, const float *k, const float *v, const float *lse,
                     const int *cu, int n_seqs, int maxlen, int H, int KV)
{
	unsigned nt = (unsigned)((maxlen + FA_T - 1) / FA_T);
	float scale = 1.0f / sqrtf((float)FA_D);
	CKR(flash_args(n_seqs, maxlen, H, KV));
	if (f2_impl == POLICY_FLASH_WMMA) {
		k_flash_bwd_kv<<<dim3(nt, (unsigned)n_seqs, (unsigned)KV), 128, FA_BKV_SMEM, PST>>>(
		        dk, dv, q, k, v, dout, lse, Dsum, cu, H, KV, scale);
		LAUNCHED();
		k_flash_bwd_q<<<dim3(nt, (unsigned)n_seqs, (unsigned)H), 128, FA_BQ_SMEM, PST>>>(
		        dq, q, k, v, dout, lse, Dsum, cu, H, KV, scale);
		LAUNCHED();
		return 0;
	}
	size_t rows = (size_t)n_seqs * maxlen, nq = rows * H * F2_D, nk = rows * KV * F2_D;
	fa_bf *b, *bq, *bk, *bv, *bo;
	CKR(f2_scratch(&b, 2 * nq + 2 * nk));
	bq = b, bo = b + nq, bk = b + 2 * nq, bv = bk + nk;
	struct f2_jobs jb = {
	        {bq, bo, bk, bv}, {q, dout, k, v}, {H * F2_D, H * F2_D, KV * F2_D, KV * F2_D}};
	CKR(f2_convert(&jb, 4, cu, n_seqs, rows));
	if (f2_impl == POLICY_FLASH_FA2_PAR) {
		/* the dK/dV kernel first on PST (its blocks are the longest), the
		 * dQ kernel on the side stream from the same point (after the
		 * conversion), so its blocks fill the SMs the dK/dV tail leaves;
		 * PST waits for both. Bit for bit fa2: the same kernels. */
		int dev = 0;
		CK(cudaGetDevice(&dev));
		CKR(f2_side_stream(dev));
		CK(cudaEventRecord(f2_fork[dev], PST));
		CK(cudaStreamWaitEvent(f2_side[dev], f2_fork[dev], 0));
		k_f2_bwd_kv<<<dim3((unsigned)KV, (unsigned)n_seqs, nt), 128, F2_BKV_SMEM, PST>>>(
		        dk, dv, bq, bk, bv, bo, lse, Dsum, cu, H, KV, scale * F2_LOG2E, scale);
		LAUNCHED();
		k_f2_bwd_q<<<dim3((unsigned)H, (unsigned)n_seqs, nt), 128, F2_BQ_SMEM,
		             f2_side[dev]>>>(dq, bq, bk, bv, bo, lse, Dsum, cu, H, KV,
		                             scale * F2_LOG2E, scale);
		LAUNCHED();
		CK(cudaEventRecord(f2_join[dev], f2_side[dev]));
		CK(cudaStreamWaitEvent(PST, f2_join[dev], 0));
		return 0;
	}
	k_f2_bwd_kv<<<dim3((unsigned)KV, (unsigned)n_seqs, nt), 128, F2_BKV_SMEM, PST>>>(
	        dk, dv, bq, bk, bv, bo, lse, Dsum, cu, H, KV, scale * F2_LOG2E, scale);
	LAUNCHED();
	k_f2_bwd_q<<<dim3((unsigned)H, (unsigned)n_seqs, nt), 128, F2_BQ_SMEM, PST>>>(
	        dq, bq, bk, bv, bo, lse, Dsum, cu, H, KV, scale * F2_LOG2E, scale);
	LAUNCHED();
	return 0;
}

int policy_flash_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                     const int *cu, int n_seqs, int maxlen, int H, int KV)
{
	pthread_mutex_lock(&f2_lock);
	int rc = flash_fwd(o, lse, q, k, v, cu, n_seqs, maxlen, H, KV);
	pthread_mutex_unlock(&f2_lock);
	return rc;
}

int policy_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *Dsum,
                     const float *q, const float *k, const float *v, const float *lse,
                     const int *cu, int n_seqs, int maxlen, int H, int KV)
{
	pthread_mutex_lock(&f2_lock);
	int rc = flash_bwd(dq, dk, dv, dout, Dsum, q, k, v, lse, cu, n_seqs, maxlen, H, KV);
	pthread_mutex_unlock(&f2_lock);
	return rc;
}
