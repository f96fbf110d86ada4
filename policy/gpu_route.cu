/* gpu_route.cu - the MoE routing in fused passes (see gpu_route.h).
 *
 * Round 7 (issue 10). Before: an fp32 cuBLAS GEMM with N = E = 8 for the
 * logits, k_route (a thread per token), ONE block of 1024 threads sorting
 * all T K assignments, then k_route_bwd and two more fp32 cuBLAS GEMMs (the
 * router's dW, reduced over T, and its dX added into dn). Here: the logits,
 * softmax, top-k and per-block counts in one pass over x; a multi-block
 * stable counting sort (every block recomputes the exclusive prefix of the
 * per-block counts it needs: E x blocks ints); the route backward, the
 * router's dX and its dW parts in one pass over x and dn, and one
 * deterministic reduction of the parts.
 *
 * Measured (H100, 2026-11-26, tests/bench/gpu_route, one layer of the
 * benchmark's shape, T 8192, D 768, E 8, K 2; round 6 -> this default):
 * forward 47.4 us (router GEMM 33.3 + k_route 14.1) -> 53.5, sort 34.1 ->
 * 7.6, backward (k_route_bwd + dX GEMM) 35.6 -> 56.4, router dW 33.2 ->
 * 7.8; 137.1 -> 126.9 us in all. The fused forward and backward are
 * latency-bound (few loads in flight a warp, a serial lane-0 softmax, loads
 * held behind stores that may alias them): variant v2 below addresses that
 * (rounds 7-9's default), v3 / v4 (round 10; v4 the default) go further. */
#include "policy/gpu_route.h"
#include "policy/gpu_dev.cuh"
#include "policy/gpu_ew_dev.cuh"
#include "policy/gpu_util.h"
#include "kernels/pdl.cuh"

#include <math.h>
#include <stdint.h>

#define ROUTE_THREADS    256
#define ROUTE_FWD_TOKENS 64 /* tokens a forward / sort block (8 a warp) */
#define ROUTE_BWD_TOKENS 32 /* tokens a backward block */
#define ROUTE_COLS       4  /* columns a backward thread: D <= ROUTE_COLS x ROUTE_THREADS */
#define ROUTE_SMEM_MAX   (40 * 1024) /* the router weight; 48 KiB less the static arrays */

static int nblk(int T, int ch)
{
	return (T + ch - 1) / ch;
}

int policy_route_supported(int E, int K, int D)
{
	return E >= 1 && E <= ROUTE_EMAX && K >= 1 && K <= E && D >= 1 &&
	       D <= ROUTE_COLS * ROUTE_THREADS && (size_t)E * D * 4 <= ROUTE_SMEM_MAX;
}

size_t policy_route_scratch_floats(int T, int E, int D)
{
	/* the forward's counts and sums: 2 E a block; v2's and v3's blocks (16
	 * tokens) are the smallest */
	size_t f = 2 * (size_t)nblk(T, 16) * E;
	size_t b = (size_t)nblk(T, ROUTE_BWD_TOKENS) * E * D;
	return f > b ? f : b;
}

/* logits x Wr^T, softmax, top-k (gpu.cu's k_route, per token: ties to the
 * lower index, gates renormalised over the chosen k), then per block:
 * hist[b][e] = its assignments of expert e, rowof[i] = the rank of
 * assignment i among them (assignment order), psum[b][e] = sum of prob */
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_fwd(float *prob, int *sel, float *gate, int *rowof, int *hist, float *psum,
                 const float *x, const float *Wr, int T, int E, int K, int D)
{
	extern __shared__ float s_w[]; /* (E, D) */
	__shared__ float s_p[ROUTE_FWD_TOKENS][ROUTE_EMAX];
	__shared__ int s_sel[ROUTE_FWD_TOKENS * ROUTE_EMAX];
	__shared__ int s_wc[ROUTE_THREADS / 32][ROUTE_EMAX];
	__shared__ int s_cnt[ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
	int t0 = blockIdx.x * ROUTE_FWD_TOKENS;
	int nt = T - t0 < ROUTE_FWD_TOKENS ? T - t0 : ROUTE_FWD_TOKENS, nA = nt * K;

	for (int i = tid; i < E * D; i += blockDim.x)
		s_w[i] = Wr[i];
	if (tid < ROUTE_EMAX)
		s_cnt[tid] = 0;
	__syncthreads();
	for (int tl = w; tl < nt; tl += ROUTE_THREADS / 32) {
		const float *xr = x + (size_t)(t0 + tl) * D;
		float acc[ROUTE_EMAX];
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			acc[e] = 0;
#pragma unroll 4
		for (int c = lane; c < D; c += 32) {
			float v = xr[c];
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E)
					acc[e] += v * s_w[e * D + c];
		}
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E)
				acc[e] = warp_sum(acc[e]);
		if (lane == 0) {
			float *p = s_p[tl], mx = -INFINITY, z = 0, S = 0;
			int *sl = s_sel + tl * K;
			size_t t = (size_t)t0 + tl;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E)
					mx = fmaxf(mx, acc[e]);
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E)
					z += (p[e] = expf(acc[e] - mx));
			for (int e = 0; e < E; e++)
				p[e] /= z;
			for (int j = 0; j < K; j++) {
				int best = -1;
				for (int e = 0; e < E; e++) {
					int taken = 0;
					for (int i = 0; i < j; i++)
						taken |= sl[i] == e;
					if (!taken && (best < 0 || p[e] > p[best]))
						best = e;
				}
				sl[j] = best;
				S += p[best];
			}
			for (int j = 0; j < K; j++) {
				sel[t * K + j] = sl[j];
				gate[t * K + j] = p[sl[j]] / S;
			}
			for (int e = 0; e < E; e++)
				prob[t * E + e] = p[e];
		}
	}
	__syncthreads();
	/* ranks within the block, as k_route_sort: a warp's equals by
	 * __match_any_sync, the warps' counts prefixed in warp order */
	for (int base = 0; base < nA; base += ROUTE_THREADS) {
		int a = base + tid, e = a < nA ? s_sel[a] : -1, rk;
		unsigned peers;
		if (tid < ROUTE_THREADS / 32 * ROUTE_EMAX)
			s_wc[tid / ROUTE_EMAX][tid % ROUTE_EMAX] = 0;
		__syncthreads();
		peers = __match_any_sync(0xffffffffu, e);
		rk = __popc(peers & ((1u << lane) - 1u));
		if (e >= 0 && rk == 0)
			s_wc[w][e] = __popc(peers);
		__syncthreads();
		if (tid < E) {
			int run = s_cnt[tid];
			for (int v = 0; v < ROUTE_THREADS / 32; v++) {
				int c = s_wc[v][tid];
				s_wc[v][tid] = run;
				run += c;
			}
			s_cnt[tid] = run;
		}
		__syncthreads();
		if (e >= 0)
			rowof[(size_t)t0 * K + a] = s_wc[w][e] + rk;
		__syncthreads();
	}
	if (tid < E) {
		float s = 0;
		for (int tl = 0; tl < nt; tl++)
			s += s_p[tl][tid];
		hist[(size_t)blockIdx.x * E + tid] = s_cnt[tid];
		psum[(size_t)blockIdx.x * E + tid] = s;
	}
}

/* the stable counting sort from the per-block counts: row of assignment i
 * = off[e] + (assignments of e in earlier blocks) + its rank in its block;
 * padding rows (cap > 0) get perm -1; block 0 writes offs and the balance
 * loss: coef E sum_e f_e P_e, f_e = count / R, P_e = mean prob (per-block
 * sums added in block order) */
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_sort(int *perm, int *rowof, int *offs, float *auxc, double *aux, const int *hist,
                  const float *psum, const int *sel, int T, int E, int K, int Rp, int compact,
                  int rnd, double coef)
{
	__shared__ int s_tot[ROUTE_EMAX], s_pre[ROUTE_EMAX], s_off[ROUTE_EMAX + 1], s_cap;
	__shared__ double s_pm[ROUTE_EMAX];
	int tid = threadIdx.x, b = blockIdx.x, nb = gridDim.x;
	int t0 = b * ROUTE_FWD_TOKENS;
	int nt = T - t0 < ROUTE_FWD_TOKENS ? T - t0 : ROUTE_FWD_TOKENS;

	if (tid < ROUTE_EMAX) {
		s_tot[tid] = 0;
		s_pre[tid] = 0;
	}
	__syncthreads();
	for (int i = tid; i < nb * E; i += blockDim.x) { /* integer sums: any order */
		int e = i % E, h = hist[i];
		atomicAdd(&s_tot[e], h);
		if (i / E < b)
			atomicAdd(&s_pre[e], h);
	}
	__syncthreads();
	if (tid == 0) {
		int mx = 0, cap;
		for (int e = 0; e < E; e++)
			mx = s_tot[e] > mx ? s_tot[e] : mx;
		cap = (mx + rnd - 1) / rnd * rnd;
		if (compact || (long long)cap * E > Rp)
			cap = 0;
		s_off[0] = 0;
		for (int e = 0; e < E; e++)
			s_off[e + 1] = s_off[e] + (cap ? cap : s_tot[e]);
		s_cap = cap;
		if (b == 0) {
			for (int e = 0; e <= E; e++)
				offs[e] = s_off[e];
			offs[E + 1] = cap;
		}
	}
	__syncthreads();
	for (int a = tid; a < nt * K; a += blockDim.x) {
		size_t i = (size_t)t0 * K + a;
		int e = sel[i], r = s_off[e] + s_pre[e] + rowof[i];
		rowof[i] = r;
		perm[r] = (int)i;
	}
	if (s_cap)
		for (int e = 0; e < E; e++)
			for (int r = s_off[e] + s_tot[e] + b * blockDim.x + tid; r < s_off[e + 1];
			     r += nb * blockDim.x)
				perm[r] = -1;
	if (b == 0) {
		if (tid < E) {
			double pm = 0;
			for (int bb = 0; bb < nb; bb++)
				pm += psum[(size_t)bb * E + tid];
			s_pm[tid] = pm;
		}
		__syncthreads();
		if (tid == 0) {
			double a = 0, R = (double)T * K;
			for (int e = 0; e < E; e++) {
				double f = s_tot[e] / R;
				a += f * s_pm[e] / T;
				auxc[e] = (float)(coef * E * f / T);
			}
			*aux = a * coef * E;
		}
	}
}

/* the route backward's start, shared by its kernels: thread tid < nt puts
 * token t0 + tid's logit gradients in s_dl (dp from the renormalised top-k
 * gates and the balance loss's auxc, d logit = p (dp - p . dp)); every
 * thread loads its router-weight columns (c = tid + j ROUTE_THREADS) into wr
 * and clears acc */
__device__ __forceinline__ static void
rt_bwd_start(float (*s_dl)[ROUTE_EMAX], float (&wr)[ROUTE_EMAX][ROUTE_COLS],
             float (&acc)[ROUTE_EMAX][ROUTE_COLS], int tid, int t0, int nt, const float *Wr,
             const float *prob, const int *sel, const float *gate, const float *dgate,
             const float *auxc, int E, int K, int D)
{
	if (tid < nt) {
		size_t t = (size_t)t0 + tid;
		const float *p = prob + t * E;
		float S = 0, sdg = 0, sp = 0, dp[ROUTE_EMAX];
		for (int j = 0; j < K; j++) {
			S += p[sel[t * K + j]];
			sdg += dgate[t * K + j] * gate[t * K + j];
		}
		for (int e = 0; e < E; e++)
			dp[e] = auxc[e];
		for (int j = 0; j < K; j++)
			dp[sel[t * K + j]] += (dgate[t * K + j] - sdg) / S;
		for (int e = 0; e < E; e++)
			sp += p[e] * dp[e];
		for (int e = 0; e < ROUTE_EMAX; e++)
			s_dl[tid][e] = e < E ? p[e] * (dp[e] - sp) : 0.0f;
	}
#pragma unroll
	for (int j = 0; j < ROUTE_COLS; j++) {
		int c = tid + j * ROUTE_THREADS;
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++) {
			wr[e][j] = c < D && e < E ? Wr[(size_t)e * D + c] : 0.0f;
			acc[e][j] = 0;
		}
	}
	__syncthreads();
}

