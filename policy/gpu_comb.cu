/* gpu_comb.cu - the grouped MoE's combine backward and slot sum,
 * token-major (see gpu_comb.h). Round 10, issue 10.
 *
 * ncu of one training step (H100, 2026-11-27, T 8192, D 768, K 2, R 16384
 * rows a layer): k_mg_combine_bwd 59 us (16384 blocks of 128, a block a
 * sorted row: reads dy[token] and the fp32 yp row, writes the bf16 dyp row
 * and dgate; each token's dy is read K = 2 times, in row order, i.e. from
 * scattered tokens), k_mg_scatter 38 us (a thread an element, 64-bit
 * div/mod each). Bytes at least: combine_bwd dy 25.2 MB + yp 50.3 + dyp
 * 25.2 = 100.7 MB = 34 us at 3 TB/s; scatter dxp 50.3 + dx 25.2 = 75.5 MB =
 * 25 us. Measured (H100, 2026-11-27, tests/bench/gpu_comb, L2 flushed
 * before each launch): combine bwd 67.4 -> 41.7 us (under ncu 34.9 us, DRAM
 * at 79% of its peak), scatter 45.1 -> 30.5 us. */
#include "policy/gpu_comb.h"
#include "policy/gpu_dev.cuh"
#include "policy/gpu_route.h"
#include "policy/gpu_util.h"

#include <stdint.h>

#define CB_THREADS 128 /* k_mg_combine_bwd's block: its arithmetic order */
#define CB_COLS    (COMB_DMAX / CB_THREADS)
#define CB_KMAX    8

int policy_moe_comb_mode(void)
{
	static const char *const names[] = {"old", "new"};
	return policy_env_choice("POLICY_GPU_MOE_COMB", names, 2, 1);
}

int policy_moe_comb_supported(int D)
{
	return D >= 1 && D <= COMB_DMAX;
}

/* a block per token; KT slots' yp rows loaded at once (KT = K when 1 or 2,
 * else 1: K at run time, a slot at a time). ST (round 17, bf16 yp, KT = K):
 * the token's K yp rows (contiguous) copied to shared memory by 16-byte
 * cp.async first, each thread then reading its own columns from there (the
 * same values, sums and order as the 2-byte loads) */
