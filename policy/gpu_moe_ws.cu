/* gpu_moe_ws.cu - round 10 (opt-in): a warp-specialised, persistent,
 * 128 x 256-tile grouped GEMM for the MoE experts; see gpu_moe_ws.h.
 * POLICY_GPU_MOE_KERNEL=wsb runs the up projection from the gathered copy
 * xg (policy_moe_up with d->gathered) here; wsb2 also the down projection
 * and up dX (F % 64 == 0). Every other product of the variants runs wgtd's
 * kernels (policy/gpu_moe.cu, with POLICY_GPU_MOE_EPI as set: tma by
 * default).
 *
 * Design (k_ws<MODE, ST>, shown for UP; DOWN and UP_DX: 256 columns of D):
 * - CTA tile: 128 rows (of one expert's segment) x 128 hidden units, i.e.
 *   256 GEMM columns laid out [128 of W1 | the same 128 of W3], so a
 *   thread's h1 column j and h3 column j sit in its own accumulators (index
 *   i and i + 64) and SwiGLU needs no exchange.
 * - 384 threads, 1 CTA an SM: warpgroup 0 is the producer (one thread
 *   issues the TMA loads; setmaxnreg.dec 40), warpgroups 1 and 2 the
 *   consumers (setmaxnreg.inc 232), consumer c owning rows 64 c.. of the
 *   tile and all 256 columns: wgmma m64n256k16 (A and B from shared memory,
 *   128 fp32 accumulators a thread), four a 64-deep k block.
 * - A 4-stage ring of 48 KB stages (A box 64 x 128 rows of xg, W1 and W3
 *   boxes 64 x 128 x 1; DOWN: two W2 boxes; UP_DX: four 64 x 64 boxes of
 *   [W1; W3] (k, n), N-major; 128-byte swizzle, as gpu_moe.cu's tiles;
 *   POLICY_GPU_MOE_WSB_ST=3 for 3 stages) with a full
 *   mbarrier (producer's expect-tx, TMA completion) and an empty mbarrier
 *   (8 arrivals: lane 0 of each consumer warp) per stage; phases from a
 *   running k-block counter that continues across tiles.
 * - Consumers keep one k block's wgmma in flight (wait_group 1) and release
 *   the previous block's stage; after a tile's last block wait_group 0 and
 *   release.
 * - Persistent CTAs (grid = SMs, or POLICY_GPU_MOE_CTAS=n for tests), static
 *   stride over the tile list: tile t = row tile t / nx, hidden-unit tile
 *   t % nx; the row tiles are the experts' ceil(n_e / 128) tiles in order,
 *   found from offs on the device (no host round trip); the producer runs
 *   into the next tile's k blocks while the consumers do the epilogue.
 * - Epilogue straight from the accumulators: h1, h3 rounded to bf16, hh =
 *   SiLU(h1) h3 from the rounded values (gpu_moe.cu's mg_epi rounding);
 *   each 4 8-column blocks of a row transposed across the lane quad so each
 *   lane stores a block's 8 columns with one 16-byte store (4-byte stores
 *   of each lane's pair, POLICY_GPU_MOE_WSB_EPI=st4, were 2x slower: H100,
 *   0.187 against 0.097 ms); DOWN / UP_DX: fp32 rows to out[perm[row]]
 *   (slot order), two 16-byte stores a block. Rows past the expert's end
 *   (the next expert's, computed from the same A box) and columns past F
 *   or D (zero-filled boxes) are not stored. Deterministic: no atomics, fixed
 *   k order.
 * Measured (H100 80GB HBM3, 2026-11-27, tests/bench/gpu_train_moe, T 8192,
 * top-2 of 8, D 768, F 1024, ms balanced / 44%-skewed routing, against
 * wgtd + EPI=tma in the same process): up from xg 0.099 / 0.109 against
 * 0.137 / 0.144 (main loop alone, no epilogue: 0.076 = 677 TFLOP/s; 3
 * stages 7% slower than 4); down 0.063 / 0.075 against 0.069 / 0.075; up dX
 * 0.096 / 0.118 against 0.106 / 0.122; a layer's six products + the gather
 * 0.582 / 0.650 (wsb2), 0.596 / 0.652 (wsb), 0.637 / 0.688 (wgtd + tma).
 * End to end (tests/bench/gpu_train quick, K = 4, one process): 22.9 ms a
 * micro-batch (wsb2), 23.1 (wsb) against the default's 23.5 / 23.6. */