/* per token (a thread each, as gpu.cu's k_route_bwd): dp from the gates and
 * the balance loss, d logit = p (dp - p . dp); then a thread per column
 * (c = tid + j ROUTE_THREADS) over the block's tokens: dn[t, c] += sum_e
 * dl[t, e] Wr[e, c] and part[b][e][c] = sum_t dl[t, e] x[t, c] */
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_bwd(float *dn, float *part, const float *x, const float *Wr, const float *prob,
                 const int *sel, const float *gate, const float *dgate, const float *auxc, int T,
                 int E, int K, int D)
{
	__shared__ float s_dl[ROUTE_BWD_TOKENS][ROUTE_EMAX];
	int tid = threadIdx.x, t0 = blockIdx.x * ROUTE_BWD_TOKENS;
	int nt = T - t0 < ROUTE_BWD_TOKENS ? T - t0 : ROUTE_BWD_TOKENS;
	float wr[ROUTE_EMAX][ROUTE_COLS], acc[ROUTE_EMAX][ROUTE_COLS];

	rt_bwd_start(s_dl, wr, acc, tid, t0, nt, Wr, prob, sel, gate, dgate, auxc, E, K, D);
#pragma unroll 2
	for (int tl = 0; tl < nt; tl++) {
		size_t o = (size_t)(t0 + tl) * D;
		float dl[ROUTE_EMAX];
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			dl[e] = s_dl[tl][e];
#pragma unroll
		for (int j = 0; j < ROUTE_COLS; j++) {
			int c = tid + j * ROUTE_THREADS;
			if (c < D) {
				float xv = x[o + c], d = dn[o + c];
#pragma unroll
				for (int e = 0; e < ROUTE_EMAX; e++) {
					acc[e][j] += dl[e] * xv;
					d += dl[e] * wr[e][j];
				}
				dn[o + c] = d;
			}
		}
	}
	{
		float *pb = part + (size_t)blockIdx.x * E * D;
#pragma unroll
		for (int j = 0; j < ROUTE_COLS; j++) {
			int c = tid + j * ROUTE_THREADS;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (c < D && e < E)
					pb[(size_t)e * D + c] = acc[e][j];
		}
	}
}

/* dW[i] += sum_b part[b][i]: 32 outputs a block, 8 warps each summing every
 * 8th part, then the 8 sums in warp order (deterministic) */
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_dw(float *dW, const float *part, int nb, int n)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	__shared__ float s_r[ROUTE_THREADS / 32][32];
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, i = blockIdx.x * 32 + lane;
	float s = 0;
	if (i < n)
		for (int b = w; b < nb; b += ROUTE_THREADS / 32)
			s += part[(size_t)b * n + i];
	s_r[w][lane] = s;
	__syncthreads();
	if (w == 0 && i < n) {
		float t = 0;
		for (int v = 0; v < ROUTE_THREADS / 32; v++)
			t += s_r[v][lane];
		dW[i] += t;
	}
}

/* ---- variant v2 (POLICY_GPU_ROUTE=v2; written after the first device run
 * measured the fused forward at 53 us and the fused backward at 56 us a
 * layer against 47 and 36 for the GEMM-based kernels they replace): the
 * same results, with every load of a warp's tokens issued before any use
 * (float4 rows, __restrict__ so stores do not pin later loads), 2 tokens a
 * warp in blocks of 16 tokens (4x the blocks), the softmax and top-k in
 * registers on every lane (no serial lane-0 pass through shared memory),
 * the sort's block prefix by warp reductions (no shared atomics), and the
 * backward's x and dn rows loaded ROUTE_BATCH tokens at a time. */
#define ROUTE_FWD2_TOKENS 16
#define ROUTE_V4          8 /* float4 a lane: D <= 1024 */
#define ROUTE_BATCH       4

int policy_route_v2_supported(int E, int K, int D)
{
	return policy_route_supported(E, K, D) && D % 4 == 0 && D <= ROUTE_V4 * 128;
}

__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_fwd2(float *__restrict__ prob, int *__restrict__ sel, float *__restrict__ gate,
                  int *__restrict__ rowof, int *__restrict__ hist, float *__restrict__ psum,
                  const float *__restrict__ x, const float *__restrict__ Wr, int T, int E, int K,
                  int D)
{
	extern __shared__ float4 s_w4[]; /* (E, D / 4) */
	__shared__ float s_p[ROUTE_FWD2_TOKENS][ROUTE_EMAX];
	__shared__ int s_sel[ROUTE_FWD2_TOKENS * ROUTE_EMAX];
	__shared__ int s_wc[ROUTE_THREADS / 32][ROUTE_EMAX];
	__shared__ int s_cnt[ROUTE_EMAX];
	const int NW = ROUTE_THREADS / 32, TPW = ROUTE_FWD2_TOKENS / NW;
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, D4 = D / 4;
	int t0 = blockIdx.x * ROUTE_FWD2_TOKENS;
	int nt = T - t0 < ROUTE_FWD2_TOKENS ? T - t0 : ROUTE_FWD2_TOKENS, nA = nt * K;
	float4 v[TPW][ROUTE_V4];

#pragma unroll
	for (int u = 0; u < TPW; u++) {
		int tl = w + u * NW;
		const float4 *xr = (const float4 *)(x + (size_t)(t0 + (tl < nt ? tl : 0)) * D);
#pragma unroll
		for (int k = 0; k < ROUTE_V4; k++) {
			int c = lane + 32 * k;
			v[u][k] = tl < nt && c < D4 ? xr[c] : make_float4(0.f, 0.f, 0.f, 0.f);
		}
	}
	for (int i = tid; i < E * D; i += blockDim.x) /* Wr: no 16-byte alignment assumed */
		((float *)s_w4)[i] = Wr[i];
	if (tid < ROUTE_EMAX)
		s_cnt[tid] = 0;
	__syncthreads();
#pragma unroll
	for (int u = 0; u < TPW; u++) {
		int tl = w + u * NW;
		float acc[ROUTE_EMAX], p[ROUTE_EMAX], gv[ROUTE_EMAX], mx = -INFINITY, z = 0, S = 0;
		int sl[ROUTE_EMAX];
		unsigned taken = 0;
		if (tl >= nt) /* warp-uniform */
			continue;
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			acc[e] = 0;
#pragma unroll
		for (int k = 0; k < ROUTE_V4; k++) {
			int c = lane + 32 * k;
			if (c < D4) {
				float4 a = v[u][k];
#pragma unroll
				for (int e = 0; e < ROUTE_EMAX; e++)
					if (e < E) {
						float4 b = s_w4[e * D4 + c];
						acc[e] += a.x * b.x + a.y * b.y + a.z * b.z +
						          a.w * b.w;
					}
			}
		}
		/* k_route's arithmetic, in registers on every lane */
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E) {
				acc[e] = warp_sum(acc[e]);
				mx = fmaxf(mx, acc[e]);
			}
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E)
				z += (p[e] = expf(acc[e] - mx));
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E)
				p[e] /= z;
#pragma unroll
		for (int j = 0; j < ROUTE_EMAX; j++)
			if (j < K) {
				int best = -1;
				float bv = 0;
#pragma unroll
				for (int e = 0; e < ROUTE_EMAX; e++)
					if (e < E && !(taken >> e & 1u) &&
					    (best < 0 || p[e] > bv)) {
						best = e;
						bv = p[e];
					}
				taken |= 1u << best;
				sl[j] = best;
				gv[j] = bv;
				S += bv;
			}
		if (lane == 0) {
			size_t t = (size_t)t0 + tl;
#pragma unroll
			for (int j = 0; j < ROUTE_EMAX; j++)
				if (j < K) {
					sel[t * K + j] = sl[j];
					gate[t * K + j] = gv[j] / S;
					s_sel[tl * K + j] = sl[j];
				}
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E) {
					prob[t * E + e] = p[e];
					s_p[tl][e] = p[e];
				}
		}
	}
	__syncthreads();
	for (int base = 0; base < nA; base += ROUTE_THREADS) { /* as k_rt_fwd */
		int a = base + tid, e = a < nA ? s_sel[a] : -1, rk;
		unsigned peers;
		if (tid < NW * ROUTE_EMAX)
			s_wc[tid / ROUTE_EMAX][tid % ROUTE_EMAX] = 0;
		__syncthreads();
		peers = __match_any_sync(0xffffffffu, e);
		rk = __popc(peers & ((1u << lane) - 1u));
		if (e >= 0 && rk == 0)
			s_wc[w][e] = __popc(peers);
		__syncthreads();
		if (tid < E) {
			int run = s_cnt[tid];
			for (int q = 0; q < NW; q++) {
				int c = s_wc[q][tid];
				s_wc[q][tid] = run;
				run += c;
			}
			s_cnt[tid] = run;
		}
		__syncthreads();
		if (e >= 0)
			rowof[(size_t)t0 * K + a] = s_wc[w][e] + rk;
		__syncthreads();
	}
	if (tid < E) {
		float s = 0;
		for (int tl = 0; tl < nt; tl++)
			s += s_p[tl][tid];
		hist[(size_t)blockIdx.x * E + tid] = s_cnt[tid];
		psum[(size_t)blockIdx.x * E + tid] = s;
	}
}

