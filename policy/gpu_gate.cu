/* gpu_gate.cu - round 14 (issue 10): the lightning layer's output norm +
 * gate and its backward toward their byte floors (see gpu_gate.h;
 * POLICY_GPU_LW_GATE=v3, opt-in).
 *
 * Bytes at the benchmark's shape (T 8192, Hd 768, bf16 activations, dgn
 * fp32): the forward reads o and the gate column of pre and writes gn (3 x
 * 12.6 MB = 37.7 MB, 12.6 us at 3.0 TB/s); the backward reads dgn (25.2
 * MB), o and the gate column (12.6 MB each) and writes dpre's gate column
 * and dO (12.6 MB each): 75.5 MB, 25.2 us. Round 10's ncu listing had v2 at
 * 20.4 and 52 us (1.6x and 2.1x). Why, from the code and ptxas: v2's
 * backward holds 4 chunks of 8 columns a lane for dgn, o and the gate (3 of
 * them used at Hd 768) plus the weight-gradient partials in registers: 169
 * registers, one 256-thread block an SM (8 warps), each warp's 4 rows one
 * after another with the loads of a row exposed, then the expf / IEEE
 * divide arithmetic of the row with too few warps to hide it, and 256
 * blocks on 132 SMs make two waves; its forward, 80 registers (3 blocks an
 * SM), 1024 blocks in 2.6 waves, reads w from global memory per element.
 *
 * v3: the chunk count CH is a template argument (3 at Hd 768: nothing
 * unused is held), the bf16 inputs stay packed (uint4) in registers and are
 * widened when used, w is staged once per block in shared memory (read as
 * float4), and the backward's weight-gradient partials sit in shared memory
 * (a row of C floats per warp, each lane adding into its own columns): 114
 * registers, 2 blocks an SM, the grid one wave (2 x SMs blocks, rows split
 * evenly, a multiple of 8 a block). The forward: a one-wave grid of warps
 * striding over the rows, the next row's loads issued before this row is
 * computed (v3a: 2 rows a warp, all loads first). The weight gradient:
 * each block's 8 warp rows summed in warp order, one partial row per block
 * into a scratch buffer, then k_gt_dw adds the partials in block order
 * (1024 threads per 32 columns) and adds the total into dw: deterministic,
 * no float atomics. v4: v3 reading dgn in bf16.
 *
 * Measured (H100, 2026-11-27, tests/bench/gpu_gate, L2 flushed before each
 * launch): forward 26.1 -> 24.8 us (v3a 26.8), backward 58.3 -> 41.5 (v4
 * 36.7); ncu at base clocks: k_gt_bwd 33.5 + k_gt_dw 4.3 against
 * k_lw_gate_rms_bwd2's 61.2, the forwards level (24.1 vs 24.4). Both stay
 * ~2x their byte floors, bound by the per-element expf and IEEE reciprocal
 * (they slow down with the clock; DRAM reads are exactly the inputs' bytes).
 * gpu_train x (K 4): 21.1 / 21.2 (default, twice) -> 21.0 ms a micro-batch
 * for v3 and v4 (-0.7..-1.2%); with the kept SiLU (POLICY_GPU_LW_SILU=keep)
 * the lead's run made v3 the default (21.2 / 21.5 -> 21.1 / 21.0 ms). The first
 * tries (call 1): a next-row prefetch at 128 registers (spills) 45.2 us, 3
 * blocks an SM at 80 registers (spills) 51.0.
 *
 * v5 (NOT YET RUN on a GPU; written after the last call of round 14): v3
 * with the gate's sigmoid as __fdividef(1, 1 + __expf(-x)) in both kernels
 * (FAST; ~25% fewer PTX instructions, no IEEE reciprocal slow-path
 * branches; same registers). ncu put both v3 kernels at ~40% SM throughput
 * and ~50% of DRAM bandwidth, i.e. latency-bound with loads and arithmetic
 * in lockstep; v5 shortens the arithmetic phase. Predicted (bench terms):
 * forward 24.8 -> ~21-22 us, backward 41.5 -> ~38. The FAST = 0 kernels'
 * PTX is unchanged by it (checked entry by entry). */