template <int KT, typename TP, bool ST = false, bool SO = false, typename TY = float>
__device__ __forceinline__ static void cb_bwd(uint16_t *__restrict__ dyp, float *__restrict__ dgate,
                                              const TY *__restrict__ dy, const TP *__restrict__ yp,
                                              const float *__restrict__ gate,
                                              const int *__restrict__ rowof, int K, int D)
{
	__shared__ float red[CB_KMAX][CB_THREADS / 32];
	int t = blockIdx.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
	float v[CB_COLS];

	if (ST) {
		extern __shared__ float4 s_y4[];
		const char *src = (const char *)(yp + (size_t)t * KT * D);
		unsigned d = (unsigned)__cvta_generic_to_shared(s_y4);
		for (int i = tid; i < KT * D / 8; i += CB_THREADS)
			asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d + 16u * i),
			             "l"(src + (size_t)16 * i));
		if constexpr (sizeof(TY) == 2) {
			/* round 19 (ACT16=all): dy's bf16 row after the K yp rows */
			const char *sy = (const char *)(dy + (size_t)t * D);
			for (int i = tid; i < D / 8; i += CB_THREADS)
				asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(
				                     d + 16u * (KT * D / 8 + i)),
				             "l"(sy + (size_t)16 * i));
		}
		asm volatile("cp.async.commit_group;" ::: "memory");
	}
	if constexpr (sizeof(TY) == 2 && ST) {
		extern __shared__ float4 s_y4[];
		asm volatile("cp.async.wait_all;" ::: "memory");
		__syncthreads();
#pragma unroll
		for (int i = 0; i < CB_COLS; i++) {
			int c = tid + i * CB_THREADS;
			v[i] = c < D ? ldf(((const uint16_t *)s_y4)[KT * D + c]) : 0.0f;
		}
	} else {
#pragma unroll
		for (int i = 0; i < CB_COLS; i++) {
			int c = tid + i * CB_THREADS;
			v[i] = c < D ? ldf(dy[(size_t)t * D + c]) : 0.0f;
		}
	}
	for (int j0 = 0; j0 < K; j0 += KT) {
		float y[KT][CB_COLS], s[KT];
		size_t row[KT];
		float g[KT];
		if (ST) {
			asm volatile("cp.async.wait_all;" ::: "memory");
			__syncthreads();
		}
#pragma unroll
		for (int u = 0; u < KT; u++) {
			size_t tj = (size_t)t * K + j0 + u;
			int ok = j0 + u < K;
			row[u] = ok ? (size_t)rowof[tj] : 0;
			g[u] = ok ? gate[tj] : 0.0f;
#pragma unroll
			for (int i = 0; i < CB_COLS; i++) {
				int c = tid + i * CB_THREADS;
				if (ST) {
					extern __shared__ float4 s_y4[];
					y[u][i] = ok && c < D ? ldf(((const TP *)s_y4)[u * D + c])
					                      : 0.0f;
				} else
					y[u][i] = ok && c < D ? ldf(yp[tj * D + c]) : 0.0f;
			}
		}
#pragma unroll
		for (int u = 0; u < KT; u++) {
			if (j0 + u >= K)
				break;
			s[u] = 0;
#pragma unroll
			for (int i = 0; i < CB_COLS; i++) {
				int c = tid + i * CB_THREADS;
				if (c < D) {
					if (SO) { /* round 18: the row staged */
						extern __shared__ float4 s_y4[];
						((uint16_t *)s_y4)[(KT + u) * D + c] =
						        f2bf(g[u] * v[i]);
					} else
						dyp[row[u] * D + c] = f2bf(g[u] * v[i]);
					s[u] += v[i] * y[u][i];
				}
			}
			for (int o = 16; o > 0; o >>= 1)
				s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
			if (lane == 0)
				red[j0 + u][w] = s[u];
		}
	}
	__syncthreads();
	if (SO) { /* round 18: the K staged dyp rows by 16-byte stores */
		extern __shared__ float4 s_y4[];
		const uint4 *so = (const uint4 *)((const uint16_t *)s_y4 + KT * D);
		int D8 = D / 8;
		for (int i = tid; i < KT * D8; i += CB_THREADS) {
			int u = i >= D8, q = i - u * D8;
			size_t r = (size_t)rowof[(size_t)t * K + u];
			*(uint4 *)(dyp + r * D + 8 * q) = so[i];
		}
	}
	if (tid < K)
		dgate[(size_t)t * K + tid] = red[tid][0] + red[tid][1] + red[tid][2] + red[tid][3];
}

template <int KT>
__global__ static void __launch_bounds__(CB_THREADS)
        k_cb_bwd(uint16_t *__restrict__ dyp, float *__restrict__ dgate,
                 const float *__restrict__ dy, const float *__restrict__ yp,
                 const float *__restrict__ gate, const int *__restrict__ rowof, int K, int D)
{
	cb_bwd<KT, float>(dyp, dgate, dy, yp, gate, rowof, K, D);
}

/* round 16 (POLICY_GPU_ACT16=slots): the slots yp in bf16; ST: round 17's
 * staged rows (KT = K, D % 8 == 0, yp 16-byte aligned) */
template <int KT, bool ST = false, bool SO = false>
__global__ static void __launch_bounds__(CB_THREADS)
        k_cb_bwd16(uint16_t *__restrict__ dyp, float *__restrict__ dgate,
                   const float *__restrict__ dy, const uint16_t *__restrict__ yp,
                   const float *__restrict__ gate, const int *__restrict__ rowof, int K, int D)
{
	static_assert(!SO || (ST && KT <= 2), "SO: the staged form, KT = K <= 2");
	cb_bwd<KT, uint16_t, ST, SO>(dyp, dgate, dy, yp, gate, rowof, K, D);
}