/* k_rt_sort for k_rt_fwd2's blocks: warp e sums expert e's counts (all
 * blocks, and the blocks before this one) with integer warp reductions */
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_sort2(int *__restrict__ perm, int *__restrict__ rowof, int *__restrict__ offs,
                   float *__restrict__ auxc, double *__restrict__ aux, const int *__restrict__ hist,
                   const float *__restrict__ psum, const int *__restrict__ sel, int T, int E, int K,
                   int Rp, int compact, int rnd, double coef)
{
	__shared__ int s_tot[ROUTE_EMAX], s_pre[ROUTE_EMAX], s_off[ROUTE_EMAX + 1], s_cap;
	__shared__ double s_pm[ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, b = blockIdx.x, nb = gridDim.x;
	int t0 = b * ROUTE_FWD2_TOKENS;
	int nt = T - t0 < ROUTE_FWD2_TOKENS ? T - t0 : ROUTE_FWD2_TOKENS;

	if (w < E) { /* E <= ROUTE_EMAX = the block's warps */
		int tot = 0, pre = 0;
		for (int bb = lane; bb < nb; bb += 32) {
			int h = hist[(size_t)bb * E + w];
			tot += h;
			pre += bb < b ? h : 0;
		}
		tot = __reduce_add_sync(0xffffffffu, tot);
		pre = __reduce_add_sync(0xffffffffu, pre);
		if (lane == 0) {
			s_tot[w] = tot;
			s_pre[w] = pre;
		}
	}
	__syncthreads();
	if (tid == 0) {
		int mx = 0, cap;
		for (int e = 0; e < E; e++)
			mx = s_tot[e] > mx ? s_tot[e] : mx;
		cap = (mx + rnd - 1) / rnd * rnd;
		if (compact || (long long)cap * E > Rp)
			cap = 0;
		s_off[0] = 0;
		for (int e = 0; e < E; e++)
			s_off[e + 1] = s_off[e] + (cap ? cap : s_tot[e]);
		s_cap = cap;
		if (b == 0) {
			for (int e = 0; e <= E; e++)
				offs[e] = s_off[e];
			offs[E + 1] = cap;
		}
	}
	__syncthreads();
	for (int a = tid; a < nt * K; a += blockDim.x) {
		size_t i = (size_t)t0 * K + a;
		int e = sel[i], r = s_off[e] + s_pre[e] + rowof[i];
		rowof[i] = r;
		perm[r] = (int)i;
	}
	if (s_cap)
		for (int e = 0; e < E; e++)
			for (int r = s_off[e] + s_tot[e] + b * blockDim.x + tid; r < s_off[e + 1];
			     r += nb * blockDim.x)
				perm[r] = -1;
	if (b == 0) {
		if (tid < E) {
			double pm = 0;
			for (int bb = 0; bb < nb; bb++)
				pm += psum[(size_t)bb * E + tid];
			s_pm[tid] = pm;
		}
		__syncthreads();
		if (tid == 0) {
			double a = 0, R = (double)T * K;
			for (int e = 0; e < E; e++) {
				double f = s_tot[e] / R;
				a += f * s_pm[e] / T;
				auxc[e] = (float)(coef * E * f / T);
			}
			*aux = a * coef * E;
		}
	}
}

/* k_rt_bwd with the rows of ROUTE_BATCH tokens loaded before they are used */
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_bwd2(float *__restrict__ dn, float *__restrict__ part, const float *__restrict__ x,
                  const float *__restrict__ Wr, const float *__restrict__ prob,
                  const int *__restrict__ sel, const float *__restrict__ gate,
                  const float *__restrict__ dgate, const float *__restrict__ auxc, int T, int E,
                  int K, int D)
{
	__shared__ float s_dl[ROUTE_BWD_TOKENS][ROUTE_EMAX];
	int tid = threadIdx.x, t0 = blockIdx.x * ROUTE_BWD_TOKENS;
	int nt = T - t0 < ROUTE_BWD_TOKENS ? T - t0 : ROUTE_BWD_TOKENS;
	float wr[ROUTE_EMAX][ROUTE_COLS], acc[ROUTE_EMAX][ROUTE_COLS];

	rt_bwd_start(s_dl, wr, acc, tid, t0, nt, Wr, prob, sel, gate, dgate, auxc, E, K, D);
	for (int tb = 0; tb < nt; tb += ROUTE_BATCH) {
		float xv[ROUTE_BATCH][ROUTE_COLS], dv[ROUTE_BATCH][ROUTE_COLS];
#pragma unroll
		for (int q = 0; q < ROUTE_BATCH; q++) {
			size_t o = (size_t)(t0 + tb + q) * D;
#pragma unroll
			for (int j = 0; j < ROUTE_COLS; j++) {
				int c = tid + j * ROUTE_THREADS;
				int ok = tb + q < nt && c < D;
				xv[q][j] = ok ? x[o + c] : 0.0f;
				dv[q][j] = ok ? dn[o + c] : 0.0f;
			}
		}
#pragma unroll
		for (int q = 0; q < ROUTE_BATCH; q++) {
			size_t o = (size_t)(t0 + tb + q) * D;
			float dl[ROUTE_EMAX];
			if (tb + q >= nt)
				break;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				dl[e] = s_dl[tb + q][e];
#pragma unroll
			for (int j = 0; j < ROUTE_COLS; j++) {
				int c = tid + j * ROUTE_THREADS;
				if (c < D) {
					float d = dv[q][j];
#pragma unroll
					for (int e = 0; e < ROUTE_EMAX; e++) {
						acc[e][j] += dl[e] * xv[q][j];
						d += dl[e] * wr[e][j];
					}
					dn[o + c] = d;
				}
			}
		}
	}
	{
		float *pb = part + (size_t)blockIdx.x * E * D;
#pragma unroll
		for (int j = 0; j < ROUTE_COLS; j++) {
			int c = tid + j * ROUTE_THREADS;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (c < D && e < E)
					pb[(size_t)e * D + c] = acc[e][j];
		}
	}
}

/* ---- variant v3 (POLICY_GPU_ROUTE=v3; round 10, issue 10). ncu of one
 * training step (H100, 2026-11-27) put v2 at fwd 44 us, sort 23 us, bwd
 * 30 us a layer (T 8192, D 768, E 8, K 2) against byte floors of ~9, ~0 and
 * ~25 us. v3 gives the same probabilities, selections, gates, sort and
 * gradients as v2 bit for bit (the same per-lane and per-column arithmetic;
 * aux may differ in its last bits: its double sum runs in another order):
 * - k_rt_fwd3: v2's blocks (16 tokens, 2 a warp), but the router weight
 *   copied into shared memory by cp.async with every 16-byte load in
 *   flight at once, issued with the x rows (v2's 4-byte fill loop was a
 *   chain of memory round trips before the first FMA: the weight is cold in
 *   a step), each weight float4 read from shared memory once for both of a
 *   warp's tokens, x streamed past L1, the float4 count a lane a template
 *   argument (78 registers at D 768), the block's ranks by one warp; the
 *   per-block counts and probability sums stored expert-major (hist[e][b]).
 *   Measured 47 -> 29 us (tests/bench/gpu_comb); what is left is the
 *   per-token softmax / top-k that every lane repeats (ncu: issue-bound, MIO
 *   stalls, DRAM at ~20%). Two tries that ran and lost (H100, 2026-11-27):
 *   the weight read through L1 in 8-token blocks (46 us: each cold weight
 *   float4 a DRAM round trip in turn) and a persistent kernel walking
 *   8-token groups with the next group's x prefetched (35 us; 45 us with
 *   two tokens a warp).
 * - k_rt_sort3: a block per 32 forward blocks (512 tokens): warp e loads
 *   expert e's counts coalesced, all in flight at once with this block's
 *   sel / rowof, and scans the 32 in its range in registers; block 0 sums
 *   the probability sums for aux by a fixed tree in double (v2's block 0
 *   added 512 of them one after another, which the whole sort waited for).
 *   25 -> 9 us.
 * - k_rt_bwd3 (policy_route_bwd_slots): the MoE backward's slot sum
 *   (gpu_moe.cu's k_mg_scatter: dn[t] = sum_j dxp[t K + j], 38 us) folded
 *   into the route backward, which read dn right after it: dn is written
 *   once (50 MB of traffic a layer less): scatter + bwd 74 -> 47 us. */
#define ROUTE_FWD3_TOKENS  16 /* tokens a forward block: 8 warps of 2 */
#define ROUTE_FWD3_THREADS 256
#define ROUTE_SORT3_FB     32 /* forward blocks a sort block */
#define ROUTE_BATCH3       2  /* tokens whose rows a backward thread loads at once */
#define SORT3_Q            16 /* per-group counts a lane loads at once in k_rt_sort3 */
#define SORT3_A            4  /* assignments a thread loads with them */

/* round 17 (issue 10): POLICY_GPU_RT16=new (the default) stages the bf16
 * rows k_rt_fwd4<NV, bf16>, k_rt_bwd3<KT, bf16, TX> and gpu_comb's
 * k_cb_bwd16 read into shared memory by 16-byte cp.async (round 16 loaded
 * them 8 or 2 bytes a thread: request-bound); each thread then reads its
 * own columns from there, so every sum keeps its order (test_act16: the
 * same bits as the fp32 kernels). H100, 2026-11-27, tests/bench/gpu_act16
 * (L2 flushed, median of 25) old -> new: route fwd 27.6 -> 16.4 us, route
 * bwd (x bf16) 43.7 -> 31.6, (x fp32) 47.2 -> 36.4, combine bwd 37.1 ->
 * 32.5; gpu_train x (K 4) 20.0 -> 19.7 / 19.5 ms a micro-batch.
 * The dynamic shared memory the staged (ST) bf16 kernels may
 * take: fwd E D 4 + 16 D 2, bwd RT16_NS (2 D 4 + 2 K D 2), D <= 1024, K <= 2 */
#define RT16_SMEM (64 * 1024)
#define RT16_NS   4 /* k_rt_bwd3's staged batches (ROUTE_BATCH3 tokens) in the ring */
/* round 18: k_rt_fwd5's dynamic shared memory at most (E D 4 + 64 D 2 at D
 * 1024: 160 KB) */
#define RT18_SMEM (192 * 1024)

int policy_route_rt16_mode(void)
{
	static const char *const names[] = {"old", "new", "rt18", "rt18_32"};
	return policy_env_choice("POLICY_GPU_RT16", names, 4, 1);
}

int policy_route_v3_supported(int E, int K, int D)
{
	return policy_route_v2_supported(E, K, D);
}

/* round 16 (POLICY_GPU_ACT16=resid): 4 bf16 of x (8 bytes; al: p 8-byte
 * aligned, else four 2-byte loads) as floats, not kept in L1 */
__device__ __forceinline__ static float4 ld_stream4(const uint16_t *p, int al)
{
	unsigned u0, u1;
	if (al) {
		asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];"
		             : "=r"(u0), "=r"(u1)
		             : "l"(p));
	} else {
		u0 = (unsigned)__ldcs(p) | (unsigned)__ldcs(p + 1) << 16;
		u1 = (unsigned)__ldcs(p + 2) | (unsigned)__ldcs(p + 3) << 16;
	}
	return make_float4(__uint_as_float(u0 << 16), __uint_as_float(u0 & 0xffff0000u),
	                   __uint_as_float(u1 << 16), __uint_as_float(u1 & 0xffff0000u));
}

/* 16 bytes of x, not kept in L1 (read once; the router weight stays); al:
 * p is 16-byte aligned, else four 4-byte loads */
__device__ __forceinline__ static float4 ld_stream4(const float *p, int al)
{
	float4 v;
	if (al)
		asm volatile("ld.global.nc.L1::no_allocate.v4.f32 {%0, %1, %2, %3}, [%4];"
		             : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
		             : "l"(p));
	else
		v = make_float4(__ldcs(p), __ldcs(p + 1), __ldcs(p + 2), __ldcs(p + 3));
	return v;
}

/* the router weight (n4 float4, 16-byte aligned) into shared memory by
 * 16-byte cp.async from a block of ROUTE_FWD3_THREADS (thread tid), one
 * commit group (k_rt_fwd3's, k_rt_fwd4's and k_rt_fwd_norm's) */
__device__ __forceinline__ static void rt_w_stage(float4 *s_w4, const float *__restrict__ Wr,
                                                  int n4, int tid)
{
	const int WQ = ROUTE_EMAX * ROUTE_V4 * 128 / 4 / ROUTE_FWD3_THREADS; /* float4 a thread */
#pragma unroll
	for (int q = 0; q < WQ; q++) {
		int i = tid + q * ROUTE_FWD3_THREADS;
		if (i < n4)
			asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(
			                     (unsigned)__cvta_generic_to_shared(s_w4 + i)),
			             "l"(Wr + (size_t)i * 4));
	}
	asm volatile("cp.async.commit_group;" ::: "memory");
}

/* one warp: each of a token group's nA assignments' rank among the
 * group's assignments of its expert (assignment order) into rowof from
 * a0, and the group's counts and probability sums (its nt rows of s_p)
 * into hist / psum at column b (k_rt_fwd3's, k_rt_fwd4's and k_rt_fwd5's:
 * the sort's input) */
__device__ __forceinline__ static void rt_rank_counts(const int *s_sel, float (*s_p)[ROUTE_EMAX],
                                                      int nA, int nt, int *__restrict__ rowof,
                                                      size_t a0, int *__restrict__ hist,
                                                      float *__restrict__ psum, int E, int nb,
                                                      int b, int lane)
{
	int run = 0; /* lane e: assignments of expert e so far */
	for (int base = 0; base < nA; base += 32) {
		int a = base + lane, e = a < nA ? s_sel[a] : -1;
		unsigned peers = __match_any_sync(0xffffffffu, e);
		int rk = __popc(peers & ((1u << lane) - 1u));
		int before = __shfl_sync(0xffffffffu, run, e < 0 ? 0 : e);
		if (e >= 0)
			rowof[a0 + a] = before + rk;
#pragma unroll
		for (int q = 0; q < ROUTE_EMAX; q++) {
			unsigned bb = __ballot_sync(0xffffffffu, e == q);
			if (lane == q)
				run += __popc(bb);
		}
	}
	if (lane < E) {
		float s = 0;
		for (int tl = 0; tl < nt; tl++)
			s += s_p[tl][lane];
		hist[(size_t)lane * nb + b] = run;
		psum[(size_t)lane * nb + b] = s;
	}
}

template <int NV>
__global__ static void __launch_bounds__(ROUTE_FWD3_THREADS)
        k_rt_fwd3(float *__restrict__ prob, int *__restrict__ sel, float *__restrict__ gate,
                  int *__restrict__ rowof, int *__restrict__ hist, float *__restrict__ psum,
                  const float *__restrict__ x, const float *__restrict__ Wr, int T, int E, int K,
                  int D, int nb, int al)
{
	const int NW = ROUTE_FWD3_THREADS / 32, TPW = ROUTE_FWD3_TOKENS / NW;
	extern __shared__ float4 s_w4[]; /* (E, D / 4) */
	__shared__ float s_p[ROUTE_FWD3_TOKENS][ROUTE_EMAX];
	__shared__ int s_sel[ROUTE_FWD3_TOKENS * ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, D4 = D / 4, n4 = E * D4;
	int t0 = blockIdx.x * ROUTE_FWD3_TOKENS;
	int nt = T - t0 < ROUTE_FWD3_TOKENS ? T - t0 : ROUTE_FWD3_TOKENS, nA = nt * K;
	float4 v[TPW][NV];
	float acc[TPW][ROUTE_EMAX];

	/* the router weight into shared memory by cp.async (no registers held)
	 * and the x rows: every load in flight at once, one memory round trip
	 * (v2 filled the weight 4 bytes a thread at a time before its sums) */
	if (al) {
		rt_w_stage(s_w4, Wr, n4, tid);
	} else {
#pragma unroll 8
		for (int i = tid; i < 4 * n4; i += ROUTE_FWD3_THREADS)
			((float *)s_w4)[i] = Wr[i];
	}
#pragma unroll
	for (int u = 0; u < TPW; u++) {
		int tl = w * TPW + u;
		const float *xr = x + (size_t)(t0 + (tl < nt ? tl : 0)) * D;
#pragma unroll
		for (int k = 0; k < NV; k++) {
			int c = lane + 32 * k;
			v[u][k] = tl < nt && c < D4 ? ld_stream4(xr + 4 * c, al)
			                            : make_float4(0.f, 0.f, 0.f, 0.f);
		}
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			acc[u][e] = 0;
	}
	if (al)
		asm volatile("cp.async.wait_all;" ::: "memory");
	__syncthreads();
	/* v2's per-lane sums (columns lane + 32 k, k ascending), a weight
	 * float4 read from shared memory once for both tokens */
#pragma unroll
	for (int k = 0; k < NV; k++) {
		int c = lane + 32 * k;
		if (c < D4) {
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E) {
					float4 b = s_w4[e * D4 + c];
#pragma unroll
					for (int u = 0; u < TPW; u++) {
						float4 a = v[u][k];
						acc[u][e] += a.x * b.x + a.y * b.y + a.z * b.z +
						             a.w * b.w;
					}
				}
		}
	}
#pragma unroll
	for (int u = 0; u < TPW; u++) {
		int tl = w * TPW + u;
		float p[ROUTE_EMAX], gv[ROUTE_EMAX], mx = -INFINITY, z = 0, S = 0;
		int sl[ROUTE_EMAX];
		unsigned taken = 0;
		if (tl >= nt) /* warp-uniform */
			continue;
			/* k_route's arithmetic, in registers on every lane (as v2) */
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E) {
				acc[u][e] = warp_sum(acc[u][e]);
				mx = fmaxf(mx, acc[u][e]);
			}
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E)
				z += (p[e] = expf(acc[u][e] - mx));
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E)
				p[e] /= z;
