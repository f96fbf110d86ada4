/* gpu_route_r6.cuh - round 6's MoE routing kernels (internal to policy/;
 * included by gpu.cu for POLICY_GPU_ROUTE=old, and by tests/bench/gpu_route
 * as its in-run baseline): softmax and top-k per token (k_route), the
 * one-block stable counting sort with the balance loss (k_route_sort) and
 * the route backward (k_route_bwd). Static kernels: each includer has its
 * own. */
#ifndef SWERVE_POLICY_GPU_ROUTE_R6_CUH
#define SWERVE_POLICY_GPU_ROUTE_R6_CUH

#include "policy/gpu_dev.cuh"

#include <stdint.h>

/* router: softmax over E, top-k (ties to the lower index), renormalised gates */
__global__ static void k_route(float *prob, int *sel, float *gate, const float *logit, int T, int E,
                               int K)
{
	int t = blockIdx.x * blockDim.x + threadIdx.x;
	if (t >= T)
		return;
	float *p = prob + (size_t)t * E, mx = -INFINITY, z = 0, S = 0;
	const float *l = logit + (size_t)t * E;
	for (int e = 0; e < E; e++)
		mx = fmaxf(mx, l[e]);
	for (int e = 0; e < E; e++)
		z += (p[e] = expf(l[e] - mx));
	for (int e = 0; e < E; e++)
		p[e] /= z;
	for (int j = 0; j < K; j++) {
		int best = -1;
		for (int e = 0; e < E; e++) {
			int taken = 0;
			for (int i = 0; i < j; i++)
				taken |= sel[(size_t)t * K + i] == e;
			if (!taken && (best < 0 || p[e] > p[best]))
				best = e;
		}
		sel[(size_t)t * K + j] = best;
		S += p[best];
	}
	for (int j = 0; j < K; j++)
		gate[(size_t)t * K + j] = p[sel[(size_t)t * K + j]] / S;
}

/* Routing on the device, one block of 1024 threads: a stable counting sort
 * of the R = T K assignments by expert (rowof[i] = row of assignment i,
 * perm[row] = i, -1 on padding rows), the segment offsets and capacity to
 * offs (E + 2: offs[0..E], then the capacity, 0 for compact segments), the
 * balance loss to *aux and its gradient per token to auxc. Segments are
 * padded to cap = max count rounded up to rnd unless compact or E cap > Rp. */
#define SORT_THREADS 1024
__global__ static void __launch_bounds__(SORT_THREADS)
        k_route_sort(int *perm, int *rowof, int *offs, float *auxc, double *aux, const int *sel,
                     const float *prob, int T, int E, int K, int Rp, int compact, int rnd,
                     double coef)
{
	__shared__ int wcnt[SORT_THREADS / 32][64];
	__shared__ int cnt[64], off[65], s_cap;
	__shared__ double pm[64];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, R = T * K;
	if (tid < 64) {
		cnt[tid] = 0;
		pm[tid] = 0;
	}
	for (int base = 0; base < R; base += SORT_THREADS) {
		int i = base + tid, e = i < R ? sel[i] : -1, rk;
		unsigned peers;
		for (int j = tid; j < SORT_THREADS / 32 * 64; j += SORT_THREADS)
			wcnt[j / 64][j % 64] = 0;
		__syncthreads();
		peers = __match_any_sync(0xffffffffu, e);
		rk = __popc(peers & ((1u << lane) - 1u)); /* rank among the warp's equals */
		if (e >= 0 && rk == 0)
			wcnt[w][e] = __popc(peers);
		__syncthreads();
		if (tid < E) { /* exclusive prefix over the warps, after earlier chunks */
			int run = cnt[tid];
			for (int v = 0; v < SORT_THREADS / 32; v++) {
				int c = wcnt[v][tid];
				wcnt[v][tid] = run;
				run += c;
			}
			cnt[tid] = run;
		}
		__syncthreads();
		if (e >= 0)
			rowof[i] = wcnt[w][e] + rk; /* rank within expert e */
		__syncthreads();
	}
	if (tid == 0) {
		int mx = 0, cap;
		for (int e = 0; e < E; e++)
			mx = cnt[e] > mx ? cnt[e] : mx;
		cap = (mx + rnd - 1) / rnd * rnd;
		if (compact || (long long)cap * E > Rp)
			cap = 0;
		off[0] = 0;
		for (int e = 0; e < E; e++)
			off[e + 1] = off[e] + (cap ? cap : cnt[e]);
		for (int e = 0; e <= E; e++)
			offs[e] = off[e];
		offs[E + 1] = cap;
		s_cap = cap;
	}
	__syncthreads();
	if (s_cap)
		for (int r = tid; r < off[E]; r += SORT_THREADS)
			perm[r] = -1;
	__syncthreads();
	for (int i = tid; i < R; i += SORT_THREADS) {
		int r = off[sel[i]] + rowof[i];
		rowof[i] = r;
		perm[r] = i;
	}
	/* balance loss: coef E sum_e f_e P_e, f_e = count / R, P_e = mean prob */
	for (int e = 0; e < E; e++) {
		double sum = 0;
		for (int t = tid; t < T; t += SORT_THREADS)
			sum += prob[(size_t)t * E + e];
		for (int o = 16; o > 0; o >>= 1)
			sum += __shfl_xor_sync(0xffffffffu, sum, o);
		if (lane == 0)
			atomicAdd(&pm[e], sum);
	}
	__syncthreads();
	if (tid == 0) {
		double a = 0;
		for (int e = 0; e < E; e++) {
			double f = (double)cnt[e] / R;
			a += f * pm[e] / T;
			auxc[e] = (float)(coef * E * f / T);
		}
		*aux = a * coef * E;
	}
}

/* router backward per token: dp from the gates and the balance loss, then
 * through the softmax. auxc[e] = aux_scale * coef * E * f_e / T. */
__global__ static void k_route_bwd(float *dlogit, const float *prob, const int *sel,
                                   const float *gate, const float *dgate, const float *auxc, int T,
                                   int E, int K)
{
	int t = blockIdx.x * blockDim.x + threadIdx.x;
	if (t >= T)
		return;
	const float *p = prob + (size_t)t * E;
	float S = 0, sdg = 0, sp = 0;
	float dp[64];
	for (int j = 0; j < K; j++) {
		S += p[sel[(size_t)t * K + j]];
		sdg += dgate[(size_t)t * K + j] * gate[(size_t)t * K + j];
	}
	for (int e = 0; e < E; e++)
		dp[e] = auxc[e];
	for (int j = 0; j < K; j++)
		dp[sel[(size_t)t * K + j]] += (dgate[(size_t)t * K + j] - sdg) / S;
	for (int e = 0; e < E; e++)
		sp += p[e] * dp[e];
	for (int e = 0; e < E; e++)
		dlogit[(size_t)t * E + e] = p[e] * (dp[e] - sp);
}

#endif