#include "policy/gpu_gate.h"
#include "policy/gpu_dev.cuh"
#include "policy/gpu_util.h"
#include "kernels/pdl.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

/* the step's stream where gpu_util.h has one (round 14's graph mode: PST),
 * else the legacy default stream */
#ifdef PST
#define GT_ST PST
#else
#define GT_ST 0
#endif

#define GT_NW   8 /* warps a block */
#define GT_FROW 2 /* rows a warp in the forward */
#define GT_CMAX 1024

/* 8 consecutive values of type T, as loaded (bf16 kept packed) */
template <typename T> struct gt_raw;
template <> struct gt_raw<uint16_t> {
	uint4 u;
};
template <> struct gt_raw<float> {
	float4 a, b;
};
__device__ static void gt_ld(gt_raw<uint16_t> &r, const uint16_t *p)
{
	r.u = *(const uint4 *)p;
}
__device__ static void gt_ld(gt_raw<float> &r, const float *p)
{
	r.a = *(const float4 *)p;
	r.b = *(const float4 *)(p + 4);
}
/* widen: the same values as gpu_linew.cu's ld8 */
__device__ static void gt_f(float *v, const gt_raw<uint16_t> &r)
{
	uint32_t w[4] = {r.u.x, r.u.y, r.u.z, r.u.w};
#pragma unroll
	for (int k = 0; k < 4; k++) {
		v[2 * k] = __uint_as_float(w[k] << 16);
		v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
	}
}
__device__ static void gt_f(float *v, const gt_raw<float> &r)
{
	v[0] = r.a.x, v[1] = r.a.y, v[2] = r.a.z, v[3] = r.a.w;
	v[4] = r.b.x, v[5] = r.b.y, v[6] = r.b.z, v[7] = r.b.w;
}
__device__ static void gt_st(uint16_t *p, const float *v)
{
	uint4 u;
	u.x = f2bf(v[0]) | (uint32_t)f2bf(v[1]) << 16;
	u.y = f2bf(v[2]) | (uint32_t)f2bf(v[3]) << 16;
	u.z = f2bf(v[4]) | (uint32_t)f2bf(v[5]) << 16;
	u.w = f2bf(v[6]) | (uint32_t)f2bf(v[7]) << 16;
	*(uint4 *)p = u;
}
__device__ static void gt_st(float *p, const float *v)
{
	*(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
	*(float4 *)(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
/* 8 values of a 16-byte aligned shared-memory row */
__device__ static void gt_lds(float *v, const float *p)
{
	float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
	v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
	v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

/* the gate's sigmoid: v2's (expf, IEEE reciprocal: the same bits) or, FAST
 * (v5), __expf and __fdividef (ex2.approx and rcp.approx: a few ulp; 0 for
 * x < -88, where 1 + e^-x overflows, as v2's rounds to) */
template <int FAST> __device__ static float gt_sig(float x)
{
	return FAST ? __fdividef(1.0f, 1.0f + __expf(-x)) : sigm(x);
}

/* the norm and gate of row t from its loaded chunks */
template <typename TA, typename TX, int CH, int FAST>
__device__ static void gt_fwd_row(TA *__restrict__ gn, float *__restrict__ rstd,
                                  const gt_raw<TX> *xr, const gt_raw<TA> *gr, const float *s_w,
                                  int t, int C, float eps, int lane)
{
	float ss = 0, r;
#pragma unroll
	for (int k = 0; k < CH; k++)
		if (lane + 32 * k < C / 8) {
			float xv[8];
			gt_f(xv, xr[k]);
#pragma unroll
			for (int q = 0; q < 8; q++)
				ss += xv[q] * xv[q];
		}
	r = warp_rstd(ss, C, eps, rstd, t, lane);
#pragma unroll
	for (int k = 0; k < CH; k++) {
		int c = lane + 32 * k;
		if (c < C / 8) {
			float xv[8], gv[8], wv[8], y[8];
			gt_f(xv, xr[k]);
			gt_f(gv, gr[k]);
			gt_lds(wv, s_w + c * 8);
#pragma unroll
			for (int q = 0; q < 8; q++)
				y[q] = xv[q] * r * wv[q] * gt_sig<FAST>(gv[q]);
			gt_st(gn + (size_t)t * C + c * 8, y);
		}
	}
}

template <typename TA, typename TX, int CH>
__device__ static void gt_fwd_load(gt_raw<TX> *xr, gt_raw<TA> *gr, const TX *__restrict__ o,
                                   const TA *__restrict__ pre, int t, int C, int lane)
{
	size_t ro = (size_t)t * C + lane * 8, go = (size_t)t * 4 * C + 3 * C + lane * 8;
#pragma unroll
	for (int k = 0; k < CH; k++)
		if (lane + 32 * k < C / 8) {
			gt_ld(xr[k], o + ro + 256 * k);
			gt_ld(gr[k], pre + go + 256 * k);
		}
}

/* the norm and gate, CH chunks of 8 columns a lane (chunk k of lane l:
 * columns 8 (l + 32 k) ..). PERS 0 (v3a): GT_FROW rows a warp (rows
 * blockIdx GT_NW GT_FROW + wi + GT_NW i), all loads issued before w is
 * staged. PERS 1 (v3): a grid of one wave, each warp striding over the rows
 * with the next row's loads issued before this row is computed. */
template <typename TA, typename TX, int CH, int PERS, int FAST>
__global__ static void __launch_bounds__(GT_NW * 32)
        k_gt_fwd(TA *__restrict__ gn, float *__restrict__ rstd, const TX *__restrict__ o,
                 const float *__restrict__ w, const TA *__restrict__ pre, int T, int C, float eps)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	__shared__ __align__(16) float s_w[CH * 256];
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
	if (PERS) {
		int nw = gridDim.x * GT_NW, t = blockIdx.x * GT_NW + wi;
		gt_raw<TX> xr[CH], xn[CH];
		gt_raw<TA> gr[CH], gq[CH];
		if (t < T)
			gt_fwd_load<TA, TX, CH>(xr, gr, o, pre, t, C, lane);
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			s_w[c] = w[c];
		__syncthreads();
		for (; t < T; t += nw) { /* warp-uniform */
			if (t + nw < T)
				gt_fwd_load<TA, TX, CH>(xn, gq, o, pre, t + nw, C, lane);
			gt_fwd_row<TA, TX, CH, FAST>(gn, rstd, xr, gr, s_w, t, C, eps, lane);
#pragma unroll
			for (int k = 0; k < CH; k++)
				xr[k] = xn[k], gr[k] = gq[k];
		}
		return;
	}
	int tb = blockIdx.x * GT_NW * GT_FROW + wi;
	gt_raw<TX> xr[GT_FROW][CH];
	gt_raw<TA> gr[GT_FROW][CH];
#pragma unroll
	for (int i = 0; i < GT_FROW; i++)
		if (tb + GT_NW * i < T)
			gt_fwd_load<TA, TX, CH>(xr[i], gr[i], o, pre, tb + GT_NW * i, C, lane);
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		s_w[c] = w[c];
	__syncthreads();
#pragma unroll
	for (int i = 0; i < GT_FROW; i++) {
		if (tb + GT_NW * i >= T) /* warp-uniform */
			break;
		gt_fwd_row<TA, TX, CH, FAST>(gn, rstd, xr[i], gr[i], s_w, tb + GT_NW * i, C, eps,
		                             lane);
	}
}

/* the gate and norm backward: block b takes rows [b rb, b rb + rb), warp wi
 * the rows b rb + wi + GT_NW i, each row's loads (dgn of type TG: fp32, or
 * bf16 in v4) issued at the top of its iteration; per row v2's arithmetic
 * (but r^3 dot / C once a row); the weight gradient's per-row terms added
 * into the warp's shared-memory row (lane columns), then the block's 8 rows
 * summed in warp order into part[b]. 2 blocks an SM (<= 128 registers;
 * measured in round 14's first call: a next-row prefetch at 128 registers
 * with spills and 3 blocks an SM at 80 registers were both slower) */
template <typename TA, typename TX, typename TG, int CH, int FAST>
__global__ static void __launch_bounds__(GT_NW * 32, 2)
        k_gt_bwd(TX *__restrict__ dO, float *__restrict__ part, TA *__restrict__ dpre,
                 const TG *__restrict__ dgn, const TX *__restrict__ o, const TA *__restrict__ pre,
                 const float *__restrict__ w, const float *__restrict__ rstd, int T, int C, int rb)
{
	pdl::enter();                     /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	extern __shared__ float4 s_dyn[]; /* s_w (CH 256), then (GT_NW, CH 256) partials */
	float *s_w = (float *)s_dyn, *s_all = s_w + CH * 256;
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, C8 = C / 8;
	int t0 = blockIdx.x * rb, t1 = t0 + rb < T ? t0 + rb : T;
	float *s_p = s_all + wi * CH * 256 + lane * 8;
	for (int c = threadIdx.x; c < C; c += blockDim.x)
		s_w[c] = w[c];
#pragma unroll
	for (int k = 0; k < CH; k++)
		if (lane + 32 * k < C8) {
			*(float4 *)(s_p + 256 * k) = make_float4(0, 0, 0, 0);
			*(float4 *)(s_p + 256 * k + 4) = make_float4(0, 0, 0, 0);
		}
	__syncthreads();
	for (int t = t0 + wi; t < t1; t += GT_NW) { /* warp-uniform */
		float dg[CH][8], dot = 0, r;
		gt_raw<TG> dr[CH];
		gt_raw<TX> xr[CH];
		gt_raw<TA> gr[CH];
		/* this lane's first chunk of the row; chunk k at + 256 k */
		size_t ro = (size_t)t * C + lane * 8, go = (size_t)t * 4 * C + 3 * C + lane * 8;
		r = rstd[t];
#pragma unroll
		for (int k = 0; k < CH; k++)
			if (lane + 32 * k < C8) {
				gt_ld(dr[k], dgn + ro + 256 * k);
				gt_ld(xr[k], o + ro + 256 * k);
				gt_ld(gr[k], pre + go + 256 * k);
			}
#pragma unroll
		for (int k = 0; k < CH; k++)
			if (lane + 32 * k < C8) {
				float xo[8], gp[8], wv[8], dgp[8];
				gt_f(dg[k], dr[k]);
				gt_f(xo, xr[k]);
				gt_f(gp, gr[k]);
				gt_lds(wv, s_w + lane * 8 + 256 * k);
#pragma unroll
				for (int q = 0; q < 8; q++) {
					float wc = wv[q], g = gt_sig<FAST>(gp[q]);
					dgp[q] = dg[k][q] * (xo[q] * r * wc) * g * (1.0f - g);
					dg[k][q] *= g; /* now d of the normed output */
					dot += dg[k][q] * wc * xo[q];
				}
				gt_st(dpre + go + 256 * k, dgp);
			}
		dot = warp_sum(dot);
		dot = r * r * r * dot / C; /* once a row (v2: per element) */
#pragma unroll
		for (int k = 0; k < CH; k++)
			if (lane + 32 * k < C8) {
				float xo[8], wv[8], pv[8], v[8];
				gt_f(xo, xr[k]);
				gt_lds(wv, s_w + lane * 8 + 256 * k);
				gt_lds(pv, s_p + 256 * k);
#pragma unroll
				for (int q = 0; q < 8; q++) {
					float wc = wv[q];
					pv[q] += dg[k][q] * xo[q] * r;
					v[q] = r * dg[k][q] * wc - xo[q] * dot;
				}
				*(float4 *)(s_p + 256 * k) =
				        make_float4(pv[0], pv[1], pv[2], pv[3]);
				*(float4 *)(s_p + 256 * k + 4) =
				        make_float4(pv[4], pv[5], pv[6], pv[7]);
				gt_st(dO + ro + 256 * k, v);
			}
	}
	__syncthreads();
	for (int c = threadIdx.x; c < C; c += blockDim.x) {
		float s = 0;
		for (int q = 0; q < GT_NW; q++)
			s += s_all[q * CH * 256 + c];
		part[(size_t)blockIdx.x * C + c] = s;
	}
}

/* dw[c] += sum over blocks b of part[b][c], b in order: 32 columns a block
 * of 1024 threads, warp j sums the blocks j, j + 32, ... (in order), then
 * warp 0 the 32 warp sums (in order) */
__global__ static void __launch_bounds__(1024)
        k_gt_dw(float *__restrict__ dw, const float *__restrict__ part, int nb, int C)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	__shared__ float s[32][33];
	int lane = threadIdx.x & 31, wi = threadIdx.x >> 5, c = blockIdx.x * 32 + lane;
	float a = 0;
	if (c < C)
#pragma unroll 4
		for (int b = wi; b < nb; b += 32)
			a += part[(size_t)b * C + c];
	s[wi][lane] = a;
	__syncthreads();
	if (wi == 0 && c < C) {
		float t = 0;
		for (int q = 0; q < 32; q++)
			t += s[q][lane];
		dw[c] += t;
	}
}

int policy_gate_mode(void)
{
	static const char *const names[] = {"v2", "v3", "v3a", "v4", "v5"};
	return policy_env_choice("POLICY_GPU_LW_GATE", names, 5, 1); /* v3: the default */
}

int policy_gate_supported(int T, int Hd)
{
	return T >= 0 && Hd >= 8 && Hd % 8 == 0 && Hd <= GT_CMAX &&
	       (long long)T * 4 * Hd < (1LL << 40);
}

static int gt_check(int T, int Hd, const void *a, const void *b, const void *c, const void *d)
{
	if (!policy_gate_supported(T, Hd))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu lightning gate v3: T %d, Hd %d not supported (Hd a "
		                        "multiple of 8, at most %d)",
		                        T, Hd, GT_CMAX);
	if (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) & 15)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu lightning gate v3: an activation is not 16-byte aligned");
	return 0;
}

/* CH = the chunks of 8 columns a lane needs (1..4) */
#define GT_DISPATCH(C8, CALL) DEV_DISPATCH4(((C8) + 31) / 32, 1, 2, 3, 4, CALL)

template <typename TA, typename TX, int CH, int PERS, int FAST>
static int gt_fwd_ch(TA *gn, float *rstd, const TX *o, const float *w, const TA *pre, int T, int C,
                     float eps)
{
	unsigned nb = (unsigned)((T + GT_NW * GT_FROW - 1) / (GT_NW * GT_FROW));
	if (PERS) { /* one wave, at most a row a warp */
		int dev, nsm = 0, occ = 0;
		CK(cudaGetDevice(&dev));
		CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
		CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		        &occ, k_gt_fwd<TA, TX, CH, PERS, FAST>, GT_NW * 32, 0));
		nb = (unsigned)((T + GT_NW - 1) / GT_NW);
		if (occ >= 1 && nb > (unsigned)(nsm * occ))
			nb = (unsigned)(nsm * occ);
	}
	CK(pdl::launch(k_gt_fwd<TA, TX, CH, PERS, FAST>, dim3(nb), dim3(GT_NW * 32), 0, GT_ST, gn,
	               rstd, o, w, pre, T, C, eps));
	LAUNCHED();
	return 0;
}