#pragma unroll
		for (int j = 0; j < ROUTE_EMAX; j++)
			if (j < K) {
				int best = -1;
				float bv = 0;
#pragma unroll
				for (int e = 0; e < ROUTE_EMAX; e++)
					if (e < E && !(taken >> e & 1u) &&
					    (best < 0 || p[e] > bv)) {
						best = e;
						bv = p[e];
					}
				taken |= 1u << best;
				sl[j] = best;
				gv[j] = bv;
				S += bv;
			}
		/* lanes j < K and e < E write one value each */
		{
			size_t t = (size_t)t0 + tl;
			float gj = 0, pe = 0;
			int sj = 0;
#pragma unroll
			for (int j = 0; j < ROUTE_EMAX; j++)
				if (j == lane) {
					sj = sl[j];
					gj = gv[j];
				}
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e == lane)
					pe = p[e];
			if (lane < K) {
				sel[t * K + lane] = sj;
				gate[t * K + lane] = gj / S;
				s_sel[tl * K + lane] = sj;
			}
			if (lane < E) {
				prob[t * E + lane] = pe;
				s_p[tl][lane] = pe;
			}
		}
	}
	__syncthreads();
	if (w)
		return;
	/* warp 0: each assignment's rank among the block's assignments of its
	 * expert (assignment order), the counts and the probability sums */
	rt_rank_counts(s_sel, s_p, nA, nt, rowof, (size_t)t0 * K, hist, psum, E, nb, blockIdx.x,
	               lane);
}

__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_sort3(int *__restrict__ perm, int *__restrict__ rowof, int *__restrict__ offs,
                   float *__restrict__ auxc, double *__restrict__ aux, const int *__restrict__ hist,
                   const float *__restrict__ psum, const int *__restrict__ sel, int T, int E, int K,
                   int Rp, int compact, int rnd, double coef, int nb, int gt)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	__shared__ int s_tot[ROUTE_EMAX], s_pre[ROUTE_EMAX][ROUTE_SORT3_FB], s_off[ROUTE_EMAX + 1],
	        s_cap;
	__shared__ double s_pm[ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, b = blockIdx.x, ns = gridDim.x;
	int fb0 = b * ROUTE_SORT3_FB, st = ROUTE_SORT3_FB * gt, t0 = b * st;
	int nt = T - t0 < st ? T - t0 : st, nA = nt * K, se[SORT3_A], sr[SORT3_A];

	/* this thread's first SORT3_A assignments, loaded with the counts */
#pragma unroll
	for (int q = 0; q < SORT3_A; q++) {
		int a = tid + q * ROUTE_THREADS;
		size_t i = (size_t)t0 * K + a;
		se[q] = a < nA ? sel[i] : 0;
		sr[q] = a < nA ? rowof[i] : 0;
	}

	if (w < E) { /* E <= ROUTE_EMAX = the block's warps */
		const int *h = hist + (size_t)w * nb;
		const float *ps = psum + (size_t)w * nb;
		int tot = 0, pre = 0, mine = fb0 + lane < nb ? h[fb0 + lane] : 0, ex;
		double pm = 0;
		/* SORT3_Q counts a lane in flight at once (all of them for nb <=
		 * 32 SORT3_Q: one round trip), block 0 the probability sums too */
		for (int bb0 = 0; bb0 < nb; bb0 += 32 * SORT3_Q) {
			int hv[SORT3_Q];
			float pv[SORT3_Q];
#pragma unroll
			for (int q = 0; q < SORT3_Q; q++) {
				int bb = bb0 + lane + 32 * q;
				hv[q] = bb < nb ? h[bb] : 0;
				pv[q] = b == 0 && bb < nb ? ps[bb] : 0.0f;
			}
#pragma unroll
			for (int q = 0; q < SORT3_Q; q++) {
				tot += hv[q];
				pre += bb0 + lane + 32 * q < fb0 ? hv[q] : 0;
				pm += pv[q];
			}
		}
		tot = __reduce_add_sync(0xffffffffu, tot);
		pre = __reduce_add_sync(0xffffffffu, pre);
		for (int o = 16; o > 0; o >>= 1) /* a fixed tree: deterministic */
			pm += __shfl_xor_sync(0xffffffffu, pm, o);
		ex = mine; /* inclusive scan of this range's counts, then exclusive */
		for (int o = 1; o < 32; o <<= 1) {
			int y = __shfl_up_sync(0xffffffffu, ex, o);
			if (lane >= o)
				ex += y;
		}
		s_pre[w][lane] = pre + ex - mine;
		if (lane == 0) {
			s_tot[w] = tot;
			s_pm[w] = pm;
		}
	}
	__syncthreads();
	if (tid == 0) {
		int mx = 0, cap;
		for (int e = 0; e < E; e++)
			mx = s_tot[e] > mx ? s_tot[e] : mx;
		cap = (mx + rnd - 1) / rnd * rnd;
		if (compact || (long long)cap * E > Rp)
			cap = 0;
		s_off[0] = 0;
		for (int e = 0; e < E; e++)
			s_off[e + 1] = s_off[e] + (cap ? cap : s_tot[e]);
		s_cap = cap;
		if (b == 0) {
			for (int e = 0; e <= E; e++)
				offs[e] = s_off[e];
			offs[E + 1] = cap;
		}
	}
	__syncthreads();
#pragma unroll
	for (int q = 0; q < SORT3_A; q++) {
		int a = tid + q * ROUTE_THREADS;
		size_t i = (size_t)t0 * K + a;
		if (a < nA) {
			int e = se[q], r = s_off[e] + s_pre[e][a / (gt * K)] + sr[q];
			rowof[i] = r;
			perm[r] = (int)i;
		}
	}
#pragma unroll 4
	for (int a = tid + SORT3_A * ROUTE_THREADS; a < nA; a += ROUTE_THREADS) {
		size_t i = (size_t)t0 * K + a;
		int e = sel[i], r = s_off[e] + s_pre[e][a / (gt * K)] + rowof[i];
		rowof[i] = r;
		perm[r] = (int)i;
	}
	if (s_cap)
		for (int e = 0; e < E; e++)
			for (int r = s_off[e] + s_tot[e] + b * blockDim.x + tid; r < s_off[e + 1];
			     r += ns * blockDim.x)
				perm[r] = -1;
	if (b == 0) {
		if (tid == 0) {
			double a = 0, R = (double)T * K;
			for (int e = 0; e < E; e++) {
				double f = s_tot[e] / R;
				a += f * s_pm[e] / T;
				auxc[e] = (float)(coef * E * f / T);
			}
			*aux = a * coef * E;
		}
	}
}

/* round 17: n16 16-byte pieces from src to shared address dst by cp.async
 * (L2 only), a block of ROUTE_THREADS */
__device__ __forceinline__ static void rt16_cp(unsigned dst, const void *src, int n16, int tid)
{
	for (int i = tid; i < n16; i += ROUTE_THREADS)
		asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst + 16u * i),
		             "l"((const char *)src + (size_t)16 * i));
}

/* round 17 (ST): batch b's x rows and their KT slot rows (each contiguous
 * in memory) into ring entry b % RT16_NS; one commit group (maybe empty) */
template <int KT, typename TX>
__device__ __forceinline__ static void rt16_stage(unsigned s0, int b, int nt, int t0, int tid,
                                                  const uint16_t *slots, const TX *x, int D)
{
	const int xb = ROUTE_BATCH3 * D * (int)sizeof(TX), sb = ROUTE_BATCH3 * KT * D * 2;
	int tb = b * ROUTE_BATCH3, nq = nt - tb < ROUTE_BATCH3 ? nt - tb : ROUTE_BATCH3;
	if (nq > 0) {
		unsigned d = s0 + (unsigned)(b % RT16_NS) * (xb + sb);
		size_t t = (size_t)t0 + tb;
		rt16_cp(d, x + t * D, nq * D * (int)sizeof(TX) / 16, tid);
		rt16_cp(d + xb, slots + t * KT * D, nq * KT * D * 2 / 16, tid);
	}
	asm volatile("cp.async.commit_group;" ::: "memory");
}

/* k_rt_bwd2 with dn's old value replaced by the MoE's slot sum
 * sum_j slots[t K + j] (k_mg_scatter's order: 0 + slot 0 + slot 1 ...); KT:
 * K when 1 or 2 (every slot row loaded at once), else 0 (K at run time) */
/* round 23 (POLICY_GPU_RT_NORM=fused): rows kept a norm round (one a warp) */
#define RT_NB (ROUTE_THREADS / 32)

/* the ffn norm's backward of row t, dy its dn row in shared memory (fp32):
 * k_ew_rms_bwd16g's arithmetic and order for one row (lane + 32 k chunks of
 * 4 columns, the dot by warp_sum), so dx is the two passes' bit for bit;
 * the weight gradient's terms added to this warp's partial row np */
__device__ __forceinline__ static void rt_norm_row(const float *__restrict__ dy,
                                                   float *__restrict__ np,
                                                   const struct policy_route_nb &nb, size_t t,
                                                   int C, int lane)
{
	constexpr int CHM = ROUTE_COLS * ROUTE_THREADS / 128; /* D <= 1024 */
	const int C4 = C / 4;
	const size_t o = t * C;
	const float r = nb.rstd[t];
	float dot = 0.0f;
	/* two passes over the row (x re-read from L1 in the second), so that
	 * no chunk is held across the warp sum: this kernel's registers */
#pragma unroll
	for (int k = 0; k < CHM; k++) {
		const int c = lane + 32 * k;
		if (c < C4) {
			const uint2 xr = *(const uint2 *)(nb.x + o + c * 4);
			const float4 dv = *(const float4 *)(dy + c * 4);
			const float d4[4] = {dv.x, dv.y, dv.z, dv.w};
			const uint16_t *xh = (const uint16_t *)&xr;
#pragma unroll
			for (int q = 0; q < 4; q++)
				dot += d4[q] * nb.w[c * 4 + q] * bf2f(xh[q]);
		}
	}
	dot = warp_sum(dot);
#pragma unroll
	for (int k = 0; k < CHM; k++) {
		const int c = lane + 32 * k;
		if (c < C4) {
			const uint2 xr = *(const uint2 *)(nb.x + o + c * 4),
			            ar = *(const uint2 *)(nb.dx + o + c * 4);
			const float4 dv = *(const float4 *)(dy + c * 4);
			const float d4[4] = {dv.x, dv.y, dv.z, dv.w};
			const uint16_t *xh = (const uint16_t *)&xr, *ah = (const uint16_t *)&ar;
			uint16_t out[4];
#pragma unroll
			for (int q = 0; q < 4; q++) {
				const float xv = bf2f(xh[q]);
				float vv = r * d4[q] * nb.w[c * 4 + q] - r * r * r * xv * dot / C;
				np[c * 4 + q] += d4[q] * xv * r;
				vv += bf2f(ah[q]);
				out[q] = f2bf(vv);
			}
			*(uint2 *)(nb.dx + o + c * 4) = *(const uint2 *)out;
		}
	}
}

/* TN (round 25, POLICY_GPU_DN16): dn's type; uint16_t stores it in bf16
 * (rounded to nearest even once), float is the rounds 16-24 kernel */