#include "kernels/ptx.cuh"
#include "kernels/tma.h"
#include "policy/gpu_moe_ws.h"
#include "policy/gpu_util.h"

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "sandbox/error.h"
}

#define WS_BM       128 /* rows a tile */
#define WS_BF       128 /* hidden units a tile (256 GEMM columns) */
#define WS_BK       64
#define WS_ATILE    (WS_BM * WS_BK * 2)       /* 16 KB */
#define WS_STAGE    (WS_ATILE + 2 * WS_ATILE) /* A, W1, W3: 48 KB */
#define WS_SMEM(st) ((st)*WS_STAGE + 1024)
#define WS_THREADS  384

struct ws_maps {
	CUtensorMap a, w1, w3;
};

struct ws_args {
	const int *offs, *perm;
	int E, D, F;
	uint16_t *h1, *h3, *hh; /* WS_UP's outputs */
	float *out;             /* WS_DOWN's yp, WS_UP_DX's dxp (slot order) */
	int epi;                /* WS_EPI_* */
};

/* the products: UP (A = xg, B = [W1 | W3] K-major, SwiGLU epilogue), DOWN
 * (A = hh, B = W2 K-major, yp[perm[row]] fp32), UP_DX (A = dh13, B = [W1;
 * W3] N-major, K = 2F, dxp[perm[row]] fp32) */
enum { WS_UP, WS_DOWN, WS_UP_DX };

/* the epilogue's stores (POLICY_GPU_MOE_WSB_EPI, for measurements) */
enum { WS_EPI_ST16, WS_EPI_ST4, WS_EPI_NOSTORE, WS_EPI_NONE };

__device__ __forceinline__ static void ws_bar_init(uint32_t bar, int n)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(n) : "memory");
}
__device__ __forceinline__ static void ws_expect(uint32_t bar, uint32_t bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
	             "r"(bytes)
	             : "memory");
}
__device__ __forceinline__ static void ws_arrive(uint32_t bar)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ static void ws_wait(uint32_t bar, int parity)
{
	uint32_t ok;
	do {
		asm volatile("{\n.reg .pred p;\n"
		             "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
		             "selp.u32 %0, 1, 0, p;\n}\n"
		             : "=r"(ok)
		             : "r"(bar), "r"(parity)
		             : "memory");
	} while (!ok);
}
__device__ __forceinline__ static void ws_tma2(uint32_t dst, const CUtensorMap *map, int x, int y,
                                               uint32_t bar)
{
	asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
	             "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
	             "l"(map), "r"(x), "r"(y), "r"(bar)
	             : "memory");
}
__device__ __forceinline__ static void ws_tma3(uint32_t dst, const CUtensorMap *map, int x, int y,
                                               int z, uint32_t bar)
{
	asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes "
	             "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
	             "l"(map), "r"(x), "r"(y), "r"(z), "r"(bar)
	             : "memory");
}

/* d (+)= A B, m64n256k16, A K-major, B K-major (TB 0) or N-major (TB 1)
 * from shared memory (128-byte swizzle descriptors); acc 0: d = A B */
template <int TB>
__device__ __forceinline__ static void ws_wgmma256(float (&d)[128], uint64_t da, uint64_t db,
                                                   int acc)
{
	asm volatile(
	        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
	        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
	        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
	        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
	        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
	        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
	        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
	        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
	        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, "
	        "%110, %111, "
	        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, "
	        "%125, %126, %127}, "
	        "%128, %129, p, 1, 1, 0, %131;\n}\n"
	        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
	          "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
	          "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
	          "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
	          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
	          "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
	          "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
	          "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
	          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),
	          "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),
	          "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]),
	          "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
	          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
	          "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]),
	          "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]),
	          "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
	          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]),
	          "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]),
	          "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
	          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]),
	          "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]),
	          "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
	        : "l"(da), "l"(db), "r"(acc), "n"(TB));
}