template <typename TA, typename TX>
static int gt_fwd(TA *gn, float *rstd, const TX *o, const float *w, const TA *pre, int T, int C,
                  float eps, int var)
{
#define GT_F(CH)                                                                                   \
	return var == 2   ? gt_fwd_ch<TA, TX, CH, 0, 0>(gn, rstd, o, w, pre, T, C, eps)            \
	       : var == 4 ? gt_fwd_ch<TA, TX, CH, 1, 1>(gn, rstd, o, w, pre, T, C, eps)            \
	                  : gt_fwd_ch<TA, TX, CH, 1, 0>(gn, rstd, o, w, pre, T, C, eps)
	GT_DISPATCH(C / 8, GT_F);
#undef GT_F
	return 0;
}

int policy_gate_fwd(void *gn, float *rstd, const void *o, int o_bf16, const float *w,
                    const void *pre, int a_bf16, int T, int Hd, float eps, int var)
{
	CKR(gt_check(T, Hd, gn, o, pre, NULL));
	if (var < 1 || var > 4)
		return swerve_error_set(SWERVE_EINVAL, "gpu lightning gate v3: variant %d", var);
	if (T < 1)
		return 0;
	if (a_bf16 && o_bf16)
		return gt_fwd((uint16_t *)gn, rstd, (const uint16_t *)o, w, (const uint16_t *)pre,
		              T, Hd, eps, var);
	if (a_bf16)
		return gt_fwd((uint16_t *)gn, rstd, (const float *)o, w, (const uint16_t *)pre, T,
		              Hd, eps, var);
	if (o_bf16)
		return gt_fwd((float *)gn, rstd, (const uint16_t *)o, w, (const float *)pre, T, Hd,
		              eps, var);
	return gt_fwd((float *)gn, rstd, (const float *)o, w, (const float *)pre, T, Hd, eps, var);
}