template <int KT, typename TS, typename TX, bool ST, bool NB, typename TN = float>
__device__ __forceinline__ static void
rt_bwd3_body(TN *__restrict__ dn, float *__restrict__ part, const TS *__restrict__ slots,
             const TX *__restrict__ x, const float *__restrict__ Wr, const float *__restrict__ prob,
             const int *__restrict__ sel, const float *__restrict__ gate,
             const float *__restrict__ dgate, const float *__restrict__ auxc, int T, int E, int K,
             int D, const struct policy_route_nb &nb)
{
	const int KU = KT > 0 ? KT : 1;
	static_assert(!NB || ST, "the norm rows live after the staging ring");
	/* round 23 (NB): dn's rows kept in shared memory (s_dn, RT_NB rows
	 * after the staging ring) for the ffn norm's backward, a warp a row
	 * (rt_norm_row), and the norm weight's per-warp partial sums (s_np) */
	float *s_dn = NULL, *s_np = NULL;
	if constexpr (NB) {
		extern __shared__ float4 s_w4[];
		const int ring = RT16_NS * ROUTE_BATCH3 * D * ((int)sizeof(TX) + 2 * KU);
		s_dn = (float *)((char *)s_w4 + ring);
		s_np = s_dn + RT_NB * D;
		for (int i = threadIdx.x; i < RT_NB * D; i += ROUTE_THREADS)
			s_np[i] = 0.0f;
	}
	__shared__ float s_dl[ROUTE_BWD_TOKENS][ROUTE_EMAX];
	int tid = threadIdx.x, t0 = blockIdx.x * ROUTE_BWD_TOKENS;
	int nt = T - t0 < ROUTE_BWD_TOKENS ? T - t0 : ROUTE_BWD_TOKENS;
	float wr[ROUTE_EMAX][ROUTE_COLS], acc[ROUTE_EMAX][ROUTE_COLS];

	unsigned s0 = 0;
	if (ST) { /* round 17: the first RT16_NS - 1 batches in flight before
		   * the start's loads (KT is 1 or 2 here) */
		extern __shared__ float4 s_w4[];
		s0 = (unsigned)__cvta_generic_to_shared(s_w4);
#pragma unroll
		for (int b = 0; b < RT16_NS - 1; b++)
			rt16_stage<KU, TX>(s0, b, nt, t0, tid, (const uint16_t *)slots, x, D);
	}
	rt_bwd_start(s_dl, wr, acc, tid, t0, nt, Wr, prob, sel, gate, dgate, auxc, E, K, D);
	for (int tb = 0; tb < nt; tb += ROUTE_BATCH3) {
		float xv[ROUTE_BATCH3][ROUTE_COLS], dv[ROUTE_BATCH3][ROUTE_COLS];
		float sv[ROUTE_BATCH3][KU][ROUTE_COLS];
		if (ST) { /* this batch from the ring (the values the loads below
			   * give), the batch RT16_NS - 1 ahead issued */
			extern __shared__ float4 s_w4[];
			const int xb = ROUTE_BATCH3 * D * (int)sizeof(TX);
			int b = tb / ROUTE_BATCH3;
			const char *e = (const char *)s_w4 +
			                (size_t)(b % RT16_NS) * (xb + ROUTE_BATCH3 * KU * D * 2);
			const TX *xs = (const TX *)e;
			const uint16_t *ss = (const uint16_t *)(e + xb);
			rt16_stage<KU, TX>(s0, b + RT16_NS - 1, nt, t0, tid,
			                   (const uint16_t *)slots, x, D);
			asm volatile("cp.async.wait_group %0;" ::"n"(RT16_NS - 1) : "memory");
			__syncthreads();
#pragma unroll
			for (int q = 0; q < ROUTE_BATCH3; q++) {
#pragma unroll
				for (int j = 0; j < ROUTE_COLS; j++) {
					int c = tid + j * ROUTE_THREADS;
					int ok = tb + q < nt && c < D;
					xv[q][j] = ok ? ldf(xs[q * D + c]) : 0.0f;
#pragma unroll
					for (int s = 0; s < KU; s++)
						sv[q][s][j] =
						        ok ? bf2f(ss[(q * KU + s) * D + c]) : 0.0f;
				}
			}
		} else {
#pragma unroll
			for (int q = 0; q < ROUTE_BATCH3; q++) {
				size_t t = (size_t)(t0 + tb + q);
#pragma unroll
				for (int j = 0; j < ROUTE_COLS; j++) {
					int c = tid + j * ROUTE_THREADS;
					int ok = tb + q < nt && c < D;
					xv[q][j] = ok ? ldf(x[t * D + c]) : 0.0f;
#pragma unroll
					for (int s = 0; s < KU; s++)
						sv[q][s][j] =
						        ok && KT ? ldf(slots[(t * K + s) * D + c])
						                 : 0.0f;
				}
			}
		}
#pragma unroll
		for (int q = 0; q < ROUTE_BATCH3; q++) {
			size_t t = (size_t)(t0 + tb + q);
#pragma unroll
			for (int j = 0; j < ROUTE_COLS; j++) {
				int c = tid + j * ROUTE_THREADS;
				float s = 0.0f;
				if (KT) {
#pragma unroll
					for (int u = 0; u < KU; u++)
						s += sv[q][u][j];
				} else if (tb + q < nt && c < D) {
					for (int u = 0; u < K; u++)
						s += ldf(slots[(t * K + u) * D + c]);
				}
				dv[q][j] = s;
			}
		}
#pragma unroll
		for (int q = 0; q < ROUTE_BATCH3; q++) {
			size_t o = (size_t)(t0 + tb + q) * D;
			float dl[ROUTE_EMAX];
			if (tb + q >= nt)
				break;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				dl[e] = s_dl[tb + q][e];
#pragma unroll
			for (int j = 0; j < ROUTE_COLS; j++) {
				int c = tid + j * ROUTE_THREADS;
				if (c < D) {
					float d = dv[q][j];
#pragma unroll
					for (int e = 0; e < ROUTE_EMAX; e++) {
						acc[e][j] += dl[e] * xv[q][j];
						d += dl[e] * wr[e][j];
					}
					if constexpr (NB) /* dn's row, kept */
						s_dn[(size_t)((tb + q) % RT_NB) * D + c] = d;
					else if constexpr (sizeof(TN) == 2)
						dn[o + c] = f2bf(d);
					else
						dn[o + c] = d;
				}
			}
		}
		if (ST) /* ring entry b % RT16_NS is refilled next */
			__syncthreads();
		if constexpr (NB) { /* RT_NB rows done (or the block's last): a warp a row */
			if ((tb + ROUTE_BATCH3) % RT_NB == 0 || tb + ROUTE_BATCH3 >= nt) {
				const int rb = tb - tb % RT_NB, w = tid >> 5;
				/* the staged path's barrier above made s_dn's rows visible */
				if (rb + w < nt)
					rt_norm_row(s_dn + (size_t)w * D, s_np + (size_t)w * D, nb,
					            (size_t)(t0 + rb + w), D, tid & 31);
				__syncthreads(); /* s_dn's rows are the next round's */
			}
		}
	}
	{
		float *pb = part + (size_t)blockIdx.x * E * D;
#pragma unroll
		for (int j = 0; j < ROUTE_COLS; j++) {
			int c = tid + j * ROUTE_THREADS;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (c < D && e < E)
					pb[(size_t)e * D + c] = acc[e][j];
		}
	}
	if constexpr (NB) /* the norm weight's gradient: the warps' partials in
	                   * order, one add a column and block */
		for (int c = threadIdx.x; c < D; c += ROUTE_THREADS) {
			float sum = 0.0f;
			for (int w = 0; w < RT_NB; w++)
				sum += s_np[(size_t)w * D + c];
			atomicAdd(&nb.dw[c], sum);
		}
}

template <int KT, typename TS = float, typename TX = float, bool ST = false, typename TN = float>
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_bwd3(TN *__restrict__ dn, float *__restrict__ part, const TS *__restrict__ slots,
                  const TX *__restrict__ x, const float *__restrict__ Wr,
                  const float *__restrict__ prob, const int *__restrict__ sel,
                  const float *__restrict__ gate, const float *__restrict__ dgate,
                  const float *__restrict__ auxc, int T, int E, int K, int D)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	const struct policy_route_nb none = {};
	rt_bwd3_body<KT, TS, TX, ST, false, TN>(dn, part, slots, x, Wr, prob, sel, gate, dgate,
	                                        auxc, T, E, K, D, none);
}

/* round 23 (POLICY_GPU_RT_NORM=fused): k_rt_bwd3 (staged, bf16 slots and x)
 * with the ffn norm's backward on each dn row in registers: dn is not
 * written; nb.dx (the bf16 residual gradient) += the norm backward of
 * dn, nb.dw += its weight gradient */
template <int KT, typename TX>
__global__ static void __launch_bounds__(ROUTE_THREADS)
        k_rt_bwd3n(float *__restrict__ part, const uint16_t *__restrict__ slots,
                   const TX *__restrict__ x, const float *__restrict__ Wr,
                   const float *__restrict__ prob, const int *__restrict__ sel,
                   const float *__restrict__ gate, const float *__restrict__ dgate,
                   const float *__restrict__ auxc, int T, int E, int K, int D,
                   const struct policy_route_nb nb)
{
	pdl::enter();
	rt_bwd3_body<KT, uint16_t, TX, true, true>((float *)NULL, part, slots, x, Wr, prob, sel,
	                                           gate, dgate, auxc, T, E, K, D, nb);
}

/* a token's router softmax over its E logits lg and its top-K choice
 * (k_route's arithmetic in v2's order): p the E probabilities, sl / gv
 * the K choices by decreasing probability and theirs, S the sum of gv */
__device__ __forceinline__ static void rt_softmax_topk(const float *lg, int E, int K,
                                                       float (&p)[ROUTE_EMAX],
                                                       int (&sl)[ROUTE_EMAX],
                                                       float (&gv)[ROUTE_EMAX], float &S)
{
	float mx = -INFINITY, z = 0;
	unsigned taken = 0;
	S = 0;
#pragma unroll
	for (int e = 0; e < ROUTE_EMAX; e++)
		if (e < E)
			mx = fmaxf(mx, lg[e]);
#pragma unroll
	for (int e = 0; e < ROUTE_EMAX; e++)
		if (e < E)
			z += (p[e] = expf(lg[e] - mx));
#pragma unroll
	for (int e = 0; e < ROUTE_EMAX; e++)
		if (e < E)
			p[e] /= z;
#pragma unroll
	for (int j = 0; j < ROUTE_EMAX; j++)
		if (j < K) {
			int best = -1;
			float bv = 0;
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E && !(taken >> e & 1u) && (best < 0 || p[e] > bv)) {
					best = e;
					bv = p[e];
				}
			taken |= 1u << best;
			sl[j] = best;
			gv[j] = bv;
			S += bv;
		}
}

/* k_rt_fwd4's logits (round 26: shared with k_rt_fwd_norm): lane l's
 * partial sums of TPW tokens' rows v (float4 chunks l + 32 k) against the
 * staged router weight s_w4 (E, D / 4), added into acc (token u, expert e
 * at u ROUTE_EMAX + e) in k order */
template <int NV, int TPW>
__device__ __forceinline__ static void rt_dots(float (&acc)[TPW * ROUTE_EMAX],
                                               const float4 (&v)[TPW][NV], const float4 *s_w4,
                                               int lane, int D4, int E)
{
#pragma unroll
	for (int k = 0; k < NV; k++) {
		int c = lane + 32 * k;
		if (c < D4) {
#pragma unroll
			for (int e = 0; e < ROUTE_EMAX; e++)
				if (e < E) {
					float4 b = s_w4[e * D4 + c];
#pragma unroll
					for (int u = 0; u < TPW; u++) {
						float4 a = v[u][k];
						acc[u * ROUTE_EMAX + e] += a.x * b.x + a.y * b.y +
						                           a.z * b.z + a.w * b.w;
					}
				}
		}
	}
}

/* one level of a warp's reduce-scatter (k_rt_fwd4's and k_rt_fwd5's): of
 * its N values in, a lane keeps the half that bit `bit` of its lane
 * selects and adds the partner's copy of it (lane ^ (1 << bit)): out[j] =
 * own + partner, warp_sum's order */
template <int N>
__device__ __forceinline__ static void rt_halve(float *out, const float *in, int lane, int bit)
{
	const int h = lane >> bit & 1;
#pragma unroll
	for (int j = 0; j < N / 2; j++) {
		float keep = h ? in[j + N / 2] : in[j], send = h ? in[j] : in[j + N / 2];
		out[j] = keep + __shfl_xor_sync(0xffffffffu, send, 1 << bit);
	}
}

/* k_rt_fwd4's tail (round 26: shared with k_rt_fwd_norm), for the block's
 * 16 tokens from t0 (nt of them), 2 a warp: the warp's 16 sums acc
 * (rt_dots) by a reduce-scatter into s_l, then a thread a token: softmax,
 * top-k and gates (v2's order); warp 0's ranks, counts and probability
 * sums of block blockIdx.x */
__device__ __forceinline__ static void
rt_fwd4_tail(const float (&acc)[2 * ROUTE_EMAX], float (*s_l)[ROUTE_EMAX], float (*s_p)[ROUTE_EMAX],
             int *s_sel, float *__restrict__ prob, int *__restrict__ sel, float *__restrict__ gate,
             int *__restrict__ rowof, int *__restrict__ hist, float *__restrict__ psum, int w,
             int lane, int t0, int nt, int E, int K, int nb)
{
	const int TPW = 2, nA = nt * K;
	/* reduce-scatter over the warp: at level o a lane keeps the half of its
	 * values its bit o selects and adds the partner's copy of them (own +
	 * partner, warp_sum's order); lane l ends with value (l >> 1) & 15 =
	 * token (l >> 4) of the warp, expert (l >> 1) & 7 */
	{
		float b8[8], b4[4], b2[2], b1;
		rt_halve<16>(b8, acc, lane, 4);
		rt_halve<8>(b4, b8, lane, 3);
		rt_halve<4>(b2, b4, lane, 2);
		rt_halve<2>(&b1, b2, lane, 1);
		b1 += __shfl_xor_sync(0xffffffffu, b1, 1);
		if (!(lane & 1)) {
			int u = lane >> 4, e = lane >> 1 & 7;
			s_l[w * TPW + u][e] = b1;
		}
	}
	__syncthreads();
	if (w)
		return;
	/* a thread a token: k_route's arithmetic in v2's order */
	if (lane < nt) {
		size_t t = (size_t)t0 + lane;
		float p[ROUTE_EMAX], gv[ROUTE_EMAX], S;
		int sl[ROUTE_EMAX];
		rt_softmax_topk(s_l[lane], E, K, p, sl, gv, S);
#pragma unroll
		for (int j = 0; j < ROUTE_EMAX; j++)
			if (j < K) {
				sel[t * K + j] = sl[j];
				gate[t * K + j] = gv[j] / S;
				s_sel[lane * K + j] = sl[j];
			}
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E) {
				prob[t * E + e] = p[e];
				s_p[lane][e] = p[e];
			}
	}
	__syncwarp();
	/* the ranks, counts and sums as k_rt_fwd3 */
	rt_rank_counts(s_sel, s_p, nA, nt, rowof, (size_t)t0 * K, hist, psum, E, nb, blockIdx.x,
	               lane);
}

