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
#include "policy/gpu_ew.h"
#include "policy/gpu_route.h"
#include "policy/gpu_util.h"
#include "kernels/pdl.cuh"

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
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	cb_bwd<KT, uint16_t, ST, false, uint16_t>(dyp, dgate, dy, yp, gate, rowof, K, D);
}

/* ---- round 20 (issue 10, POLICY_GPU_EW20=comb / all, opt-in): the
 * combine backward a warp per token, pipelined --------------------------------
 * k_cb_bwd16g (a block of 128 per token: cp.async, a barrier, 2-byte dyp
 * stores, a second barrier for dgate) measured 32.2 us for 62.9 MB (H100,
 * 2026-11-27, gpu_act16; 1.72x its floor): its time is per-token latency.
 * Here a persistent grid of CP_NW-warp blocks, each warp taking tokens gw,
 * gw + W, .. through CP_S stages of shared memory (dy's row, the K yp
 * rows, rowof and gate: 16-byte cp.async, token i + CP_S - 1's issued before
 * token i's math). dyp by 16-byte stores (8 columns a lane); dgate with
 * k_cb_bwd16g's order: lane l sums the columns 32 w + l + 128 n of each of
 * the 4 warps w that kernel had (n in order), the xor-shuffle tree, then
 * the 4 warps' sums in warp order, so dyp and dgate are bit for bit its. K
 * 1 or 2, D a multiple of 8, dy / yp / dyp 16-byte aligned. Measured (H100,
 * 2026-11-27, gpu_act16): 32.2 -> 30.2 us after a memset flush, 27.6 ->
 * 24.9 after a clean one (a copy of the same 62.9 MB: 20.0); 12 calls a
 * micro-batch, ~-25 us: not visible in gpu_train x (19.5 ms both). */
#define CP_NW 8 /* warps a block */
#define CP_S  3 /* stages a warp */

/* a stage: dy (D bf16), the K yp rows (K D bf16), rowof and gate (K each;
 * 16 bytes apiece) */
__host__ __device__ static inline size_t cp_stage(int K, int D)
{
	return (size_t)2 * D * (1 + K) + 32;
}

__device__ __forceinline__ static void cp_cp16(uint32_t d, const void *s)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(s) : "memory");
}
__device__ __forceinline__ static void cp_cp4(uint32_t d, const void *s)
{
	asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(s) : "memory");
}

