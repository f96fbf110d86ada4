/* gpu_moe.cu - the MoE experts as grouped GEMMs with the gather, SwiGLU and
 * the slot-ordered outputs fused; see gpu_moe.h.
 *
 * One kernel template, k_mg<MODE, VAR>, runs all six expert products of a
 * layer (forward up and down, their input and weight gradients). A CTA of 8
 * warps computes a 128 x 128 fp32 tile (bf16 in, fp32 accumulation), its
 * operands staged through a 3-stage cp.async pipeline of 64-deep K slices
 * (96 KB of shared memory, two CTAs an SM). VAR 1 ("wg") issues
 * wgmma m64n64k16 from shared memory, each warpgroup 64 rows x 128 columns;
 * VAR 6 ("wgt", round 6) is VAR 1 with the operands that are not gathered
 * loaded by TMA from one thread (see struct mg_tma); the default, VAR 7
 * ("wgtd"), also the weight gradients' contiguous operands;
 * VAR 0 the same tile with mma.sync m16n8k16 and ldmatrix (each warp
 * 64 x 32); VAR 2 a 128 x 256 tile (see mg_var). Shared tiles use the
 * 128-byte swizzle (16-byte chunks XOR-ed with the row's low 3 bits), which
 * the wgmma descriptors describe and which keeps ldmatrix conflict-free:
 *   K-major tile (128 rows of 64 k, 128 B a row): A of the row modes, B
 *     stored (n, k) (the weights in the forward);
 *   M/N-major tile (blocks of 64 k rows x 64, 128 B a row): A of the weight
 *     gradients (rows are k), B stored (k, n); wgmma's transposed operand,
 *     or ldmatrix.trans.
 * Row modes (the expert segment is the M dimension: UP, DOWN, DOWN_DX,
 * UP_DX) find their expert and first row from offs on the device: CTA row
 * tile b walks the experts' tile counts ceil(n_e / 128); a grid of
 * R / 128 + E row tiles covers any routing, and the tiles past the last
 * expert's exit. Weight-gradient modes (DOWN_DW, UP_DW) run one CTA per
 * (expert, 128 x 128 tile of dW) over the expert's whole segment as K (no
 * split-K, so the sum order is fixed: deterministic), and add to dW.
 * After the main loop the tile goes through shared memory (fp32, padded
 * rows) and each mode's epilogue writes it with 8- or 16-byte accesses:
 *   UP      tile columns 0..63 are h1 = x W1^T, 64..127 h3 = x W3^T for the
 *           same 64 hidden units: writes h1, h3 and hh = SiLU(h1) h3 (bf16);
 *           A rows gathered from x by the token of perm[row];
 *   DOWN    yp[perm[row]] (fp32, slot order);
 *   DOWN_DX dh = dyp W2 -> [dh h3 SiLU'(h1) | dh SiLU(h1)] (bf16);
 *   UP_DX   dxp[perm[row]] = dh13 [W1; W3] (fp32, slot order; K = 2F);
 *   DOWN_DW dW2 += dyp^T hh;  UP_DW [dW1; dW3] += dh13^T x[tok] (M = 2F).
 * Round 7 (the default; POLICY_GPU_MOE_GATHER=load is round 6): x[tok] is
 * gathered once per layer into xg (T K, D) in row order (k_mg_gather), so
 * UP's A and UP_DW's B are contiguous rows like the other products' and
 * come by TMA in wgt / wgtd (mg_args.gx; the cp.async variants read xg's
 * rows directly). Round 8 (the default; POLICY_GPU_MOE_EPI=smem is round
 * 7): in wgtd, UP's and DOWN_DX's bf16 outputs skip the fp32 tile: stmatrix
 * from the accumulators and TMA tensor stores (mg_epi_tma, variant 8).
 * Round 9 (opt-in "wgtdp"; H100: correct, -1% a layer): UP from xg and
 * DOWN_DX in persistent CTAs, a tile's stores in flight under the next
 * tile (k_mgp). Round 10 ("wsb2"): UP from xg, DOWN and UP_DX
 * in policy/gpu_moe_ws.cu's warp-specialised 128 x 256 kernel; the other
 * products run wgtd's kernels here. Round 16 ("wsb3w", the default in
 * rounds 16-26): wsb2 plus both weight gradients in that kernel; DOWN_DX
 * stays here (wgtd). Round 27's default, "wsb9d": wsb3w with DOWN_DX in
 * k_mgx (below), the same dh13 bit for bit, ~1% faster at 65,536 tokens.
 * Round 19 (opt-in, issue 10's down dX): variant 15 ("wsb8g") prefetches
 * DOWN_DX's h1 / h3 tile into L2 at the first k block, variant 16 ("wsb8h")
 * loads W2 evict_last and h1 / h3 / stores dh13 evict_first. H100
 * (2026-11-27, gpu_train_moe, ms balanced / skewed): wgtd 0.103 / 0.108-
 * 0.109, wsb8g 0.111 / 0.117, wsb8h 0.101-0.102 / 0.108-0.111. ncu of
 * k_mg<2, 8>: 95.8 us, DRAM reads 106.7 MB (the first touches: no
 * re-reads), writes 51.8, DRAM 49% and L2 65% of peak, tensor pipe 30%
 * active, 3.8 warps a scheduler of which 0.77 eligible: latency-bound, not
 * bandwidth-bound. */
#include "kernels/ptx.cuh"
#include "kernels/tma.h"
#include "policy/gpu_moe.h"
#include "policy/gpu_moe_ws.h"
#include "policy/gpu_util.h"
#include "kernels/pdl.cuh"

#include <cuda.h> /* CUtensorMap and its encoder's types (the encoder is fetched at run time) */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MG_BM      128
#define MG_BK      64
#define MG_THREADS 256
#define MG_TILE    (MG_BM * MG_BK * 2) /* bytes of the A tile */

/* the variants: 0 mma.sync, 128 x 128 tiles, 3 stages, 2 CTAs an SM;
 * 1 wgmma (6 and 7 are 1 with TMA loads), the same tiles and stages, each k block's products
 * waited for; 2 wgmma, 128 x 256 tiles (2/3 of the L2 traffic per product
 * of 1), 4 stages, one k block's products left in flight, 1 CTA an SM:
 * measured slower than 1 (H100: 1.14 against 0.88 ms a layer), the
 * epilogue and the pipeline's fill no longer hidden by a second CTA;
 * 3 ("wgp", round 5) 1's tiles, each k block's products left in flight
 * across the barrier (wgmma.wait_group 1: the stage a load overwrites was
 * read by block kb - 2, complete in every warpgroup once all passed the
 * barrier), so ST >= PD + 2: 3 stages, loads one block ahead, 2 CTAs an
 * SM; m64n128k16 (one per k16 step; the n128 accumulator is the two n64
 * halves side by side); DOWN_DW's K split (see k_ws). H100, 2026-11-26:
 * 0.91-1.00 ms a layer against wg's 0.88-0.95 in the same run (no gain:
 * the drained wgmma pipe was not what limits wg, the second CTA covers
 * it); with 4 stages loading two blocks ahead or 6 loading four, 1 CTA an
 * SM, 1.24-1.34 ms (the depth did not matter, the second CTA did) */
template <int VAR> struct mg_var {
	static constexpr int BN = VAR == 2 ? 256 : 128;
	static constexpr int ST = VAR == 2 ? 4 : 3;
	static constexpr int PD = VAR == 3 ? 1 : 2;            /* k blocks loading ahead */
	static constexpr bool W1 = VAR == 2 || VAR == 3;       /* a block's wgmma in flight */
	static constexpr bool WIDE = VAR == 3;                 /* m64n128k16 */
	static constexpr int MINB = VAR == 2 ? 1 : 2;          /* CTAs an SM */
	static constexpr int STAGE = MG_TILE + BN * MG_BK * 2; /* bytes: A and B tiles */
	static constexpr int SMEM = ST * STAGE + 1024;         /* and the alignment */
	static constexpr int CLD = BN + 4;                     /* fp32 epilogue row stride */
	static constexpr int NB = BN / 32;                     /* B chunks a thread loads */
};

enum { MG_UP, MG_DOWN, MG_DOWN_DX, MG_UP_DX, MG_DOWN_DW, MG_UP_DW };

struct mg_args {
	const int *offs, *perm;
	int K, E, D, F;
	const uint16_t *a;       /* A operand */
	const uint16_t *b0, *b1; /* weights (W1 / W3 / W2) or the second activation */
	const uint16_t *h1, *h3; /* DOWN_DX: the forward's pre-activations */
	uint16_t *o1, *o2, *o3;  /* bf16 outputs */
	float *f1, *f2;          /* fp32 outputs */
	int *flags;              /* ws weight gradients: per (expert, tile) split order */
	int chr;                 /* ws weight gradients: rows per split (0: none) */
	int beta;                /* weight gradients: 1 add to dW, 0 store (round 6) */
	int gx; /* round 7: UP's A / UP_DW's B is xg (R, D) in row order, not x by token */
};

__device__ __forceinline__ static float mg_sigm(float x)
{
	return 1.0f / (1.0f + expf(-x));
}
__device__ __forceinline__ static uint16_t mg_f2bf(float f)
{
	uint32_t u = __float_as_uint(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return 0x7fc0;
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}
__device__ __forceinline__ static float mg_bf2f(uint16_t h)
{
	return __uint_as_float((uint32_t)h << 16);
}
__device__ __forceinline__ static uint2 mg_pack4(float a, float b, float c, float d)
{
	return make_uint2((uint32_t)mg_f2bf(a) | (uint32_t)mg_f2bf(b) << 16,
	                  (uint32_t)mg_f2bf(c) | (uint32_t)mg_f2bf(d) << 16);
}
__device__ __forceinline__ static void mg_unpack4(uint2 v, float *x)
{
	x[0] = mg_bf2f((uint16_t)(v.x & 0xffff));
	x[1] = mg_bf2f((uint16_t)(v.x >> 16));
	x[2] = mg_bf2f((uint16_t)(v.y & 0xffff));
	x[3] = mg_bf2f((uint16_t)(v.y >> 16));
}

/* byte offsets in the swizzled tiles (the 128-byte swizzle of wgmma, so the
 * same tiles serve ldmatrix and wgmma descriptors): K-major, 128 rows of 64
 * k (128 B); M/N-major, two blocks of 64 k rows x 64 (128 B), chunk c of
 * 0..15 in block c / 8 */
__device__ __forceinline__ static uint32_t mg_kofs(int r, int c)
{
	return (uint32_t)(r * 128 + ((c ^ (r & 7)) << 4));
}
__device__ __forceinline__ static uint32_t mg_nofs(int k, int c)
{
	return (uint32_t)((c >> 3) * 8192 + k * 128 + (((c & 7) ^ (k & 7)) << 4));
}

/* ---- wgmma (as kernels/lightning.cu's V3) ---------------------------------- */

/* shared-memory descriptor, 128-byte swizzle, 8-row groups 1024 B apart (in
 * both offset fields: every operand is one swizzle atom wide in the
 * dimension the other would step); off: bytes added to the start address */
__device__ __forceinline__ static uint64_t mg_desc(uint32_t saddr, uint32_t off)
{
	uint32_t lo = ((saddr + off) >> 4) | ((1024u >> 4) << 16);
	return ((uint64_t)((1024u >> 4) | (1u << 30)) << 32) | (uint64_t)lo;
}
/* as mg_desc, with the leading byte offset given (MN-major operands wider
 * than one 64-element swizzle atom) */
__device__ __forceinline__ static uint64_t mg_desc_l(uint32_t saddr, uint32_t off, uint32_t lbo)
{
	uint32_t lo = ((saddr + off) >> 4) | ((lbo >> 4) << 16);
	return ((uint64_t)((1024u >> 4) | (1u << 30)) << 32) | (uint64_t)lo;
}
#define MG_D64(d)                                                                                  \
	"+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
	        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),         \
	        "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),      \
	        "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),      \
	        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),      \
	        "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]),      \
	        "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),      \
	        "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]),      \
	        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]),      \
	        "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]),      \
	        "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
/* d += A B, m64n128k16, both from shared memory; TA / TB = 1: M- / N-major */
template <int TA, int TB>
__device__ __forceinline__ static void mg_wgmma128(float (&d)[64], uint64_t da, uint64_t db)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
	             "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
	             "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, "
	             "%30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "
	             "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, "
	             "%58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, %67, %68;\n}\n"
	             : MG_D64(d)
	             : "l"(da), "l"(db), "r"(1), "n"(TA), "n"(TB));
}
#undef MG_D64

/* the epilogue of every variant: the fp32 tile Cs (128 x BN, row stride
 * BN + 4) to each mode's outputs, threads t of nt */
template <int MODE, int BN>
__device__ __forceinline__ static void mg_epi(const struct mg_args &a, const float *Cs, int t,
                                              int nt, int e, int r0, int r1, int m0, int n0,
                                              bool add)
{
	constexpr int CLD = BN + 4;
	const int D = a.D, F = a.F;
	const int N = MODE == MG_UP || MODE == MG_DOWN_DX || MODE == MG_DOWN_DW ? F : D;
	const int M = MODE == MG_DOWN_DW ? D : 2 * F;
	const size_t wsz = (size_t)F * D;
	(void)N, (void)M, (void)wsz, (void)m0, (void)e;
	if (MODE == MG_UP) {
		for (int idx = t; idx < MG_BM * (BN / 8); idx += nt) {
			int r = idx / (BN / 8), c = idx % (BN / 8) * 4, row = r0 + r, f = n0 + c;
			if (row >= r1 || f >= F)
				continue;
			float4 u = *(const float4 *)&Cs[r * CLD + c];
			float4 v = *(const float4 *)&Cs[r * CLD + BN / 2 + c];
			uint2 pu = mg_pack4(u.x, u.y, u.z, u.w), pv = mg_pack4(v.x, v.y, v.z, v.w);
			float x1[4], x3[4];
			mg_unpack4(pu, x1);
			mg_unpack4(pv, x3);
			size_t o = (size_t)row * F + f;
			*(uint2 *)(a.o1 + o) = pu;
			*(uint2 *)(a.o2 + o) = pv;
			*(uint2 *)(a.o3 + o) = mg_pack4(
			        x1[0] * mg_sigm(x1[0]) * x3[0], x1[1] * mg_sigm(x1[1]) * x3[1],
			        x1[2] * mg_sigm(x1[2]) * x3[2], x1[3] * mg_sigm(x1[3]) * x3[3]);
		}
	} else if (MODE == MG_DOWN || MODE == MG_UP_DX) {
		for (int idx = t; idx < MG_BM * (BN / 4); idx += nt) {
			int r = idx / (BN / 4), c = idx % (BN / 4) * 4, row = r0 + r, n = n0 + c;
			if (row >= r1 || n >= D)
				continue;
			*(float4 *)(a.f1 + (size_t)a.perm[row] * D + n) =
			        *(const float4 *)&Cs[r * CLD + c];
		}
	} else if (MODE == MG_DOWN_DX) {
		for (int idx = t; idx < MG_BM * (BN / 4); idx += nt) {
			int r = idx / (BN / 4), c = idx % (BN / 4) * 4, row = r0 + r, f = n0 + c;
			if (row >= r1 || f >= F)
				continue;
			float4 g = *(const float4 *)&Cs[r * CLD + c];
			float gv[4] = {g.x, g.y, g.z, g.w}, x1[4], x3[4], d1[4], d3[4];
			size_t o = (size_t)row * F + f;
			mg_unpack4(*(const uint2 *)(a.h1 + o), x1);
			mg_unpack4(*(const uint2 *)(a.h3 + o), x3);
			for (int j = 0; j < 4; j++) {
				float s = mg_sigm(x1[j]);
				d3[j] = gv[j] * x1[j] * s;
				d1[j] = gv[j] * x3[j] * s * (1.0f + x1[j] * (1.0f - s));
			}
			uint16_t *dst = a.o1 + (size_t)row * 2 * F + f;
			*(uint2 *)dst = mg_pack4(d1[0], d1[1], d1[2], d1[3]);
			*(uint2 *)(dst + F) = mg_pack4(d3[0], d3[1], d3[2], d3[3]);
		}
	} else { /* weight gradients: dW (M, N) of expert e += the tile */
		for (int idx = t; idx < MG_BM * (BN / 4); idx += nt) {
			int r = idx / (BN / 4), c = idx % (BN / 4) * 4, m = m0 + r, n = n0 + c;
			float *dst;
			if (m >= M || n >= N)
				continue;
			if (MODE == MG_DOWN_DW)
				dst = a.f1 + e * wsz + (size_t)m * F + n;
			else
				dst = m < F ? a.f1 + e * wsz + (size_t)m * D + n
				            : a.f2 + e * wsz + (size_t)(m - F) * D + n;
			float4 t = *(const float4 *)&Cs[r * CLD + c];
			if (add) { /* the arena was not just cleared: read-modify-write */
				float4 o = *(float4 *)dst;
				t.x += o.x;
				t.y += o.y;
				t.z += o.z;
				t.w += o.w;
			}
			*(float4 *)dst = t;
		}
	}
}

/* ---- TMA (variant 6, "wgt", round 6) ---------------------------------------
 * The operands that are not gathered (the weights of the four row modes, and
 * A of DOWN, DOWN_DX, UP_DX: rows r0.. of a contiguous (R, K) matrix) come
 * by cp.async.bulk.tensor from thread 0 into the same 128-byte swizzled
 * tiles (a box's 64 bf16 = 128 B rows, 1024-byte aligned destinations: the
 * TMA swizzle is mg_kofs / mg_nofs), completion by an mbarrier per stage
 * (expect-tx). Maps made on the host per launch (the encoder from the driver
 * through the runtime, as kernels/lightning.cu): a (R, K) rows, box 64 x
 * 128; b0, b1 weights (E, rows, cols), box 64 x 64 x 1. Out-of-range
 * boxes are zero-filled (k past K: no contribution; n past N: columns the
 * epilogue does not store); rows past r1 of A are the next expert's, whose
 * products the epilogue does not store either. */
struct mg_tma {
	CUtensorMap a, b0, b1;
	/* round 8 (variant 8, the TMA epilogues): UP: the stores of h1, h3, hh
	 * (boxes 64 x 16); DOWN_DX: s1 the store of dh13 (64 x 16), s2 / s3 the
	 * loads of h1 / h3 (64 x 128) */
	CUtensorMap s1, s2, s3;
};
__device__ __forceinline__ static void mg_tb_init(uint32_t bar)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
}