/* ---- variant v4 (POLICY_GPU_ROUTE=v4, the default since round 10; its
 * test cases passed on an H100, 2026-11-27): v3 with k_rt_fwd4 for the forward (the sort
 * and the backward are v3's). ncu showed k_rt_fwd3 issue-bound (DRAM at
 * ~20%, MIO stalls): every lane of a warp repeats its tokens' 16 warp
 * sums (80 shuffles), 8 expf, 8 IEEE divides and the top-k. k_rt_fwd4
 * keeps fwd3's loads and sums and then: the 16 (token, expert) sums of a
 * warp by one reduce-scatter butterfly (16 shuffles; at each level a lane
 * adds its own partial and its partner's exactly as warp_sum does, so the
 * totals are the same bits), one lane of each pair stores its logit to
 * shared memory, and one thread per token (lanes 0..15 of warp 0) runs
 * k_route's softmax, top-k and gates with v2's operations in v2's order;
 * then warp 0 ranks as in fwd3. Same results as v2 / v3 bit for bit
 * (test_policy_route checks); predicted ~12 us against fwd3's 29. */
template <int NV, typename TX = float, bool ST = false>
__global__ static void __launch_bounds__(ROUTE_FWD3_THREADS)
        k_rt_fwd4(float *__restrict__ prob, int *__restrict__ sel, float *__restrict__ gate,
                  int *__restrict__ rowof, int *__restrict__ hist, float *__restrict__ psum,
                  const TX *__restrict__ x, const float *__restrict__ Wr, int T, int E, int K,
                  int D, int nb, int al)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	const int NW = ROUTE_FWD3_THREADS / 32, TPW = ROUTE_FWD3_TOKENS / NW;
	static_assert(TPW == 2 && ROUTE_EMAX == 8, "the butterfly below takes 16 sums a warp");
	extern __shared__ float4 s_w4[]; /* (E, D / 4) */
	__shared__ float s_l[ROUTE_FWD3_TOKENS][ROUTE_EMAX];
	__shared__ float s_p[ROUTE_FWD3_TOKENS][ROUTE_EMAX];
	__shared__ int s_sel[ROUTE_FWD3_TOKENS * ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, D4 = D / 4, n4 = E * D4;
	int t0 = blockIdx.x * ROUTE_FWD3_TOKENS;
	int nt = T - t0 < ROUTE_FWD3_TOKENS ? T - t0 : ROUTE_FWD3_TOKENS;
	float4 v[TPW][NV];
	float acc[TPW * ROUTE_EMAX];

	/* as k_rt_fwd3: the weight by cp.async and the x rows, all in flight */
	if (al) {
		rt_w_stage(s_w4, Wr, n4, tid);
	} else {
#pragma unroll 8
		for (int i = tid; i < 4 * n4; i += ROUTE_FWD3_THREADS)
			((float *)s_w4)[i] = Wr[i];
	}
	if (ST) { /* round 17: the block's x rows into shared memory by 16-byte
		   * cp.async (nt D / 8 of them, with the weight's), then each lane
		   * reads its own 4 columns from there: the same values, sums and
		   * order as the 8-byte loads below, half the memory requests */
		const uint16_t *xs = (const uint16_t *)x + (size_t)t0 * D;
		unsigned sx = (unsigned)__cvta_generic_to_shared(s_w4 + n4);
		for (int i = tid; i < nt * D / 8; i += ROUTE_FWD3_THREADS)
			asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sx + 16 * i),
			             "l"(xs + (size_t)i * 8));
		asm volatile("cp.async.commit_group;" ::: "memory");
#pragma unroll
		for (int i = 0; i < TPW * ROUTE_EMAX; i++)
			acc[i] = 0;
		asm volatile("cp.async.wait_all;" ::: "memory");
		__syncthreads();
#pragma unroll
		for (int u = 0; u < TPW; u++) {
			int tl = w * TPW + u;
			const uint2 *xr =
			        (const uint2 *)(s_w4 + n4) + (size_t)(tl < nt ? tl : 0) * D4;
#pragma unroll
			for (int k = 0; k < NV; k++) {
				int c = lane + 32 * k;
				uint2 q = tl < nt && c < D4 ? xr[c] : make_uint2(0u, 0u);
				v[u][k] = make_float4(__uint_as_float(q.x << 16),
				                      __uint_as_float(q.x & 0xffff0000u),
				                      __uint_as_float(q.y << 16),
				                      __uint_as_float(q.y & 0xffff0000u));
			}
		}
	} else {
#pragma unroll
		for (int u = 0; u < TPW; u++) {
			int tl = w * TPW + u;
			const TX *xr = x + (size_t)(t0 + (tl < nt ? tl : 0)) * D;
#pragma unroll
			for (int k = 0; k < NV; k++) {
				int c = lane + 32 * k;
				v[u][k] = tl < nt && c < D4 ? ld_stream4(xr + 4 * c, al)
				                            : make_float4(0.f, 0.f, 0.f, 0.f);
			}
		}
#pragma unroll
		for (int i = 0; i < TPW * ROUTE_EMAX; i++)
			acc[i] = 0;
		if (al)
			asm volatile("cp.async.wait_all;" ::: "memory");
		__syncthreads();
	}
	rt_dots<NV, TPW>(acc, v, s_w4, lane, D4, E);
	rt_fwd4_tail(acc, s_l, s_p, s_sel, prob, sel, gate, rowof, hist, psum, w, lane, t0, nt, E,
	             K, nb);
}

/* round 26 (issue 10, POLICY_GPU_NORM_ROUTE=fused): the ffn norm and the
 * router forward in one pass. A block of k_rt_fwd4's shape (16 tokens, 8
 * warps of 2): each warp normalises its rows of the bf16 stream a (wo's
 * epilogue already added the residual, round 23: a norm without an add)
 * with gpu_ew.cu's arithmetic (ew_norm_tail: y in bf16 and rstd, bit for bit
 * policy_ew_add_rms16's), keeps the stored (rounded) values in registers
 * and runs k_rt_fwd4's logits, softmax, top-k, ranks and counts on them
 * (rt_dots, rt_fwd4_tail: the same values in the same order, so the same
 * bits as k_rt_fwd4 reading y back). Saves the router's read of y and a
 * launch; the weight's copy into shared memory (cp.async) overlaps the
 * rows' loads and norms. H100 (ncu, 2026-11-27): 28.9 us a layer at
 * 8192 tokens against 31.3 for the two kernels (16.8 + 14.5). A form with
 * both rows' loads issued before either norm at 3 blocks an SM (80
 * registers, 56 bytes spilled) ran 31.2 us at 8192 tokens (165 against the
 * two kernels' 183 at 65,536) and was not kept. */
template <int NV>
__global__ static void __launch_bounds__(ROUTE_FWD3_THREADS)
        k_rt_fwd_norm(float *__restrict__ prob, int *__restrict__ sel, float *__restrict__ gate,
                      int *__restrict__ rowof, int *__restrict__ hist, float *__restrict__ psum,
                      uint16_t *__restrict__ y, float *__restrict__ rstd,
                      const uint16_t *__restrict__ a, const float *__restrict__ nw,
                      const float *__restrict__ Wr, int T, int E, int K, int D, int nb, float eps)
{
	pdl::enter(); /* launched with PDL under POLICY_GPU_PDL=on */
	const int NW = ROUTE_FWD3_THREADS / 32, TPW = ROUTE_FWD3_TOKENS / NW;
	static_assert(TPW == 2 && ROUTE_EMAX == 8, "rt_fwd4_tail takes 16 sums a warp");
	extern __shared__ float4 s_w4[]; /* (E, D / 4) */
	__shared__ float s_l[ROUTE_FWD3_TOKENS][ROUTE_EMAX];
	__shared__ float s_p[ROUTE_FWD3_TOKENS][ROUTE_EMAX];
	__shared__ int s_sel[ROUTE_FWD3_TOKENS * ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, D4 = D / 4, n4 = E * D4;
	int t0 = blockIdx.x * ROUTE_FWD3_TOKENS;
	int nt = T - t0 < ROUTE_FWD3_TOKENS ? T - t0 : ROUTE_FWD3_TOKENS;
	float4 v[TPW][NV];
	float acc[TPW * ROUTE_EMAX];

	/* the weight by cp.async (16-byte aligned: the launcher checks) */
	rt_w_stage(s_w4, Wr, n4, tid);
#pragma unroll
	for (int u = 0; u < TPW; u++) {
		int tl = w * TPW + u, t = t0 + tl;
		if (tl < nt) { /* warp-uniform */
			size_t o = (size_t)t * D;
			float x[NV][4];
#pragma unroll
			for (int k = 0; k < NV; k++) {
				int c = lane + 32 * k;
				if (c < D4)
					ew_ld4(x[k], a + o + c * 4);
			}
			/* ew_add_rms's norm of a alone (no b, no slots, out not
			 * written): x rounded as bf16 stores it (unchanged), y = x r w */
			const float r = ew_norm_tail<uint16_t, uint16_t, NV>(
			        x, (uint16_t *)nullptr, y, (uint16_t *)nullptr, rstd, nw, lane, D4,
			        D, o, t, eps);
#pragma unroll
			for (int k = 0; k < NV; k++) {
				int c = lane + 32 * k;
				float q[4] = {0.f, 0.f, 0.f, 0.f};
				if (c < D4) /* the values y holds (ew_st4's rounding) */
#pragma unroll
					for (int j = 0; j < 4; j++)
						q[j] = bf2f(f2bf(x[k][j] * r * nw[c * 4 + j]));
				v[u][k] = make_float4(q[0], q[1], q[2], q[3]);
			}
		} else {
#pragma unroll
			for (int k = 0; k < NV; k++)
				v[u][k] = make_float4(0.f, 0.f, 0.f, 0.f);
		}
	}
#pragma unroll
	for (int i = 0; i < TPW * ROUTE_EMAX; i++)
		acc[i] = 0;
	asm volatile("cp.async.wait_all;" ::: "memory");
	__syncthreads();
	rt_dots<NV, TPW>(acc, v, s_w4, lane, D4, E);
	rt_fwd4_tail(acc, s_l, s_p, s_sel, prob, sel, gate, rowof, hist, psum, w, lane, t0, nt, E,
	             K, nb);
}

/* round 18 (issue 10, POLICY_GPU_RT16=rt18 / rt18_32, opt-in; the default,
 * new, stays round 17's k_rt_fwd4<NV, bf16, true>): the bf16 forward with FB
 * (64 or 32) tokens a
 * block, i.e. FB / 16 of fwd4's 16-token groups: the router weight copied
 * into shared memory once for FB tokens (fwd4: once for 16), the x rows by
 * 16-byte cp.async with it; each warp sums 4 tokens (a weight float4 read
 * once for 4 tokens: half fwd4's shared loads) with each lane's columns,
 * products and order as fwd4's (acc += the 4-product dot of column c, c =
 * lane + 32 k, k ascending), then one reduce-scatter butterfly of its 32
 * (token, expert) sums at levels 16, 8, 4, 2, 1 (warp_sum's pairs: the same
 * bits); then warp g runs fwd4's tail (softmax, top-k, gates, ranks, counts)
 * for group g, the groups' tails in parallel. Outputs, scratch layout (hist
 * and psum a 16-token group) and bits are fwd4's.
 * Measured (H100, 2026-11-27, tests/bench/gpu_act16, L2 flushed, median of
 * 25; T 8192, D 768): slower than fwd4 staged, 16.3 us -> 17.7 (64 tokens
 * a block) / 17.4 (32), same bits (test_act16): one 129 KB block an SM (or
 * 3 of 74 KB) leaves no other block's sums to overlap a block's loads; so
 * not the default. */
#define ROUTE_FWD5_TPW 4 /* tokens a warp */
template <int NV, int FB>
__global__ static void __launch_bounds__(FB / ROUTE_FWD5_TPW * 32)
        k_rt_fwd5(float *__restrict__ prob, int *__restrict__ sel, float *__restrict__ gate,
                  int *__restrict__ rowof, int *__restrict__ hist, float *__restrict__ psum,
                  const uint16_t *__restrict__ x, const float *__restrict__ Wr, int T, int E, int K,
                  int D, int nb)
{
	const int TPW = ROUTE_FWD5_TPW, NT = FB / TPW * 32, G = FB / ROUTE_FWD3_TOKENS;
	static_assert(TPW == 4 && ROUTE_EMAX == 8, "the butterfly below takes 32 sums a warp");
	static_assert(FB % ROUTE_FWD3_TOKENS == 0 && G <= NT / 32, "a warp a group's tail");
	extern __shared__ float4 s_w4[]; /* (E, D / 4), then the x rows (FB, D) bf16 */
	__shared__ float s_l[FB][ROUTE_EMAX];
	__shared__ float s_p[FB][ROUTE_EMAX];
	__shared__ int s_sel[G][ROUTE_FWD3_TOKENS * ROUTE_EMAX];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, D4 = D / 4, n4 = E * D4;
	int t0 = blockIdx.x * FB, nt = T - t0 < FB ? T - t0 : FB;
	float acc[TPW * ROUTE_EMAX];

	{
		unsigned sw = (unsigned)__cvta_generic_to_shared(s_w4);
		for (int i = tid; i < n4; i += NT)
			asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sw + 16 * i),
			             "l"(Wr + (size_t)i * 4));
		const uint16_t *xs = x + (size_t)t0 * D;
		unsigned sx = sw + 16 * n4;
		for (int i = tid; i < nt * D / 8; i += NT)
			asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sx + 16 * i),
			             "l"(xs + (size_t)i * 8));
		asm volatile("cp.async.commit_group;" ::: "memory");
	}