/* the partial sums' scratch, one buffer per device, grown on demand */
#define GT_MAXDEV 16
static float *gt_part[GT_MAXDEV];
static size_t gt_part_n[GT_MAXDEV];

static int gt_scratch(float **p, size_t n)
{
	int dev;
	CK(cudaGetDevice(&dev));
	if (dev < 0 || dev >= GT_MAXDEV)
		return swerve_error_set(SWERVE_EINVAL, "gpu lightning gate v3: device %d (max %d)",
		                        dev, GT_MAXDEV);
	if (gt_part_n[dev] < n) {
		if (gt_part[dev])
			CK(cudaFree(gt_part[dev])); /* synchronises: no kernel still reads it */
		gt_part[dev] = NULL;
		gt_part_n[dev] = 0;
		CK(cudaMalloc(&gt_part[dev], n * sizeof(float)));
		gt_part_n[dev] = n;
#ifdef PST
		policy_gpu_alloc_gen++; /* captured steps hold the old address */
#endif
	}
	*p = gt_part[dev];
	return 0;
}

int policy_gate_reserve(int Hd)
{
	int dev, nsm = 0;
	float *p;
	CK(cudaGetDevice(&dev));
	CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
	/* nb <= nsm x (blocks an SM <= 2048 / 256 = 8) whatever T */
	return gt_scratch(&p, (size_t)nsm * 8 * (Hd > 0 ? Hd : 1));
}

