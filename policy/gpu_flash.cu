/* gpu_flash.cu - tiled (flash) causal GQA softmax attention for the GPU
 * policy's softmax layers (bf16 mode, head_dim 64); see gpu_flash.h. */
#include "policy/gpu_flash.h"
#include "policy/gpu_util.h"

#include <cuda_bf16.h>
#include <math.h>
#include <mma.h>

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

int policy_flash_setup(void)
{
	CK(cudaFuncSetAttribute(k_flash_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        FA_FWD_SMEM));
	CK(cudaFuncSetAttribute(k_flash_bwd_kv, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        FA_BKV_SMEM));
	CK(cudaFuncSetAttribute(k_flash_bwd_q, cudaFuncAttributeMaxDynamicSharedMemorySize,
	                        FA_BQ_SMEM));
	return 0;
}

int policy_flash_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                     const int *cu, int n_seqs, int maxlen, int H, int KV)
{
	dim3 grid((unsigned)((maxlen + FA_T - 1) / FA_T), (unsigned)n_seqs, (unsigned)H);
	k_flash_fwd<<<grid, 128, FA_FWD_SMEM>>>(o, lse, q, k, v, cu, H, KV,
	                                        1.0f / sqrtf((float)FA_D));
	LAUNCHED();
	return 0;
}

int policy_flash_bwd(float *dq, float *dk, float *dv, const float *dout, const float *Dsum,
                     const float *q, const float *k, const float *v, const float *lse,
                     const int *cu, int n_seqs, int maxlen, int H, int KV)
{
	unsigned nt = (unsigned)((maxlen + FA_T - 1) / FA_T);
	float scale = 1.0f / sqrtf((float)FA_D);
	k_flash_bwd_kv<<<dim3(nt, (unsigned)n_seqs, (unsigned)KV), 128, FA_BKV_SMEM>>>(
	        dk, dv, q, k, v, dout, lse, Dsum, cu, H, KV, scale);
	LAUNCHED();
	k_flash_bwd_q<<<dim3(nt, (unsigned)n_seqs, (unsigned)H), 128, FA_BQ_SMEM>>>(
	        dq, q, k, v, dout, lse, Dsum, cu, H, KV, scale);
	LAUNCHED();
	return 0;
}