#pragma unroll
	for (int i = 0; i < TPW * ROUTE_EMAX; i++)
		acc[i] = 0;
	asm volatile("cp.async.wait_all;" ::: "memory");
	__syncthreads();
	{
		const uint2 *xr = (const uint2 *)(s_w4 + n4);
#pragma unroll
		for (int k = 0; k < NV; k++) {
			int c = lane + 32 * k;
			if (c < D4) {
				float4 a[TPW];
#pragma unroll
				for (int u = 0; u < TPW; u++) {
					int tl = w * TPW + u;
					uint2 q = tl < nt ? xr[(size_t)tl * D4 + c]
					                  : make_uint2(0u, 0u);
					a[u] = make_float4(__uint_as_float(q.x << 16),
					                   __uint_as_float(q.x & 0xffff0000u),
					                   __uint_as_float(q.y << 16),
					                   __uint_as_float(q.y & 0xffff0000u));
				}
#pragma unroll
				for (int e = 0; e < ROUTE_EMAX; e++)
					if (e < E) {
						float4 b = s_w4[e * D4 + c];
#pragma unroll
						for (int u = 0; u < TPW; u++)
							acc[u * ROUTE_EMAX + e] +=
							        a[u].x * b.x + a[u].y * b.y +
							        a[u].z * b.z + a[u].w * b.w;
					}
			}
		}
	}
	/* reduce-scatter: at level o a lane keeps the half of its values its
	 * bit o selects and adds the partner's copy (own + partner, as
	 * warp_sum); lane l ends with value l = token (l >> 3) of the warp,
	 * expert l & 7 */
	{
		float b16[16], b8[8], b4[4], b2[2], b1;
		rt_halve<32>(b16, acc, lane, 4);
		rt_halve<16>(b8, b16, lane, 3);
		rt_halve<8>(b4, b8, lane, 2);
		rt_halve<4>(b2, b4, lane, 1);
		rt_halve<2>(&b1, b2, lane, 0);
		s_l[w * TPW + (lane >> 3)][lane & 7] = b1;
	}
	__syncthreads();
	if (w >= G)
		return;
	/* warp w: fwd4's tail for group w (16 tokens; scratch slot vb) */
	int vb = blockIdx.x * G + w, g0 = w * ROUTE_FWD3_TOKENS, ng = nt - g0;
	if (ng <= 0)
		return;
	if (ng > ROUTE_FWD3_TOKENS)
		ng = ROUTE_FWD3_TOKENS;
	int nA = ng * K;
	if (lane < ng) {
		size_t t = (size_t)t0 + g0 + lane;
		float p[ROUTE_EMAX], gv[ROUTE_EMAX], S;
		int sl[ROUTE_EMAX];
		rt_softmax_topk(s_l[g0 + lane], E, K, p, sl, gv, S);
#pragma unroll
		for (int j = 0; j < ROUTE_EMAX; j++)
			if (j < K) {
				sel[t * K + j] = sl[j];
				gate[t * K + j] = gv[j] / S;
				s_sel[w][lane * K + j] = sl[j];
			}
#pragma unroll
		for (int e = 0; e < ROUTE_EMAX; e++)
			if (e < E) {
				prob[t * E + e] = p[e];
				s_p[g0 + lane][e] = p[e];
			}
	}
	__syncwarp();
	/* the ranks, counts and sums as k_rt_fwd4 */
	rt_rank_counts(s_sel[w], s_p + g0, nA, ng, rowof, ((size_t)t0 + g0) * K, hist, psum, E, nb,
	               vb, lane);
}

static int fwd3_launch(float *prob, int *sel, float *gate, int *rowof, float *scratch,
                       const float *x, const float *Wr, int T, int E, int K, int D)
{
	int nb = nblk(T, ROUTE_FWD3_TOKENS), nv = (D / 4 + 31) / 32;
	int *hist = (int *)scratch;
	float *psum = scratch + (size_t)nb * E;
	int al = ((uintptr_t)x | (uintptr_t)Wr) % 16 == 0;
#define FWD3(n)                                                                                    \
	case n:                                                                                    \
		k_rt_fwd3<n><<<nb, ROUTE_FWD3_THREADS, (size_t)E * D * 4, PST>>>(                  \
		        prob, sel, gate, rowof, hist, psum, x, Wr, T, E, K, D, nb, al);            \
		break
	switch (nv) {
		FWD3(1);
		FWD3(2);
		FWD3(3);
		FWD3(4);
		FWD3(5);
		FWD3(6);
		FWD3(7);
		FWD3(8);
	default: return swerve_error_set(SWERVE_EINVAL, "gpu route v3: D %d not supported", D);
	}
#undef FWD3
	LAUNCHED();
	return 0;
}

static int fwd4_launch(float *prob, int *sel, float *gate, int *rowof, float *scratch,
                       const float *x, const float *Wr, int T, int E, int K, int D)
{
	int nb = nblk(T, ROUTE_FWD3_TOKENS), nv = (D / 4 + 31) / 32;
	int *hist = (int *)scratch;
	float *psum = scratch + (size_t)nb * E;
	int al = ((uintptr_t)x | (uintptr_t)Wr) % 16 == 0;
#define FWD4(n)                                                                                    \
	case n:                                                                                    \
		k_rt_fwd4<n><<<nb, ROUTE_FWD3_THREADS, (size_t)E * D * 4, PST>>>(                  \
		        prob, sel, gate, rowof, hist, psum, x, Wr, T, E, K, D, nb, al);            \
		break
	switch (nv) {
		FWD4(1);
		FWD4(2);
		FWD4(3);
		FWD4(4);
		FWD4(5);
		FWD4(6);
		FWD4(7);
		FWD4(8);
	default: return swerve_error_set(SWERVE_EINVAL, "gpu route v4: D %d not supported", D);
	}
#undef FWD4
	LAUNCHED();
	return 0;
}

/* round 16 (POLICY_GPU_ACT16=resid): k_rt_fwd4 on the bf16 copy of the
 * normed input */
int policy_route_fwd_b16(float *prob, int *sel, float *gate, int *rowof, float *scratch,
                         const uint16_t *x, const float *Wr, int T, int E, int K, int D)
{
	int nb = nblk(T, ROUTE_FWD3_TOKENS), nv = (D / 4 + 31) / 32;
	int *hist = (int *)scratch;
	float *psum = scratch + (size_t)nb * E;
	int al = (uintptr_t)x % 8 == 0 && (uintptr_t)Wr % 16 == 0;
	int st = policy_route_rt16_mode();
	size_t sm = (size_t)E * D * 4;
	if (!policy_route_v2_supported(E, K, D))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu route v4 (bf16 input): E %d, K %d, D %d not supported",
		                        E, K, D);
	if (st < 0)
		return st;
	if (T < 1)
		return 0;
	/* round 17: the x rows staged by 16-byte cp.async where they can be;
	 * round 18 (opt-in): by k_rt_fwd5 (rt18: 64 tokens a block, rt18_32: 32) */
	st = D % 8 == 0 && ((uintptr_t)x | (uintptr_t)Wr) % 16 == 0 ? st : 0;
	if (st == 2 || st == 3) {
		int fb = st == 2 ? 64 : 32;
		sm += (size_t)fb * D * 2;
#define FWD5(n)                                                                                    \
	case n:                                                                                    \
		if (fb == 64) {                                                                    \
			static int attr_;                                                          \
			if (!attr_)                                                                \
				CK(cudaFuncSetAttribute(                                           \
				        k_rt_fwd5<n, 64>,                                          \
				        cudaFuncAttributeMaxDynamicSharedMemorySize, RT18_SMEM));  \
			attr_ = 1;                                                                 \
			k_rt_fwd5<n, 64><<<nblk(T, 64), 64 / ROUTE_FWD5_TPW * 32, sm, PST>>>(      \
			        prob, sel, gate, rowof, hist, psum, x, Wr, T, E, K, D, nb);        \
		} else {                                                                           \
			static int attr_;                                                          \
			if (!attr_)                                                                \
				CK(cudaFuncSetAttribute(                                           \
				        k_rt_fwd5<n, 32>,                                          \
				        cudaFuncAttributeMaxDynamicSharedMemorySize, RT18_SMEM));  \
			attr_ = 1;                                                                 \
			k_rt_fwd5<n, 32><<<nblk(T, 32), 32 / ROUTE_FWD5_TPW * 32, sm, PST>>>(      \
			        prob, sel, gate, rowof, hist, psum, x, Wr, T, E, K, D, nb);        \
		}                                                                                  \
		break
		switch (nv) {
			FWD5(1);
			FWD5(2);
			FWD5(3);
			FWD5(4);
			FWD5(5);
			FWD5(6);
			FWD5(7);
			FWD5(8);
		default:
			return swerve_error_set(SWERVE_EINVAL, "gpu route v4: D %d not supported",
			                        D);
		}
#undef FWD5
		LAUNCHED();
		return 0;
	}
	if (st)
		sm += (size_t)ROUTE_FWD3_TOKENS * D * 2;
#define FWD4B(n)                                                                                   \
	case n:                                                                                    \
		if (st) {                                                                          \
			static int attr_;                                                          \
			if (!attr_)                                                                \
				CK(cudaFuncSetAttribute(                                           \
				        k_rt_fwd4<n, uint16_t, true>,                              \
				        cudaFuncAttributeMaxDynamicSharedMemorySize, RT16_SMEM));  \
			attr_ = 1;                                                                 \
			CK(pdl::launch(k_rt_fwd4<n, uint16_t, true>, dim3(nb),                     \
			               dim3(ROUTE_FWD3_THREADS), sm, PST, prob, sel, gate, rowof,  \
			               hist, psum, x, Wr, T, E, K, D, nb, al));                    \
		} else                                                                             \
			CK(pdl::launch(k_rt_fwd4<n, uint16_t>, dim3(nb), dim3(ROUTE_FWD3_THREADS), \
			               sm, PST, prob, sel, gate, rowof, hist, psum, x, Wr, T, E,   \
			               K, D, nb, al));                                             \
		break
	switch (nv) {
		FWD4B(1);
		FWD4B(2);
		FWD4B(3);
		FWD4B(4);
		FWD4B(5);
		FWD4B(6);
		FWD4B(7);
		FWD4B(8);
	default: return swerve_error_set(SWERVE_EINVAL, "gpu route v4: D %d not supported", D);
	}
#undef FWD4B
	LAUNCHED();
	return 0;
}

int policy_route_fwd_norm_supported(int E, int K, int D)
{
	return policy_route_v2_supported(E, K, D);
}

int policy_route_fwd_norm_b16(float *prob, int *sel, float *gate, int *rowof, float *scratch,
                              uint16_t *y, float *rstd, const uint16_t *a, const float *nw,
                              const float *Wr, int T, int E, int K, int D, float eps)
{
	int nb = nblk(T, ROUTE_FWD3_TOKENS), nv = (D / 4 + 31) / 32;
	int *hist = (int *)scratch;
	float *psum = scratch + (size_t)nb * E;
	size_t sm = (size_t)E * D * 4;
	if (!policy_route_fwd_norm_supported(E, K, D))
		return swerve_error_set(
		        SWERVE_EINVAL, "gpu norm + route: E %d, K %d, D %d not supported", E, K, D);
	if (!y || !rstd || !a || !nw)
		return swerve_error_set(SWERVE_EINVAL, "gpu norm + route: a missing buffer");
	if (((uintptr_t)a | (uintptr_t)y | (uintptr_t)Wr) & 15)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu norm + route: a row or the router weight is not 16-byte "
		        "aligned");
	if (T < 1)
		return 0;