/* a TMA tensor store of a 64 x 16 box from shared memory (bulk group) */
__device__ __forceinline__ static void mg_tma_st(const CUtensorMap *map, int x, int y, uint32_t src)
{
	asm volatile(
	        "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::
	                "l"(map),
	        "r"(x), "r"(y), "r"(src)
	        : "memory");
}
/* round 19 ("wsb8h", variant 16): L2 eviction priorities. A policy word
 * (createpolicy) for data read or written once (evict_first: h1 / h3, dh13)
 * and for data every row tile reads again (evict_last: W2), and the TMA
 * load / store forms that take it (.L2::cache_hint) */
__device__ __forceinline__ static void mg_tma_st_h(const CUtensorMap *map, int x, int y,
                                                   uint32_t src, uint64_t pol)
{
	asm volatile(
	        "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group.L2::cache_hint [%0, {%1, "
	        "%2}], [%3], %4;\n" ::"l"(map),
	        "r"(x), "r"(y), "r"(src), "l"(pol)
	        : "memory");
}
__device__ __forceinline__ static void mg_tma_ld2_h(uint32_t dst, const CUtensorMap *map, int x,
                                                    int y, uint32_t bar, uint64_t pol)
{
	asm volatile(
	        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::"
	        "cache_hint [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
	        "l"(map), "r"(x), "r"(y), "r"(bar), "l"(pol)
	        : "memory");
}
__device__ __forceinline__ static void mg_tma_ld3_h(uint32_t dst, const CUtensorMap *map, int x,
                                                    int y, int z, uint32_t bar, uint64_t pol)
{
	asm volatile(
	        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::"
	        "cache_hint [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
	        "l"(map), "r"(x), "r"(y), "r"(z), "r"(bar), "l"(pol)
	        : "memory");
}
__device__ __forceinline__ static void mg_bulk_commit()
{
	asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
/* the sources of this thread's bulk stores have been read */
__device__ __forceinline__ static void mg_bulk_wait_read()
{
	asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

/* the dW tile (m0, n0) of expert e (bn columns) set to zero: a stored
 * (beta 0) weight gradient of an expert without rows */
template <int MODE>
__device__ static void mg_dw_zero(const struct mg_args &a, int e, int m0, int n0, int bn)
{
	const int D = a.D, F = a.F, N = MODE == MG_DOWN_DW ? F : D,
	          M = MODE == MG_DOWN_DW ? D : 2 * F;
	const size_t wsz = (size_t)F * D;
	for (int idx = threadIdx.x; idx < MG_BM * (bn / 4); idx += blockDim.x) {
		int r = idx / (bn / 4), c = idx % (bn / 4) * 4, m = m0 + r, n = n0 + c;
		if (m >= M || n >= N)
			continue;
		float *dst = MODE == MG_DOWN_DW ? a.f1 + e * wsz + (size_t)m * F + n
		             : m < F            ? a.f1 + e * wsz + (size_t)m * D + n
		                                : a.f2 + e * wsz + (size_t)(m - F) * D + n;
		*(float4 *)dst = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
	}
}

/* variant 8's epilogues (round 8): warp w owns the 16 rows 16 w.. of the
 * tile (warpgroup w / 4, its warp w % 4 of the wgmma D layout) in 64-column
 * blocks wacc[h]; each 16 x 16 piece is four 8 x 8 bf16 matrices, one
 * stmatrix.x4 into a 128-byte swizzled 16-row staging block (the layout of
 * the TMA's 128-byte swizzle, 2048-byte aligned), and lane 0 stores the
 * warp's 16 rows with a TMA tensor store per 64-column block. A warp whose
 * rows pass the expert's end (r1: the next expert's rows) stores its
 * in-range rows from registers instead. The rounding is mg_epi's (h1, h3
 * rounded, hh from the rounded values; DOWN_DX from the fp32 dh; not
 * compared bit for bit with variant 7, the compiler may contract
 * differently).
 *   UP: h1 | h3 (wacc[0] | wacc[1], the same hidden units) and hh staged in
 *       three blocks (stages 0-1, free after the main loop);
 *   DOWN_DX: h1 / h3 of the tile (TMA loads in the main loop, stages sh1 /
 *       sh3) read by ldmatrix (the inverse of stmatrix: the accumulators'
 *       layout), and dh1 / dh3 written back in place, then stored. */
/* P (round 9, k_mgp, the persistent CTAs): UP stages h1 | h3 in sbase
 * (32 KB: the stage s1b's) and hh in s3b; the h1 / h3 mbarriers are waited
 * with parity eph (one phase a tile); the stores are committed but not
 * waited for: the caller waits (wait_group.read) before the staging is
 * loaded into again. P false is round 8's code. */
/* H (round 19, variant 16): DOWN_DX's dh13 stores with the evict_first
 * policy; false is round 8's code. Q (round 19b, "wsb9c"): DOWN_DX's dh1 /
 * dh3 pairs rounded and packed by one cvt.rn.bf16x2.f32 each instead of
 * mg_f2bf's integer sequence (the same round-to-nearest-even: the same bits
 * for every number; a NaN becomes 0x7fff instead of 0x7fc0); false is round
 * 8's code */
__device__ __forceinline__ static uint32_t mg_cvt2(float lo, float hi)
{
	uint32_t u;
	asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(u) : "f"(hi), "f"(lo));
	return u;
}
/* DOWN_DX's epilogue arithmetic (mg_epi_tma's and k_mgy's) for the 16 rows wr.. of the tile (this
 * warp's rows of one 64-row half), h1 / h3 at s1b / s3b (two 16 KB column
 * blocks each), dh1 / dh3 written back in place (rows within the expert)
 * or stored from registers (a 16-row band past the expert's end) */
template <bool Q>
__device__ __forceinline__ static void
mg_dx_band_at(const struct mg_args &a, float (&wacc)[2][32], uint32_t s1b, uint32_t s3b, int wr,
              int r0, int r1, int n0, int q, int sl, int rr, int cc, int F, bool tmrow)
{
#pragma unroll
	for (int h = 0; h < 2; h++) {
		if (n0 + h * 64 >= F) /* F % 64 == 0: whole blocks past F */
			continue;
#pragma unroll
		for (int np = 0; np < 4; np++) {
			const uint32_t o = h * 16384 + mg_kofs(wr + sl, 2 * np + (q >> 1));
			uint32_t x1r[4], x3r[4], u1[4], u3[4];
			ptx::ldsm_x4(x1r, s1b + o);
			ptx::ldsm_x4(x3r, s3b + o);
			const float *g = &wacc[h][8 * np];
#pragma unroll
			for (int i = 0; i < 4; i++) {
				float d1[2], d3[2];
#pragma unroll
				for (int j = 0; j < 2; j++) {
					float x1 = mg_bf2f((uint16_t)(x1r[i] >> (16 * j))),
					      x3 = mg_bf2f((uint16_t)(x3r[i] >> (16 * j))),
					      gv = g[2 * i + j], s = mg_sigm(x1);
					d3[j] = gv * x1 * s;
					d1[j] = gv * x3 * s * (1.0f + x1 * (1.0f - s));
				}
				if constexpr (Q) {
					u1[i] = mg_cvt2(d1[0], d1[1]);
					u3[i] = mg_cvt2(d3[0], d3[1]);
				} else {
					u1[i] = (uint32_t)mg_f2bf(d1[0]) | (uint32_t)mg_f2bf(d1[1])
					                                           << 16;
					u3[i] = (uint32_t)mg_f2bf(d3[0]) | (uint32_t)mg_f2bf(d3[1])
					                                           << 16;
				}
			}
			if (tmrow) {
				ptx::stsm_x4(s1b + o, u1[0], u1[1], u1[2], u1[3]);
				ptx::stsm_x4(s3b + o, u3[0], u3[1], u3[2], u3[3]);
			} else {
#pragma unroll
				for (int i = 0; i < 4; i++) {
					int row = r0 + wr + rr + (i & 1) * 8,
					    f = n0 + h * 64 + 16 * np + (i >> 1) * 8 + cc;
					if (row >= r1)
						continue;
					uint16_t *dst = a.o1 + (size_t)row * 2 * F + f;
					*(uint32_t *)dst = u1[i];
					*(uint32_t *)(dst + F) = u3[i];
				}
			}
		}
	}
}

/* mg_dx_band_at with this thread's lane coordinates (k_mgy) */
template <bool Q>
__device__ __forceinline__ static void mg_dx_band(const struct mg_args &a, float (&wacc)[2][32],
                                                  uint32_t s1b, uint32_t s3b, int wr, int r0,
                                                  int r1, int n0)
{
	const int lane = threadIdx.x & 31, q = lane >> 3;
	const int sl = (q & 1) * 8 + (lane & 7), rr = lane >> 2, cc = (lane & 3) * 2, F = a.F;
	mg_dx_band_at<Q>(a, wacc, s1b, s3b, wr, r0, r1, n0, q, sl, rr, cc, F, r0 + wr + 16 <= r1);
}
template <int MODE, bool P = false, bool H = false, bool Q = false>
__device__ __forceinline__ static void
mg_epi_tma(const struct mg_args &a, const struct mg_tma &tm, float (&wacc)[2][32], uint32_t sbase,
           uint32_t s1b, uint32_t s3b, uint32_t ebar, int r0, int r1, int n0, int eph = 0)
{
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, q = lane >> 3;
	const int wr = warp * 16, sl = (q & 1) * 8 + (lane & 7), rr = lane >> 2,
	          cc = (lane & 3) * 2, F = a.F;
	const bool tmrow = r0 + wr + 16 <= r1;
	(void)eph;
	if (MODE == MG_UP) {
		const uint32_t st0 = sbase + warp * 2048;
		const uint32_t sth = s3b + warp * 2048; /* P: hh's staging */
		(void)sth;
#pragma unroll
		for (int np = 0; np < 4; np++) {
			const float *a1 = &wacc[0][8 * np], *a3 = &wacc[1][8 * np];
			uint32_t u1[4], u3[4], uh[4];
#pragma unroll
			for (int i = 0; i < 4; i++) {
				uint16_t b1l = mg_f2bf(a1[2 * i]), b1h = mg_f2bf(a1[2 * i + 1]),
				         b3l = mg_f2bf(a3[2 * i]), b3h = mg_f2bf(a3[2 * i + 1]);
				float x1l = mg_bf2f(b1l), x1h = mg_bf2f(b1h), x3l = mg_bf2f(b3l),
				      x3h = mg_bf2f(b3h);
				u1[i] = (uint32_t)b1l | (uint32_t)b1h << 16;
				u3[i] = (uint32_t)b3l | (uint32_t)b3h << 16;
				uh[i] = (uint32_t)mg_f2bf(x1l * mg_sigm(x1l) * x3l) |
				        (uint32_t)mg_f2bf(x1h * mg_sigm(x1h) * x3h) << 16;
			}
			if (tmrow) {
				const uint32_t o = mg_kofs(sl, 2 * np + (q >> 1));
				ptx::stsm_x4(st0 + o, u1[0], u1[1], u1[2], u1[3]);
				ptx::stsm_x4(st0 + 16384 + o, u3[0], u3[1], u3[2], u3[3]);
				if constexpr (P)
					ptx::stsm_x4(sth + o, uh[0], uh[1], uh[2], uh[3]);
				else
					ptx::stsm_x4(st0 + 32768 + o, uh[0], uh[1], uh[2], uh[3]);
			} else {
#pragma unroll
				for (int i = 0; i < 4; i++) {
					int row = r0 + wr + rr + (i & 1) * 8,
					    f = n0 + 16 * np + (i >> 1) * 8 + cc;
					if (row >= r1)
						continue;
					size_t o = (size_t)row * F + f;
					*(uint32_t *)(a.o1 + o) = u1[i];
					*(uint32_t *)(a.o2 + o) = u3[i];
					*(uint32_t *)(a.o3 + o) = uh[i];
				}
			}
		}
		if (tmrow) {
			ptx::fence_proxy_async();
			__syncwarp();
			if (lane == 0) {
				mg_tma_st(&tm.s1, n0, r0 + wr, st0);
				mg_tma_st(&tm.s2, n0, r0 + wr, st0 + 16384);
				mg_tma_st(&tm.s3, n0, r0 + wr, P ? sth : st0 + 32768);
				mg_bulk_commit();
				if constexpr (!P)
					mg_bulk_wait_read();
			}
		}
	} else {
		ptx::mbar_wait(ebar, P ? eph : 0);
		ptx::mbar_wait(ebar + 8, P ? eph : 0);
		mg_dx_band_at<Q>(a, wacc, s1b, s3b, wr, r0, r1, n0, q, sl, rr, cc, F, tmrow);
		if (tmrow) {
			ptx::fence_proxy_async();
			__syncwarp();
			if (lane == 0) {
				for (int h = 0; h < 2; h++) {
					if (n0 + h * 64 >= F)
						continue;
					const uint32_t o = h * 16384 + wr * 128;
					if constexpr (H) {
						const uint64_t pf = ptx::l2_policy(false);
						mg_tma_st_h(&tm.s1, n0 + h * 64, r0 + wr, s1b + o,
						            pf);
						mg_tma_st_h(&tm.s1, F + n0 + h * 64, r0 + wr,
						            s3b + o, pf);
					} else {
						mg_tma_st(&tm.s1, n0 + h * 64, r0 + wr, s1b + o);
						mg_tma_st(&tm.s1, F + n0 + h * 64, r0 + wr,
						          s3b + o);
					}
				}
				mg_bulk_commit();
				if constexpr (!P)
					mg_bulk_wait_read();
			}
		}
	}
}

template <int MODE, int VAR>
__global__ static void __launch_bounds__(MG_THREADS, mg_var<VAR>::MINB)
        k_mg(struct mg_args a, const __grid_constant__ struct mg_tma tm)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	typedef mg_var<VAR> V;
	constexpr bool WG = VAR > 0;
	/* variant 6: B of the row modes, A of those with contiguous rows, by TMA */
	constexpr bool TB =
	        (VAR == 6 || VAR == 7 || VAR == 8 || VAR == 15 || VAR == 16) &&
	        (MODE == MG_UP || MODE == MG_DOWN || MODE == MG_DOWN_DX || MODE == MG_UP_DX);
	constexpr bool TA = TB && MODE != MG_UP;
	/* round 7: UP's A is contiguous when it is the gathered copy xg */
	const bool ta = TA || (TB && MODE == MG_UP && a.gx);
	/* and UP_DW's B (xg rows) by TMA as DOWN_DW's (variant 7) */
	const bool tdb = MODE == MG_DOWN_DW || (MODE == MG_UP_DW && a.gx);
	/* variant 7: also A of the weight gradients (dyp, dh13 rows) and DOWN_DW's
	 * B (hh rows) by TMA, except an expert's last k block when partial (rows
	 * past its end must be zero there: they are K; cp.async zero-fills) */
	constexpr bool TD = (VAR == 7 || VAR == 8 || VAR == 15 || VAR == 16) &&
	                    (MODE == MG_DOWN_DW || MODE == MG_UP_DW);
	/* round 8, variant 8 (wgtd + POLICY_GPU_MOE_EPI=tma): UP's and DOWN_DX's
	 * bf16 outputs from the accumulators by stmatrix and TMA stores, no fp32
	 * tile; DOWN_DX's h1 / h3 tiles by TMA into stages the main loop is done
	 * with (mg_epb) */
	constexpr bool EPI =
	        (VAR == 8 || VAR == 15 || VAR == 16) && (MODE == MG_UP || MODE == MG_DOWN_DX);
	/* round 19 ("wsb8g", variant 15 = 8 plus this): DOWN_DX's h1 / h3 tiles
	 * prefetched into L2 (cp.async.bulk.prefetch.tensor) at the first k
	 * block, so the TMA loads of mg_epb at the last two read L2 */
	constexpr bool PFH = VAR == 15 && MODE == MG_DOWN_DX;
	/* round 19 ("wsb8h", variant 16 = 8 with L2 eviction priorities):
	 * DOWN_DX's W2 boxes evict_last (every row tile of the expert reads them
	 * again), h1 / h3 loads and dh13 stores evict_first (touched once) */
	constexpr bool HNT = VAR == 16 && MODE == MG_DOWN_DX;
	__shared__ __align__(8) uint64_t mg_full[3];
	__shared__ __align__(8) uint64_t mg_epb[2];
	constexpr int BN = V::BN, ST = V::ST, NB = V::NB, CLD = V::CLD, PD = V::PD;
	static_assert(!V::W1 || ST >= PD + 2, "a stage in use by a wgmma in flight");
	extern __shared__ __align__(1024) unsigned char mg_sm[];
	constexpr bool DW = MODE == MG_DOWN_DW || MODE == MG_UP_DW; /* A stored (k, m) */
	constexpr bool BT = MODE != MG_UP && MODE != MG_DOWN;       /* B stored (k, n) */
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wm = warp >> 2,
	          wn = warp & 3;
	const int D = a.D, F = a.F, K = a.K;
	/* the product's K and N (row modes) or M and N (weight gradients) */
	const int Kd = MODE == MG_UP || MODE == MG_DOWN_DX ? D : MODE == MG_DOWN ? F : 2 * F;
	const int N = MODE == MG_UP || MODE == MG_DOWN_DX || MODE == MG_DOWN_DW ? F : D;
	const int M = MODE == MG_DOWN_DW ? D : 2 * F;
	int e = -1, r0 = 0, r1 = 0, m0 = 0, nk, split = 0, nsplit = 1;
	const int n0 = blockIdx.x * (MODE == MG_UP ? BN / 2 : BN);

	if (!DW) { /* row tile blockIdx.y of the experts' ceil(n_e / 128) tiles */
		int b = blockIdx.y;
		for (int i = 0; i < a.E; i++) {
			int s = a.offs[i], t = a.offs[i + 1], nt = (t - s + MG_BM - 1) / MG_BM;
			if (b < nt) {
				e = i;
				r0 = s + b * MG_BM;
				r1 = t;
				break;
			}
			b -= nt;
		}
		if (e < 0)
			return;
		nk = (Kd + MG_BK - 1) / MG_BK;
	} else if (a.chr > 0) { /* split s of expert e, as k_ws */
		int z = blockIdx.z;
		for (int i = 0; i < a.E; i++) {
			int s = a.offs[i], t = a.offs[i + 1], ns = (t - s + a.chr - 1) / a.chr;
			if (z < ns) {
				e = i;
				split = z;
				nsplit = ns;
				r0 = s + z * a.chr;
				r1 = min(t, r0 + a.chr);
				break;
			}
			z -= ns;
		}
		if (e < 0)
			return;
		m0 = blockIdx.y * MG_BM;
		nk = (r1 - r0 + MG_BK - 1) / MG_BK;
	} else {
		e = blockIdx.z;
		r0 = a.offs[e];
		r1 = a.offs[e + 1];
		m0 = blockIdx.y * MG_BM;
		if (r0 >= r1) { /* no rows: a stored dW is zero */
			if (!a.beta)
				mg_dw_zero<MODE>(a, e, m0, n0, BN);
			return;
		}
		nk = (r1 - r0 + MG_BK - 1) / MG_BK;
	}

	/* K-major rows this thread loads (4 of 128, chunk tid & 7): row modes' A,
	 * and B of UP / DOWN */
	const uint16_t *ap[4] = {0, 0, 0, 0}, *bp[NB];
	const size_t wsz = (size_t)F * D; /* one expert's weight matrix */
	if (!DW)
		for (int i = 0; i < 4; i++) {
			int r = (tid >> 3) + 32 * i, row = r0 + r;
			if (row < r1) {
				size_t src = MODE == MG_UP && !a.gx ? (size_t)(a.perm[row] / K)
				                                    : (size_t)row;
				ap[i] = a.a + src * Kd;
			}
		}
	for (int i = 0; i < NB; i++)
		bp[i] = NULL;
	if (MODE == MG_UP || MODE == MG_DOWN)
		for (int i = 0; i < NB; i++) {
			int n = (tid >> 3) + 32 * i;
			if (MODE == MG_UP) { /* rows 0..BN/2-1 of W1, then of W3 */
				int f = n0 + (n & (BN / 2 - 1));
				if (f < F)
					bp[i] = (n < BN / 2 ? a.b0 : a.b1) + e * wsz +
					        (size_t)f * D;
			} else if (n0 + n < D) {
				bp[i] = a.b0 + e * wsz + (size_t)(n0 + n) * F;
			}
		}

	/* the tiles 1024-byte aligned (the swizzle atoms of the descriptors) */
	const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(mg_sm),
	               sbase = (sraw + 1023u) & ~1023u;
	/* UP_DW: the tokens of the rows of the next k block this thread loads,
	 * fetched one block ahead so the gather's index loads are not waited for */
	int ntok[NB];
	auto fetch_tok = [&](int kb) {
		if (MODE == MG_UP_DW)
			for (int i = 0; i < NB; i++) {
				int row = r0 + kb * MG_BK + (tid + 256 * i) / (BN / 8);
				ntok[i] = row >= r1 ? 0 : a.gx ? row : a.perm[row] / K;
			}
	};
	const uint32_t fbar = (uint32_t)__cvta_generic_to_shared(mg_full);
	auto load = [&](int st, int kb) {
		uint32_t sa = sbase + st * V::STAGE, sb = sa + MG_TILE;
		int k0 = kb * MG_BK;
		if constexpr (TB) {
			if (tid == 0) { /* one thread: the stage's boxes, counted in bytes */
				const uint32_t bar = fbar + 8 * st;
				ptx::mbar_expect(bar, ta ? 2 * MG_TILE : MG_TILE);
				if (ta)
					ptx::tma_load2(sa, &tm.a, k0, r0, bar);
				if (MODE == MG_UP) { /* W1 rows n0.. then W3's */
					ptx::tma_load3(sb, &tm.b0, k0, n0, e, bar);
					ptx::tma_load3(sb + 8192, &tm.b1, k0, n0, e, bar);
				} else if (MODE == MG_DOWN) { /* W2 (n, k): two 64-row boxes */
					ptx::tma_load3(sb, &tm.b0, k0, n0, e, bar);
					ptx::tma_load3(sb + 8192, &tm.b0, k0, n0 + 64, e, bar);
				} else if (MODE == MG_DOWN_DX) { /* W2 (k = d, n = f) */
					if constexpr (HNT) {
						const uint64_t pl = ptx::l2_policy(true);
						mg_tma_ld3_h(sb, &tm.b0, n0, k0, e, bar, pl);
						mg_tma_ld3_h(sb + 8192, &tm.b0, n0 + 64, k0, e, bar,
						             pl);
					} else {
						ptx::tma_load3(sb, &tm.b0, n0, k0, e, bar);
						ptx::tma_load3(sb + 8192, &tm.b0, n0 + 64, k0, e,
						               bar);
					}
				} else { /* [W1; W3] (k, n): F % 64 == 0, a block in one */
					const CUtensorMap *m = k0 < F ? &tm.b0 : &tm.b1;
					int kr = k0 < F ? k0 : k0 - F;
					ptx::tma_load3(sb, m, n0, kr, e, bar);
					ptx::tma_load3(sb + 8192, m, n0 + 64, kr, e, bar);
				}
			}
		}
		const bool full = TD && r0 + k0 + MG_BK <= r1;
		if constexpr (TD) {
			if (tid == 0) {
				const uint32_t bar = fbar + 8 * st;
				if (full) { /* 64 rows x 64 columns a box, 128-byte rows */
					ptx::mbar_expect(bar, tdb ? 2 * MG_TILE : MG_TILE);
					ptx::tma_load2(sa, &tm.a, m0, r0 + k0, bar);
					ptx::tma_load2(sa + 8192, &tm.a, m0 + 64, r0 + k0, bar);
					if (tdb) { /* hh or xg rows (k, n) */
						ptx::tma_load2(sb, &tm.b0, n0, r0 + k0, bar);
						ptx::tma_load2(sb + 8192, &tm.b0, n0 + 64, r0 + k0,
						               bar);
					}
				} else { /* the phase completes with this arrival alone */
					ptx::mbar_expect(bar, 0);
				}
			}
		}
		if (ta || full) {
		} else if (!DW) {
			int c = tid & 7, k = k0 + c * 8;
			for (int i = 0; i < 4; i++) {
				int r = (tid >> 3) + 32 * i;
				bool v = ap[i] && k < Kd;
				ptx::cp_async16(sa + mg_kofs(r, c), v ? ap[i] + k : a.a, v);
			}
		} else { /* A (k, m): dyp or dh13 rows r0 + k0 + kr */
			int c = tid & 15;
			for (int i = 0; i < 4; i++) {
				int kr = (tid >> 4) + 16 * i, row = r0 + k0 + kr, m = m0 + c * 8;
				bool v = row < r1 && m < M;
				ptx::cp_async16(sa + mg_nofs(kr, c),
				                v ? a.a + (size_t)row * M + m : a.a, v);
			}
		}
		if (TB || (full && tdb)) {
		} else if (!BT) {
			int c = tid & 7, k = k0 + c * 8;
			for (int i = 0; i < NB; i++) {
				int r = (tid >> 3) + 32 * i;
				bool v = bp[i] && k < Kd;
				ptx::cp_async16(sb + mg_kofs(r, c), v ? bp[i] + k : a.b0, v);
			}
		} else { /* (k, n): BN / 8 chunks a k row */
			int c = tid % (BN / 8);
			for (int i = 0; i < NB; i++) {
				int kr = (tid + 256 * i) / (BN / 8), n = n0 + c * 8;
				const uint16_t *src = NULL;
				if (n < N) {
					if (MODE == MG_DOWN_DX) { /* W2_e (D, F): (k = d, n = f) */
						int k = k0 + kr;
						if (k < D)
							src = a.b0 + e * wsz + (size_t)k * F + n;
					} else if (MODE == MG_UP_DX) { /* [W1_e; W3_e] (2F, D) */
						int k = k0 + kr;
						if (k < F)
							src = a.b0 + e * wsz + (size_t)k * D + n;
						else if (k < 2 * F)
							src = a.b1 + e * wsz + (size_t)(k - F) * D +
							      n;
					} else {
						int row = r0 + k0 + kr;
						if (row < r1)
							src = MODE == MG_DOWN_DW
							              ? a.b0 + (size_t)row * F + n
							              : a.b0 + (size_t)ntok[i] * D +
							                        n;
					}
				}
				ptx::cp_async16(sb + mg_nofs(kr, c), src ? src : a.b0, src != NULL);
			}
		}
	};

	float acc[4][4][4];      /* mma.sync: warp (wm, wn)'s 64 x 32 */
	float wacc[BN / 64][32]; /* wgmma: warpgroup wm's 64 rows x the 64-column blocks */
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			for (int q = 0; q < 4; q++)
				acc[i][j][q] = 0.0f;
	for (int h = 0; h < BN / 64; h++)
		for (int i = 0; i < 32; i++)
			wacc[h][i] = 0.0f;

	/* k block kb + PD loads while kb is multiplied; with a block's products
	 * in flight (W1) the stage it overwrites was read by block kb + PD - ST
	 * <= kb - 2, whose products every warpgroup has waited for before the
	 * barrier */
	/* DOWN_DX, variant 8: the stages h1 and h3 are fetched into, each once
	 * its last k block has been multiplied (ST 3: h1 at block nk - 2 into the
	 * stage of block nk, h3 at nk - 1 into that of nk + 1; nk 1: both at 0) */
	const uint32_t ebar = (uint32_t)__cvta_generic_to_shared(mg_epb);
	const int sh1 = nk >= 2 ? nk % ST : 2, sh3 = nk >= 2 ? (nk + 1) % ST : 1;
	(void)ebar, (void)sh1, (void)sh3;
	if (TB || TD) {
		if (tid == 0) {
			if (EPI && MODE == MG_DOWN_DX) {
				mg_tb_init(ebar);
				mg_tb_init(ebar + 8);
			}
			for (int s = 0; s < ST; s++)
				mg_tb_init(fbar + 8 * s);
			asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
		}
		__syncthreads();
	}
	for (int s = 0; s < PD; s++) {
		fetch_tok(s);
		if (s < nk)
			load(s, s);
		ptx::cp_commit();
	}
	fetch_tok(PD);
	const int q = lane >> 3, li = lane & 7;
	for (int kb = 0; kb < nk; kb++) {
		ptx::cp_wait<PD - 1>();
		if (TB || TD) /* the stage's boxes landed */
			ptx::mbar_wait(fbar + 8 * (kb % ST), (kb / ST) & 1);
		if (WG)
			ptx::fence_proxy_async(); /* cp.async wrote through the generic proxy */
		__syncthreads();
		if (kb + PD < nk) {
			load((kb + PD) % ST, kb + PD);
			fetch_tok(kb + PD + 1);
		}
		if constexpr (PFH) {
			if (tid == 0 && kb == 0)
				for (int j = 0; j < 4; j++)
					asm volatile(
					        "cp.async.bulk.prefetch.tensor.2d.L2.global.tile "
					        "[%0, {%1, %2}];\n" ::"l"(j & 1 ? &tm.s3 : &tm.s2),
					        "r"(n0 + 64 * (j >> 1)), "r"(r0)
					        : "memory");
		}
		if constexpr (EPI && MODE == MG_DOWN_DX) {
			if (tid == 0 && (kb == (nk >= 2 ? nk - 2 : 0) || kb == nk - 1)) {
				/* two 64-column boxes of 128 rows r0.. (columns n0..) */
				const bool first = kb == (nk >= 2 ? nk - 2 : 0);
				for (int j = first ? 0 : 1; j < (kb == nk - 1 ? 2 : 1); j++) {
					const uint32_t dst = sbase + (j ? sh3 : sh1) * V::STAGE,
					               bar = ebar + 8 * j;
					const CUtensorMap *m = j ? &tm.s3 : &tm.s2;
					ptx::mbar_expect(bar, 2 * 16384);
					if constexpr (HNT) {
						const uint64_t pf = ptx::l2_policy(false);
						mg_tma_ld2_h(dst, m, n0, r0, bar, pf);
						mg_tma_ld2_h(dst + 16384, m, n0 + 64, r0, bar, pf);
					} else {
						ptx::tma_load2(dst, m, n0, r0, bar);
						ptx::tma_load2(dst + 16384, m, n0 + 64, r0, bar);
					}
				}
			}
		}
		ptx::cp_commit();
		uint32_t sa = sbase + (kb % ST) * V::STAGE, sb = sa + MG_TILE;
		if constexpr (WG) {
			/* warpgroup wm: rows 64 wm.. of the tile (A's first block for
			 * K-major, its block wm for M-major), every 64-column block of B */
			ptx::fence();
#pragma unroll
			for (int kk = 0; kk < MG_BK / 16; kk++) {
				uint64_t da = mg_desc(sa, wm * 8192 + (DW ? kk * 2048 : kk * 32));
				if constexpr (V::WIDE) {
					mg_wgmma128<DW ? 1 : 0, BT ? 1 : 0>(
					        *reinterpret_cast<float(*)[64]>(&wacc[0][0]), da,
					        mg_desc_l(sb, BT ? kk * 2048 : kk * 32,
					                  BT ? 8192 : 1024));
				} else {
#pragma unroll
					for (int h = 0; h < BN / 64; h++)
						ptx::mma_ss<DW ? 1 : 0, BT ? 1 : 0>(
						        wacc[h], da,
						        mg_desc(sb, h * 8192 + (BT ? kk * 2048
						                                   : kk * 32)),
						        1);
				}
			}
			ptx::commit();
			if (V::W1)
				ptx::wait<1>();
			else
				ptx::wait<0>();
			if (VAR == 2 || !V::W1)
				for (int h = 0; h < BN / 64; h++)
					ptx::reg_fence(wacc[h]);
		} else {
#pragma unroll
			for (int kk = 0; kk < MG_BK / 16; kk++) {
				uint32_t af[4][4], bf[4][2];
#pragma unroll
				for (int mi = 0; mi < 4; mi++) {
					if (!DW) {
						int r = wm * 64 + mi * 16 + (lane & 15);
						ptx::ldsm_x4(af[mi],
						             sa + mg_kofs(r, kk * 2 + (lane >> 4)));
					} else {
						int k = kk * 16 + (q >> 1) * 8 + li;
						ptx::ldsm_x4_t(
						        af[mi],
						        sa + mg_nofs(k, (wm * 64 + mi * 16) / 8 +
						                                (q & 1)));
					}
				}
#pragma unroll
				for (int p = 0; p < 2; p++) {
					uint32_t r[4];
					if (!BT) {
						int n = wn * 32 + p * 16 + (q >> 1) * 8 + li;
						ptx::ldsm_x4(r, sb + mg_kofs(n, kk * 2 + (q & 1)));
					} else {
						int k = kk * 16 + (q & 1) * 8 + li;
						ptx::ldsm_x4_t(
						        r, sb + mg_nofs(k, (wn * 32 + p * 16) / 8 +
						                                   (q >> 1)));
					}
					bf[2 * p][0] = r[0];
					bf[2 * p][1] = r[1];
					bf[2 * p + 1][0] = r[2];
					bf[2 * p + 1][1] = r[3];
				}
#pragma unroll
				for (int mi = 0; mi < 4; mi++)
#pragma unroll
					for (int ni = 0; ni < 4; ni++)
						ptx::mma16816(acc[mi][ni], af[mi], bf[ni][0],
						              bf[ni][1]);
			}
		}
	}
	if (WG) {
		ptx::wait<0>();
		for (int h = 0; h < BN / 64; h++)
			ptx::reg_fence(wacc[h]);
	}
	ptx::cp_wait<0>();
	__syncthreads();
	if constexpr (EPI) {
		mg_epi_tma<MODE, false, HNT>(a, tm, wacc, sbase, sbase + sh1 * V::STAGE,
		                             sbase + sh3 * V::STAGE, ebar, r0, r1, n0);
		return;
	}

	/* the tile through shared memory */
	float *Cs = (float *)(mg_sm + (sbase - sraw));
	if constexpr (WG) { /* wgmma D layout: warp w4 of the group holds 16 rows */
		int w4 = warp & 3;
		for (int h = 0; h < BN / 64; h++)
			for (int j = 0; j < 8; j++) {
				int r = wm * 64 + w4 * 16 + (lane >> 2),
				    c = h * 64 + j * 8 + (lane & 3) * 2;
				*(float2 *)&Cs[r * CLD + c] =
				        make_float2(wacc[h][4 * j], wacc[h][4 * j + 1]);
				*(float2 *)&Cs[(r + 8) * CLD + c] =
				        make_float2(wacc[h][4 * j + 2], wacc[h][4 * j + 3]);
			}
	} else {
		for (int mi = 0; mi < 4; mi++)
			for (int ni = 0; ni < 4; ni++) {
				int r = wm * 64 + mi * 16 + (lane >> 2),
				    c = wn * 32 + ni * 8 + (lane & 3) * 2;
				*(float2 *)&Cs[r * CLD + c] =
				        make_float2(acc[mi][ni][0], acc[mi][ni][1]);
				*(float2 *)&Cs[(r + 8) * CLD + c] =
				        make_float2(acc[mi][ni][2], acc[mi][ni][3]);
			}
	}
	/* split weight gradients: in split order, as k_ws */
	int *flag = NULL;
	if (DW && nsplit > 1) {
		flag = a.flags + ((size_t)e * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
		if (tid == 0)
			ptx::flag_wait(flag, split);
	}
	__syncthreads();

	mg_epi<MODE, BN>(a, Cs, tid, MG_THREADS, e, r0, r1, m0, n0, a.beta || split > 0);
	if (flag) {
		__threadfence();
		__syncthreads();
		if (tid == 0)
			ptx::flag_set(flag, split + 1);
	}
}

/* ---- down dX with a producer warp (round 19b, "wsb9a", "wsb9b", "wsb9p") ----
 * k_mgx<W, PFA> is variant 8's DOWN_DX (wgtd's 128 x 128 tile, 3 stages of
 * 32 KB, the TMA loads and the same wgmma sequence, the TMA-store SwiGLU
 * backward epilogue mg_epi_tma) with the k-block loop's CTA barrier taken
 * out: a ninth warp (its lane 0) issues the TMA loads, the eight consumer
 * warps release a stage through an empty mbarrier (count 8, one arrive a
 * warp) once their wgmmas that read it are complete. W 1 ("wsb9a"): each
 * k block's products are left in flight (wgmma.wait_group 1) while the next
 * block's are issued, and block kb - 1's stage is released after block kb's
 * issue; W 0 ("wsb9b"): each block waited for (wait_group 0) and released at
 * once, as wgtd, but without the barrier. PFA ("wsb9p", W 1): the producer
 * also prefetches into L2 the A box (dyp rows) of block j + 3 when it loads
 * block j, one ring ahead of its TMA load. Q ("wsb9c", W 1): dh13 packed by
 * cvt.rn.bf16x2.f32 in the epilogue (mg_epi_tma's Q: the same bits; PTX
 * 3697 -> 2545 instructions a thread). "wsb9d": W 0 with Q; TW ("wsb9e":
 * wsb9d plus this): the row-tile walk with offs[0..E] loaded by one lane
 * each at once and passed by shuffles (E < 32), instead of one dependent
 * L2 round trip per expert passed at each CTA's start (the same tiles).
 * H100 (2026-11-27, gpu_train_moe, down dX ms balanced / skewed, one
 * process, interleaved): wsb3w (k_mg<2, 8>) 0.102 / 0.107 and 0.101 /
 * 0.106; wsb9a 0.102 / 0.109, 0.103 / 0.111; wsb9b 0.098 / 0.104; wsb9p
 * 0.108 / 0.111; wsb9c 0.100 / 0.105 twice: the drained wgmma pipe is not
 * the bound (W 1 delays each release until the next block's data is in:
 * +1 us), the CTA barrier costs ~3.5 us, the epilogue's packing ~2.5 us,
 * the L2 prefetch of dyp adds ~6 us (as round 19's: no re-reads to save).
 * ncu (one launch): k_mg<2, 8> 97.2 us, k_mgx<1, 0, 1> 97.0 us; both 30%
 * tensor pipe, 106 MB read; issue 0.45 -> 0.38 a scheduler. wsb9d / wsb9e:
 * not yet run on a GPU.
 * The producer's slot sequence: slots j = 0 .. nk - 1 are the k blocks
 * (stage j % 3), slots nk and nk + 1 the tile's h1 and h3 boxes (two 64 x
 * 128 each, into stages nk % 3 and (nk + 1) % 3, completion on epb[0] /
 * epb[1], waited in mg_epi_tma with parity 0). Slot j >= 3 waits for the
 * release of slot j - 3 (empty[j % 3], parity (j / 3 - 1) & 1); the
 * consumers release blocks 0 .. nk - 2 (the last block's stage is no later
 * slot's), each exactly once per warp, so each empty phase completes with
 * exactly 8 arrivals and each is waited for once. full[s] (count 1): one
 * expect-tx a load, waited once by every consumer thread with parity
 * (kb / 3) & 1; a stage is re-armed only after its release, i.e. after
 * every consumer warp waited its previous phase. The accumulators see the
 * same wgmma instructions in the same order as k_mg<DOWN_DX, 8>, and the
 * epilogue is the same function: dh13 bit for bit wgtd's. */
#define MGX_THREADS (MG_THREADS + 32)
__device__ __forceinline__ static void mg_bar_init(uint32_t bar, int n)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(n) : "memory");
}
__device__ __forceinline__ static void mg_arrive(uint32_t bar)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