template <typename TA, typename TX, typename TG, int CH, int FAST>
static int gt_bwd_ch(TX *dO, float *dw, TA *dpre, const TG *dgn, const TX *o, const TA *pre,
                     const float *w, const float *rstd, int T, int C)
{
	size_t sm = (size_t)CH * 256 * (1 + GT_NW) * sizeof(float);
	int dev, nsm = 0, occ = 0, rb, nb, per;
	float *part;
	CK(cudaGetDevice(&dev));
	CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
	CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_gt_bwd<TA, TX, TG, CH, FAST>,
	                                                 GT_NW * 32, sm));
	/* one wave of 2 blocks an SM (the launch bound; a fixed count, so the
	 * partial sums' grouping and dw's bits do not depend on the dgn type
	 * or the compiler's register count), rows split evenly, a multiple of
	 * GT_NW rows a block */
	occ = occ < 1 ? 1 : occ > 2 ? 2 : occ;
	per = (T + nsm * occ - 1) / (nsm * occ);
	rb = (per + GT_NW - 1) / GT_NW * GT_NW;
	nb = (T + rb - 1) / rb;
	CKR(gt_scratch(&part, (size_t)nb * C));
	CK(pdl::launch(k_gt_bwd<TA, TX, TG, CH, FAST>, dim3(nb), dim3(GT_NW * 32), sm, GT_ST, dO,
	               part, dpre, dgn, o, pre, w, rstd, T, C, rb));
	LAUNCHED();
	CK(pdl::launch(k_gt_dw, dim3((unsigned)((C + 31) / 32)), dim3(1024), 0, GT_ST, dw, part, nb,
	               C));
	LAUNCHED();
	return 0;
}