#define FWDN(n)                                                                                    \
	case n:                                                                                    \
		CK(pdl::launch(k_rt_fwd_norm<n>, dim3(nb), dim3(ROUTE_FWD3_THREADS), sm, PST,      \
		               prob, sel, gate, rowof, hist, psum, y, rstd, a, nw, Wr, T, E, K, D, \
		               nb, eps));                                                          \
		break
	switch (nv) {
		FWDN(1);
		FWDN(2);
		FWDN(3);
		FWDN(4);
		FWDN(5);
		FWDN(6);
		FWDN(7);
		FWDN(8);
	default: return swerve_error_set(SWERVE_EINVAL, "gpu norm + route: D %d not supported", D);
	}
#undef FWDN
	LAUNCHED();
	return 0;
}

int policy_route_fwd(float *prob, int *sel, float *gate, int *rowof, float *scratch, const float *x,
                     const float *Wr, int T, int E, int K, int D, int v2)
{
	int nb = nblk(T, v2 ? ROUTE_FWD2_TOKENS : ROUTE_FWD_TOKENS);
	if (!(v2 ? policy_route_v2_supported(E, K, D) : policy_route_supported(E, K, D)))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu route%s: E %d, K %d, D %d not supported",
		                        v2 == 3   ? " v4"
		                        : v2 == 2 ? " v3"
		                        : v2      ? " v2"
		                                  : "",
		                        E, K, D);
	if (T < 1)
		return 0;
	if (v2 == 2)
		return fwd3_launch(prob, sel, gate, rowof, scratch, x, Wr, T, E, K, D);
	if (v2 == 3)
		return fwd4_launch(prob, sel, gate, rowof, scratch, x, Wr, T, E, K, D);
	if (v2) {
		k_rt_fwd2<<<nb, ROUTE_THREADS, (size_t)E * D * 4, PST>>>(
		        prob, sel, gate, rowof, (int *)scratch, scratch + (size_t)nb * E, x, Wr, T,
		        E, K, D);
		LAUNCHED();
		return 0;
	}
	k_rt_fwd<<<nb, ROUTE_THREADS, (size_t)E * D * 4, PST>>>(
	        prob, sel, gate, rowof, (int *)scratch, scratch + (size_t)nb * E, x, Wr, T, E, K,
	        D);
	LAUNCHED();
	return 0;
}

int policy_route_sort(int *perm, int *rowof, int *offs, float *auxc, double *aux,
                      const float *scratch, const int *sel, int T, int E, int K, int Rp,
                      int compact, int rnd, double coef, int v2)
{
	int nb = nblk(T, v2 ? ROUTE_FWD2_TOKENS : ROUTE_FWD_TOKENS);
	if (T < 1)
		return 0;
	if (rnd < 1)
		return swerve_error_set(SWERVE_EINVAL, "gpu route: capacity round %d < 1", rnd);
	if (v2 >= 2) { /* v3 and v4 */
		int gt = ROUTE_FWD3_TOKENS;
		nb = nblk(T, gt);
		CK(pdl::launch(k_rt_sort3, dim3(nblk(T, ROUTE_SORT3_FB * gt)), dim3(ROUTE_THREADS),
		               0, PST, perm, rowof, offs, auxc, aux, (const int *)scratch,
		               scratch + (size_t)nb * E, sel, T, E, K, Rp, compact, rnd, coef, nb,
		               gt));
		LAUNCHED();
		return 0;
	}
	if (v2) {
		k_rt_sort2<<<nb, ROUTE_THREADS, 0, PST>>>(
		        perm, rowof, offs, auxc, aux, (const int *)scratch,
		        scratch + (size_t)nb * E, sel, T, E, K, Rp, compact, rnd, coef);
		LAUNCHED();
		return 0;
	}
	k_rt_sort<<<nb, ROUTE_THREADS, 0, PST>>>(perm, rowof, offs, auxc, aux, (const int *)scratch,
	                                         scratch + (size_t)nb * E, sel, T, E, K, Rp,
	                                         compact, rnd, coef);
	LAUNCHED();
	return 0;
}

int policy_route_bwd(float *dn, float *scratch, const float *x, const float *Wr, const float *prob,
                     const int *sel, const float *gate, const float *dgate, const float *auxc,
                     int T, int E, int K, int D, int v2)
{
	if (!policy_route_supported(E, K, D))
		return swerve_error_set(SWERVE_EINVAL, "gpu route: E %d, K %d, D %d not supported",
		                        E, K, D);
	if (T < 1)
		return 0;
	if (v2) {
		k_rt_bwd2<<<nblk(T, ROUTE_BWD_TOKENS), ROUTE_THREADS, 0, PST>>>(
		        dn, scratch, x, Wr, prob, sel, gate, dgate, auxc, T, E, K, D);
		LAUNCHED();
		return 0;
	}
	k_rt_bwd<<<nblk(T, ROUTE_BWD_TOKENS), ROUTE_THREADS, 0, PST>>>(
	        dn, scratch, x, Wr, prob, sel, gate, dgate, auxc, T, E, K, D);
	LAUNCHED();
	return 0;
}

int policy_route_bwd_slots(float *dn, float *scratch, const float *slots, const float *x,
                           const float *Wr, const float *prob, const int *sel, const float *gate,
                           const float *dgate, const float *auxc, int T, int E, int K, int D)
{
	int nb = nblk(T, ROUTE_BWD_TOKENS);
	if (!policy_route_supported(E, K, D))
		return swerve_error_set(SWERVE_EINVAL, "gpu route: E %d, K %d, D %d not supported",
		                        E, K, D);
	if (T < 1)
		return 0;
	if (K == 1)
		k_rt_bwd3<1><<<nb, ROUTE_THREADS, 0, PST>>>(dn, scratch, slots, x, Wr, prob, sel,
		                                            gate, dgate, auxc, T, E, K, D);
	else if (K == 2)
		k_rt_bwd3<2><<<nb, ROUTE_THREADS, 0, PST>>>(dn, scratch, slots, x, Wr, prob, sel,
		                                            gate, dgate, auxc, T, E, K, D);
	else
		k_rt_bwd3<0><<<nb, ROUTE_THREADS, 0, PST>>>(dn, scratch, slots, x, Wr, prob, sel,
		                                            gate, dgate, auxc, T, E, K, D);
	LAUNCHED();
	return 0;
}

/* round 16 (POLICY_GPU_ACT16): the slots in bf16, and the router's input x
 * in bf16 where x16 */
int policy_route_bwd_norm_supported(int E, int K, int D, const void *slots, const void *x)
{
	const int st = policy_route_rt16_mode();
	return st > 0 && policy_route_supported(E, K, D) && (K == 1 || K == 2) && D % 8 == 0 &&
	       ((uintptr_t)x | (uintptr_t)slots) % 16 == 0;
}

int policy_route_bwd_slots_b16n(float *scratch, const uint16_t *slots, const void *x, int x16,
                                const float *Wr, const float *prob, const int *sel,
                                const float *gate, const float *dgate, const float *auxc, int T,
                                int E, int K, int D, const struct policy_route_nb *nb)
{
	int nb_ = nblk(T, ROUTE_BWD_TOKENS);
	if (!policy_route_bwd_norm_supported(E, K, D, slots, x))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu route: the fused norm backward takes K 1 or 2, D %% 8 "
		                        "== 0 and the staged rows (E %d, K %d, D %d)",
		                        E, K, D);
	if (T < 1)
		return 0;
	/* the staging ring, then dn's RT_NB rows and the norm weight's partials */
	size_t sm = (size_t)RT16_NS * ROUTE_BATCH3 * D * ((x16 ? 2 : 4) + 2 * K) +
	            (size_t)2 * RT_NB * D * sizeof(float);
#define BWD3N(KT, TX)                                                                              \
	do {                                                                                       \
		static size_t attr_;                                                               \
		if (attr_ < sm)                                                                    \
			CK(cudaFuncSetAttribute(k_rt_bwd3n<KT, TX>,                                \
			                        cudaFuncAttributeMaxDynamicSharedMemorySize,       \
			                        (int)sm));                                         \
		if (attr_ < sm)                                                                    \
			attr_ = sm;                                                                \
		CK(pdl::launch(k_rt_bwd3n<KT, TX>, dim3(nb_), dim3(ROUTE_THREADS), sm, PST,        \
		               scratch, slots, (const TX *)x, Wr, prob, sel, gate, dgate, auxc, T, \
		               E, K, D, *nb));                                                     \
	} while (0)
	if (x16 && K == 1)
		BWD3N(1, uint16_t);
	else if (x16)
		BWD3N(2, uint16_t);
	else if (K == 1)
		BWD3N(1, float);
	else
		BWD3N(2, float);
#undef BWD3N
	LAUNCHED();
	return 0;
}

int policy_route_bwd_slots_b16(float *dn, float *scratch, const uint16_t *slots, const void *x,
                               int x16, const float *Wr, const float *prob, const int *sel,
                               const float *gate, const float *dgate, const float *auxc, int T,
                               int E, int K, int D)
{
	return policy_route_bwd_slots_b16o(dn, 0, scratch, slots, x, x16, Wr, prob, sel, gate,
	                                   dgate, auxc, T, E, K, D);
}

/* round 25 (POLICY_GPU_DN16): dn in bf16 where dn16 */
int policy_route_bwd_slots_b16o(void *dn, int dn16, float *scratch, const uint16_t *slots,
                                const void *x, int x16, const float *Wr, const float *prob,
                                const int *sel, const float *gate, const float *dgate,
                                const float *auxc, int T, int E, int K, int D)
{
	int nb = nblk(T, ROUTE_BWD_TOKENS), st = policy_route_rt16_mode();
	if (!policy_route_supported(E, K, D))
		return swerve_error_set(SWERVE_EINVAL, "gpu route: E %d, K %d, D %d not supported",
		                        E, K, D);
	if (st < 0)
		return st;
	if (T < 1)
		return 0;
	/* round 17: x and the slots staged by 16-byte cp.async where they can
	 * be (K 1 or 2) */
	if (st && (K == 1 || K == 2) && D % 8 == 0 && ((uintptr_t)x | (uintptr_t)slots) % 16 == 0) {
		size_t sm = (size_t)RT16_NS * ROUTE_BATCH3 * D * ((x16 ? 2 : 4) + 2 * K);
#define BWD3S(KT, TX, TN)                                                                          \
	do {                                                                                       \
		static int attr_;                                                                  \
		if (!attr_)                                                                        \
			CK(cudaFuncSetAttribute(k_rt_bwd3<KT, uint16_t, TX, true, TN>,             \
			                        cudaFuncAttributeMaxDynamicSharedMemorySize,       \
			                        RT16_SMEM));                                       \
		attr_ = 1;                                                                         \
		CK(pdl::launch(k_rt_bwd3<KT, uint16_t, TX, true, TN>, dim3(nb),                    \
		               dim3(ROUTE_THREADS), sm, PST, (TN *)dn, scratch, slots,             \
		               (const TX *)x, Wr, prob, sel, gate, dgate, auxc, T, E, K, D));      \
	} while (0)
		if (dn16 && x16 && K == 1)
			BWD3S(1, uint16_t, uint16_t);
		else if (dn16 && x16)
			BWD3S(2, uint16_t, uint16_t);
		else if (dn16 && K == 1)
			BWD3S(1, float, uint16_t);
		else if (dn16)
			BWD3S(2, float, uint16_t);
		else if (x16 && K == 1)
			BWD3S(1, uint16_t, float);
		else if (x16)
			BWD3S(2, uint16_t, float);
		else if (K == 1)
			BWD3S(1, float, float);
		else
			BWD3S(2, float, float);
#undef BWD3S
		LAUNCHED();
		return 0;
	}
	if (dn16) /* round 25: the staged kernels only (K 1 or 2, aligned rows, RT16 on) */
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu route: dn in bf16 needs the staged route backward (K 1 "
		        "or 2, D %% 8 == 0, 16-byte rows; K %d, D %d)",
		        K, D);
#define BWD3B(KT, TX)                                                                              \
	CK(pdl::launch(k_rt_bwd3<KT, uint16_t, TX>, dim3(nb), dim3(ROUTE_THREADS), 0, PST,         \
	               (float *)dn, scratch, slots, (const TX *)x, Wr, prob, sel, gate, dgate,     \
	               auxc, T, E, K, D))
	if (x16) {
		if (K == 1)
			BWD3B(1, uint16_t);
		else if (K == 2)
			BWD3B(2, uint16_t);
		else
			BWD3B(0, uint16_t);
	} else {
		if (K == 1)
			BWD3B(1, float);
		else if (K == 2)
			BWD3B(2, float);
		else
			BWD3B(0, float);
	}
#undef BWD3B
	LAUNCHED();
	return 0;
}

int policy_route_dw(float *dW, const float *scratch, int T, int E, int D)
{
	int n = E * D;
	if (T < 1)
		return 0;
	CK(pdl::launch(k_rt_dw, dim3((n + 31) / 32), dim3(ROUTE_THREADS), 0, PST, dW, scratch,
	               nblk(T, ROUTE_BWD_TOKENS), n));
	LAUNCHED();
	return 0;
}