template <int W, int PFA, bool Q, bool TW>
__global__ static void __launch_bounds__(MGX_THREADS, 2)
        k_mgx(struct mg_args a, const __grid_constant__ struct mg_tma tm)
{
	typedef mg_var<8> V;
	constexpr int ST = V::ST;
	static_assert(W == 0 || W == 1, "k_mgx: wait_group 0 or 1");
	__shared__ __align__(8) uint64_t mgx_bars[2 * ST + 2]; /* full, empty, epb */
	extern __shared__ __align__(1024) unsigned char mg_sm[];
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wm = warp >> 2;
	const int D = a.D;
	const int n0 = blockIdx.x * 128;
	int e = -1, r0 = 0, r1 = 0, b = blockIdx.y;
	if (TW && a.E < 32) { /* the same walk, offs[0..E] loaded at once (one a lane) */
		const int ol = lane <= a.E ? a.offs[lane] : 0;
		for (int i = 0; i < a.E; i++) {
			int s = __shfl_sync(0xffffffffu, ol, i),
			    t = __shfl_sync(0xffffffffu, ol, i + 1),
			    nt = (t - s + MG_BM - 1) / MG_BM;
			if (b < nt) {
				e = i;
				r0 = s + b * MG_BM;
				r1 = t;
				break;
			}
			b -= nt;
		}
	} else {
		for (int i = 0; i < a.E; i++) { /* row tile blockIdx.y, as k_mg */
			int s = a.offs[i], t = a.offs[i + 1], nt = (t - s + MG_BM - 1) / MG_BM;
			if (b < nt) {
				e = i;
				r0 = s + b * MG_BM;
				r1 = t;
				break;
			}
			b -= nt;
		}
	}
	if (e < 0)
		return;
	const int nk = (D + MG_BK - 1) / MG_BK;
	const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(mg_sm),
	               sbase = (sraw + 1023u) & ~1023u;
	const uint32_t fbar = (uint32_t)__cvta_generic_to_shared(mgx_bars), mbar = fbar + 8 * ST,
	               ebar = fbar + 16 * ST;
	if (tid == 0) {
		for (int s = 0; s < ST; s++) {
			mg_bar_init(fbar + 8 * s, 1);
			mg_bar_init(mbar + 8 * s, 8);
		}
		mg_bar_init(ebar, 1);
		mg_bar_init(ebar + 8, 1);
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	__syncthreads();
	if (warp == 8) { /* the producer */
		if (lane == 0)
			for (int j = 0; j < nk + 2; j++) {
				const int s = j % ST;
				const uint32_t dst = sbase + s * V::STAGE;
				if (j >= ST)
					ptx::mbar_wait(mbar + 8 * s, (j / ST - 1) & 1);
				if (j < nk) {
					const int k0 = j * MG_BK;
					const uint32_t bar = fbar + 8 * s;
					ptx::mbar_expect(bar, 2 * MG_TILE);
					ptx::tma_load2(dst, &tm.a, k0, r0, bar);
					ptx::tma_load3(dst + MG_TILE, &tm.b0, n0, k0, e, bar);
					ptx::tma_load3(dst + MG_TILE + 8192, &tm.b0, n0 + 64, k0, e,
					               bar);
					if (PFA && j + ST < nk)
						asm volatile("cp.async.bulk.prefetch.tensor.2d.L2."
						             "global.tile [%0, {%1, %2}];\n" ::"l"(
						                     &tm.a),
						             "r"(k0 + ST * MG_BK), "r"(r0)
						             : "memory");
				} else { /* h1 (j = nk), h3 (nk + 1): two 64-column boxes */
					const int h = j - nk;
					const uint32_t bar = ebar + 8 * h;
					const CUtensorMap *m = h ? &tm.s3 : &tm.s2;
					ptx::mbar_expect(bar, 2 * 16384);
					ptx::tma_load2(dst, m, n0, r0, bar);
					ptx::tma_load2(dst + 16384, m, n0 + 64, r0, bar);
				}
			}
		return;
	}
	float wacc[2][32];
	for (int h = 0; h < 2; h++)
		for (int i = 0; i < 32; i++)
			wacc[h][i] = 0.0f;
	for (int kb = 0; kb < nk; kb++) {
		const int s = kb % ST;
		ptx::mbar_wait(fbar + 8 * s, (kb / ST) & 1);
		const uint32_t sa = sbase + s * V::STAGE, sb = sa + MG_TILE;
		ptx::fence();
#pragma unroll
		for (int kk = 0; kk < MG_BK / 16; kk++) {
			uint64_t da = mg_desc(sa, wm * 8192 + kk * 32);
#pragma unroll
			for (int h = 0; h < 2; h++)
				ptx::mma_ss<0, 1>(wacc[h], da, mg_desc(sb, h * 8192 + kk * 2048),
				                  1);
		}
		ptx::commit();
		if constexpr (W == 1) {
			ptx::wait<1>();
			if (kb >= 1) { /* block kb - 1's stage (kb - 1 <= nk - 2) */
				__syncwarp();
				if (lane == 0)
					mg_arrive(mbar + 8 * ((kb - 1) % ST));
			}
		} else {
			ptx::wait<0>();
			for (int h = 0; h < 2; h++)
				ptx::reg_fence(wacc[h]);
			if (kb <= nk - 2) {
				__syncwarp();
				if (lane == 0)
					mg_arrive(mbar + 8 * s);
			}
		}
	}
	ptx::wait<0>();
	for (int h = 0; h < 2; h++)
		ptx::reg_fence(wacc[h]);
	mg_epi_tma<MG_DOWN_DX, false, false, Q>(a, tm, wacc, sbase, sbase + (nk % ST) * V::STAGE,
	                                        sbase + ((nk + 1) % ST) * V::STAGE, ebar, r0, r1,
	                                        n0);
}

/* ---- persistent CTAs (round 9, "wgtdp"; opt-in, NOT YET RUN ON A GPU) --------
 * k_mgp<MODE> (UP with A = xg, DOWN_DX) is variant 8 (wgtd's TMA main loop
 * and its TMA-store epilogue) with a grid of at most SMs x (CTAs an SM) CTAs
 * that walk the tile list with a static stride: CTA c takes the tiles c,
 * c + G, c + 2G, ... (G = gridDim.x); tile t is column tile t % nx of row
 * tile t / nx (row tiles: the experts' ceil(n_e / 128) in expert order, as
 * k_mg's blockIdx.y), so the tiles and each tile's sums are k_mg's:
 * deterministic, and the outputs are variant 8's (same epilogue code).
 * What persistence buys: a tile's TMA stores stay in flight (committed,
 * waited for with wait_group.read only at the start of the CTA's next tile,
 * before its first loads into the staging stages) while the next tile's
 * block 0 loads, no CTA launch / barrier init / tile walk a tile, and the
 * next tile's block 0 loads during this tile's epilogue.
 *
 * Stages: the CTA's stage sequence continues over its tiles. Tile i uses the
 * slots base_i .. base_i + nk + 1 (mod ST = 3): its k blocks j at
 * (base_i + j) % 3, then two staging stages sh1 = (base_i + nk) % 3 and sh3 =
 * (base_i + nk + 1) % 3 (nk 1: sh1 = base_i + 2, sh3 = base_i + 1, the same
 * set); base_{i+1} = base_i + nk + 2, i.e. (mod 3) the stage of tile i's
 * last k block, free once the main loop is done. DOWN_DX fetches h1 / h3
 * into sh1 / sh3 during its last two k blocks (as variant 8) and writes dh1
 * / dh3 back in place; UP stages h1 | h3 in sh1 and hh in sh3. The next
 * tile's block 0 is loaded right after the main loop (into base_{i+1}),
 * block 1 (into sh1 of tile i) and block 2 (sh3 of tile i) only after every
 * warp's wait_group.read at the start of tile i + 1.
 *
 * Every mbarrier wait has its arrival (the argument; a hang costs a device
 * call):
 *  - full[s] (count 1; one arrive.expect_tx by thread 0 per load, bytes =
 *    the boxes': A 64 x 128 and two B 64 x 64 = 32768, counted in full for
 *    zero-filled boxes too). Every k block of every tile the CTA processes
 *    is loaded exactly once: block 0 of its first tile after the first
 *    tile-start barrier (which follows the barriers' init and fence),
 *    block 0 of a later tile after the previous tile's main loop under the
 *    same condition (t + G < total) that makes the loop process it, block 1
 *    at the tile's start when nk >= 2, block kb >= 2 at iteration kb - 2
 *    (kb - 2 + 2 < nk). Each is waited for exactly once, by every thread, in
 *    iteration kb of its tile (all threads run the same tile sequence: t,
 *    total and nk are uniform). Phases: a stage is armed again only for a
 *    later slot of the sequence, after a __syncthreads that every thread
 *    passed after its wait for the stage's previous load (block kb + 2 is
 *    armed after iteration kb's barrier, its stage's previous block kb - 1
 *    was waited before it; block 0 of tile i + 1 after the barrier that
 *    follows tile i's main loop; blocks 1 and 2 after the tile-start
 *    barrier), so arms and waits alternate per stage, and each thread's
 *    parity bit for stage s (ph bit s, flipped at each wait) names the
 *    phase of the load it waits for.
 *  - epb[0] / epb[1] (DOWN_DX's h1 / h3, count 1): armed once a tile each
 *    (h1 at kb = nk - 2, h3 at kb = nk - 1; both at kb 0 when nk = 1, as
 *    k_mg), waited once a tile by every thread in the epilogue with parity
 *    eph (flipped a tile); re-armed in the next tile's main loop, after its
 *    tile-start barrier, which every thread reaches after its waits.
 *  - No cp.async here (UP's A is xg by TMA: k_mgp runs only when gathered).
 * The stores' sources: a warp's lane 0 issues its bulk stores and commits;
 * every lane 0 waits (wait_group.read 0) before the tile-start barrier of
 * its next tile (and before the CTA exits), and stages sh1 / sh3 are loaded
 * into only after that barrier; the staging writes (stmatrix, generic
 * proxy) are fenced (fence.proxy.async) before the stores read them, and the
 * tile-start barrier orders the epilogue's ldmatrix reads (DOWN_DX) before
 * the TMA loads that overwrite them, as k_mg's per-block barrier does. */
__device__ __forceinline__ static bool mgp_tile(const struct mg_args &a, int t, int nx, int bnc,
                                                int &e, int &r0, int &r1, int &n0)
{
	int b = t / nx;
	n0 = (t % nx) * bnc;
	for (int i = 0; i < a.E; i++) {
		int s = a.offs[i], u = a.offs[i + 1], nt = (u - s + MG_BM - 1) / MG_BM;
		if (b < nt) {
			e = i;
			r0 = s + b * MG_BM;
			r1 = u;
			return true;
		}
		b -= nt;
	}
	return false;
}

template <int MODE>
__global__ static void __launch_bounds__(MG_THREADS, 2)
        k_mgp(struct mg_args a, const __grid_constant__ struct mg_tma tm)
{
	static_assert(MODE == MG_UP || MODE == MG_DOWN_DX, "k_mgp: UP and DOWN_DX only");
	typedef mg_var<8> V;
	constexpr int ST = V::ST;
	constexpr bool BT = MODE != MG_UP; /* B stored (k, n): DOWN_DX's W2 */
	__shared__ __align__(8) uint64_t mg_full[ST];
	__shared__ __align__(8) uint64_t mg_epb[2];
	extern __shared__ __align__(1024) unsigned char mg_sm[];
	const int tid = threadIdx.x, warp = tid >> 5, wm = warp >> 2;
	const int D = a.D, F = a.F;
	const int Kd = D, nk = (Kd + MG_BK - 1) / MG_BK; /* UP and DOWN_DX: K = D */
	const int bnc = MODE == MG_UP ? V::BN / 2 : V::BN, nx = (F + bnc - 1) / bnc;
	int total = 0; /* tiles: the experts' row tiles x nx */
	for (int i = 0; i < a.E; i++)
		total += (a.offs[i + 1] - a.offs[i] + MG_BM - 1) / MG_BM;
	total *= nx;
	int t = blockIdx.x;
	if (t >= total) /* uniform: the CTA has no tile, and touches no barrier */
		return;
	int e = 0, r0 = 0, r1 = 0, n0 = 0;
	mgp_tile(a, t, nx, bnc, e, r0, r1, n0);

	const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(mg_sm),
	               sbase = (sraw + 1023u) & ~1023u;
	const uint32_t fbar = (uint32_t)__cvta_generic_to_shared(mg_full),
	               ebar = (uint32_t)__cvta_generic_to_shared(mg_epb);
	/* thread 0: k block kb of the tile (e, r0, n0) into stage st */
	auto load = [&](int st, int kb, int le, int lr0, int ln0) {
		const uint32_t sa = sbase + st * V::STAGE, sb = sa + MG_TILE, bar = fbar + 8 * st;
		const int k0 = kb * MG_BK;
		ptx::mbar_expect(bar, 2 * MG_TILE);
		ptx::tma_load2(sa, &tm.a, k0, lr0, bar);
		if (MODE == MG_UP) { /* W1 rows n0.. then W3's */
			ptx::tma_load3(sb, &tm.b0, k0, ln0, le, bar);
			ptx::tma_load3(sb + 8192, &tm.b1, k0, ln0, le, bar);
		} else { /* W2 (k = d, n = f) */
			ptx::tma_load3(sb, &tm.b0, ln0, k0, le, bar);
			ptx::tma_load3(sb + 8192, &tm.b0, ln0 + 64, k0, le, bar);
		}
	};
	if (tid == 0) {
		if (MODE == MG_DOWN_DX) {
			mg_tb_init(ebar);
			mg_tb_init(ebar + 8);
		}
		for (int s = 0; s < ST; s++)
			mg_tb_init(fbar + 8 * s);
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	bool first = true; /* block 0 of the CTA's first tile: after the barrier */
	int base = 0;      /* stage of the tile's k block 0 */
	uint32_t ph = 0;   /* bit s: parity of the next wait on full[s] */
	int eph = 0;       /* parity of the next wait on epb[0] / epb[1] */
	for (;;) {
		const int sh1 = (base + (nk >= 2 ? nk : 2)) % ST,
		          sh3 = (base + (nk >= 2 ? nk + 1 : 1)) % ST;
		/* the previous tile's stores have read their staging (sh1 / sh3 of
		 * that tile: the stages of this tile's blocks 1 and 2) */
		if ((tid & 31) == 0)
			mg_bulk_wait_read();
		ptx::fence_proxy_async();
		__syncthreads();
		if (tid == 0) {
			if (first) /* later tiles' block 0: after the previous main loop */
				load(base, 0, e, r0, n0);
			if (nk >= 2)
				load((base + 1) % ST, 1, e, r0, n0);
		}
		first = false;
		float wacc[2][32];
		for (int h = 0; h < 2; h++)
			for (int i = 0; i < 32; i++)
				wacc[h][i] = 0.0f;
		for (int kb = 0; kb < nk; kb++) {
			const int st = (base + kb) % ST;
			ptx::mbar_wait(fbar + 8 * st, (ph >> st) & 1);
			ph ^= 1u << st;
			__syncthreads();
			if (tid == 0 && kb + 2 < nk)
				load((base + kb + 2) % ST, kb + 2, e, r0, n0);
			if (MODE == MG_DOWN_DX && tid == 0 &&
			    (kb == (nk >= 2 ? nk - 2 : 0) || kb == nk - 1)) {
				/* two 64-column boxes of 128 rows r0.. (columns n0..) */
				const bool h1now = kb == (nk >= 2 ? nk - 2 : 0);
				for (int j = h1now ? 0 : 1; j < (kb == nk - 1 ? 2 : 1); j++) {
					const uint32_t dst = sbase + (j ? sh3 : sh1) * V::STAGE,
					               bar = ebar + 8 * j;
					const CUtensorMap *m = j ? &tm.s3 : &tm.s2;
					ptx::mbar_expect(bar, 2 * 16384);
					ptx::tma_load2(dst, m, n0, r0, bar);
					ptx::tma_load2(dst + 16384, m, n0 + 64, r0, bar);
				}
			}
			const uint32_t sa = sbase + st * V::STAGE, sb = sa + MG_TILE;
			ptx::fence();
#pragma unroll
			for (int kk = 0; kk < MG_BK / 16; kk++) {
				uint64_t da = mg_desc(sa, wm * 8192 + kk * 32);
#pragma unroll
				for (int h = 0; h < 2; h++)
					ptx::mma_ss<0, BT ? 1 : 0>(
					        wacc[h], da,
					        mg_desc(sb, h * 8192 + (BT ? kk * 2048 : kk * 32)),
					        1);
			}
			ptx::commit();
			ptx::wait<0>();
			for (int h = 0; h < 2; h++)
				ptx::reg_fence(wacc[h]);
		}
		/* every warpgroup's products of the last block are done: its stage
		 * (the next tile's base) is free */
		__syncthreads();
		const int tn = t + gridDim.x, nbase = (base + nk + 2) % ST;
		int ne = 0, nr0 = 0, nr1 = 0, nn0 = 0;
		if (tn < total) {
			mgp_tile(a, tn, nx, bnc, ne, nr0, nr1, nn0);
			if (tid == 0)
				load(nbase, 0, ne, nr0, nn0);
		}
		mg_epi_tma<MODE, true>(a, tm, wacc, sbase + sh1 * V::STAGE, sbase + sh1 * V::STAGE,
		                       sbase + sh3 * V::STAGE, ebar, r0, r1, n0, eph);
		eph ^= 1;
		if (tn >= total)
			break;
		t = tn;
		e = ne;
		r0 = nr0;
		r1 = nr1;
		n0 = nn0;
		base = nbase;
	}
	if ((tid & 31) == 0) /* the staging stays valid until the stores read it */
		mg_bulk_wait_read();
}

/* ---- down dX, persistent, ping-pong consumers (round 20, "wsb10", "wsb10b") ----
 * k_mgy<W, Q>: the epilogue of a tile (the SwiGLU backward: h1 / h3 reads,
 * dh13 stores) runs while the next tile's k blocks are loaded and
 * multiplied. One CTA an SM (a persistent grid, at most one CTA an SM) of
 * a producer warp (warp 8, its lane 0 issues every TMA load of the k
 * blocks) and two consumer warpgroups c = 0, 1 that take the CTA's tiles in
 * turn (tile i of the CTA's list, t = blockIdx.x + i gridDim.x, is consumer
 * i & 1's; t -> row tile t / nx, column tile t % nx, as k_mgp). A consumer
 * computes a whole 128 x 128 tile of dh = dyp W2_e: its two 64-row halves m
 * with the same wgmma m64n64k16 instructions as wgtd's two warpgroups (A
 * at m 8192 + kk 32, B at h 8192 + kk 2048, per element the same sums in
 * the same order), 128 fp32 accumulators a thread, then runs wgtd's
 * epilogue (mg_epi_tma's DOWN_DX code for its warp's 16 rows of each half,
 * Q: wsb9c's cvt packing, the same bits) on the tile's h1 / h3, which it
 * fetched by TMA into its own 64 KB buffer (h1 | h3, each two 64 x 128
 * boxes, 128-byte swizzle; dh1 / dh3 written back in place and TMA-stored
 * from there) as soon as its previous epilogue had finished with the
 * buffer (during the other consumer's main loop, a whole tile ahead).
 * Shared memory: the ring (3 stages of 32 KB, A 128 x 64 | B 64 x 128, the
 * k blocks of the CTA's tiles in order) + 2 x 64 KB = 224 KB + alignment.
 * Registers: 168 a thread at most (9 warps: 3 on one of the SM's four
 * register files of 16384), ptxas spills 12 bytes (__maxnreg__(224) gave
 * 182 registers, and then no CTA fits an SM: H100, 2026-11-27).
 * W 1 ("wsb10"): a block's wgmma left in flight while the next is issued,
 * block kb - 1 released after block kb's issue; W 0 ("wsb10b"): each block
 * waited for and released at once (wsb9b's form).
 * H100 (2026-11-27, gpu_train_moe, down dX ms balanced / skewed, one
 * process, interleaved): wsb3w (k_mg<2, 8>) 0.101 / 0.107 and 0.102 /
 * 0.109; wsb10 0.120 / 0.133 and 0.123 / 0.136; wsb10b 0.118 / 0.135 and
 * 0.119 / 0.134; wsb9b 0.100 / 0.106 and 0.098 / 0.104: 17-20% SLOWER than
 * wgtd, bit for bit. Reading (no ncu yet): at one CTA an SM the ring holds
 * half of wgtd's bytes in flight (3 stages an SM against 2 x 3), and down
 * dX is latency-bound (round 19's ncu), so the main loops slowed by more
 * than the hidden epilogues saved. ST 5 / NH 1 ("wsb10c": W 0, "wsb10d":
 * W 1; not yet run on a GPU): a 5-stage ring and ONE h1 / h3 buffer (the
 * same 224 KB): tile i + 1's h1 / h3 are loaded by tile i's consumer once
 * its epilogue has finished with the buffer (into the other consumer's
 * hfull), i.e. while tile i + 1's k blocks run (lead: its main loop less
 * tile i's epilogue).
 * Synchronisation (every wait has its arrival):
 *  - full[s] (count 1): slot g = i nk + kb of the CTA's sequence (tile i,
 *    k block kb) lands in stage g % 3, one expect-tx by the producer a
 *    load, waited once by each thread of tile i's consumer with parity
 *    (g / 3) & 1. A wait is never two phases ahead of the barrier: the
 *    consumer of tile i + 1 starts its k blocks only after the consumer
 *    of tile i has waited for all of its own (the order barrier below),
 *    so slot g - 3 (tile i's or its own earlier block) has completed.
 *  - empty[s] (count 4, one arrive per warp of the slot's consumer, after
 *    its wgmmas that read the stage completed): the producer waits for
 *    slot g - 3's release (parity (g / 3 - 1) & 1) before loading slot g;
 *    slot g + 3 is loaded only after that wait, so phases do not skip.
 *  - the order barrier: named barrier 1 + c (256 threads): consumer c
 *    arrives (bar.arrive) after its tile's last full wait and wgmma issue
 *    when the CTA has a next tile; consumer 1 - c waits (bar.sync) before
 *    that next tile's k blocks. Handoffs alternate, so each barrier id's
 *    arrive and sync pair up one at a time (consumer c's next arrive on
 *    1 + c follows its own sync on 2 - c, which follows the other's sync
 *    on 1 + c). It also makes the two main loops take turns: the tensor
 *    cores run one consumer's k blocks while the other runs its epilogue.
 *  - NH 1 (one buffer): tile i + 1's load (on hfull[(i + 1) & 1]) is
 *    issued by tile i's consumer after the same wait_group.read / fence /
 *    named barrier 3 + c that follow its epilogue; tile i - 1's epilogue
 *    ended before tile i's load was issued, so the buffer is free; the
 *    hfull phases are as below (each consumer's tiles in order).
 *  - hfull[c] (count 1): one expect-tx of 64 KB per tile of consumer c,
 *    issued by its thread 0 (the first tile's at the start; tile i + 2's
 *    after tile i's epilogue: every warp's lane 0 waited for its stores'
 *    reads (wait_group.read 0), the ldmatrix reads fenced to the async
 *    proxy, then named barrier 3 + c (128 threads)); waited once a tile by
 *    each thread of consumer c with parity u & 1 (u: the consumer's tile
 *    count): armed again only after that wait (the named barrier).
 * dh13: bit for bit wgtd's (the same products in the same order, the same
 * epilogue arithmetic; Q rounds as mg_f2bf; a NaN would be 0x7fff, not
 * 0x7fc0). */
#define MGY_THREADS (2 * 128 + 32)
#define MGY_SMEM    (3 * 32768 + 2 * 65536 + 1024)
__device__ __forceinline__ static void mg_bar_sync(int id, int n)
{
	asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ static void mg_bar_arrive(int id, int n)
{
	asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
template <int W, bool Q, int ST = 3, int NH = 2>
__global__ static void __launch_bounds__(MGY_THREADS, 1)
        k_mgy(struct mg_args a, const __grid_constant__ struct mg_tma tm)
{
	constexpr int STAGE = 32768;
	static_assert(W == 0 || W == 1, "k_mgy: wait_group 0 or 1");
	static_assert((ST == 3 && NH == 2) || (ST == 5 && NH == 1), "k_mgy: 3 + 2 or 5 + 1");
	static_assert(ST * STAGE + NH * 65536 + 1024 <= MGY_SMEM, "k_mgy: shared memory");
	__shared__ __align__(8) uint64_t mgy_bars[2 * ST + 2]; /* full, empty, hfull */
	extern __shared__ __align__(1024) unsigned char mg_sm[];
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int D = a.D, F = a.F, nk = (D + MG_BK - 1) / MG_BK, nx = (F + 127) / 128;
	int total = 0; /* tiles: the experts' row tiles x nx */
	for (int i = 0; i < a.E; i++)
		total += (a.offs[i + 1] - a.offs[i] + MG_BM - 1) / MG_BM;
	total *= nx;
	const int G = gridDim.x, b0 = blockIdx.x;
	if (b0 >= total) /* uniform: no tile, no barrier touched */
		return;
	const int ntile = (total - b0 + G - 1) / G; /* the CTA's tiles */
	const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(mg_sm),
	               sbase = (sraw + 1023u) & ~1023u;
	const uint32_t fbar = (uint32_t)__cvta_generic_to_shared(mgy_bars), mbar = fbar + 8 * ST,
	               hbar = fbar + 16 * ST;
	if (tid == 0) {
		for (int s = 0; s < ST; s++) {
			mg_bar_init(fbar + 8 * s, 1);
			mg_bar_init(mbar + 8 * s, 4);
		}
		mg_bar_init(hbar, 1);
		mg_bar_init(hbar + 8, 1);
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	__syncthreads();
	if (warp == 8) { /* the producer: the k blocks of the CTA's tiles in order */
		if (lane == 0)
			for (int i = 0; i < ntile; i++) {
				int e = 0, r0 = 0, r1 = 0, n0 = 0;
				mgp_tile(a, b0 + i * G, nx, 128, e, r0, r1, n0);
				for (int kb = 0; kb < nk; kb++) {
					const int g = i * nk + kb, s = g % ST, k0 = kb * MG_BK;
					const uint32_t dst = sbase + s * STAGE, bar = fbar + 8 * s;
					if (g >= ST)
						ptx::mbar_wait(mbar + 8 * s, (g / ST - 1) & 1);
					ptx::mbar_expect(bar, 2 * MG_TILE);
					ptx::tma_load2(dst, &tm.a, k0, r0, bar);
					ptx::tma_load3(dst + MG_TILE, &tm.b0, n0, k0, e, bar);
					ptx::tma_load3(dst + MG_TILE + 8192, &tm.b0, n0 + 64, k0, e,
					               bar);
				}
			}
		return;
	}
	const int c = warp >> 2, w4 = warp & 3, ctid = tid & 127;
	if (c >= ntile) /* consumer 1 of a CTA with one tile */
		return;
	const uint32_t hb = sbase + ST * STAGE + (NH == 2 ? c * 65536 : 0), hfb = hbar + 8 * c;
	/* the tile's h1 (columns n0.., n0 + 64..) and h3 into the buffer,
	 * counted on bar (NH 1: hfull of the tile's consumer) */
	auto hload = [&](uint32_t bar, int r0, int n0) {
		ptx::mbar_expect(bar, 65536);
		ptx::tma_load2(hb, &tm.s2, n0, r0, bar);
		ptx::tma_load2(hb + 16384, &tm.s2, n0 + 64, r0, bar);
		ptx::tma_load2(hb + 32768, &tm.s3, n0, r0, bar);
		ptx::tma_load2(hb + 49152, &tm.s3, n0 + 64, r0, bar);
	};
	int e = 0, r0 = 0, r1 = 0, n0 = 0;
	mgp_tile(a, b0 + c * G, nx, 128, e, r0, r1, n0);
	if (ctid == 0 && (NH == 2 || c == 0))
		hload(hfb, r0, n0);
	(void)e;
	for (int i = c, u = 0; i < ntile; i += 2, u++) {
		if (i > 0) /* the previous tile's consumer has passed its k blocks */
			mg_bar_sync(2 - c, 256);
		float acc[2][2][32]; /* [row half m][column block h] */
#pragma unroll
		for (int m = 0; m < 2; m++)
#pragma unroll
			for (int h = 0; h < 2; h++)
#pragma unroll
				for (int j = 0; j < 32; j++)
					acc[m][h][j] = 0.0f;
		for (int kb = 0; kb < nk; kb++) {
			const int g = i * nk + kb, s = g % ST;
			ptx::mbar_wait(fbar + 8 * s, (g / ST) & 1);
			const uint32_t sa = sbase + s * STAGE, sb = sa + MG_TILE;
			ptx::fence();
#pragma unroll
			for (int kk = 0; kk < MG_BK / 16; kk++)
#pragma unroll
				for (int m = 0; m < 2; m++) {
					uint64_t da = mg_desc(sa, m * 8192 + kk * 32);
#pragma unroll
					for (int h = 0; h < 2; h++)
						ptx::mma_ss<0, 1>(acc[m][h], da,
						                  mg_desc(sb, h * 8192 + kk * 2048),
						                  1);
				}
			ptx::commit();
			if constexpr (W == 1) {
				ptx::wait<1>();
				if (kb >= 1) { /* block kb - 1's stage */
					__syncwarp();
					if (lane == 0)
						mg_arrive(mbar + 8 * ((g - 1) % ST));
				}
			} else {
				ptx::wait<0>();
#pragma unroll
				for (int m = 0; m < 2; m++)
#pragma unroll
					for (int h = 0; h < 2; h++)
						ptx::reg_fence(acc[m][h]);
				__syncwarp();
				if (lane == 0)
					mg_arrive(mbar + 8 * s);
			}
		}
		if (i + 1 < ntile) /* the next tile's consumer may start its k blocks */
			mg_bar_arrive(1 + c, 256);
		ptx::wait<0>();
#pragma unroll
		for (int m = 0; m < 2; m++)
#pragma unroll
			for (int h = 0; h < 2; h++)
				ptx::reg_fence(acc[m][h]);
		if (W == 1) { /* the last block's stage */
			__syncwarp();
			if (lane == 0)
				mg_arrive(mbar + 8 * ((i * nk + nk - 1) % ST));
		}
		/* the epilogue, under the other consumer's k blocks */
		ptx::mbar_wait(hfb, u & 1);
#pragma unroll
		for (int m = 0; m < 2; m++)
			mg_dx_band<Q>(a, acc[m], hb, hb + 32768, m * 64 + w4 * 16, r0, r1, n0);
		ptx::fence_proxy_async();
		__syncwarp();
		if (lane == 0) {
#pragma unroll
			for (int m = 0; m < 2; m++) {
				const int wr = m * 64 + w4 * 16;
				if (r0 + wr + 16 > r1)
					continue;
				for (int h = 0; h < 2; h++) {
					if (n0 + h * 64 >= F)
						continue;
					const uint32_t o = h * 16384 + wr * 128;
					mg_tma_st(&tm.s1, n0 + h * 64, r0 + wr, hb + o);
					mg_tma_st(&tm.s1, F + n0 + h * 64, r0 + wr, hb + 32768 + o);
				}
			}
			mg_bulk_commit();
			mg_bulk_wait_read();
		}
		if (NH == 1 && i + 1 < ntile) { /* the next tile's (the other consumer's) */
			int e1 = 0, q0 = 0, q1 = 0, m0 = 0;
			mgp_tile(a, b0 + (i + 1) * G, nx, 128, e1, q0, q1, m0);
			ptx::fence_proxy_async();
			mg_bar_sync(3 + c, 128);
			if (ctid == 0)
				hload(hbar + 8 * (c ^ 1), q0, m0);
		}
		if (i + 2 < ntile) { /* this consumer's next tile (NH 2: its h1 / h3) */
			mgp_tile(a, b0 + (i + 2) * G, nx, 128, e, r0, r1, n0);
			if (NH == 2) {
				ptx::fence_proxy_async();
				mg_bar_sync(3 + c, 128);
				if (ctid == 0)
					hload(hfb, r0, n0);
			}
		}
	}
}

/* ---- mbarrier-pipelined variants (4 wgm, 5 ws2) ------------------------------
 * The same 128 x 128 tiles, 64-deep k blocks and swizzled layouts as variant
 * 1, but no CTA-wide barrier in the main loop: PW producer warps (warps 8..)
 * issue every cp.async of a stage (the row gather through a table of the
 * tile's source rows in shared memory) and signal its full mbarrier with
 * cp.async.mbarrier.arrive.noinc; the two consumer warpgroups wait on it,
 * issue the stage's wgmma and keep them in flight across the k block
 * boundary (wgmma.wait_group 1): the stage of block kb - 1 is released (its
 * empty mbarrier, one arrival per consumer warp) once block kb's products
 * are issued and kb - 1's are complete, so the tensor pipe is never drained
 * inside a tile. Three stages: while block kb multiplies, blocks kb + 1 and
 * kb + 2 load. WIDE: one m64n128k16 per k16 step (an MN-major B spans two
 * 64-wide swizzle atoms, 8192 bytes apart: the descriptor's leading byte
 * offset) instead of two m64n64k16. Two CTAs an SM (98 KB of shared memory
 * each), so one CTA's epilogue overlaps the other's main loop. PW 2 is
 * "ws2" (variant 5): H100 1.25-1.50 ms a layer against wg's 0.88-0.95, and
 * PW 1 was 1.91-2.32: the producer warps cannot issue the cp.async fast
 * enough (TMA would take that off them; the gathered operands need rows).
 * PW 0 ("wgm", variant 4): no producer warps; every thread loads its share
 * of block kb + 2 into block kb - 1's stage right after its warpgroup's
 * wait_group 1 at block kb, once all 8 warps have released that stage
 * (the empty barrier), so block kb's products stay queued on the tensor
 * cores meanwhile and loads run two blocks ahead with no CTA barrier.
 * H100: 0.94-1.03 ms a layer, wg 0.88-0.95 in the same run. */
#define WS_ST         3
#define MG_SPLIT_ROWS 1024 /* weight gradients: rows (k) per split */
#define WS_STAGE      (2 * MG_TILE)
#define WS_SMEM       (WS_ST * WS_STAGE + 1024 + 1024 + 64)

__device__ __forceinline__ static void mg_mb_init(uint32_t b, int n)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(b), "r"(n) : "memory");
}
__device__ __forceinline__ static void mg_mb_arrive(uint32_t b)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(b) : "memory");
}
__device__ __forceinline__ static void mg_mb_cp_arrive(uint32_t b)
{
	asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(b) : "memory");
}
__device__ __forceinline__ static void mg_mb_wait(uint32_t b, int phase)
{
	ptx::mbar_wait(b, (uint32_t)phase);
}