template <typename TA, typename TX, typename TG>
static int gt_bwd(TX *dO, float *dw, TA *dpre, const TG *dgn, const TX *o, const TA *pre,
                  const float *w, const float *rstd, int T, int C, int fast)
{
#define GT_B(CH)                                                                                   \
	return fast ? gt_bwd_ch<TA, TX, TG, CH, 1>(dO, dw, dpre, dgn, o, pre, w, rstd, T, C)       \
	            : gt_bwd_ch<TA, TX, TG, CH, 0>(dO, dw, dpre, dgn, o, pre, w, rstd, T, C)
	GT_DISPATCH(C / 8, GT_B);
#undef GT_B
	return 0;
}

int policy_gate_bwd(void *dO, float *dw, void *dpre, int a_bf16, const void *dgn, int dgn_bf16,
                    const void *o, int o_bf16, const void *pre, const float *w, const float *rstd,
                    int T, int Hd, int fast)
{
	CKR(gt_check(T, Hd, dO, dpre, dgn, o));
	if ((uintptr_t)pre & 15)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu lightning gate v3: an activation is not 16-byte aligned");
	if (dgn_bf16 && !a_bf16)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu lightning gate v3: a bf16 dgn needs bf16 activations");
	if (T < 1)
		return 0;
	if (dgn_bf16 && o_bf16)
		return gt_bwd((uint16_t *)dO, dw, (uint16_t *)dpre, (const uint16_t *)dgn,
		              (const uint16_t *)o, (const uint16_t *)pre, w, rstd, T, Hd, fast);
	if (dgn_bf16)
		return gt_bwd((float *)dO, dw, (uint16_t *)dpre, (const uint16_t *)dgn,
		              (const float *)o, (const uint16_t *)pre, w, rstd, T, Hd, fast);
	if (a_bf16 && o_bf16)
		return gt_bwd((uint16_t *)dO, dw, (uint16_t *)dpre, (const float *)dgn,
		              (const uint16_t *)o, (const uint16_t *)pre, w, rstd, T, Hd, fast);
	if (a_bf16)
		return gt_bwd((float *)dO, dw, (uint16_t *)dpre, (const float *)dgn,
		              (const float *)o, (const uint16_t *)pre, w, rstd, T, Hd, fast);
	if (o_bf16)
		return gt_bwd((uint16_t *)dO, dw, (float *)dpre, (const float *)dgn,
		              (const uint16_t *)o, (const float *)pre, w, rstd, T, Hd, fast);
	return gt_bwd((float *)dO, dw, (float *)dpre, (const float *)dgn, (const float *)o,
	              (const float *)pre, w, rstd, T, Hd, fast);
}