/* round 19 (POLICY_GPU_ACT16=all): dy (the residual gradient) in bf16 as
 * well as the slots; ST: dy's row staged with the yp rows (cp.async) */
template <int KT, bool ST>
__global__ static void __launch_bounds__(CB_THREADS)
        k_cb_bwd16g(uint16_t *__restrict__ dyp, float *__restrict__ dgate,
                    const uint16_t *__restrict__ dy, const uint16_t *__restrict__ yp,
                    const float *__restrict__ gate, const int *__restrict__ rowof, int K, int D)
{
	cb_bwd<KT, uint16_t, ST, false, uint16_t>(dyp, dgate, dy, yp, gate, rowof, K, D);
}

int policy_moe_combine_bwd2(uint16_t *dyp, float *dgate, const float *dy, const float *yp,
                            const float *gate, const int *rowof, int T, int K, int D)
{
	if (!policy_moe_comb_supported(D) || K < 1 || K > CB_KMAX)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe combine bwd2: D %d (at most %d), K %d (1..%d)", D,
		                        COMB_DMAX, K, CB_KMAX);
	if (T < 1)
		return 0;
	if (K == 2)
		k_cb_bwd<2><<<T, CB_THREADS, 0, PST>>>(dyp, dgate, dy, yp, gate, rowof, K, D);
	else
		k_cb_bwd<1><<<T, CB_THREADS, 0, PST>>>(dyp, dgate, dy, yp, gate, rowof, K, D);
	LAUNCHED();
	return 0;
}

int policy_moe_combine_bwd2_b16(uint16_t *dyp, float *dgate, const float *dy, const uint16_t *yp,
                                const float *gate, const int *rowof, int T, int K, int D)
{
	int st = policy_route_rt16_mode(); /* round 17: POLICY_GPU_RT16 */
	if (!policy_moe_comb_supported(D) || K < 1 || K > CB_KMAX)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu moe combine bwd2 (bf16 slots): D %d (at most %d), K %d "
		        "(1..%d)",
		        D, COMB_DMAX, K, CB_KMAX);
	if (st < 0)
		return st;
	if (T < 1)
		return 0;
	/* round 18 (POLICY_GPU_RT16=rt18 / rt18_32, opt-in): the dyp rows staged
	 * for 16-byte stores; same bits, measured slower (H100, 2026-11-27,
	 * gpu_act16: 32.5 -> 35.9 us: the extra barrier and shared round trip
	 * cost more than the 2-byte stores, already 64 contiguous bytes a warp) */
	if ((st == 2 || st == 3) && K <= 2 && D % 8 == 0 &&
	    ((uintptr_t)yp | (uintptr_t)dyp) % 16 == 0) {
		if (K == 2)
			k_cb_bwd16<2, true, true><<<T, CB_THREADS, (size_t)4 * D * 2, PST>>>(
			        dyp, dgate, dy, yp, gate, rowof, K, D);
		else
			k_cb_bwd16<1, true, true><<<T, CB_THREADS, (size_t)2 * D * 2, PST>>>(
			        dyp, dgate, dy, yp, gate, rowof, K, D);
	} else if (st && K <= 2 && D % 8 == 0 && (uintptr_t)yp % 16 == 0) {
		if (K == 2)
			k_cb_bwd16<2, true><<<T, CB_THREADS, (size_t)2 * D * 2, PST>>>(
			        dyp, dgate, dy, yp, gate, rowof, K, D);
		else
			k_cb_bwd16<1, true><<<T, CB_THREADS, (size_t)D * 2, PST>>>(
			        dyp, dgate, dy, yp, gate, rowof, K, D);
	} else if (K == 2)
		k_cb_bwd16<2><<<T, CB_THREADS, 0, PST>>>(dyp, dgate, dy, yp, gate, rowof, K, D);
	else
		k_cb_bwd16<1><<<T, CB_THREADS, 0, PST>>>(dyp, dgate, dy, yp, gate, rowof, K, D);
	LAUNCHED();
	return 0;
}