template <int MODE, int PW, int WIDE>
__global__ static void __launch_bounds__(256 + 32 * PW, 2) k_ws(struct mg_args a)
{
	/* loader threads: the producer warps, or (PW 0) every thread */
	constexpr int PT = PW ? 32 * PW : 256, BN = 128, CLD = BN + 4;
	extern __shared__ __align__(1024) unsigned char mg_sm[];
	constexpr bool DW = MODE == MG_DOWN_DW || MODE == MG_UP_DW; /* A stored (k, m) */
	constexpr bool BT = MODE != MG_UP && MODE != MG_DOWN;       /* B stored (k, n) */
	const int tid = threadIdx.x, warp = tid >> 5;
	const int D = a.D, F = a.F, K = a.K;
	const int Kd = MODE == MG_UP || MODE == MG_DOWN_DX ? D : MODE == MG_DOWN ? F : 2 * F;
	const int N = MODE == MG_UP || MODE == MG_DOWN_DX || MODE == MG_DOWN_DW ? F : D;
	const int M = MODE == MG_DOWN_DW ? D : 2 * F;
	int e = -1, r0 = 0, r1 = 0, m0 = 0, nk, split = 0, nsplit = 1;
	const int n0 = blockIdx.x * (MODE == MG_UP ? BN / 2 : BN);

	if (!DW) { /* as k_mg */
		int b = blockIdx.y;
		for (int i = 0; i < a.E; i++) {
			int s = a.offs[i], t = a.offs[i + 1], nt = (t - s + MG_BM - 1) / MG_BM;
			if (b < nt) {
				e = i;
				r0 = s + b * MG_BM;
				r1 = t;
				break;
			}
			b -= nt;
		}
		if (e < 0)
			return;
		nk = (Kd + MG_BK - 1) / MG_BK;
	} else if (a.chr > 0) { /* split s of expert e: its rows [s chr, (s + 1) chr) */
		int z = blockIdx.z;
		for (int i = 0; i < a.E; i++) {
			int s = a.offs[i], t = a.offs[i + 1], ns = (t - s + a.chr - 1) / a.chr;
			if (z < ns) {
				e = i;
				split = z;
				nsplit = ns;
				r0 = s + z * a.chr;
				r1 = min(t, r0 + a.chr);
				break;
			}
			z -= ns;
		}
		if (e < 0)
			return;
		m0 = blockIdx.y * MG_BM;
		nk = (r1 - r0 + MG_BK - 1) / MG_BK;
	} else {
		e = blockIdx.z;
		r0 = a.offs[e];
		r1 = a.offs[e + 1];
		m0 = blockIdx.y * MG_BM;
		if (r0 >= r1) { /* no rows: a stored dW is zero */
			if (!a.beta)
				mg_dw_zero<MODE>(a, e, m0, n0, BN);
			return;
		}
		nk = (r1 - r0 + MG_BK - 1) / MG_BK;
	}
	const size_t wsz = (size_t)F * D;
	const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(mg_sm),
	               sbase = (sraw + 1023u) & ~1023u;
	/* after the stages: the tile's source rows (128 ints), UP_DW's tokens of
	 * a k block (2 x 64 ints), then the full and empty barriers */
	int *srow = (int *)(mg_sm + (sbase - sraw) + WS_ST * WS_STAGE), *stok = srow + 128;
	const uint32_t bfull = sbase + WS_ST * WS_STAGE + 1024, bempty = bfull + 8 * WS_ST;

	if (tid == 0) {
		for (int s = 0; s < WS_ST; s++) {
			mg_mb_init(bfull + 8 * s, PT);
			mg_mb_init(bempty + 8 * s, 8);
		}
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
	}
	if (!DW && (PW == 0 || tid >= 256))
		for (int r = PW ? tid - 256 : tid; r < MG_BM; r += PT) {
			int row = r0 + r;
			srow[r] = row >= r1 ? -1 : MODE == MG_UP && !a.gx ? a.perm[row] / K : row;
		}
	__syncthreads();

	/* one k block's loads into its stage, by loader thread pt of PT; its
	 * full barrier completes when they have landed */
	auto produce = [&](int kb, int pt) {
		const int st = kb % WS_ST, k0 = kb * MG_BK;
		const uint32_t sa = sbase + st * WS_STAGE, sb = sa + MG_TILE;
		int *tk = stok + (kb & 1) * 64;
		if constexpr (MODE == MG_UP_DW && PW > 0) {
			for (int r = pt; r < MG_BK; r += PT) {
				int row = r0 + k0 + r;
				tk[r] = row >= r1 ? -1 : a.gx ? row : a.perm[row] / K;
			}
			if constexpr (PW == 1)
				__syncwarp();
			else
				asm volatile("bar.sync 2, %0;\n" ::"n"(PT) : "memory");
		}
		if (!DW) { /* A (m, k): 128 rows of 8 chunks */
			const int c = pt & 7, k = k0 + c * 8;
			const bool kv = k < Kd;
#pragma unroll 8
			for (int i = 0; i < 1024 / PT; i++) {
				int r = (pt >> 3) + (PT / 8) * i, sr = srow[r];
				bool v = kv && sr >= 0;
				ptx::cp_async16(sa + mg_kofs(r, c),
				                v ? a.a + (size_t)sr * Kd + k : a.a, v);
			}
		} else { /* A (k, m): 64 k rows of 16 chunks */
			const int c = pt & 15, m = m0 + c * 8;
			const bool mv = m < M;
#pragma unroll 8
			for (int i = 0; i < 1024 / PT; i++) {
				int kr = (pt >> 4) + (PT / 16) * i, row = r0 + k0 + kr;
				bool v = mv && row < r1;
				ptx::cp_async16(sa + mg_nofs(kr, c),
				                v ? a.a + (size_t)row * M + m : a.a, v);
			}
		}
		if (!BT) { /* B (n, k): 128 rows of 8 chunks */
			const int c = pt & 7, k = k0 + c * 8;
			const bool kv = k < Kd;
#pragma unroll 8
			for (int i = 0; i < 1024 / PT; i++) {
				int n = (pt >> 3) + (PT / 8) * i;
				const uint16_t *src = NULL;
				if (MODE == MG_UP) { /* rows 0..63 of W1, then of W3 */
					int f = n0 + (n & 63);
					if (f < F)
						src = (n < 64 ? a.b0 : a.b1) + e * wsz +
						      (size_t)f * D;
				} else if (n0 + n < D) {
					src = a.b0 + e * wsz + (size_t)(n0 + n) * F;
				}
				bool v = kv && src;
				ptx::cp_async16(sb + mg_kofs(n, c), v ? src + k : a.b0, v);
			}
		} else { /* B (k, n): 64 k rows of 16 chunks */
			const int c = pt & 15, n = n0 + c * 8;
			const bool nv = n < N;
#pragma unroll 8
			for (int i = 0; i < 1024 / PT; i++) {
				int kr = (pt >> 4) + (PT / 16) * i, k = k0 + kr;
				const uint16_t *src = NULL;
				if (nv) {
					if (MODE == MG_DOWN_DX) {
						if (k < D)
							src = a.b0 + e * wsz + (size_t)k * F + n;
					} else if (MODE == MG_UP_DX) {
						if (k < F)
							src = a.b0 + e * wsz + (size_t)k * D + n;
						else if (k < 2 * F)
							src = a.b1 + e * wsz + (size_t)(k - F) * D +
							      n;
					} else if (MODE == MG_DOWN_DW) {
						int row = r0 + k;
						if (row < r1)
							src = a.b0 + (size_t)row * F + n;
					} else {
						int t;
						if (PW > 0)
							t = tk[kr];
						else /* all threads load: no table */
							t = r0 + k >= r1 ? -1
							    : a.gx       ? r0 + k
							                 : a.perm[r0 + k] / K;
						if (t >= 0)
							src = a.b0 + (size_t)t * D + n;
					}
				}
				ptx::cp_async16(sb + mg_nofs(kr, c), src ? src : a.b0, src != NULL);
			}
		}
		mg_mb_cp_arrive(bfull + 8 * st);
	};

	if (PW > 0 && tid >= 256) { /* ---- the producer warps ---- */
		const int pt = tid - 256;
		for (int kb = 0; kb < nk; kb++) {
			if (kb >= WS_ST)
				mg_mb_wait(bempty + 8 * (kb % WS_ST), (kb / WS_ST + 1) & 1);
			produce(kb, pt);
		}
		ptx::cp_wait<0>();
		return;
	}

	/* ---- the consumer warpgroups: wm's 64 rows x the 128 columns ---- */
	const int wm = warp >> 2, lane = tid & 31;
	float acc[64];
	for (int i = 0; i < 64; i++)
		acc[i] = 0.0f;
	if (PW == 0) /* every thread loads: two blocks ahead */
		for (int kb = 0; kb < 2 && kb < nk; kb++)
			produce(kb, tid);
	for (int kb = 0; kb < nk; kb++) {
		const int st = kb % WS_ST;
		mg_mb_wait(bfull + 8 * st, (kb / WS_ST) & 1);
		ptx::fence_proxy_async(); /* cp.async wrote through the generic proxy */
		const uint32_t sa = sbase + st * WS_STAGE, sb = sa + MG_TILE;
		ptx::fence();
#pragma unroll
		for (int kk = 0; kk < MG_BK / 16; kk++) {
			uint64_t da = mg_desc(sa, wm * 8192 + (DW ? kk * 2048 : kk * 32));
			if (WIDE) {
				mg_wgmma128<DW ? 1 : 0, BT ? 1 : 0>(
				        acc, da,
				        mg_desc_l(sb, BT ? kk * 2048 : kk * 32, BT ? 8192 : 1024));
			} else {
#pragma unroll
				for (int h = 0; h < 2; h++)
					ptx::mma_ss<DW ? 1 : 0, BT ? 1 : 0>(
					        *reinterpret_cast<float(*)[32]>(acc + 32 * h), da,
					        mg_desc(sb, h * 8192 + (BT ? kk * 2048 : kk * 32)),
					        1);
			}
		}
		ptx::commit();
		ptx::wait<1>();
		if (kb > 0 && lane == 0) /* block kb - 1's products are complete */
			mg_mb_arrive(bempty + 8 * ((kb - 1) % WS_ST));
		if (PW == 0 && kb + 2 < nk) {
			/* block kb + 2 into block kb - 1's stage once every warp has
			 * released it (block kb's products stay queued meanwhile) */
			if (kb > 0)
				mg_mb_wait(bempty + 8 * ((kb - 1) % WS_ST), ((kb - 1) / WS_ST) & 1);
			produce(kb + 2, tid);
		}
	}
	ptx::wait<0>();
	ptx::reg_fence(*reinterpret_cast<float(*)[32]>(acc));
	ptx::reg_fence(*reinterpret_cast<float(*)[32]>(acc + 32));
	/* every consumer's products done before the stages become the C tile */
	asm volatile("bar.sync 1, 256;\n" ::: "memory");
	float *Cs = (float *)(mg_sm + (sbase - sraw));
	{ /* wgmma D layout (n128 = the two n64 halves side by side) */
		int w4 = warp & 3, r = wm * 64 + w4 * 16 + (lane >> 2);
#pragma unroll
		for (int j = 0; j < 16; j++) {
			int c = j * 8 + (lane & 3) * 2;
			*(float2 *)&Cs[r * CLD + c] = make_float2(acc[4 * j], acc[4 * j + 1]);
			*(float2 *)&Cs[(r + 8) * CLD + c] =
			        make_float2(acc[4 * j + 2], acc[4 * j + 3]);
		}
	}
	/* split weight gradients add to dW in split order (deterministic): split
	 * s waits until s - 1 has added its tile, then lets s + 1 go */
	int *flag = NULL;
	if (DW && nsplit > 1) {
		flag = a.flags + ((size_t)e * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
		if (tid == 0)
			ptx::flag_wait(flag, split);
	}
	asm volatile("bar.sync 1, 256;\n" ::: "memory");
	mg_epi<MODE, BN>(a, Cs, tid, 256, e, r0, r1, m0, n0, a.beta || split > 0);
	if (flag) {
		__threadfence();
		asm volatile("bar.sync 1, 256;\n" ::: "memory");
		if (tid == 0)
			ptx::flag_set(flag, split + 1);
	}
}

/* ---- host side ------------------------------------------------------------- */

int policy_moe_supported(int D, int F)
{
	return D > 0 && F > 0 && D % 8 == 0 && F % 8 == 0;
}

static int aligned(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

/* the variant: POLICY_GPU_MOE_KERNEL=mma (0), wg (1), wg256 (2), wgp (3),
 * wgm (4), ws2 (5), wgt (6), wgtd (7, the default in rounds 6-9), wgtdp,
 * wsb, wsb2 (the default in rounds 10-15), wsb3, wsb3w (the default in
 * rounds 16-26), wsb9d (the default since round 27; see below); read
 * at each launch, so one process
 * can time them all. H100, one layer's six products at the benchmark's
 * shape (tests/bench/gpu_train_moe), balanced / skewed routing, 2026-11-26:
 * mma 1.07-1.30 ms, wg 0.88-0.95, wg256 1.13-1.26, wgp 0.91-1.00, wgm
 * 0.94-1.03, ws2 1.25-1.50 (round 5's warp-specialised kernels with one
 * producer warp, 1.85-2.37, are no longer built: one warp cannot issue a
 * stage's 2048 cp.async in the time the tensor cores take to consume it).
 * Round 6 (H100, same run): wgt 0.824 / 0.881 ms against wg 0.909 / 0.969
 * (x1.10; up dX 0.143 -> 0.104 ms = 495 TFLOP/s, down dX 0.137 -> 0.120,
 * down 0.076 -> 0.068; up, whose A is gathered, level), 32.4 against 33.1 ms
 * a micro-batch end to end. Round 6 call 2 (H100, same run): wgtd 0.800 /
 * 0.834 ms, wgt 0.838 / 0.889, wg 0.896 / 0.961 (down dW 0.102 -> 0.076,
 * up dW 0.284 -> 0.273 by TMA); end to end 32.4 / 32.6 / 33.3 ms a
 * micro-batch: wgtd the default. wgt and wgtd run wg where F % 64 != 0 */
int policy_moe_variant(void)
{
	/* variant 8 is wgtd's TMA-store epilogue (POLICY_GPU_MOE_EPI), not a name
	 * here; round 9's wgtdp (wgtd with persistent CTAs, k_mgp) is variant 9;
	 * round 10's wsb and wsb2 (policy/gpu_moe_ws.cu; wsb2 the default since
	 * the lead's round-10 run, H100: 21.1 against 23.7-24.0 ms a micro-batch
	 * with round 10's other defaults; wsb2 alone -3%) are 10 and 11;
	 * round 11's wsb3 (wsb2 + down dX, down dW, up dW from xg) is 12;
	 * round 12's wsb4 (wsb2's three products + down dX with ping-pong
	 * consumers, 64 x 256 tiles) is 13, wsb4a (wsb4 with wgtd's down dX) 14,
	 * wsb4d (wsb2 with only DOWN in ping-pong, the one product it sped up:
	 * H100, 0.067 against 0.076 ms) 15; round 13's wsb5 (wsb2 + down dX in
	 * k_ws with h1 / h3 by TMA; opt-in, not yet run on a GPU) 16; round
	 * 14's wsb6 (wsb2 with up, down and up dX's epilogues deferred under the
	 * next tile's main loop; opt-in; H100: those products 3-5% faster, end
	 * to end within noise) 17, wsb6u (only up's) 18, wsb6r (wsb6 with each
	 * deferred chunk after the previous block's release; not yet run on a
	 * GPU) 19; round 16's wsb3w (wsb3's two weight gradients, wgtd's down
	 * dX: wsb3 minus the one product it slowed; the default since the
	 * lead's round-16 run, H100 2026-11-27: 20.5 / 20.4 against wsb2's 20.8
	 * / 20.8 ms a micro-batch, interleaved) 20; round 16's wsb7 (wsb2
	 * with up and down in the ping-pong kernel run by 2-CTA clusters sharing
	 * B by TMA multicast; opt-in; H100: 2.2-2.4x slower, see gpu_moe_ws.cu)
	 * 21, wsb7d (only down's) 22, wsb7u (only up's) 23, wsb7dx (wsb7 with up
	 * dX there too: WRONG results on an H100, for the next attempt only) 24;
	 * round 19's wsb8 (wsb3w with down dX as wsb5's k_ws, the tile's h1 / h3
	 * prefetched into L2 before its main loop; opt-in) 25, wsb8g (wsb3w with
	 * wgtd's down dX prefetching its h1 / h3 tile into L2 at the first k
	 * block; opt-in) 26, wsb8r (wsb3w with round 11's k_ws down dX, h1 / h3
	 * into registers, plus the same L2 prefetch; opt-in) 27, wsb8h (wsb3w
	 * with wgtd's down dX under L2 eviction priorities: W2 evict_last, h1 /
	 * h3 and dh13 evict_first; variant 16; opt-in) 28, wsb8k (wsb3w with
	 * wsb5's k_ws down dX under the same priorities; opt-in) 29; round 19b's
	 * wsb9a (wsb3w with down dX in k_mgx: wgtd's with a producer warp, no
	 * CTA barrier a k block, one block's wgmma in flight; opt-in) 30, wsb9b
	 * (the same with each block waited for) 31, wsb9p (wsb9a with dyp
	 * prefetched into L2 a ring ahead) 32, wsb9c (wsb9a with dh13 packed by
	 * cvt.rn.bf16x2: the same bits) 33, wsb9d (wsb9b with wsb9c's packing)
	 * 34, wsb9e (wsb9d with the tile walk's offs loaded at once) 35; round
	 * 20's wsb10 (wsb3w with down dX in k_mgy: persistent, two consumer
	 * warpgroups taking tiles in turn, a tile's epilogue under the next
	 * tile's k blocks; a block's wgmma in flight) 36, wsb10b (the same with
	 * each block waited for) 37, wsb10c (wsb10b with a 5-stage ring and one
	 * h1 / h3 buffer the consumers share) 38, wsb10d (wsb10 with the same) 39 */
	static const char *const names[39] = {
	        "mma",   "wg",    "wg256", "wgp",   "wgm",    "ws2",    "wgt",   "wgtd",
	        "wgtdp", "wsb",   "wsb2",  "wsb3",  "wsb4",   "wsb4a",  "wsb4d", "wsb5",
	        "wsb6",  "wsb6u", "wsb6r", "wsb3w", "wsb7",   "wsb7d",  "wsb7u", "wsb7dx",
	        "wsb8",  "wsb8g", "wsb8r", "wsb8h", "wsb8k",  "wsb9a",  "wsb9b", "wsb9p",
	        "wsb9c", "wsb9d", "wsb9e", "wsb10", "wsb10b", "wsb10c", "wsb10d"};
	/* round 27: wsb9d the default (was wsb3w): its down dX's dh13 bit for
	 * bit wsb3w's; H100 2026-11-27, 65,536 tokens a micro-batch: 123.2,
	 * 122.0, 122.6 ms against wsb3w's 124.1-124.8, 123.3-125.1, 123.7-124.7
	 * in three calls, 4 x 8192 level (round 20: 19.4 against 19.3 ms a
	 * micro-batch; round 21: 71.0 against 71.1-71.3 a step) */
	int v = policy_env_choice("POLICY_GPU_MOE_KERNEL", names, 39, 33);
	return v >= 8 ? v + 1 : v;
}

/* the stream the grouped products (and split-K's clears) launch on: NULL,
 * the legacy default stream, unless policy_moe_stream set one (gpu.cu's
 * POLICY_GPU_STREAMS=2 puts the weight gradients on a second stream) */
static cudaStream_t mg_stream;

void *policy_moe_stream(void *stream)
{
	void *old = (void *)mg_stream;
	mg_stream = (cudaStream_t)stream;
	return old;
}

/* the k_ws variants: wgm (4) = no producer warps, ws2 (5) = two */
template <int MODE, int PW, int WIDE> static int ws_run(dim3 grid, const struct mg_args *a)
{
	static int attr_set;
	if (!attr_set) {
		CK(cudaFuncSetAttribute(k_ws<MODE, PW, WIDE>,
		                        cudaFuncAttributeMaxDynamicSharedMemorySize, WS_SMEM));
		attr_set = 1;
	}
	k_ws<MODE, PW, WIDE><<<grid, 256 + 32 * PW, WS_SMEM, mg_stream>>>(*a);
	LAUNCHED();
	return 0;
}

template <int MODE, int VAR>
static int mg_run(dim3 grid, const struct mg_args *a, const struct mg_tma *tm)
{
	static int attr_set;
	if (!attr_set) {
		CK(cudaFuncSetAttribute(k_mg<MODE, VAR>,
		                        cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        mg_var<VAR>::SMEM));
		attr_set = 1;
	}
	CK(pdl::launch(k_mg<MODE, VAR>, grid, dim3(MG_THREADS), mg_var<VAR>::SMEM, mg_stream, *a,
	               *tm));
	LAUNCHED();
	return 0;
}

/* round 19b: down dX by k_mgx (wgtd's grid and maps) */
template <int W, int PFA, bool Q, bool TW = false>
static int mgx_run(dim3 grid, const struct mg_args *a, const struct mg_tma *tm)
{
	static int attr_set;
	if (!attr_set) {
		CK(cudaFuncSetAttribute(k_mgx<W, PFA, Q, TW>,
		                        cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        mg_var<8>::SMEM));
		attr_set = 1;
	}
	k_mgx<W, PFA, Q, TW><<<grid, MGX_THREADS, mg_var<8>::SMEM, mg_stream>>>(*a, *tm);
	LAUNCHED();
	return 0;
}

/* POLICY_GPU_MOE_CTAS=n (tests, benches; wgtdp only): at most n persistent
 * CTAs, so each walks many tiles (the stage sequence and the mbarrier
 * phases across tiles); 0 when unset, SWERVE_EINVAL when not a count */
static int mg_ctas(void)
{
	const char *cv = getenv("POLICY_GPU_MOE_CTAS");
	char *end;
	if (!cv || !*cv)
		return 0;
	long v = strtol(cv, &end, 10);
	if (*end || v < 1 || v > 1000000)
		return swerve_error_set(
		        SWERVE_EINVAL, "POLICY_GPU_MOE_CTAS=%s: not a count of CTAs (1 to 1000000)",
		        cv);
	return (int)v;
}

/* round 9: the persistent kernel, a grid of min(tiles, SMs x the CTAs an
 * SM that fit, cap when > 0) CTAs (tiles: an upper bound, R / 128 + E row tiles x nx;
 * CTAs past the device's count of tiles exit at once) */
template <int MODE>
static int mgp_run(const struct mg_args *a, const struct mg_tma *tm, int R, int cap)
{
	static int attr_set, ctas;
	if (!attr_set) {
		int dev, sms, occ;
		CK(cudaFuncSetAttribute(k_mgp<MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        mg_var<8>::SMEM));
		CK(cudaGetDevice(&dev));
		CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
		CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_mgp<MODE>, MG_THREADS,
		                                                 mg_var<8>::SMEM));
		if (occ < 1)
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu moe: wgtdp: no CTA fits an SM (%d bytes)",
			                        mg_var<8>::SMEM);
		ctas = sms * occ;
		attr_set = 1;
	}
	if (cap < 1 || cap > ctas)
		cap = ctas;
	const int bnc = MODE == MG_UP ? 64 : 128, nx = (a->F + bnc - 1) / bnc;
	const long tiles = (long)((R + MG_BM - 1) / MG_BM + a->E) * nx;
	const int grid = tiles < cap ? (int)tiles : cap;
	k_mgp<MODE><<<grid, MG_THREADS, mg_var<8>::SMEM, mg_stream>>>(*a, *tm);
	LAUNCHED();
	return 0;
}