template <int K>
__global__ static void __launch_bounds__(CP_NW * 32, 1)
        k_cb_bwd16p(uint16_t *__restrict__ dyp, float *__restrict__ dgate,
                    const uint16_t *__restrict__ dy, const uint16_t *__restrict__ yp,
                    const float *__restrict__ gate, const int *__restrict__ rowof, int T, int D)
{
	extern __shared__ __align__(16) unsigned char s_cp[];
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, D8 = D / 8;
	int W = gridDim.x * CP_NW, gw = blockIdx.x * CP_NW + wi;
	size_t sst = cp_stage(K, D);
	unsigned char *sw = s_cp + (size_t)wi * CP_S * sst;
	uint32_t sb = (uint32_t)__cvta_generic_to_shared(sw);
	auto issue = [&](int t, int s) {
		if (t < T) {
			uint32_t st = sb + (uint32_t)(s * sst);
			const char *a = (const char *)(dy + (size_t)t * D);
			const char *b = (const char *)(yp + (size_t)t * K * D);
			for (int i = lane; i < D8; i += 32)
				cp_cp16(st + 16u * i, a + 16 * i);
			for (int i = lane; i < K * D8; i += 32)
				cp_cp16(st + 16u * (D8 + i), b + 16 * (size_t)i);
			if (lane < K) {
				cp_cp4(st + 2u * D * (1 + K) + 4u * lane,
				       rowof + (size_t)t * K + lane);
				cp_cp4(st + 2u * D * (1 + K) + 16u + 4u * lane,
				       gate + (size_t)t * K + lane);
			}
		}
		asm volatile("cp.async.commit_group;" ::: "memory");
	};
#pragma unroll
	for (int s = 0; s < CP_S - 1; s++)
		issue(gw + s * W, s);
	for (int i = 0;; i++) {
		int t = gw + i * W;
		if (t >= T)
			break;
		__syncwarp(); /* the stage refilled below was read by all lanes */
		issue(gw + (i + CP_S - 1) * W, (i + CP_S - 1) % CP_S);
		asm volatile("cp.async.wait_group %0;" ::"n"(CP_S - 1) : "memory");
		__syncwarp(); /* the other lanes' copies */
		const unsigned char *sr = sw + (size_t)(i % CP_S) * sst;
		const uint16_t *sy = (const uint16_t *)sr, *sp = sy + D;
		const int *srow = (const int *)(sr + 2 * D * (1 + K));
		const float *sg = (const float *)(sr + 2 * D * (1 + K) + 16);
		float g[K], s[K][4];
		size_t row[K];
#pragma unroll
		for (int u = 0; u < K; u++) {
			g[u] = sg[u];
			row[u] = (size_t)srow[u];
		}
		/* dyp: 8 columns a lane, 16-byte stores */
		for (int j = lane; j < D8; j += 32) {
			uint4 v = *(const uint4 *)(sy + 8 * j);
			const uint16_t *h = (const uint16_t *)&v;
#pragma unroll
			for (int u = 0; u < K; u++) {
				uint4 o;
				uint16_t *oh = (uint16_t *)&o;
#pragma unroll
				for (int e = 0; e < 8; e++)
					oh[e] = f2bf(g[u] * ldf(h[e]));
				*(uint4 *)(dyp + row[u] * D + 8 * j) = o;
			}
		}
		/* dgate: k_cb_bwd16g's columns, sums and order */
#pragma unroll
		for (int u = 0; u < K; u++)
#pragma unroll
			for (int wv = 0; wv < 4; wv++) {
				s[u][wv] = 0;
#pragma unroll
				for (int n = 0; n < CB_COLS; n++) {
					int c = 32 * wv + lane + 128 * n;
					if (c < D)
						s[u][wv] += ldf(sy[c]) * ldf(sp[u * D + c]);
				}
#pragma unroll
				for (int o = 16; o > 0; o >>= 1)
					s[u][wv] += __shfl_xor_sync(0xffffffffu, s[u][wv], o);
			}
		if (lane < K) {
			float r0 = s[0][0], r1 = s[0][1], r2 = s[0][2], r3 = s[0][3];
			if (K > 1 && lane == 1)
				r0 = s[K - 1][0], r1 = s[K - 1][1], r2 = s[K - 1][2],
				r3 = s[K - 1][3];
			dgate[(size_t)t * K + lane] = r0 + r1 + r2 + r3;
		}
	}
	asm volatile("cp.async.wait_group 0;" ::: "memory");
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
	int mode = policy_ew20_mode(); /* round 20: POLICY_GPU_EW20 */
	if (!policy_moe_comb_supported(D) || K < 1 || K > CB_KMAX)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu moe combine bwd2 (bf16 dy and slots): D %d (at most %d), K %d "
		        "(1..%d)",
		        D, COMB_DMAX, K, CB_KMAX);
	if (mode < 0)
		return mode;
	if (T < 1)
		return 0;
	if ((mode & 2) && K <= 2 && D % 8 == 0 &&
	    ((uintptr_t)yp | (uintptr_t)dy | (uintptr_t)dyp) % 16 == 0) {
		/* round 20 (POLICY_GPU_EW20=comb / all): a warp per token, pipelined */
		size_t sp = (size_t)CP_NW * CP_S * cp_stage(K, D);
		unsigned nb;
		if (K == 2) {
			CKR(policy_ew20_grid((const void *)k_cb_bwd16p<2>, CP_NW * 32, sp,
			                     (T + CP_NW - 1) / CP_NW, &nb));
			k_cb_bwd16p<2><<<nb, CP_NW * 32, sp, PST>>>(dyp, dgate, dy, yp, gate, rowof,
			                                            T, D);
		} else {
			CKR(policy_ew20_grid((const void *)k_cb_bwd16p<1>, CP_NW * 32, sp,
			                     (T + CP_NW - 1) / CP_NW, &nb));
			k_cb_bwd16p<1><<<nb, CP_NW * 32, sp, PST>>>(dyp, dgate, dy, yp, gate, rowof,
			                                            T, D);
		}
	} else if (K <= 2 && D % 8 == 0 && ((uintptr_t)yp | (uintptr_t)dy) % 16 == 0) {
		if (K == 2)
			CK(pdl::launch(k_cb_bwd16g<2, true>, dim3(T), dim3(CB_THREADS),
			               (size_t)3 * D * 2, PST, dyp, dgate, dy, yp, gate, rowof, K,
			               D));
		else
			CK(pdl::launch(k_cb_bwd16g<1, true>, dim3(T), dim3(CB_THREADS),
			               (size_t)2 * D * 2, PST, dyp, dgate, dy, yp, gate, rowof, K,
			               D));
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