/* an N-major B descriptor: 128-byte swizzle, 8-row groups 1024 B apart, the
 * 64-column atoms lbo bytes apart */
__device__ __forceinline__ static uint64_t ws_desc_n(uint32_t saddr, uint32_t lbo)
{
	uint32_t lo = (saddr >> 4) | ((lbo >> 4) << 16);
	return ((uint64_t)((1024u >> 4) | (1u << 30)) << 32) | (uint64_t)lo;
}

__device__ __forceinline__ static void ws_reg_fence(float (&d)[128])
{
#pragma unroll
	for (int i = 0; i < 128; i++)
		asm volatile("" : "+f"(d[i])::"memory");
}

/* two floats to packed bf16 (round to nearest even; cvt.rn.bf16x2.f32) and back */
__device__ __forceinline__ static uint32_t ws_pack(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<uint32_t *>(&v);
}
__device__ __forceinline__ static float ws_lo(uint32_t u)
{
	return __uint_as_float(u << 16);
}
__device__ __forceinline__ static float ws_hi(uint32_t u)
{
	return __uint_as_float(u & 0xffff0000u);
}
__device__ __forceinline__ static float ws_silu(float x)
{
	return __fdividef(x, 1.0f + __expf(-x));
}

/* the 4 x 4 transpose of a quad's packed pairs: lane q's v[p] becomes lane
 * p's v[q] (two butterfly steps, xor 1 then xor 2), so lane q holds the 8
 * columns of block q */
__device__ __forceinline__ static void ws_transpose4(uint32_t (&v)[4], int q)
{
	uint32_t s0 = (q & 1) ? v[0] : v[1], s1 = (q & 1) ? v[2] : v[3];
	s0 = __shfl_xor_sync(0xffffffffu, s0, 1);
	s1 = __shfl_xor_sync(0xffffffffu, s1, 1);
	if (q & 1) {
		v[0] = s0;
		v[2] = s1;
	} else {
		v[1] = s0;
		v[3] = s1;
	}
	s0 = (q & 2) ? v[0] : v[2];
	s1 = (q & 2) ? v[1] : v[3];
	s0 = __shfl_xor_sync(0xffffffffu, s0, 2);
	s1 = __shfl_xor_sync(0xffffffffu, s1, 2);
	if (q & 2) {
		v[0] = s0;
		v[1] = s1;
	} else {
		v[2] = s0;
		v[3] = s1;
	}
}

/* the epilogue of a consumer thread: rows rr, rr + 8 (rr = the row of
 * lane / 4), columns 8 j + 2 q, + 1 of each 8-column block j (h1 in
 * acc[4 j..], h3 in acc[64 + 4 j..], j < 16); h1, h3 rounded to bf16, hh
 * from the rounded values. a.epi: WS_EPI_ST16 (the default) transposes
 * each 4 blocks across the quad (lane q then holds block q's 8 columns)
 * and stores 16 bytes a lane; WS_EPI_ST4 stores each lane's pair (4
 * bytes); WS_EPI_NOSTORE / WS_EPI_NONE (timing only: no output) */