/* round 20: down dX by k_mgy (wsb10, wsb10b): one CTA an SM, a grid of
 * min(tiles, SMs, cap when > 0) (tiles: the upper bound R / 128 + E row
 * tiles x nx; CTAs past the device's count exit at once) */
template <int W, bool Q, int ST = 3, int NH = 2>
static int mgy_run(const struct mg_args *a, const struct mg_tma *tm, int R, int cap)
{
	static int attr_set, ctas;
	if (!attr_set) {
		int dev, sms, occ;
		CK(cudaFuncSetAttribute(k_mgy<W, Q, ST, NH>,
		                        cudaFuncAttributeMaxDynamicSharedMemorySize, MGY_SMEM));
		CK(cudaGetDevice(&dev));
		CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
		CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, k_mgy<W, Q, ST, NH>,
		                                                 MGY_THREADS, MGY_SMEM));
		if (occ < 1)
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu moe: wsb10: no CTA fits an SM (%d bytes)",
			                        MGY_SMEM);
		ctas = sms;
		attr_set = 1;
	}
	if (cap < 1 || cap > ctas)
		cap = ctas;
	const long tiles = (long)((R + MG_BM - 1) / MG_BM + a->E) * ((a->F + 127) / 128);
	const int grid = tiles < cap ? (int)tiles : cap;
	k_mgy<W, Q, ST, NH><<<grid, MGY_THREADS, MGY_SMEM, mg_stream>>>(*a, *tm);
	LAUNCHED();
	return 0;
}