int policy_moe_combine_bwd2_b16g(uint16_t *dyp, float *dgate, const uint16_t *dy,
                                 const uint16_t *yp, const float *gate, const int *rowof, int T,
                                 int K, int D)
{
	if (!policy_moe_comb_supported(D) || K < 1 || K > CB_KMAX)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu moe combine bwd2 (bf16 dy and slots): D %d (at most %d), K %d "
		        "(1..%d)",
		        D, COMB_DMAX, K, CB_KMAX);
	if (T < 1)
		return 0;
	if (K <= 2 && D % 8 == 0 && ((uintptr_t)yp | (uintptr_t)dy) % 16 == 0) {
		if (K == 2)
			k_cb_bwd16g<2, true><<<T, CB_THREADS, (size_t)3 * D * 2, PST>>>(
			        dyp, dgate, dy, yp, gate, rowof, K, D);
		else
			k_cb_bwd16g<1, true><<<T, CB_THREADS, (size_t)2 * D * 2, PST>>>(
			        dyp, dgate, dy, yp, gate, rowof, K, D);
	} else if (K == 2)
		k_cb_bwd16g<2, false>
		        <<<T, CB_THREADS, 0, PST>>>(dyp, dgate, dy, yp, gate, rowof, K, D);
	else
		k_cb_bwd16g<1, false>
		        <<<T, CB_THREADS, 0, PST>>>(dyp, dgate, dy, yp, gate, rowof, K, D);
	LAUNCHED();
	return 0;
}

/* dx[t, 4 c ..] (+)= sum_j dxp[t K + j, 4 c ..]: a float4 a thread */
__global__ static void k_cb_scatter(float4 *__restrict__ dx, const float4 *__restrict__ dxp,
                                    unsigned T, int K, unsigned D4, int beta)
{
	unsigned i = blockIdx.x * blockDim.x + threadIdx.x, t = i / D4, c = i - t * D4;
	if (t >= T)
		return;
	float4 s = beta ? dx[i] : make_float4(0.f, 0.f, 0.f, 0.f);
	const float4 *p = dxp + (size_t)t * K * D4 + c;
	if (K == 2) { /* both loads in flight */
		float4 a = p[0], b = p[D4];
		s.x += a.x, s.y += a.y, s.z += a.z, s.w += a.w;
		s.x += b.x, s.y += b.y, s.z += b.z, s.w += b.w;
	} else
		for (int j = 0; j < K; j++) {
			float4 a = p[(size_t)j * D4];
			s.x += a.x, s.y += a.y, s.z += a.z, s.w += a.w;
		}
	dx[i] = s;
}

/* the same sums a float a thread (D % 4 != 0 or a buffer not 16-byte
 * aligned) */
__global__ static void k_cb_scatter1(float *__restrict__ dx, const float *__restrict__ dxp,
                                     size_t T, int K, int D, int beta)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x, t = i / D, c = i - t * D;
	if (t >= T)
		return;
	float s = beta ? dx[i] : 0.0f;
	for (int j = 0; j < K; j++)
		s += dxp[(t * K + j) * D + c];
	dx[i] = s;
}

int policy_moe_scatter2(float *dx, const float *dxp, int T, int K, int D, int beta)
{
	size_t n = (size_t)T * (D / 4);
	if (T < 1 || D < 1)
		return 0;
	if (D % 4 || ((uintptr_t)dx | (uintptr_t)dxp) % 16 || n >= (1u << 31)) {
		k_cb_scatter1<<<GRID((size_t)T * D), 0, PST>>>(dx, dxp, (size_t)T, K, D, beta);
		LAUNCHED();
		return 0;
	}
	k_cb_scatter<<<GRID(n), 0, PST>>>((float4 *)dx, (const float4 *)dxp, (unsigned)T, K,
	                                  (unsigned)(D / 4), beta);
	LAUNCHED();
	return 0;
}