__device__ __forceinline__ static void ws_epi(const struct ws_args &a, const float (&acc)[128],
                                              int rr, int r1, int n0, int q)
{
	const int F = a.F;
	if (a.epi == WS_EPI_NONE)
		return;
#pragma unroll
	for (int h = 0; h < 2; h++) {
		const int row = rr + 8 * h;
		const bool rok = row < r1;
#pragma unroll
		for (int g = 0; g < 4; g++) {
			uint32_t v1[4], v3[4], vh[4];
#pragma unroll
			for (int jj = 0; jj < 4; jj++) {
				const int j = 4 * g + jj;
				v1[jj] = ws_pack(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
				v3[jj] = ws_pack(acc[64 + 4 * j + 2 * h],
				                 acc[64 + 4 * j + 2 * h + 1]);
				vh[jj] = ws_pack(ws_silu(ws_lo(v1[jj])) * ws_lo(v3[jj]),
				                 ws_silu(ws_hi(v1[jj])) * ws_hi(v3[jj]));
			}
			if (a.epi == WS_EPI_ST16) {
				ws_transpose4(v1, q);
				ws_transpose4(v3, q);
				ws_transpose4(vh, q);
				const int f = n0 + 8 * (4 * g + q);
				if (rok && f < F) {
					const size_t o = (size_t)row * F + f;
					*(uint4 *)(a.h1 + o) =
					        make_uint4(v1[0], v1[1], v1[2], v1[3]);
					*(uint4 *)(a.h3 + o) =
					        make_uint4(v3[0], v3[1], v3[2], v3[3]);
					*(uint4 *)(a.hh + o) =
					        make_uint4(vh[0], vh[1], vh[2], vh[3]);
				}
			} else if (a.epi == WS_EPI_ST4) {
#pragma unroll
				for (int jj = 0; jj < 4; jj++) {
					const int f = n0 + 8 * (4 * g + jj) + 2 * q;
					if (rok && f < F) {
						const size_t o = (size_t)row * F + f;
						*(uint32_t *)(a.h1 + o) = v1[jj];
						*(uint32_t *)(a.h3 + o) = v3[jj];
						*(uint32_t *)(a.hh + o) = vh[jj];
					}
				}
			} else if (rr < 0) { /* WS_EPI_NOSTORE: never taken, keeps the math */
				*(uint32_t *)a.hh = v1[0] ^ v1[1] ^ v1[2] ^ v1[3] ^ v3[0] ^ v3[1] ^
				                    v3[2] ^ v3[3] ^ vh[0] ^ vh[1] ^ vh[2] ^ vh[3];
			}
		}
	}
}

/* the fp32 epilogue of DOWN / UP_DX: rows rr, rr + 8 to out[perm[row]]
 * (slot order, D wide), the pairs of each 4 8-column blocks transposed
 * across the quad so lane q writes block q's 8 floats (two 16-byte stores) */
__device__ __forceinline__ static void ws_epi_f32(const struct ws_args &a, const float (&acc)[128],
                                                  int rr, int r1, int n0, int q)
{
	const int D = a.D;
#pragma unroll
	for (int h = 0; h < 2; h++) {
		const int row = rr + 8 * h;
		const bool rok = row < r1;
		float *dst = a.out + (rok ? (size_t)a.perm[row] * D : 0);
#pragma unroll
		for (int g = 0; g < 8; g++) {
			uint32_t lo[4], hi[4];
#pragma unroll
			for (int jj = 0; jj < 4; jj++) {
				const int j = 4 * g + jj;
				lo[jj] = __float_as_uint(acc[4 * j + 2 * h]);
				hi[jj] = __float_as_uint(acc[4 * j + 2 * h + 1]);
			}
			ws_transpose4(lo, q);
			ws_transpose4(hi, q);
			const int n = n0 + 8 * (4 * g + q);
			if (rok && n < D) {
				float4 *o = (float4 *)(dst + n);
				o[0] = make_float4(__uint_as_float(lo[0]), __uint_as_float(hi[0]),
				                   __uint_as_float(lo[1]), __uint_as_float(hi[1]));
				o[1] = make_float4(__uint_as_float(lo[2]), __uint_as_float(hi[2]),
				                   __uint_as_float(lo[3]), __uint_as_float(hi[3]));
			}
		}
	}
}

/* row tile b of the experts' ceil(n_e / 128) tiles: expert, first row, end */
__device__ __forceinline__ static void ws_rowtile(const int *offs, int E, int b, int *e, int *r0,
                                                  int *r1)
{
	for (int i = 0; i < E; i++) {
		int s = offs[i], t = offs[i + 1], nt = (t - s + WS_BM - 1) / WS_BM;
		if (b < nt) {
			*e = i;
			*r0 = s + b * WS_BM;
			*r1 = t;
			return;
		}
		b -= nt;
	}
	*e = -1;
}

template <int MODE, int WS_ST>
__global__ static void __launch_bounds__(WS_THREADS, 1)
        k_ws(struct ws_args a, const __grid_constant__ struct ws_maps tm)
{
	extern __shared__ __align__(1024) unsigned char ws_sm[];
	__shared__ __align__(8) uint64_t full[WS_ST], empty[WS_ST];
	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int D = a.D, F = a.F, E = a.E;
	/* k blocks a tile; column tiles (UP: 128 hidden units, else 256 of D) */
	const int Kd = MODE == WS_UP ? D : MODE == WS_DOWN ? F : 2 * F;
	const int nk = (Kd + WS_BK - 1) / WS_BK,
	          nx = MODE == WS_UP ? (F + WS_BF - 1) / WS_BF : (D + 255) / 256;
	const int bn = MODE == WS_UP ? WS_BF : 256;
	const uint32_t sbase = (ptx::smem_u32(ws_sm) + 1023u) & ~1023u;
	const uint32_t fb = ptx::smem_u32(full), eb = ptx::smem_u32(empty);
	int nrt = 0; /* row tiles of all experts */
	for (int i = 0; i < E; i++)
		nrt += (a.offs[i + 1] - a.offs[i] + WS_BM - 1) / WS_BM;
	const int ntiles = nrt * nx;

	if (tid == 0) {
		for (int s = 0; s < WS_ST; s++) {
			ws_bar_init(fb + 8 * s, 1);
			ws_bar_init(eb + 8 * s, 8);
		}
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	__syncthreads();

	if (warp < 4) { /* the producer warpgroup: one thread issues the loads */
		asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
		if (tid != 0)
			return;
		int it = 0;
		for (int t = blockIdx.x; t < ntiles; t += gridDim.x) {
			int e, r0, r1;
			ws_rowtile(a.offs, E, t / nx, &e, &r0, &r1);
			const int n0 = (t % nx) * bn;
			for (int kb = 0; kb < nk; kb++, it++) {
				const int s = it % WS_ST, k0 = kb * WS_BK;
				const uint32_t sa = sbase + s * WS_STAGE, bar = fb + 8 * s;
				ws_wait(eb + 8 * s, ((it / WS_ST) & 1) ^ 1);
				ws_expect(bar, WS_STAGE);
				ws_tma2(sa, &tm.a, k0, r0, bar);
				if (MODE == WS_UP) { /* W1 rows n0.., then W3's */
					ws_tma3(sa + WS_ATILE, &tm.w1, k0, n0, e, bar);
					ws_tma3(sa + 2 * WS_ATILE, &tm.w3, k0, n0, e, bar);
				} else if (MODE == WS_DOWN) { /* W2 rows (d) n0.., n0 + 128.. */
					ws_tma3(sa + WS_ATILE, &tm.w1, k0, n0, e, bar);
					ws_tma3(sa + 2 * WS_ATILE, &tm.w1, k0, n0 + 128, e, bar);
				} else { /* [W1; W3] (k, n): F % 64 == 0, a block in one */
					const CUtensorMap *m = k0 < F ? &tm.w1 : &tm.w3;
					const int kr = k0 < F ? k0 : k0 - F;
					for (int i = 0; i < 4; i++)
						ws_tma3(sa + WS_ATILE + i * 8192, m, n0 + 64 * i,
						        kr, e, bar);
				}
			}
		}
		return;
	}

	/* consumers: warpgroup c = rows 64 c.. of the tile, all 256 columns */
	asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
	const int c = (warp >> 2) - 1, w4 = warp & 3;
	float acc[128];
	int it = 0;
	for (int t = blockIdx.x; t < ntiles; t += gridDim.x) {
		int e, r0, r1;
		ws_rowtile(a.offs, E, t / nx, &e, &r0, &r1);
		const int n0 = (t % nx) * bn;
		for (int kb = 0; kb < nk; kb++, it++) {
			const int s = it % WS_ST;
			const uint32_t sa = sbase + s * WS_STAGE;
			ws_wait(fb + 8 * s, (it / WS_ST) & 1);
			const uint32_t la = ptx::dlo(sa + c * 8192), lb = ptx::dlo(sa + WS_ATILE);
			ptx::fence();
#pragma unroll
			for (int kk = 0; kk < WS_BK / 16; kk++) {
				if (MODE == WS_UP_DX) /* B (k, n): 16 k rows a step */
					ws_wgmma256<1>(acc, ptx::dsc(la, kk * 32),
					               ws_desc_n(sa + WS_ATILE + kk * 2048, 8192),
					               kb > 0 || kk > 0);
				else
					ws_wgmma256<0>(acc, ptx::dsc(la, kk * 32),
					               ptx::dsc(lb, kk * 32), kb > 0 || kk > 0);
			}
			ptx::commit();
			ptx::wait<1>();
			if (kb > 0) { /* block it - 1's products are done: its stage is free */
				__syncwarp();
				if (lane == 0)
					ws_arrive(eb + 8 * ((it - 1) % WS_ST));
			}
		}
		ptx::wait<0>();
		ws_reg_fence(acc);
		__syncwarp();
		if (lane == 0)
			ws_arrive(eb + 8 * ((it - 1) % WS_ST));

		if (MODE == WS_UP)
			ws_epi(a, acc, r0 + c * 64 + w4 * 16 + (lane >> 2), r1, n0, lane & 3);
		else
			ws_epi_f32(a, acc, r0 + c * 64 + w4 * 16 + (lane >> 2), r1, n0, lane & 3);
	}
}

/* ---- host side ------------------------------------------------------------- */

/* a bf16 tensor map, dims innermost first, boxes of 64 x box_rows (x 1) */
static int ws_map(CUtensorMap *m, const void *p, int nd, const cuuint64_t *dim, int box_rows)
{
	const swerve_tma_encode_fn encode = swerve_tma_encoder("gpu moe wsb");
	if (!encode)
		return SWERVE_ERROR;
	const cuuint64_t stride[2] = {dim[0] * 2, dim[0] * dim[1] * 2};
	const cuuint32_t box[3] = {64, (cuuint32_t)box_rows, 1}, es[3] = {1, 1, 1};
	CUresult r =
	        encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, (cuuint32_t)nd, (void *)p, dim, stride,
	               box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
	               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS)
		return swerve_error_set(SWERVE_ERROR, "gpu moe wsb: tensor map: CUresult %d",
		                        (int)r);
	return 0;
}

static int ws_aligned(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

/* the CTAs of a full grid of k_ws<MODE, ST> (SMs x CTAs an SM; the shared
 * memory attribute set once), or a negative code */
template <int MODE, int ST> static int ws_ctas(void)
{
	static int ctas;
	if (!ctas) {
		int dev, sms, occ;
		CK(cudaFuncSetAttribute(k_ws<MODE, ST>, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        WS_SMEM(ST)));
		CK(cudaGetDevice(&dev));
		CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
		CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_ws<MODE, ST>, WS_THREADS,
		                                                 WS_SMEM(ST)));
		if (occ < 1)
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu moe wsb: no CTA fits an SM (%d bytes)",
			                        WS_SMEM(ST));
		ctas = sms * occ;
	}
	return ctas;
}