/* the tensor maps of variants 6 and 7 (see struct mg_tma): map of a bf16
 * tensor, dims innermost first (2 or 3), boxes of 64 x box_rows */
static int mg_map(CUtensorMap *m, const void *p, int nd, const cuuint64_t *dim, int box_rows)
{
	return swerve_tma_map_bf16(m, p, nd, dim, box_rows, "gpu moe");
}

/* variant 6's maps for mode MODE: A (R, Kd) rows, the weights (E, rows, cols) */
template <int MODE> static int mg_maps(struct mg_tma *tm, const struct mg_args *a, int R)
{
	const cuuint64_t E = (cuuint64_t)a->E, D = (cuuint64_t)a->D, F = (cuuint64_t)a->F;
	const cuuint64_t wfd[3] = {D, F, E}, wdf[3] = {F, D, E}; /* W1, W3 / W2 */
	int rc = 0;
	if (MODE == MG_DOWN_DW || MODE == MG_UP_DW) { /* variant 7: dyp / dh13, hh rows */
		const cuuint64_t adim[2] = {MODE == MG_DOWN_DW ? D : 2 * F, (cuuint64_t)R};
		const cuuint64_t bdim[2] = {MODE == MG_DOWN_DW ? F : D, (cuuint64_t)R};
		rc = mg_map(&tm->a, a->a, 2, adim, 64);
		if (!rc && (MODE == MG_DOWN_DW || a->gx)) /* hh, or xg (round 7) */
			rc = mg_map(&tm->b0, a->b0, 2, bdim, 64);
		return rc;
	}
	if (MODE == MG_UP) {
		if (a->gx) { /* round 7: xg (R, D) rows, as DOWN's A */
			const cuuint64_t adim[2] = {D, (cuuint64_t)R};
			rc = mg_map(&tm->a, a->a, 2, adim, 128);
		}
		if (!rc)
			rc = mg_map(&tm->b0, a->b0, 3, wfd, 64);
		if (!rc)
			rc = mg_map(&tm->b1, a->b1, 3, wfd, 64);
		return rc;
	}
	const cuuint64_t kd = MODE == MG_DOWN ? F : MODE == MG_DOWN_DX ? D : 2 * F;
	const cuuint64_t adim[2] = {kd, (cuuint64_t)R};
	rc = mg_map(&tm->a, a->a, 2, adim, 128);
	if (!rc)
		rc = mg_map(&tm->b0, a->b0, 3, MODE == MG_UP_DX ? wfd : wdf, 64);
	if (!rc && MODE == MG_UP_DX)
		rc = mg_map(&tm->b1, a->b1, 3, wfd, 64);
	return rc;
}

/* POLICY_GPU_MOE_EPI: "tma" (1, the default since round 8: UP's and
 * DOWN_DX's epilogues in wgtd by stmatrix and TMA stores, variant 8) or
 * "smem" (0, round 7: the fp32 tile through shared memory); an unknown value
 * is SWERVE_EINVAL. H100, 2026-11-26, one call (gpu_train_moe, wgtd with xg,
 * balanced / skewed): up 0.142 / 0.143 -> 0.135 / 0.144 ms, down dX 0.122 /
 * 0.125 -> 0.100 / 0.106, one layer 0.662 / 0.706 -> 0.631 / 0.687; end to
 * end (gpu_train quick, K = 4) 24.0 -> 23.8 ms a micro-batch */
int policy_moe_epi(void)
{
	static const char *const names[] = {"smem", "tma"};
	return policy_env_choice("POLICY_GPU_MOE_EPI", names, 2, 1);
}

/* variant 8's extra maps: UP's outputs (F, R) in 64 x 16 boxes; DOWN_DX's
 * dh13 (2F, R) in 64 x 16, h1 and h3 (F, R) in 64 x 128 */
template <int MODE> static int mg_maps_epi(struct mg_tma *tm, const struct mg_args *a, int R)
{
	const cuuint64_t F = (cuuint64_t)a->F, fr[2] = {F, (cuuint64_t)R},
	                 f2r[2] = {2 * F, (cuuint64_t)R};
	int rc;
	if (MODE == MG_UP) {
		rc = mg_map(&tm->s1, a->o1, 2, fr, 16);
		if (!rc)
			rc = mg_map(&tm->s2, a->o2, 2, fr, 16);
		if (!rc)
			rc = mg_map(&tm->s3, a->o3, 2, fr, 16);
		return rc;
	}
	rc = mg_map(&tm->s1, a->o1, 2, f2r, 16);
	if (!rc)
		rc = mg_map(&tm->s2, a->h1, 2, fr, 128);
	if (!rc)
		rc = mg_map(&tm->s3, a->h3, 2, fr, 128);
	return rc;
}

template <int MODE> static int mg_launch(const struct policy_moe_dims *d, struct mg_args *a)
{
	int var = policy_moe_variant(), BN = var == 2 ? 256 : 128, epi = policy_moe_epi();
	if (var < 0)
		return var;
	/* round 9: wgtdp is wgtd (7) with UP (A = xg) and DOWN_DX in persistent
	 * CTAs when the TMA epilogues run (k_mgp); the other products, UP with
	 * A gathered in the loads and EPI=smem run wgtd's kernels */
	const bool pers = var == 9;
	const int cap = pers || (var >= 10 && var <= 39) ? mg_ctas() : 0;
	if (cap < 0)
		return cap;
	if (pers)
		var = 7;
	if (epi < 0)
		return epi;
	/* split-K of the weight gradients: ws2 both; wgp, wgm DOWN_DW (8 x 6 dW
	 * tiles an expert: 1.45 waves of 2 CTAs an SM unsplit). Measured slower
	 * for DOWN_DW (H100: wgp 0.112 / 0.148 ms balanced / skewed against wg's
	 * unsplit 0.088 / 0.110): the RMWs in split order and the extra dW
	 * traffic cost more than the waves gain */
	bool split = (var == 5 && (MODE == MG_DOWN_DW || MODE == MG_UP_DW)) ||
	             ((var == 3 || var == 4) && MODE == MG_DOWN_DW);
	dim3 grid;
	int R = d->T * d->K;
	if (!policy_moe_supported(d->D, d->F))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe: D (%d) and F (%d) must be multiples of 8", d->D,
		                        d->F);
	if (!aligned(a->a) || !aligned(a->b0) || (a->b1 && !aligned(a->b1)))
		return swerve_error_set(SWERVE_EINVAL, "gpu moe: operands not 16-byte aligned");
	if (d->E < 1 || R < 1)
		return 0;
	a->offs = d->offs;
	a->perm = d->perm;
	a->K = d->K;
	a->E = d->E;
	a->D = d->D;
	a->F = d->F;
	a->gx = d->gathered != 0 && (MODE == MG_UP || MODE == MG_UP_DW);
	/* round 16: wsb7 is wsb2 with UP (A = xg) and DOWN in 2-CTA clusters
	 * (ping-pong consumers, B shared by TMA multicast); wsb7d only DOWN,
	 * wsb7u only UP; wsb7dx also UP_DX (D % 64 == 0; wrong on an H100) */
	if (var >= 21 && var <= 24) {
		if (var != 22 && MODE == MG_UP && a->gx)
			return policy_moe_ws7_up(d, a->o1, a->o2, a->o3, a->a, a->b0, a->b1, cap,
			                         (void *)mg_stream);
		if ((var == 21 || var == 22 || var == 24) && MODE == MG_DOWN)
			return policy_moe_ws7_down(d, a->f1, a->a, a->b0, cap, (void *)mg_stream);
		if (var == 24 && MODE == MG_UP_DX && d->F % 64 == 0 && d->D % 64 == 0)
			return policy_moe_ws7_up_dx(d, a->f1, a->a, a->b0, a->b1, cap,
			                            (void *)mg_stream);
		var = 11;
	}
	/* round 14: wsb6 is wsb2 with UP (A = xg), DOWN and UP_DX's epilogues
	 * deferred under the next tile's main loop; wsb6u only UP's; wsb6r: wsb6
	 * with each chunk after the previous block's release */
	if (var == 19) {
		if (MODE == MG_UP && a->gx)
			return policy_moe_ws6r_up(d, a->o1, a->o2, a->o3, a->a, a->b0, a->b1, cap,
			                          (void *)mg_stream);
		if (MODE == MG_DOWN)
			return policy_moe_ws6r_down(d, a->f1, a->a, a->b0, cap, (void *)mg_stream);
		if (MODE == MG_UP_DX && d->F % 64 == 0)
			return policy_moe_ws6r_up_dx(d, a->f1, a->a, a->b0, a->b1, cap,
			                             (void *)mg_stream);
		var = 11;
	}
	if (var == 17 || var == 18) {
		if (MODE == MG_UP && a->gx)
			return policy_moe_ws6_up(d, a->o1, a->o2, a->o3, a->a, a->b0, a->b1, cap,
			                         (void *)mg_stream);
		if (var == 17 && MODE == MG_DOWN)
			return policy_moe_ws6_down(d, a->f1, a->a, a->b0, cap, (void *)mg_stream);
		if (var == 17 && MODE == MG_UP_DX && d->F % 64 == 0)
			return policy_moe_ws6_up_dx(d, a->f1, a->a, a->b0, a->b1, cap,
			                            (void *)mg_stream);
		var = 11;
	}
	/* round 13: wsb5 is wsb2 with DOWN_DX in k_ws, h1 / h3 by TMA */
	if (var == 16) {
		if (MODE == MG_DOWN_DX)
			return policy_moe_ws5_down_dx(d, a->o1, a->a, a->b0, a->h1, a->h3, cap,
			                              (void *)mg_stream);
		var = 11;
	}
	/* round 12: wsb4d is wsb2 with DOWN in the ping-pong kernel */
	if (var == 15) {
		if (MODE == MG_DOWN)
			return policy_moe_ws4_down(d, a->f1, a->a, a->b0, cap, (void *)mg_stream);
		var = 11;
	}
	/* round 19: wsb8 is wsb3w with DOWN_DX in k_ws, h1 / h3 prefetched into
	 * L2; wsb8g wsb3w with wgtd's DOWN_DX prefetching them (variant 15) */
	bool pfh = false, hnt = false;
	/* round 19b: wsb9a / wsb9b / wsb9p are wsb3w with down dX in k_mgx */
	int mgx = 0; /* round 20: wsb10, wsb10b, wsb10c, wsb10d too (k_mgy) */
	if (var >= 30 && var <= 39) {
		mgx = MODE == MG_DOWN_DX ? var : 0;
		var = 20;
	}
	if (var == 25 && MODE == MG_DOWN_DX)
		return policy_moe_ws8_down_dx(d, a->o1, a->a, a->b0, a->h1, a->h3, cap,
		                              (void *)mg_stream);
	if (var == 29 && MODE == MG_DOWN_DX)
		return policy_moe_ws8k_down_dx(d, a->o1, a->a, a->b0, a->h1, a->h3, cap,
		                               (void *)mg_stream);
	if (var == 27 && MODE == MG_DOWN_DX)
		return policy_moe_ws8r_down_dx(d, a->o1, a->a, a->b0, a->h1, a->h3, cap,
		                               (void *)mg_stream);
	if (var >= 25 && var <= 29) {
		pfh = var == 26 && MODE == MG_DOWN_DX;
		hnt = var == 28 && MODE == MG_DOWN_DX;
		var = 20;
	}
	/* round 16: wsb3w is wsb3 with wgtd's DOWN_DX */
	const bool w3 = var == 20;
	if (w3)
		var = 12;
	/* round 10: wsb runs UP from xg in policy/gpu_moe_ws.cu, wsb2 also DOWN
	 * and UP_DX (F % 64 == 0); the rest as wgtd */
	if (var == 10 || var == 11 || var == 12) {
		if (MODE == MG_UP && a->gx)
			return policy_moe_ws_up(d, a->o1, a->o2, a->o3, a->a, a->b0, a->b1, cap,
			                        (void *)mg_stream);
		if (var >= 11 && MODE == MG_DOWN)
			return policy_moe_ws_down(d, a->f1, a->a, a->b0, cap, (void *)mg_stream);
		/* round 11: wsb3 also DOWN_DX, DOWN_DW and UP_DW from xg */
		if (var == 12 && !w3 && MODE == MG_DOWN_DX)
			return policy_moe_ws_down_dx(d, a->o1, a->a, a->b0, a->h1, a->h3, cap,
			                             (void *)mg_stream);
		if (var == 12 && MODE == MG_DOWN_DW && d->E <= 256)
			return policy_moe_ws_down_dw(d, a->f1, a->a, a->b0, a->beta, cap,
			                             (void *)mg_stream);
		if (var == 12 && MODE == MG_UP_DW && a->gx && d->E <= 256)
			return policy_moe_ws_up_dw(d, a->f1, a->f2, a->a, a->b0, a->beta, cap,
			                           (void *)mg_stream);
		if (var >= 11 && MODE == MG_UP_DX && d->F % 64 == 0)
			return policy_moe_ws_up_dx(d, a->f1, a->a, a->b0, a->b1, cap,
			                           (void *)mg_stream);
		var = 7;
	}
	/* round 24: the window's segments (policy_moe_dims's nseg) only in
	 * gpu_moe_ws.cu's weight-gradient kernel (wsb3, wsb3w and the forms
	 * built on wsb3w, up dW from xg) */
	if (d->nseg >= 1) {
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe: %d micro-batches' rows in one launch need "
		                        "POLICY_GPU_MOE_KERNEL=wsb3w (or wsb3) and the weight "
		                        "gradients from xg",
		                        d->nseg);
	}
	/* round 12: wsb4 runs UP from xg, DOWN, UP_DX (F % 64 == 0) and DOWN_DX
	 * with ping-pong consumers (wsb4a: DOWN_DX as wgtd); the rest as wgtd */
	if (var == 13 || var == 14) {
		if (MODE == MG_UP && a->gx)
			return policy_moe_ws4_up(d, a->o1, a->o2, a->o3, a->a, a->b0, a->b1, cap,
			                         (void *)mg_stream);
		if (MODE == MG_DOWN)
			return policy_moe_ws4_down(d, a->f1, a->a, a->b0, cap, (void *)mg_stream);
		if (var == 13 && MODE == MG_DOWN_DX)
			return policy_moe_ws4_down_dx(d, a->o1, a->a, a->b0, a->h1, a->h3, cap,
			                              (void *)mg_stream);
		if (MODE == MG_UP_DX && d->F % 64 == 0)
			return policy_moe_ws4_up_dx(d, a->f1, a->a, a->b0, a->b1, cap,
			                            (void *)mg_stream);
		var = 7;
	}
	switch (MODE) {
	case MG_UP:
		grid = dim3((d->F + BN / 2 - 1) / (BN / 2), (R + MG_BM - 1) / MG_BM + d->E);
		break;
	case MG_DOWN:
	case MG_UP_DX: grid = dim3((d->D + BN - 1) / BN, (R + MG_BM - 1) / MG_BM + d->E); break;
	case MG_DOWN_DX: grid = dim3((d->F + BN - 1) / BN, (R + MG_BM - 1) / MG_BM + d->E); break;
	case MG_DOWN_DW: grid = dim3((d->F + BN - 1) / BN, (d->D + MG_BM - 1) / MG_BM, d->E); break;
	default: grid = dim3((d->D + BN - 1) / BN, (2 * d->F + MG_BM - 1) / MG_BM, d->E); break;
	}
	if (grid.y > 65535)
		return swerve_error_set(SWERVE_ELIMIT, "gpu moe: %d rows exceed the grid", R);
	a->chr = 0;
	if (split) {
		/* split-K: the weight gradients' K (an expert's rows) in pieces of
		 * MG_SPLIT_ROWS, a CTA each, added in order */
		static int *flags;
		static size_t nflags;
		size_t n = (size_t)grid.x * grid.y * d->E;
		a->chr = MG_SPLIT_ROWS;
		grid.z = (R + a->chr - 1) / a->chr + d->E;
		if (grid.z > 65535)
			return swerve_error_set(SWERVE_ELIMIT, "gpu moe: %d rows exceed the grid",
			                        R);
		if (n > nflags) {
			if (flags)
				cudaFree(flags);
			flags = NULL;
			nflags = 0;
			CK(cudaMalloc(&flags, n * sizeof(int)));
			policy_gpu_alloc_gen++; /* gpu_util.h */
			nflags = n;
		}
		CK(cudaMemsetAsync(flags, 0, n * sizeof(int), mg_stream));
		a->flags = flags;
		if (!a->beta) { /* an expert without rows gets no CTA: clear, then add */
			size_t wn = (size_t)d->E * d->F * d->D * sizeof(float);
			CK(cudaMemsetAsync(a->f1, 0, wn, mg_stream));
			if (a->f2)
				CK(cudaMemsetAsync(a->f2, 0, wn, mg_stream));
			a->beta = 1;
		}
	}
	struct mg_tma tm;
	memset(&tm, 0, sizeof(tm));
	/* wgt: the row modes by TMA where F % 64 == 0 (a k block of UP_DX's
	 * [W1; W3] then lies in one of them); otherwise and for the weight
	 * gradients it is wg */
	if ((var == 6 && (MODE == MG_DOWN_DW || MODE == MG_UP_DW)) ||
	    ((var == 6 || var == 7) && d->F % 64))
		var = 1;
	if (var == 6 || var == 7) {
		int rc = mg_maps<MODE>(&tm, a, R);
		if (rc)
			return rc;
	}
	if constexpr (MODE == MG_UP || MODE == MG_DOWN_DX) {
		/* round 8: wgtd with the TMA epilogues (its outputs and DOWN_DX's h1,
		 * h3 16-byte aligned: the TMA's global addresses) */
		if (var == 7 && epi && aligned(a->o1) &&
		    (MODE == MG_UP ? aligned(a->o2) && aligned(a->o3)
		                   : aligned(a->h1) && aligned(a->h3))) {
			int rc = mg_maps_epi<MODE>(&tm, a, R);
			if (rc)
				return rc;
			if (pers && (MODE == MG_DOWN_DX || a->gx))
				return mgp_run<MODE>(a, &tm, R, cap);
			if constexpr (MODE == MG_DOWN_DX)
				if (mgx >= 36) /* round 20: wsb10, wsb10b, wsb10c, wsb10d */
					return mgx == 36   ? mgy_run<1, true>(a, &tm, R, cap)
					       : mgx == 37 ? mgy_run<0, true>(a, &tm, R, cap)
					       : mgx == 38 ? mgy_run<0, true, 5, 1>(a, &tm, R, cap)
					                   : mgy_run<1, true, 5, 1>(a, &tm, R, cap);
				else if (mgx) /* round 19b: wsb9a, b, p, c, d, e */
					return mgx == 30   ? mgx_run<1, 0, false>(grid, a, &tm)
					       : mgx == 31 ? mgx_run<0, 0, false>(grid, a, &tm)
					       : mgx == 32 ? mgx_run<1, 1, false>(grid, a, &tm)
					       : mgx == 33 ? mgx_run<1, 0, true>(grid, a, &tm)
					       : mgx == 34
					               ? mgx_run<0, 0, true>(grid, a, &tm)
					               : mgx_run<0, 0, true, true>(grid, a, &tm);
				else if (pfh) /* round 19: wsb8g */
					return mg_run<MODE, 15>(grid, a, &tm);
				else if (hnt) /* round 19: wsb8h */
					return mg_run<MODE, 16>(grid, a, &tm);
			return mg_run<MODE, 8>(grid, a, &tm);
		}
	}
	switch (var) {
	case 0: return mg_run<MODE, 0>(grid, a, &tm);
	case 2: return mg_run<MODE, 2>(grid, a, &tm);
	case 3: return mg_run<MODE, 3>(grid, a, &tm);
	case 4: return ws_run<MODE, 0, 1>(grid, a);
	case 5: return ws_run<MODE, 2, 1>(grid, a);
	case 6: return mg_run<MODE, 6>(grid, a, &tm);
	case 7: return mg_run<MODE, 7>(grid, a, &tm);
	default: return mg_run<MODE, 1>(grid, a, &tm);
	}
}