/* POLICY_GPU_MOE_WSB_ST (measurements): the stages of the ring, 3 or 4 (the default) */
static const char *const ws_st_names[] = {"3", "4"};

/* one product: the checks, the tensor maps, a grid of min(tiles, SMs, cap)
 * persistent CTAs */
template <int MODE>
static int ws_launch(const struct policy_moe_dims *d, struct ws_args *a, const uint16_t *A,
                     const uint16_t *b0, const uint16_t *b1, int cap, void *stream)
{
	const int R = d->T * d->K;
	if (d->D <= 0 || d->F <= 0 || d->D % 8 || d->F % 8 || (MODE == WS_UP_DX && d->F % 64))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe wsb: D (%d) and F (%d) must be multiples of 8 "
		                        "(F of 64 for up dX)",
		                        d->D, d->F);
	if (!ws_aligned(A) || !ws_aligned(b0) || (b1 && !ws_aligned(b1)) ||
	    (MODE == WS_UP ? !ws_aligned(a->h1) || !ws_aligned(a->h3) || !ws_aligned(a->hh)
	                   : !ws_aligned(a->out)))
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb: operands not 16-byte aligned");
	static const char *const epis[] = {"st16", "st4", "nostore", "none"};
	const int epi = policy_env_choice("POLICY_GPU_MOE_WSB_EPI", epis, 4, WS_EPI_ST16);
	if (epi < 0)
		return epi;
	const int st = policy_env_choice("POLICY_GPU_MOE_WSB_ST", ws_st_names, 2, 1) + 3;
	if (st < 3)
		return st - 3;
	if (d->E < 1 || R < 1)
		return 0;
	const int ctas = st == 3 ? ws_ctas<MODE, 3>() : ws_ctas<MODE, 4>();
	if (ctas < 0)
		return ctas;
	struct ws_maps tm;
	memset(&tm, 0, sizeof(tm));
	const cuuint64_t D = (cuuint64_t)d->D, F = (cuuint64_t)d->F, E = (cuuint64_t)d->E;
	const cuuint64_t kd = MODE == WS_UP ? D : MODE == WS_DOWN ? F : 2 * F;
	const cuuint64_t adim[2] = {kd, (cuuint64_t)R}, wfd[3] = {D, F, E}, wdf[3] = {F, D, E};
	int rc = ws_map(&tm.a, A, 2, adim, WS_BM);
	if (!rc) /* UP: W1 / W3 rows, 128 a box; DOWN: W2 rows; UP_DX: (k, n) 64 x 64 */
		rc = ws_map(&tm.w1, b0, 3, MODE == WS_DOWN ? wdf : wfd,
		            MODE == WS_UP_DX ? 64 : 128);
	if (!rc && MODE != WS_DOWN)
		rc = ws_map(&tm.w3, b1, 3, wfd, MODE == WS_UP_DX ? 64 : 128);
	if (rc)
		return rc;
	a->offs = d->offs;
	a->perm = d->perm;
	a->E = d->E;
	a->D = d->D;
	a->F = d->F;
	a->epi = epi;
	const int nx = MODE == WS_UP ? (d->F + WS_BF - 1) / WS_BF : (d->D + 255) / 256;
	const long tiles = (long)((R + WS_BM - 1) / WS_BM + d->E) * nx;
	int grid = cap > 0 && cap < ctas ? cap : ctas;
	if (tiles < grid)
		grid = (int)tiles;
	if (st == 3)
		k_ws<MODE, 3><<<grid, WS_THREADS, WS_SMEM(3), (cudaStream_t)stream>>>(*a, tm);
	else
		k_ws<MODE, 4><<<grid, WS_THREADS, WS_SMEM(4), (cudaStream_t)stream>>>(*a, tm);
	LAUNCHED();
	return 0;
}

int policy_moe_ws_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                     const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                     void *stream)
{
	struct ws_args a = {};
	if (!d->gathered)
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb: up needs the gathered xg");
	a.h1 = h1;
	a.h3 = h3;
	a.hh = hh;
	return ws_launch<WS_UP>(d, &a, xg, w1, w3, cap, stream);
}

int policy_moe_ws_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                       const uint16_t *w2, int cap, void *stream)
{
	struct ws_args a = {};
	a.out = yp;
	return ws_launch<WS_DOWN>(d, &a, hh, w2, NULL, cap, stream);
}

int policy_moe_ws_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                        const uint16_t *w1, const uint16_t *w3, int cap, void *stream)
{
	struct ws_args a = {};
	a.out = dxp;
	return ws_launch<WS_UP_DX>(d, &a, dh13, w1, w3, cap, stream);
}