int policy_moe_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                  const uint16_t *x, const uint16_t *w1, const uint16_t *w3)
{
	struct mg_args a = {};
	a.a = x;
	a.b0 = w1;
	a.b1 = w3;
	a.o1 = h1;
	a.o2 = h3;
	a.o3 = hh;
	return mg_launch<MG_UP>(d, &a);
}

int policy_moe_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                    const uint16_t *w2)
{
	struct mg_args a = {};
	a.a = hh;
	a.b0 = w2;
	a.f1 = yp;
	return mg_launch<MG_DOWN>(d, &a);
}

int policy_moe_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                       const uint16_t *w2, const uint16_t *h1, const uint16_t *h3)
{
	struct mg_args a = {};
	a.a = dyp;
	a.b0 = w2;
	a.h1 = h1;
	a.h3 = h3;
	a.o1 = dh13;
	return mg_launch<MG_DOWN_DX>(d, &a);
}

int policy_moe_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                     const uint16_t *w1, const uint16_t *w3)
{
	struct mg_args a = {};
	a.a = dh13;
	a.b0 = w1;
	a.b1 = w3;
	a.f1 = dxp;
	return mg_launch<MG_UP_DX>(d, &a);
}

int policy_moe_down_dw(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                       const uint16_t *hh, int beta)
{
	struct mg_args a = {};
	a.beta = beta;
	a.a = dyp;
	a.b0 = hh;
	a.f1 = dw2;
	return mg_launch<MG_DOWN_DW>(d, &a);
}

/* round 24: 1 when the variant runs both weight gradients in gpu_moe_ws.cu's
 * kernel (wsb3, wsb3w and the forms built on wsb3w), which sums a window's
 * segments (policy_moe_dims's nseg) */
int policy_moe_dw_window_supported(void)
{
	const int var = policy_moe_variant();
	return var == 12 || var == 20 || (var >= 25 && var <= 39);
}

/* round 23: two layers' down dW in one launch where the variant runs down
 * dW in gpu_moe_ws.cu's kernel (wsb3, wsb3w, wsb8*, wsb9* (wsb9d the default),
 * wsb10*); else the two launches */
int policy_moe_down_dw_pair(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                            const uint16_t *hh, const struct policy_moe_dims *d2, float *dw2b,
                            const uint16_t *dyp2, const uint16_t *hh2, int beta)
{
	const int var = policy_moe_variant();
	if (var < 0)
		return var;
	if ((var == 12 || var == 20 || (var >= 25 && var <= 39)) && 2 * d->E <= 256 &&
	    policy_moe_supported(d->D, d->F) && d->E >= 1 && d->T * d->K >= 1) {
		const int cap = mg_ctas();
		if (cap < 0)
			return cap;
		return policy_moe_ws_down_dw_pair(d, dw2, dyp, hh, d2, dw2b, dyp2, hh2, beta, cap,
		                                  (void *)mg_stream);
	}
	int rc = policy_moe_down_dw(d, dw2, dyp, hh, beta);
	return rc ? rc : policy_moe_down_dw(d2, dw2b, dyp2, hh2, beta);
}

int policy_moe_up_dw(const struct policy_moe_dims *d, float *dw1, float *dw3, const uint16_t *dh13,
                     const uint16_t *x, int beta)
{
	struct mg_args a = {};
	a.beta = beta;
	a.a = dh13;
	a.b0 = x;
	a.f1 = dw1;
	a.f2 = dw3;
	return mg_launch<MG_UP_DW>(d, &a);
}

/* ---- the passes around the GEMMs -------------------------------------------- */

__global__ static void k_mg_combine(float *y, const float *yp, const float *gate, int T, int K,
                                    int D)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)T * D)
		return;
	size_t t = i / D, c = i % D;
	float s = 0;
	for (int j = 0; j < K; j++)
		s += gate[t * K + j] * yp[(t * K + j) * D + c];
	y[i] = s;
}

int policy_moe_combine(float *y, const float *yp, const float *gate, int T, int K, int D)
{
	if (T < 1)
		return 0;
	k_mg_combine<<<GRID((size_t)T * D), 0, PST>>>(y, yp, gate, T, K, D);
	LAUNCHED();
	return 0;
}

/* a block of 128 per row */
__global__ static void k_mg_combine_bwd(uint16_t *dyp, float *dgate, const float *dy,
                                        const float *yp, const float *gate, const int *perm, int K,
                                        int D)
{
	__shared__ float red[4];
	int row = blockIdx.x, tj = perm[row], t = tj / K;
	float g = gate[tj], s = 0;
	for (int c = threadIdx.x; c < D; c += blockDim.x) {
		float v = dy[(size_t)t * D + c];
		dyp[(size_t)row * D + c] = mg_f2bf(g * v);
		s += v * yp[(size_t)tj * D + c];
	}
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	if ((threadIdx.x & 31) == 0)
		red[threadIdx.x >> 5] = s;
	__syncthreads();
	if (threadIdx.x == 0)
		dgate[tj] = red[0] + red[1] + red[2] + red[3];
}

int policy_moe_combine_bwd(const struct policy_moe_dims *d, uint16_t *dyp, float *dgate,
                           const float *dy, const float *yp, const float *gate)
{
	if (d->T * d->K < 1)
		return 0;
	k_mg_combine_bwd<<<d->T * d->K, 128, 0, PST>>>(dyp, dgate, dy, yp, gate, d->perm, d->K,
	                                               d->D);
	LAUNCHED();
	return 0;
}

__global__ static void k_mg_scatter(float *dx, const float *dxp, int T, int K, int D, int beta)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)T * D)
		return;
	size_t t = i / D, c = i % D;
	float s = beta ? dx[i] : 0.0f;
	for (int j = 0; j < K; j++)
		s += dxp[(t * K + j) * D + c];
	dx[i] = s;
}

int policy_moe_scatter(float *dx, const float *dxp, int T, int K, int D, int beta)
{
	if (T < 1)
		return 0;
	k_mg_scatter<<<GRID((size_t)T * D), 0, PST>>>(dx, dxp, T, K, D, beta);
	LAUNCHED();
	return 0;
}

/* round 7: the gathered copy, one 16-byte chunk a thread (D % 8 == 0) */
__global__ static void k_mg_gather(uint4 *xg, const uint4 *x, const int *perm, int R, int K, int D8)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)R * D8)
		return;
	size_t row = i / D8, c = i % D8;
	xg[i] = x[(size_t)(perm[row] / K) * D8 + c];
}

/* POLICY_GPU_MOE_GATHER=copy (1, the default since round 7) | load (0,
 * round 6: the row gather in up's A loads and up dW's B loads, cp.async by
 * perm[row] / K). H100, 2026-11-26, one run (gpu_train_moe, wgtd,
 * balanced / skewed): up 0.159 -> 0.142 ms, up dW added 0.289 -> 0.128,
 * stored 0.268 -> 0.108 (476 TFLOP/s), the pass 0.018; one layer 0.821 /
 * 0.865 -> 0.660 / 0.707 ms; end to end (gpu_train quick, K = 4) 29.6 ->
 * 27.3 ms a micro-batch. Costs T K D bf16 a layer (kept for the backward) */
int policy_moe_gather_mode(void)
{
	static const char *const names[] = {"load", "copy"};
	return policy_env_choice("POLICY_GPU_MOE_GATHER", names, 2, 1);
}

int policy_moe_gather(const struct policy_moe_dims *d, uint16_t *xg, const uint16_t *x)
{
	size_t n = (size_t)d->T * d->K * (d->D / 8);
	if (!policy_moe_supported(d->D, 8))
		return swerve_error_set(SWERVE_EINVAL, "gpu moe: D (%d) must be a multiple of 8",
		                        d->D);
	if (!aligned(xg) || !aligned(x))
		return swerve_error_set(SWERVE_EINVAL, "gpu moe: gather: not 16-byte aligned");
	if (!n)
		return 0;
	CK(pdl::launch(k_mg_gather, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, PST,
	               (uint4 *)xg, (const uint4 *)x, d->perm, d->T * d->K, d->K, d->D / 8));
	LAUNCHED();
	return 0;
}

__global__ static void k_mg_to_bf16(uint16_t *out, const float *in, size_t n)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n)
		out[i] = mg_f2bf(in[i]);
}

int policy_moe_to_bf16(uint16_t *out, const float *in, size_t n)
{
	if (!n)
		return 0;
	k_mg_to_bf16<<<GRID(n), 0, PST>>>(out, in, n);
	LAUNCHED();
	return 0;
}

/* round 16 (issue 10, POLICY_GPU_ACT16=slots, opt-in): policy_moe_down and
 * policy_moe_up_dx with the slot rows stored in bf16 (rounded once to
 * nearest even from the fp32 accumulators), by gpu_moe_ws.cu's k_ws: the
 * variants whose down and up dX run wsb2's kernel (wsb2, wsb3, wsb5, wsb6u,
 * wsb3w, round 19's wsb8, wsb8g, wsb8r, wsb8h and wsb8k, round 19b's wsb9a, wsb9b,
 * wsb9p, wsb9c, wsb9d and wsb9e, round 20's wsb10, wsb10b, wsb10c and wsb10d; up dX: F a multiple
 * of 64); any other is refused with a message */
static int mg_b16_var(void)
{
	int var = policy_moe_variant(), cap = mg_ctas();
	if (var < 0)
		return var;
	if (cap < 0)
		return cap;
	if (var != 11 && var != 12 && var != 16 && var != 18 && var != 20 && (var < 25 || var > 39))
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu moe: bf16 slots (POLICY_GPU_ACT16) need "
		        "POLICY_GPU_MOE_KERNEL=wsb2, wsb3, wsb5, wsb6u, wsb3w, wsb8, "
		        "wsb8g, wsb8r, wsb8h, wsb8k, wsb9a, wsb9b, wsb9c, wsb9d, wsb9e, wsb9p, "
		        "wsb10, wsb10b, wsb10c or wsb10d");
	return cap;
}

int policy_moe_slots16_supported(int F)
{
	int var = policy_moe_variant();
	return F % 64 == 0 && (var == 11 || var == 12 || var == 16 || var == 18 || var == 20 ||
	                       (var >= 25 && var <= 39));
}

int policy_moe_down_b16(const struct policy_moe_dims *d, uint16_t *yp, const uint16_t *hh,
                        const uint16_t *w2)
{
	int cap = mg_b16_var();
	return cap < 0 ? cap : policy_moe_ws_down_b16(d, yp, hh, w2, cap, (void *)mg_stream);
}

int policy_moe_up_dx_b16(const struct policy_moe_dims *d, uint16_t *dxp, const uint16_t *dh13,
                         const uint16_t *w1, const uint16_t *w3)
{
	int cap = mg_b16_var();
	if (cap >= 0 && d->F % 64)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "gpu moe: bf16 slots (POLICY_GPU_ACT16): up dX needs F (%d) "
		        "a multiple of 64",
		        d->F);
	return cap < 0 ? cap
	               : policy_moe_ws_up_dx_b16(d, dxp, dh13, w1, w3, cap, (void *)mg_stream);
}
