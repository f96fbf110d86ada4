/* gpu_moe_ws.cu - round 10 (POLICY_GPU_MOE_KERNEL=wsb2; wsb3w and the default wsb9d run it too): a
 * warp-specialised, persistent, 128 x 256-tile grouped GEMM for the MoE experts; see gpu_moe_ws.h.
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
 * micro-batch (wsb2), 23.1 (wsb) against the default's 23.5 / 23.6.
 *
 * Round 11, POLICY_GPU_MOE_KERNEL=wsb3 (opt-in): wsb2 with the other three
 * products here too. DOWN_DX: A = dyp rows, B = W2 (k = d, n = f) N-major
 * (UP_DX's four 64 x 64 boxes), the SwiGLU backward from the accumulators
 * (h1 / h3 read 16 bytes a lane, a row's 16 blocks in one batch, row 0's
 * issued before the last wgmma wait), dh13 bf16 16-byte stores. DOWN_DW /
 * UP_DW: a 128 x 256 dW tile per (expert, tile) over the expert's rows as
 * K, A (dyp / dh13 rows) M-major, B (hh / xg rows) N-major, the rows past
 * an expert's end in its partial last k block zeroed in shared memory, dW
 * added or stored (old values loaded in a batch before the last wgmma
 * wait); tiles handed out by a counter, largest expert first (tile ids to
 * the consumers through shared memory); POLICY_GPU_MOE_WSB_KCH=n|auto
 * splits K (ordered adds, deterministic; off by default).
 * Measured (H100 80GB HBM3, 2026-11-27, gpu_train_moe, ms balanced /
 * skewed, against wgtd + EPI=tma in the same process): up dW from xg 0.106
 * / 0.103 against 0.127 / 0.139 (stored 0.099 / 0.095 against 0.109 /
 * 0.110); down dW 0.068 / 0.087 against 0.078 / 0.086; down dX 0.107 /
 * 0.127 against 0.102 / 0.107 (slower: wgtd's stmatrix + TMA-store
 * epilogue with h1 / h3 fetched by TMA during the main loop beats register
 * loads after it); a layer's products + gather 0.556 / 0.638 (wsb3), 0.580
 * / 0.650 (wsb2), 0.634 / 0.688 (wgtd + tma). End to end (gpu_train quick,
 * K = 4, round 10's defaults with POLICY_GPU_STREAMS=2): 21.4 ms a
 * micro-batch (wsb3) against 21.3 (wsb2): no gain (the weight gradients
 * run on the side stream, off the critical path).
 *
 * Round 12, POLICY_GPU_MOE_KERNEL=wsb4 / wsb4a / wsb4d (opt-in): k_ws<MODE,
 * ST, PP = true> for the row modes: ping-pong consumers, each warpgroup
 * whole 64 x 256 tiles (every other tile of its CTA), a 5 x 40 KB ring,
 * tile j's main loop started once the other consumer has waited for all of
 * tile j - 1's blocks (the full barriers' parity is only good within one lap
 * of the ring; without that order H100 call 1 hung). One warpgroup's
 * epilogue now runs under the other's MMAs, but B is loaded once per 64 rows
 * instead of 128 (1.67x the L2 -> SM bytes of UP). Measured (H100 80GB HBM3,
 * 2026-11-27, gpu_train_moe, ms balanced / skewed, wsb2 in the same
 * process): up from xg 0.122 / 0.121 against 0.100 / 0.108 (slower: ~8
 * TB/s of loads, the rate the cooperative main loop alone reaches), up dX
 * 0.119 / 0.117 against 0.103 / 0.116 (slower), down 0.067 / 0.066 against
 * 0.076 / 0.075 (faster: its 50 MB fp32 epilogue is hidden), down dX 0.121 /
 * 0.120 against wgtd's 0.112 / 0.108 (slower); layer + gather 0.648 /
 * 0.657 (wsb4), 0.612 / 0.648 (wsb4a) against 0.622 / 0.646. wsb4d = wsb2
 * with only down here (not yet run as a variant).
 *
 * Round 13, POLICY_GPU_MOE_KERNEL=wsb5 (opt-in, NOT YET RUN on a GPU): wsb2
 * with down dX here as WS_DOWN_DXT: round 11's DOWN_DX main loop, then the
 * tile's h1 / h3 (2 x 128 rows x 256 hidden units = 8 TMA boxes of 16 KB)
 * loaded by the producer into 3 more ring slots after the tile's k blocks
 * (one two-plane tensor map of h1 / h3 in tm.w3), read from shared memory
 * by the epilogue (ws_dxt_epi), the slots released chunk by chunk. The
 * mbarrier argument is above k_ws. Predicted (H100): down dX ~0.085 /
 * ~0.098 ms balanced / skewed against wgtd+tma's 0.100 / 0.107.
 *
 * Round 14, POLICY_GPU_MOE_KERNEL=wsb6 / wsb6u (opt-in): modes WS_UPD,
 * WS_DOWND, WS_UP_DXD = UP, DOWN, UP_DX with the epilogue deferred under the
 * next tile's main loop (ws_def_keep / ws_def_chunk: the outputs kept in 64
 * registers beside the 128 accumulators, stored in 8 chunks between the next
 * tile's first k blocks' wgmma issue and wait; UP all of it, the fp32
 * products the second row half); same ring, smem and loads as wsb2; outputs
 * bit for bit wsb2's. Measured (H100 80GB HBM3, 2026-11-27, gpu_train_moe,
 * ms balanced / skewed, wsb2 in the same process, two interleaved repeats):
 * up from xg 0.097-0.098 / 0.107-0.108 against 0.101 / 0.111-0.112 (the
 * main loop alone, POLICY_GPU_MOE_WSB_EPI=none: 0.075 / 0.082: only 0.003
 * of the 0.026 epilogue hidden), down 0.061-0.062 / 0.072-0.073 against
 * 0.065 / 0.076-0.077, up dX 0.093 / 0.115 against 0.097-0.098 / 0.120;
 * layer + gather 0.577-0.580 / 0.644-0.648 against 0.591-0.592 / 0.659-0.661
 * (-2.0 to -2.5%). End to end (gpu_train x, K = 4): 21.2 ms a micro-batch
 * (wsb6), 21.4 (wsb6u) against the default's 21.3 / 21.5: within noise.
 *
 * Round 15, POLICY_GPU_MOE_WSB_SILU=fast | stsm | fastshfl (opt-in; unset or
 * exact: wsb2's ws_epi): UP's epilogue by ws_epi15 (modes WS_UPS, WS_UPSX,
 * WS_UPF): stmatrix through a per-warp staging buffer instead of the quad
 * transposes and / or half the SiLU reciprocals on the FMA pipe. ncu of
 * k_ws<WS_UP, 4> (H100, balanced, ncu's 1.35 GHz): the MUFU (XU) pipe at
 * 11% of its peak over the kernel, issue slots 27.5%, 2.25 warps a
 * scheduler, no eligible warp 70% of the cycles; the epilogue's stall
 * samples spread over SEL, IMAD, FMUL, F2FP, MUFU, LOP3, FADD, SHFL (each
 * 1-5%, mostly "wait" / "short scoreboard" / "selected"): it is latency
 * bound (two consumer warps a scheduler, dependent chains), not MUFU or
 * issue bound. Measured (gpu_train_moe, up from xg, ms balanced / skewed,
 * two interleaved repeats, wsb2 0.099-0.101 / 0.110-0.111): fast 0.101-0.103 /
 * 0.111-0.114, stsm 0.104 / 0.118 (the shared round trip's latency: STG
 * waiting on LDS), fastshfl 0.099 / 0.111: no gain; hh within 1 bf16 ulp of
 * wsb2's (0.5-0.6% of the elements differ), h1 / h3 and stsm's outputs bit
 * for bit. Kept opt-in for the record. The same ncu run showed __expf
 * (ex2.approx.f32 without -ftz) compiling to FSETP + 2 predicated FMUL +
 * MUFU.EX2 (a denormal fix-up): POLICY_GPU_MOE_WSB_SILU=ftz (WS_UPZ, prepared
 * after the call, NOT yet run on a GPU) is wsb2's ws_epi with e^-x by
 * ex2.approx.ftz: 192 of its 1462 warp instructions a tile fewer, outputs
 * bit for bit (see ws_silu_ftz); predicted up from xg -0.001 to -0.002 ms.
 *
 * Round 16, POLICY_GPU_MOE_KERNEL=wsb7 / wsb7d / wsb7u / wsb7dx (opt-in):
 * modes WS_UPC, WS_DOWNC, WS_UP_DXC: round 12's ping-pong kernel (64 x 256
 * tiles a warpgroup, 5 x 40 KB ring) run by 2-CTA clusters on the two
 * 64-row halves of the cooperative kernel's 128-row tiles, each CTA loading
 * half of the tile's B block with TMA multicast into both (B read from L2
 * once per 128 rows, as wsb2's); barriers: see the "Round 16" comment above
 * k_ws. Predicted (H100): up from xg ~0.086 ms, down ~0.058, up dX ~0.088.
 * Measured (H100 80GB HBM3, 2026-11-27, gpu_train_moe, ms balanced /
 * skewed, wsb2 in the same process, two interleaved repeats): up from xg
 * 0.235-0.238 / 0.247-0.250 against 0.099-0.100 / 0.109-0.110 (the main
 * loop alone, POLICY_GPU_MOE_WSB_EPI=none: 0.217 against 0.072), down
 * 0.138-0.140 / 0.152-0.155 against 0.064 / 0.075; 4 stages = 5: not the
 * L2 (up's main loop moves 2.8 TB/s) nor the ring, a fixed ~1.1-1.4 us a
 * stage whatever the product: likely the release (two
 * mbarrier.arrive.release.cluster a warp a stage, each a cluster-scope
 * fence before the warp's next wgmma); POLICY_GPU_MOE_WSB7_ARRIVE=cta
 * (CUTLASS's plain remote arrive) confirmed it: near wsb2's times (round
 * 25, H100, 2026-11-27, gpu_train_moe, two repeats, ms balanced / skewed:
 * up from xg 0.106 / 0.107, 0.108 / 0.110 against 0.100 / 0.108, 0.097 /
 * 0.108; down 0.064 / 0.068, 0.062 / 0.069 against 0.063 / 0.076, 0.062 /
 * 0.075; test_policy_moe's wsb7 cases 19 of 19), so it is the default
 * release form since round 25. End to end (gpu_train x, K = 4, round 16's
 * release): up + down in clusters 23.4
 * ms a micro-batch, down only 21.9, against 21.0 / 20.9. Up dX in the
 * clusters (wsb7dx) is WRONG: in every case the second 8 KB of the 16 KB
 * B half that the OTHER CTA multicast is stale or unwritten when read
 * (with two 8 KB boxes and with one 64 x 64 x 2 box of ws_map_atoms
 * alike), while up and down (one 64 x 128 K-major box a CTA) are right in
 * every case; not understood.
 *
 * Round 19 (issue 10, down dX; opt-in, see policy/gpu_moe.cu's variants):
 * WS_DOWN_DXP ("wsb8": wsb5 with the tile's h1 / h3 boxes prefetched into
 * L2 by the producer before its k blocks; POLICY_GPU_MOE_WSB8_PF=tile |
 * next | none), WS_DOWN_DXQ ("wsb8r": round 11's register-load down dX
 * with the same prefetch), WS_DOWN_DXH ("wsb8k": wsb5 with W2 loads
 * evict_last, h1 / h3 loads and dh13 stores evict_first). Measured (H100
 * 80GB HBM3, 2026-11-27, gpu_train_moe, down dX ms balanced / skewed, one
 * process, interleaved): wsb8 0.112-0.113 / 0.124-0.125 against the same
 * kernel without the prefetch 0.101 / 0.115 and wsb5 0.103 / 0.112
 * (slower: ncu, DRAM reads 151 MB against 109: the 17 MB of h1 / h3 brought
 * in early evict lines read again), wsb8r 0.127-0.130, wsb8k 0.101-0.102 /
 * 0.119-0.120 against wsb5's 0.102 / 0.120 (level). ncu of wsb5's kernel:
 * DRAM 48% of peak, tensor pipe 29% active, 2.2 warps a scheduler, no
 * eligible warp 72% of the cycles: not bandwidth-bound; the consumers wait
 * (the h1 / h3 slots, then the next tile's refill).
 *
 * Round 24 (issue 10, POLICY_GPU_MOE_DW_WIN, the default's auto): modes
 * WS_DOWN_DWS / WS_UP_DWS are DOWN_DW / UP_DW over a window of nseg
 * micro-batches' rows (policy_moe_dims's nseg, rstride, ostride): a tile's
 * k blocks walk each segment's rows of its expert in turn (ws_cur; every
 * segment's partial last block zeroed as an expert's end is), so one launch
 * sums n micro-batches' dW (one fill and one epilogue a tile instead of n,
 * one store instead of n read-add-writes). Kernels of their own: the
 * one-micro-batch kernels' cubin .text is unchanged (122 of 122 sections).
 * H100, gpu_train_moe, the same rows as 4 micro-batches of 2048 tokens, ms
 * balanced / skewed: up dW 0.228 / 0.241 in 4 launches against 0.108 /
 * 0.113 in one; down dW 0.137 / 0.133 against 0.072 / 0.091. */
#include "kernels/ptx.cuh"
#include "kernels/tma.h"
#include "policy/gpu_moe_ws.h"
#include "policy/gpu_util.h"
#include "kernels/pdl.cuh"

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
/* round 12 ("wsb4", ping-pong): each consumer warpgroup its own 64 x 256
 * tile, so a stage is A 64 rows (8 KB) + B 256 columns (32 KB) */
#define WS_PP_ATILE      (64 * WS_BK * 2)
#define WS_PP_STAGE      (WS_PP_ATILE + 2 * WS_ATILE)
#define WS_SMEMX(st, pp) ((pp) ? (st)*WS_PP_STAGE + 1024 : WS_SMEM(st))
#define WS_THREADS       384
#define WS_EMAX          256 /* the weight gradients' experts (wsb3) */

struct ws_maps {
	CUtensorMap a, w1, w3;
	/* round 23 (DOWN_DW, a.np 2): the second layer's A (dyp) and B (hh) */
	CUtensorMap a2, b2;
};

struct ws_args {
	const int *offs, *perm;
	int E, D, F;
	uint16_t *h1, *h3, *hh; /* WS_UP's outputs */
	float *out;             /* WS_DOWN's yp, WS_UP_DX's dxp (slot order) */
	int epi;                /* WS_EPI_* */
	/* round 11 ("wsb3"): WS_DOWN_DX reads the forward's h1 / h3 (R, F) and
	 * writes dh13 (R, 2F); the weight gradients write dw1 (DOWN_DW's dW2,
	 * UP_DW's dW1) and dw3 (UP_DW's dW3), added to (beta 1) or stored */
	const uint16_t *x1, *x3;
	uint16_t *dh13;
	float *dw1, *dw3;
	int beta;
	int dyn; /* the weight gradients' tiles: 1 dynamic (a counter), 0 static */
	/* the weight gradients' K split: at most kch k blocks a tile (0: no
	 * split, -1: the kernel picks); flags (2 a dW tile, one a consumer's rows) order the
	 * splits' adds and return to 0 after the last */
	int kch;
	int *flags;
	/* round 23: 1 when an unsplit added dW tile goes to memory by
	 * red.global.add (POLICY_GPU_MOE_DW_ADD=red) instead of loading the old
	 * values and storing the sums */
	int red;
	/* round 23 (POLICY_GPU_MOE_DW_PAIR): np 2 runs two layers' DOWN_DW in
	 * one launch: virtual expert v of [0, 2 E) is layer v / E's expert v % E
	 * (offs2, dw1b and the maps a2 / b2 the second's; the same D, F, E and
	 * rows R); np 1: one */
	int np;
	const int *offs2;
	float *dw1b;
	const uint16_t *pa2, *pb2; /* (host) the second layer's dyp and hh */
	/* round 24 (WS_DOWN_DWS / WS_UP_DWS, policy_moe_dims's nseg): the
	 * weight gradients sum nseg segments, segment s's rows at s rstride +
	 * offs[s ostride + e].. (the second layer's at offs2 + s ostride alike) */
	int nseg, rstride, ostride;
	/* round 24 (the window's modes): where not NULL, tile t's sum of squares
	 * of the dW values it leaves in memory at sq[t] (the global norm's
	 * share of the experts, see ws_sq_tile) */
	float *sq;
};

/* round 23: the rows of virtual expert v (a.np problems of E experts):
 * its first row in its problem, and how many */
__device__ __forceinline__ static int ws_seg0(const struct ws_args &a, int v)
{
	return v < a.E ? a.offs[v] : a.offs2[v - a.E];
}
__device__ __forceinline__ static int ws_segn(const struct ws_args &a, int v)
{
	return v < a.E ? a.offs[v + 1] - a.offs[v] : a.offs2[v - a.E + 1] - a.offs2[v - a.E];
}

/* round 24 (the window's modes, WS_DOWN_DWS / WS_UP_DWS): virtual expert
 * v's segment s (its first row in A / B, its rows), its rows and k blocks
 * over the a.nseg segments (a block per 64 rows of each), and a tile's walk
 * over its k blocks (ws_cur: segment s, its block j of nb, the segment's
 * first row and rows; empty segments skipped). A block's rows past its
 * segment's end are zeroed by the consumers, as at an expert's end, so each
 * segment adds only its own rows */
__device__ __forceinline__ static void ws_wseg(const struct ws_args &a, int v, int s, int *row0,
                                               int *n)
{
	const int *o = (v < a.E ? a.offs + v : a.offs2 + v - a.E) + s * a.ostride;
	*row0 = s * a.rstride + o[0];
	*n = o[1] - o[0];
}
__device__ __forceinline__ static void ws_wtot(const struct ws_args &a, int v, int *rows, int *nk)
{
	*rows = 0;
	*nk = 0;
	for (int s = 0; s < a.nseg; s++) {
		int r0, n;
		ws_wseg(a, v, s, &r0, &n);
		*rows += n;
		*nk += (n + 63) / 64;
	}
}
struct ws_cur {
	int s, j, nb, row0, n;
};
__device__ __forceinline__ static void ws_cur_seg(const struct ws_args &a, int v, struct ws_cur &c)
{
	for (; c.s < a.nseg; c.s++) {
		ws_wseg(a, v, c.s, &c.row0, &c.n);
		if (c.n > 0)
			break;
	}
	c.j = 0;
	c.nb = (c.n + 63) / 64;
}
__device__ __forceinline__ static void ws_cur_next(const struct ws_args &a, int v, struct ws_cur &c)
{
	if (++c.j < c.nb)
		return;
	c.s++;
	ws_cur_seg(a, v, c);
}
/* virtual expert v's rows and k blocks (SEG: over the window's segments) */
template <bool SEG> __device__ __forceinline__ static int ws_vrows(const struct ws_args &a, int v)
{
	if constexpr (SEG) {
		int rows, nk;
		ws_wtot(a, v, &rows, &nk);
		return rows;
	}
	return ws_segn(a, v);
}
template <bool SEG> __device__ __forceinline__ static int ws_vnk(const struct ws_args &a, int v)
{
	if constexpr (SEG) {
		int rows, nk;
		ws_wtot(a, v, &rows, &nk);
		return nk;
	}
	return (ws_segn(a, v) + 63) / 64;
}

/* the products: UP (A = xg, B = [W1 | W3] K-major, SwiGLU epilogue), DOWN
 * (A = hh, B = W2 K-major, yp[perm[row]] fp32), UP_DX (A = dh13, B = [W1;
 * W3] N-major, K = 2F, dxp[perm[row]] fp32); round 11: DOWN_DX (A = dyp,
 * B = W2 (k = d, n = f) N-major, K = D, the SwiGLU backward to dh13 bf16),
 * DOWN_DW (dW2 (D, F) (+)= dyp^T hh) and UP_DW ([dW1; dW3] (2F, D) (+)=
 * dh13^T xg): M the weight rows, K the expert's rows, A M-major (dyp /
 * dh13 rows), B N-major (hh / xg rows) */
enum { WS_UP, WS_DOWN, WS_UP_DX, WS_DOWN_DX, WS_DOWN_DW, WS_UP_DW, WS_DOWN_DXT };
/* round 13 ("wsb5"): WS_DOWN_DXT is WS_DOWN_DX with the tile's h1 / h3 (128
 * rows x 256 hidden units each: 8 TMA boxes of 64 x 128, 16 KB) fetched by
 * the producer into WS_NH extra ring slots after the tile's k blocks (3
 * boxes a 48 KB slot: h1 0, h3 0, h1 1 | h3 1, h1 2, h3 2 | h1 3, h3 3), so
 * the epilogue reads them from shared memory; see ws_dxt_epi */
#define WS_NH 3
/* round 14 ("wsb6"): UP, DOWN and UP_DX with the epilogue deferred under
 * the next tile's main loop (see ws_def_keep); ws_base: the product a mode
 * computes (its loads, tiles and geometry) */
enum { WS_UPD = 7, WS_DOWND, WS_UP_DXD };
/* round 14, "wsb6r" (prepared after the H100 calls, not yet run on a GPU):
 * the same with each chunk after the wait for block kb - 1 and the release
 * of its stage, not before them (see ws_def_keep) */
enum { WS_UPR = 10, WS_DOWNR, WS_UP_DXR };
/* round 15 (POLICY_GPU_MOE_WSB_SILU, opt-in): UP with a cheaper epilogue
 * (see ws_epi15): WS_UPS the SiLU with half its MUFU reciprocals on the FMA
 * pipe and the quad transposes replaced by stmatrix through a per-warp
 * shared staging buffer ("fast"); WS_UPSX the same stores with wsb2's math
 * ("stsm": outputs bit for bit WS_UP's); WS_UPF the fast math with wsb2's
 * shuffles ("fastshfl"); WS_UPZ ws_epi<true>: wsb2's epilogue with e^-x by
 * ex2.approx.ftz ("ftz": bit for bit WS_UP's, 3 instructions fewer an
 * element; prepared after the H100 call, not yet run on a GPU) */
enum { WS_UPF = 13, WS_UPS, WS_UPSX, WS_UPZ };
/* round 16 (issue 10, POLICY_GPU_ACT16=slots, opt-in): DOWN and UP_DX with
 * the slot rows (yp, dxp) stored in bf16 (ws_epi_b16), a.out holding the
 * (R, D) bf16 buffer */
enum { WS_DOWNB = 24, WS_UP_DXB };
/* round 19 ("wsb8", opt-in): WS_DOWN_DXP is WS_DOWN_DXT (wsb5: h1 / h3 by
 * TMA into the ring after the tile's k blocks) with the tile's 8 h1 / h3
 * boxes first prefetched into L2 (cp.async.bulk.prefetch.tensor) by the
 * producer before it issues the tile's k blocks (a.kch 1, "tile") or one
 * tile ahead (a.kch 2, "next": the CTA's next tile's while this one's k
 * blocks go out; its first tile's at the start), so the ring's h1 / h3
 * fetch after the main loop reads L2, not DRAM, and the DRAM reads run
 * under the MMAs; a.kch 0 ("none"): no prefetch (wsb5's kernel bit for
 * bit in its loads and outputs) */
enum { WS_DOWN_DXP = 28 };
/* round 19 ("wsb8r", opt-in): WS_DOWN_DXQ is WS_DOWN_DX (wsb3: h1 / h3
 * loaded into registers by the epilogue, the whole ring left to the next
 * tile's k blocks) with WS_DOWN_DXP's L2 prefetch of the tile's h1 / h3 */
enum { WS_DOWN_DXQ = 29 };
/* round 19 ("wsb8k", opt-in): WS_DOWN_DXH is WS_DOWN_DXT (wsb5) under L2
 * eviction priorities: W2 boxes evict_last (each row tile of the expert
 * reads them again), h1 / h3 boxes and the dh13 stores evict_first (touched
 * once), so the 134 MB streamed through L2 do not push W2 and dyp out */
enum { WS_DOWN_DXH = 30 };
/* round 24 (POLICY_GPU_MOE_DW_WIN): DOWN_DW and UP_DW over a window of
 * micro-batches' rows (a.nseg segments, see ws_wseg), a kernel of their own
 * so that the one-micro-batch kernels stay as they were */
enum { WS_DOWN_DWS = 31, WS_UP_DWS };
__host__ __device__ constexpr bool ws_seg(int m)
{
	return m == WS_DOWN_DWS || m == WS_UP_DWS;
}
__host__ __device__ constexpr bool ws_stsm(int m)
{
	return m == WS_UPS || m == WS_UPSX;
}
/* round 16 ("wsb7", opt-in): UP, DOWN and UP_DX in the ping-pong kernel
 * (PP: each consumer warpgroup whole 64 x 256 tiles) run by clusters of 2
 * CTAs that take the two 64-row halves of the same 128-row tile (same
 * expert, same column block), each CTA loading half of the tile's B block
 * by TMA multicast into both CTAs' ring, so B comes from L2 once per 128
 * rows (as in the cooperative kernel) while one warpgroup's epilogue runs
 * under the other's MMAs; see the comment above k_ws */
enum { WS_UPC = 17, WS_DOWNC, WS_UP_DXC };
__host__ __device__ constexpr bool ws_cl(int m)
{
	return m >= WS_UPC && m <= WS_UP_DXC;
}
/* a consumer warp's staging (WS_UPS / WS_UPSX): 3 outputs x 16 rows x 32
 * columns of bf16 */
#define WS_STG_WARP 3072
#define WS_STG      (8 * WS_STG_WARP)
__host__ __device__ constexpr int ws_base(int m)
{
	return m == WS_UPD || m == WS_UPR || m == WS_UPF || ws_stsm(m) || m == WS_UPZ ? WS_UP
	       : m == WS_DOWND || m == WS_DOWNR || m == WS_DOWNB                      ? WS_DOWN
	       : m == WS_UP_DXD || m == WS_UP_DXR || m == WS_UP_DXB                   ? WS_UP_DX
	       : ws_cl(m)                             ? m - WS_UPC  /* round 16 */
	       : m == WS_DOWN_DXP || m == WS_DOWN_DXH ? WS_DOWN_DXT /* round 19 */
	       : m == WS_DOWN_DXQ                     ? WS_DOWN_DX
	       : m == WS_DOWN_DWS                     ? WS_DOWN_DW /* round 24 */
	       : m == WS_UP_DWS                       ? WS_UP_DW
	                                              : m;
}

/* the epilogue's stores (POLICY_GPU_MOE_WSB_EPI, for measurements) */
enum { WS_EPI_ST16, WS_EPI_ST4, WS_EPI_NOSTORE, WS_EPI_NONE };

__device__ __forceinline__ static void ws_bar_init(uint32_t bar, int n)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(n) : "memory");
}
__device__ __forceinline__ static void ws_arrive(uint32_t bar)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* round 19 (WS_DOWN_DXH): an L2 policy word (evict_last or evict_first),
 * the 3-D TMA load and the 16-byte global store that take it */
__device__ __forceinline__ static void ws_ld3_h(uint32_t dst, const CUtensorMap *map, int x, int y,
                                                int z, uint32_t bar, uint64_t pol)
{
	asm volatile(
	        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::"
	        "cache_hint [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
	        "l"(map), "r"(x), "r"(y), "r"(z), "r"(bar), "l"(pol)
	        : "memory");
}
__device__ __forceinline__ static void ws_st16_h(void *p, uint4 v, uint64_t pol)
{
	asm volatile("st.global.L2::cache_hint.v4.u32 [%0], {%1, %2, %3, %4}, %5;\n" ::"l"(p),
	             "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "l"(pol)
	             : "memory");
}
/* round 19: the box at (x, y, z) of a 3-D tensor map fetched into L2 (no
 * shared memory, no barrier: a hint the later TMA load of the box hits) */
__device__ __forceinline__ static void ws_pf3(const CUtensorMap *map, int x, int y, int z)
{
	asm volatile(
	        "cp.async.bulk.prefetch.tensor.3d.L2.global.tile [%0, {%1, %2, %3}];\n" ::"l"(map),
	        "r"(x), "r"(y), "r"(z)
	        : "memory");
}

/* round 16 (the 2-CTA clusters): which 0: this CTA's rank in its cluster,
 * 1: the cluster's index (x), 2: the clusters (x) */
__device__ __forceinline__ static uint32_t ws_cl_sreg(int which)
{
	uint32_t r;
	if (which == 0)
		asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
	else if (which == 1)
		asm volatile("mov.u32 %0, %%clusterid.x;\n" : "=r"(r));
	else
		asm volatile("mov.u32 %0, %%nclusterid.x;\n" : "=r"(r));
	return r;
}
/* a barrier of every thread of the cluster (release / acquire) */
__device__ __forceinline__ static void ws_cl_sync(void)
{
	asm volatile("barrier.cluster.arrive.release.aligned;\n"
	             "barrier.cluster.wait.acquire.aligned;\n" ::
	                     : "memory");
}
/* an arrive (release, cluster scope) on the mbarrier at the CTA-relative
 * shared address bar of the cluster's CTA rank */
__device__ __forceinline__ static void ws_arrive_cl(uint32_t bar, uint32_t rank)
{
	asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
	             "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [ra];\n}\n" ::"r"(bar),
	             "r"(rank)
	             : "memory");
}
/* a 3-D TMA load of the box at (x, y, z) of map multicast to the CTAs of
 * mask: into each one's shared memory at the CTA-relative address dst, its
 * bytes counted on each one's mbarrier at bar */
__device__ __forceinline__ static void ws_tma3_mc(uint32_t dst, const CUtensorMap *map, int x,
                                                  int y, int z, uint32_t bar, uint16_t mask)
{
	asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
	             ".multicast::cluster [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
	             "l"(map), "r"(x), "r"(y), "r"(z), "r"(bar), "h"(mask)
	             : "memory");
}
/* a plain arrive (CUTLASS's ClusterBarrier::arrive: the default
 * semantics, no cluster-scope release) on the mbarrier at the CTA-relative
 * shared address bar of the cluster's CTA rank */
__device__ __forceinline__ static void ws_arrive_remote(uint32_t bar, uint32_t rank)
{
	asm volatile("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
	             "mbarrier.arrive.shared::cluster.b64 _, [ra];\n}\n" ::"r"(bar),
	             "r"(rank)
	             : "memory");
}
/* a consumer warp's release of a ring slot: its CTA's empty barrier; CL
 * (the clusters): both CTAs' (either CTA's producer writes the slot of
 * both): plain 0 (POLICY_GPU_MOE_WSB7_ARRIVE=cluster, round 16's form:
 * 2.2-2.4x slower): an mbarrier.arrive.release.cluster on each (through
 * mapa); plain 1 (=cta, the default since round 25): a local arrive and
 * CUTLASS's plain remote arrive on the peer's (rank peer) */
template <bool CL>
__device__ __forceinline__ static void ws_release(uint32_t bar, uint32_t peer, int plain)
{
	if constexpr (CL) {
		if (plain) {
			ws_arrive(bar);
			ws_arrive_remote(bar, peer);
		} else {
			ws_arrive_cl(bar, 0);
			ws_arrive_cl(bar, 1);
		}
	} else {
		ws_arrive(bar);
	}
}

/* d (+)= A B, m64n256k16, A K-major (TA 0) or M-major (TA 1), B K-major
 * (TB 0) or N-major (TB 1) from shared memory (128-byte swizzle
 * descriptors); acc 0: d = A B */
template <int TA, int TB>
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
	        "%128, %129, p, 1, 1, %131, %132;\n}\n"
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
	        : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
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

/* round 15 ("ftz"): ws_silu with e^-x by ex2.approx.ftz.f32 of the same
 * product x (-log2 e) that __expf forms. __expf without -ftz compiles to
 * the non-ftz ex2 with a denormal fix-up (FSETP t < -126, t / 2 before,
 * the square after: 3 of the ~23 instructions of an element in wsb2's
 * epilogue, H100 SASS); the fix-up only changes e where e < 2^-126, and
 * there 1 + e rounds to 1 either way, so the result is bit for bit
 * ws_silu's */
__device__ __forceinline__ static float ws_silu_ftz(float x)
{
	float e;
	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(x * -1.44269502f));
	return __fdividef(x, 1.0f + e);
}

/* the epilogue of a consumer thread: rows rr, rr + 8 (rr = the row of
 * lane / 4), columns 8 j + 2 q, + 1 of each 8-column block j (h1 in
 * acc[4 j..], h3 in acc[64 + 4 j..], j < 16); h1, h3 rounded to bf16, hh
 * from the rounded values. a.epi: WS_EPI_ST16 (the default) transposes
 * each 4 blocks across the quad (lane q then holds block q's 8 columns)
 * and stores 16 bytes a lane; WS_EPI_ST4 stores each lane's pair (4
 * bytes); WS_EPI_NOSTORE / WS_EPI_NONE (timing only: no output) */
template <bool FTZ = false>
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
				vh[jj] = FTZ ? ws_pack(ws_silu_ftz(ws_lo(v1[jj])) * ws_lo(v3[jj]),
				                       ws_silu_ftz(ws_hi(v1[jj])) * ws_hi(v3[jj]))
				             : ws_pack(ws_silu(ws_lo(v1[jj])) * ws_lo(v3[jj]),
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

/* round 15: hh of a pair of rounded h1 / h3 values (packed bf16) with 3
 * MUFU ops instead of 4: the low element as ws_silu (ex2 + reciprocal), the
 * high one's reciprocal 1 / y (y = 1 + e^-x, clamped to 2^126 so an infinite
 * e^-x cannot make a NaN) from a bit-trick guess (|1 - y r0| <= 0.051 over
 * a binade) refined by one cubic step r0 (1 + t + t^2), t = 1 - y r0 (3 FMA:
 * relative error <= 1.3e-4 before rounding, 1 / 30 of a bf16 ulp), so the
 * MUFU pipe and the issue slots are about equally loaded; the product with
 * h3 in fp32 and one rounding as ws_epi, so hh is within 1 bf16 ulp of
 * ws_epi's (and h1 / h3 are bit for bit). Where y reaches 2^126 (x < -87)
 * __fdividef gives 0 and this ~x 2^-126 */
__device__ __forceinline__ static uint32_t ws_hh_fast(uint32_t v1, uint32_t v3)
{
	const float x0 = ws_lo(v1), x1 = ws_hi(v1);
	const float y = fminf(1.0f + __expf(-x1), 0x1p126f);
	float r = __int_as_float(0x7ef31000 - __float_as_int(y));
	const float t = fmaf(-y, r, 1.0f);
	r = fmaf(r, fmaf(t, t, t), r);
	return ws_pack(ws_silu(x0) * ws_lo(v3), x1 * r * ws_hi(v3));
}

__device__ __forceinline__ static void ws_stsm4(uint32_t addr, const uint32_t (&v)[4])
{
	asm volatile(
	        "stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
	        "r"(v[0]), "r"(v[1]), "r"(v[2]), "r"(v[3])
	        : "memory");
}
__device__ __forceinline__ static uint4 ws_lds16(uint32_t addr);

/* round 15 (POLICY_GPU_MOE_WSB_SILU): UP's epilogue, cheaper. Why: wsb2's
 * costs ~0.019 ms of up's 0.100 in arithmetic and shuffles (H100, the
 * lead's EPI=nostore / none), and per pair of outputs it issues ~33
 * instructions a thread (2 packs + 4 unpacks + 2 x 5 for the SiLUs + 2
 * products + a pack, and the three quad transposes' 12 shuffles and ~36
 * selects a 4-block group over its 8 pairs) while the MUFU pipe (16
 * lanes a clock an SM: 8 cycles a warp instruction) needs 4 x 8 = 32
 * cycles: both limits are reached together, so moving MUFU work to the FMA
 * pipe alone gains nothing. FAST (WS_UPS, WS_UPF): ws_hh_fast (3 MUFU a
 * pair, +4 issues). STSM (WS_UPS, WS_UPSX): each row half's 4 blocks of an
 * output by one stmatrix.x4 (the mma fragment is stmatrix's layout) into
 * the warp's staging (16 rows x 64 bytes an output, 16-byte chunk c of row
 * R at chunk c ^ ((R >> 1) & 3): stmatrix's 8 rows and the reads' quarter
 * warps hit 8 distinct bank groups), __syncwarp, each lane reads back its
 * block's 16 bytes and stores them as ws_epi does, __syncwarp (the next
 * group reuses the buffer): 6 stmatrix + 6 loads + 2 warp syncs a group
 * instead of ~96 shuffles and selects. Predicted per pair: ~26 issues, 24
 * MUFU cycles (against ~33 / 32). Measured (H100, see the top comment): no
 * gain; ncu shows the epilogue latency bound, not MUFU or issue bound, and
 * the staging round trip adds latency (fast / stsm 0.002-0.005 ms slower) */
template <bool FAST, bool STSM>
__device__ __forceinline__ static void ws_epi15(const struct ws_args &a, const float (&acc)[128],
                                                int rr, int r1, int n0, int q, int lane,
                                                uint32_t stg)
{
	const int F = a.F;
#pragma unroll
	for (int g = 0; g < 4; g++) {
		const int f = n0 + 8 * (4 * g + q);
#pragma unroll
		for (int h = 0; h < 2; h++) {
			uint32_t v[3][4]; /* output (h1, h3, hh), block */
#pragma unroll
			for (int jj = 0; jj < 4; jj++) {
				const int j = 4 * g + jj;
				const uint32_t v1 =
				        ws_pack(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
				const uint32_t v3 = ws_pack(acc[64 + 4 * j + 2 * h],
				                            acc[64 + 4 * j + 2 * h + 1]);
				v[0][jj] = v1;
				v[1][jj] = v3;
				v[2][jj] = FAST ? ws_hh_fast(v1, v3)
				                : ws_pack(ws_silu(ws_lo(v1)) * ws_lo(v3),
				                          ws_silu(ws_hi(v1)) * ws_hi(v3));
			}
			if constexpr (STSM) {
				const int R = 8 * h + (lane & 7);
				const uint32_t o = (uint32_t)R * 64 +
				                   ((uint32_t)((lane >> 3) ^ ((R >> 1) & 3)) << 4);
#pragma unroll
				for (int k = 0; k < 3; k++)
					ws_stsm4(stg + k * 1024 + o, v[k]);
			} else {
				const int row = rr + 8 * h;
#pragma unroll
				for (int k = 0; k < 3; k++)
					ws_transpose4(v[k], q);
				if (row < r1 && f < F) {
					const size_t off = (size_t)row * F + f;
					*(uint4 *)(a.h1 + off) =
					        make_uint4(v[0][0], v[0][1], v[0][2], v[0][3]);
					*(uint4 *)(a.h3 + off) =
					        make_uint4(v[1][0], v[1][1], v[1][2], v[1][3]);
					*(uint4 *)(a.hh + off) =
					        make_uint4(v[2][0], v[2][1], v[2][2], v[2][3]);
				}
			}
		}
		if constexpr (STSM) {
			__syncwarp();
#pragma unroll
			for (int h = 0; h < 2; h++) {
				const int R = 8 * h + (lane >> 2), row = rr + 8 * h;
				const uint32_t o =
				        (uint32_t)R * 64 + ((uint32_t)(q ^ ((R >> 1) & 3)) << 4);
				const uint4 u1 = ws_lds16(stg + o), u3 = ws_lds16(stg + 1024 + o),
				            uh = ws_lds16(stg + 2048 + o);
				if (row < r1 && f < F) {
					const size_t off = (size_t)row * F + f;
					*(uint4 *)(a.h1 + off) = u1;
					*(uint4 *)(a.h3 + off) = u3;
					*(uint4 *)(a.hh + off) = uh;
				}
			}
			__syncwarp();
		}
	}
}

/* the quad transpose of a row's 4 8-column blocks g.. of fp32 pairs: lane q
 * then holds block 4 g + q's 8 columns in v[0..7] */
__device__ __forceinline__ static void ws_rows8(const float (&acc)[128], int h, int g, int q,
                                                float (&v)[8])
{
	uint32_t lo[4], hi[4];
#pragma unroll
	for (int jj = 0; jj < 4; jj++) {
		const int j = 4 * g + jj;
		lo[jj] = __float_as_uint(acc[4 * j + 2 * h]);
		hi[jj] = __float_as_uint(acc[4 * j + 2 * h + 1]);
	}
	ws_transpose4(lo, q);
	ws_transpose4(hi, q);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		v[2 * i] = __uint_as_float(lo[i]);
		v[2 * i + 1] = __uint_as_float(hi[i]);
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
			float v[8];
			ws_rows8(acc, h, g, q, v);
			const int n = n0 + 8 * (4 * g + q);
			if (rok && n < D) {
				float4 *o = (float4 *)(dst + n);
				o[0] = make_float4(v[0], v[1], v[2], v[3]);
				o[1] = make_float4(v[4], v[5], v[6], v[7]);
			}
		}
	}
}

/* round 16: ws_epi_f32 with the rows rounded to bf16 once (nearest even):
 * lane q's 8 columns of a row in one 16-byte store (WS_DOWNB, WS_UP_DXB) */
__device__ __forceinline__ static void ws_epi_b16(const struct ws_args &a, const float (&acc)[128],
                                                  int rr, int r1, int n0, int q)
{
	const int D = a.D;
#pragma unroll
	for (int h = 0; h < 2; h++) {
		const int row = rr + 8 * h;
		const bool rok = row < r1;
		uint16_t *dst = (uint16_t *)a.out + (rok ? (size_t)a.perm[row] * D : 0);
#pragma unroll
		for (int g = 0; g < 8; g++) {
			float v[8];
			ws_rows8(acc, h, g, q, v);
			const int n = n0 + 8 * (4 * g + q);
			if (rok && n < D)
				*(uint4 *)(dst + n) =
				        make_uint4(ws_pack(v[0], v[1]), ws_pack(v[2], v[3]),
				                   ws_pack(v[4], v[5]), ws_pack(v[6], v[7]));
		}
	}
}

/* the epilogues below read before they write (DOWN_DX h1 / h3, an added
 * dW's old values): a row's 16 8-column blocks of inputs are loaded in one
 * batch (64 registers), so they are in flight together (in program order
 * after stores they may alias they would each wait a round trip); the
 * kernel issues row 0's batch before it waits for the tile's last wgmma */

/* round 11: DOWN_DX's epilogue, dh (fp32, rows rr, rr + 8, 256 columns of F
 * from n0) -> dh13[row] = [dh h3 SiLU'(h1) | dh SiLU(h1)] (bf16), h1 / h3
 * of the row read 16 bytes a lane (gpu_moe.cu's mg_epi formula: s =
 * sigmoid(h1), d3 = dh h1 s, d1 = dh h3 s (1 + h1 (1 - s)), rounded to
 * nearest even); ws_dx_load: row h's h1 / h3 */
__device__ __forceinline__ static void ws_dx_load(const struct ws_args &a, int rr, int r1, int n0,
                                                  int q, int h, uint4 (&u)[8][2])
{
	const int F = a.F, row = rr + 8 * h;
#pragma unroll
	for (int g = 0; g < 8; g++) {
		const int f = n0 + 8 * (4 * g + q);
		const size_t o = (size_t)row * F + f;
		u[g][0] = make_uint4(0, 0, 0, 0);
		u[g][1] = u[g][0];
		if (row < r1 && f < F) {
			u[g][0] = __ldg((const uint4 *)(a.x1 + o));
			u[g][1] = __ldg((const uint4 *)(a.x3 + o));
		}
	}
}
__device__ __forceinline__ static void ws_dx_store(const struct ws_args &a, const float (&acc)[128],
                                                   int rr, int r1, int n0, int q, int h,
                                                   const uint4 (&u)[8][2])
{
	const int F = a.F, row = rr + 8 * h;
#pragma unroll
	for (int g = 0; g < 8; g++) {
		const int f = n0 + 8 * (4 * g + q);
		float gv[8];
		ws_rows8(acc, h, g, q, gv);
		if (row >= r1 || f >= F)
			continue;
		const uint32_t p1[4] = {u[g][0].x, u[g][0].y, u[g][0].z, u[g][0].w},
		               p3[4] = {u[g][1].x, u[g][1].y, u[g][1].z, u[g][1].w};
		uint32_t d1[4], d3[4];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			float r1v[2], r3v[2];
#pragma unroll
			for (int j = 0; j < 2; j++) {
				const float x1 = j ? ws_hi(p1[i]) : ws_lo(p1[i]),
				            x3 = j ? ws_hi(p3[i]) : ws_lo(p3[i]),
				            g1 = gv[2 * i + j], s = 1.0f / (1.0f + expf(-x1));
				r3v[j] = g1 * x1 * s;
				r1v[j] = g1 * x3 * s * (1.0f + x1 * (1.0f - s));
			}
			d1[i] = ws_pack(r1v[0], r1v[1]);
			d3[i] = ws_pack(r3v[0], r3v[1]);
		}
		uint16_t *dst = a.dh13 + (size_t)row * 2 * F + f;
		*(uint4 *)dst = make_uint4(d1[0], d1[1], d1[2], d1[3]);
		*(uint4 *)(dst + F) = make_uint4(d3[0], d3[1], d3[2], d3[3]);
	}
}

/* round 13 ("wsb5"): DOWN_DXT's epilogue: as ws_dx_store (the same formula
 * and rounding), but h1 / h3 come from the tile's WS_NH ring slots from ith
 * (filled by TMA during the main loop, 128-byte swizzle: row lr's 16-byte
 * chunk k at lr * 128 + ((k ^ (lr & 7)) << 4) of its box), in 64-column
 * chunks i = 0..3 (h1 box 2 i, h3 box 2 i + 1; box b in slot b / 3 at
 * (b % 3) x 16 KB); a slot is waited for before its first box is read
 * (i = 0: slot 0, i = 1: slot 1, i = 3: slot 2) and released (lane 0 of each
 * of the 8 consumer warps: the empty barrier's 8 arrivals) after its last
 * (i = 1, 2, 3), so the producer refills slot 0 while chunks 2-3 run. Every
 * consumer thread runs every wait and every release: the row / column
 * predicates only skip the math and the stores. ws_lds16 clobbers memory so
 * the compiler keeps it between the slot's full wait and its release */
__device__ __forceinline__ static uint4 ws_lds16(uint32_t addr)
{
	uint4 v;
	asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
	             : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
	             : "r"(addr)
	             : "memory");
	return v;
}
template <int ST, bool H = false> /* H (round 19, WS_DOWN_DXH): dh13 stored evict_first */
__device__ __forceinline__ static void ws_dxt_epi(const struct ws_args &a, const float (&acc)[128],
                                                  uint32_t sbase, uint32_t fb, uint32_t eb, int ith,
                                                  int rr, int r0, int r1, int n0, int q, int lane)
{
	const int F = a.F;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (i != 2) { /* the slot of box 2 i + 1 (box 2 i's is it or earlier) */
			const int s = ith + (2 * i + 1) / 3;
			ptx::mbar_wait(fb + 8 * (s % ST), (s / ST) & 1);
		}
		const uint32_t b1 = sbase + ((ith + (2 * i) / 3) % ST) * WS_STAGE +
		                    ((2 * i) % 3) * WS_ATILE,
		               b3 = sbase + ((ith + (2 * i + 1) / 3) % ST) * WS_STAGE +
		                    ((2 * i + 1) % 3) * WS_ATILE;
#pragma unroll
		for (int gg = 0; gg < 2; gg++) {
			const int g = 2 * i + gg, f = n0 + 8 * (4 * g + q), k = 4 * gg + q;
#pragma unroll
			for (int h = 0; h < 2; h++) {
				const int lr = rr + 8 * h, row = r0 + lr;
				float gv[8];
				ws_rows8(acc, h, g, q, gv); /* shuffles: every lane */
				const uint32_t o =
				        (uint32_t)lr * 128 + ((uint32_t)(k ^ (lr & 7)) << 4);
				const uint4 u1 = ws_lds16(b1 + o), u3 = ws_lds16(b3 + o);
				if (row >= r1 || f >= F)
					continue;
				const uint32_t p1[4] = {u1.x, u1.y, u1.z, u1.w},
				               p3[4] = {u3.x, u3.y, u3.z, u3.w};
				uint32_t d1[4], d3[4];
#pragma unroll
				for (int m = 0; m < 4; m++) {
					float r1v[2], r3v[2];
#pragma unroll
					for (int j = 0; j < 2; j++) {
						const float x1 = j ? ws_hi(p1[m]) : ws_lo(p1[m]),
						            x3 = j ? ws_hi(p3[m]) : ws_lo(p3[m]),
						            g1 = gv[2 * m + j],
						            s = 1.0f / (1.0f + expf(-x1));
						r3v[j] = g1 * x1 * s;
						r1v[j] = g1 * x3 * s * (1.0f + x1 * (1.0f - s));
					}
					d1[m] = ws_pack(r1v[0], r1v[1]);
					d3[m] = ws_pack(r3v[0], r3v[1]);
				}
				uint16_t *dst = a.dh13 + (size_t)row * 2 * F + f;
				if constexpr (H) {
					const uint64_t pf = ptx::l2_policy(false);
					ws_st16_h(dst, make_uint4(d1[0], d1[1], d1[2], d1[3]), pf);
					ws_st16_h(dst + F, make_uint4(d3[0], d3[1], d3[2], d3[3]),
					          pf);
				} else {
					*(uint4 *)dst = make_uint4(d1[0], d1[1], d1[2], d1[3]);
					*(uint4 *)(dst + F) =
					        make_uint4(d3[0], d3[1], d3[2], d3[3]);
				}
			}
		}
		if (i != 0) { /* slot i - 1's boxes are all read (into registers) */
			__syncwarp();
			if (lane == 0)
				ws_arrive(eb + 8 * ((ith + i - 1) % ST));
		}
	}
}

/* round 11: the weight gradients' epilogue: dW rows mr, mr + 8 (of M),
 * 256 columns from n0 (of N) of expert e, added to (add) or stored, 8
 * floats a lane (two 16-byte accesses) after the quad transpose; zero: the
 * tile of an expert without rows (stored zeros; nothing when add);
 * ws_dw_load: row h's old values (add); round 23, red: the tile added in
 * L2 by red.global.add.v4.f32 (o unused; add and zero false) */
template <int MODE>
__device__ __forceinline__ static float *ws_dw_row(const struct ws_args &a, int e, int m)
{
	const int D = a.D, F = a.F;
	const size_t wsz = (size_t)F * D;
	if (MODE == WS_DOWN_DW && e >= a.E) /* round 23: the second layer's */
		return a.dw1b + (e - a.E) * wsz + (size_t)m * F;
	return MODE == WS_DOWN_DW ? a.dw1 + e * wsz + (size_t)m * F
	       : m < F            ? a.dw1 + e * wsz + (size_t)m * D
	                          : a.dw3 + e * wsz + (size_t)(m - F) * D;
}
template <int MODE>
__device__ __forceinline__ static void ws_dw_load(const struct ws_args &a, int e, int mr, int n0,
                                                  int q, int h, float4 (&o)[8][2])
{
	const int M = MODE == WS_DOWN_DW ? a.D : 2 * a.F, N = MODE == WS_DOWN_DW ? a.F : a.D,
	          m = mr + 8 * h;
	const float *src = m < M ? ws_dw_row<MODE>(a, e, m) : NULL;
#pragma unroll
	for (int g = 0; g < 8; g++) {
		const int n = n0 + 8 * (4 * g + q);
		o[g][0] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
		o[g][1] = o[g][0];
		if (src && n < N) {
			o[g][0] = ((const float4 *)(src + n))[0];
			o[g][1] = ((const float4 *)(src + n))[1];
		}
	}
}
template <int MODE>
__device__ __forceinline__ static void
ws_dw_store(const struct ws_args &a, const float (&acc)[128], int e, int mr, int n0, int q, int h,
            bool zero, bool add, const float4 (&o)[8][2], bool red = false, float *ss = nullptr)
{
	const int M = MODE == WS_DOWN_DW ? a.D : 2 * a.F, N = MODE == WS_DOWN_DW ? a.F : a.D,
	          m = mr + 8 * h;
	if (m >= M)
		return;
	float *dst = ws_dw_row<MODE>(a, e, m);
#pragma unroll
	for (int g = 0; g < 8; g++) {
		const int n = n0 + 8 * (4 * g + q);
		float v[8];
		ws_rows8(acc, h, g, q, v);
		if (n >= N)
			continue;
		float4 t0 = make_float4(v[0], v[1], v[2], v[3]),
		       t1 = make_float4(v[4], v[5], v[6], v[7]);
		if (zero) {
			t0 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
			t1 = t0;
		} else if (add) {
			t0.x += o[g][0].x;
			t0.y += o[g][0].y;
			t0.z += o[g][0].z;
			t0.w += o[g][0].w;
			t1.x += o[g][1].x;
			t1.y += o[g][1].y;
			t1.z += o[g][1].z;
			t1.w += o[g][1].w;
		}
		if (red) {
			ptx::red_add4(dst + n, t0);
			ptx::red_add4(dst + n + 4, t1);
			continue;
		}
		((float4 *)(dst + n))[0] = t0;
		((float4 *)(dst + n))[1] = t1;
		if (ss) /* round 24: the values' squares, in a fixed order */
			*ss += t0.x * t0.x + t0.y * t0.y + t0.z * t0.z + t0.w * t0.w +
			       (t1.x * t1.x + t1.y * t1.y + t1.z * t1.z + t1.w * t1.w);
	}
}

/* row tile b of the experts' ceil(n_e / 128) tiles: expert, first row, end */
__device__ __forceinline__ static void ws_rowtile(const int *offs, int E, int b, int bm, int *e,
                                                  int *r0, int *r1)
{
	for (int i = 0; i < E; i++) {
		int s = offs[i], t = offs[i + 1], nt = (t - s + bm - 1) / bm;
		if (b < nt) {
			*e = i;
			*r0 = s + b * bm;
			*r1 = t;
			return;
		}
		b -= nt;
	}
	*e = -1;
}

/* the geometry of MODE: K of a row tile (row modes), the column tiles nx
 * (UP: 128 hidden units; else 256 columns of D, F or N), the row tiles of
 * an expert's dW (my; weight gradients) */
template <int MODE> struct ws_geo {
	static constexpr int MB = ws_base(MODE);
	static constexpr bool DW = MB == WS_DOWN_DW || MB == WS_UP_DW;
	static constexpr bool TA = DW;                           /* A stored (k, m) */
	static constexpr bool TB = MB != WS_UP && MB != WS_DOWN; /* B stored (k, n) */
	static constexpr int BN = MB == WS_UP ? WS_BF : 256;
	__device__ __forceinline__ static int kd(int D, int F)
	{
		return MB == WS_UP || MB == WS_DOWN_DX || MB == WS_DOWN_DXT ? D
		       : MB == WS_DOWN                                      ? F
		                                                            : 2 * F;
	}
	/* N of the product (UP: hidden units) */
	__host__ __device__ __forceinline__ static int n(int D, int F)
	{
		return MB == WS_UP || MB == WS_DOWN_DX || MB == WS_DOWN_DW || MB == WS_DOWN_DXT ? F
		                                                                                : D;
	}
	__host__ __device__ __forceinline__ static int m(int D, int F)
	{
		return MB == WS_DOWN_DW ? D : 2 * F;
	}
};

/* the weight gradients' tile list, set up by each CTA alike: the experts
 * by segment size (largest first), each expert's tiles (splits x my x nx)
 * from tbase[rank], kch k blocks a split */
struct ws_dwlist {
	int ord[WS_EMAX], tbase[WS_EMAX + 1], kch;
};

/* tile t: expert e, its rows [r0, r1) (weight gradients: the split's),
 * dW rows m0.., columns n0.., k blocks nk, split sp of nsp */
template <int MODE>
__device__ __forceinline__ static void
ws_tile(const struct ws_args &a, const struct ws_dwlist &L, int t, int nx, int my, int bm, int *e,
        int *r0, int *r1, int *m0, int *n0, int *nk, int *sp, int *nsp)
{
	typedef ws_geo<MODE> G;
	if (G::DW) {
		const int per = my * nx, rows = L.kch * WS_BK;
		int r = 0;
		while (L.tbase[r + 1] <= t)
			r++;
		const int i = t - L.tbase[r], rem = i % per;
		*e = L.ord[r];
		*sp = i / per;
		*nsp = (L.tbase[r + 1] - L.tbase[r]) / per;
		if constexpr (ws_seg(MODE)) { /* round 24: the window's segments, whole */
			*r0 = 0;
			ws_wtot(a, *e, r1, nk);
			*m0 = rem / nx * WS_BM;
			*n0 = rem % nx * G::BN;
			return;
		}
		const int s0 = ws_seg0(a, *e), s1 = s0 + ws_segn(a, *e);
		*r0 = s0 + *sp * rows;
		*r1 = min(s1, *r0 + rows);
		*m0 = rem / nx * WS_BM;
		*n0 = rem % nx * G::BN;
		*nk = (*r1 - *r0 + WS_BK - 1) / WS_BK;
	} else {
		ws_rowtile(a.offs, a.E, t / nx, bm, e, r0, r1);
		*m0 = 0;
		*n0 = t % nx * G::BN;
		*nk = (G::kd(a.D, a.F) + WS_BK - 1) / WS_BK;
		*sp = 0;
		*nsp = 1;
	}
}

/* the weight gradients' dynamic tile counters (POLICY_GPU_MOE_WSB_SCHED=dyn):
 * per DW mode, the next tile past the grid's first and the CTAs done; the
 * last CTA done resets both for the next launch (launches of one mode are
 * stream-ordered) */
__device__ static int ws_sched[4][2]; /* round 24: [2, 3] the window's modes' */

/* round 14 ("wsb6"): the deferred epilogue (WS_UPD, WS_DOWND, WS_UP_DXD).
 * In the cooperative schedule both consumer warpgroups ran the epilogue
 * from the accumulators while the tensor cores idled (UP: 0.021 of 0.097
 * ms, H100). Here a consumer, after a tile's last wgmma, only moves what it
 * must out of the accumulators into 64 more registers (ws_def_keep) and
 * starts the next tile's main loop at once; the rest of the epilogue runs
 * in WS_NCH = 8 chunks (ws_def_chunk), chunk i right after the wgmma of the
 * next tile's k block i are issued (so while the tensor cores run them and
 * the previous block's); chunks the next tile's k blocks did not reach run
 * after its last block (before its own keep), the CTA's last tile's all
 * after the loop. The ring, the barriers and the loads are the base mode's
 * (no more shared memory, B loaded once per 128 rows).
 * UP: the 64 h1 / h3 pairs rounded to bf16 (P[2 j + h] = h1 of 8-column
 * block j, row half h; P[32 + 2 j + h] = h3): the rounding is what ws_epi
 * does first, so the outputs are bit for bit ws_epi's; chunk i = row half i
 * / 4, blocks 4 (i % 4)..: SiLU, the quad transposes, 3 16-byte stores.
 * DOWN / UP_DX (fp32): the row half h = 0 stored at once (as ws_epi_f32),
 * the h = 1 row's 64 floats kept (P[2 j], P[2 j + 1] of 8-column block j <
 * 32) and stored 4 blocks a chunk (chunk i = blocks 4 i..).
 * Measured (H100, see the top comment): only ~0.003 of UP's 0.026 ms
 * epilogue hidden. A likely reason: the main loop is bound by the ring (3
 * stages 7% slower than 4), and a chunk placed before the wait for block
 * kb - 1 delays that block's release, so every stage is held ~a chunk
 * longer. "wsb6r" (WS_UPR, WS_DOWNR, WS_UP_DXR) runs chunk kb after block
 * kb - 1's wait and release instead (still while block kb's wgmma run); not
 * yet run on a GPU. */
#define WS_NCH 8
struct ws_pend {
	int row, r1, n0; /* UP: the thread's first row, the expert's end, n0 */
	float *dst;      /* DOWN / UP_DX: the h = 1 row's out row (NULL: past r1) */
};

/* 4 8-column fp32 blocks (pairs lo / hi of blocks 4 g.., this lane's) to
 * row dst of out, lane q writing block 4 g + q (two 16-byte stores) */
__device__ __forceinline__ static void ws_f32_blocks(float *dst, int n0, int D, int g, int q,
                                                     uint32_t (&lo)[4], uint32_t (&hi)[4])
{
	ws_transpose4(lo, q);
	ws_transpose4(hi, q);
	const int n = n0 + 8 * (4 * g + q);
	if (dst && n < D) {
		float4 *o = (float4 *)(dst + n);
		o[0] = make_float4(__uint_as_float(lo[0]), __uint_as_float(hi[0]),
		                   __uint_as_float(lo[1]), __uint_as_float(hi[1]));
		o[1] = make_float4(__uint_as_float(lo[2]), __uint_as_float(hi[2]),
		                   __uint_as_float(lo[3]), __uint_as_float(hi[3]));
	}
}

template <int MB>
__device__ __forceinline__ static void ws_def_keep(const struct ws_args &a, const float (&acc)[128],
                                                   uint32_t (&P)[64], struct ws_pend &pd, int row,
                                                   int r1, int n0, int q)
{
	if constexpr (MB == WS_UP) {
#pragma unroll
		for (int j = 0; j < 16; j++) {
#pragma unroll
			for (int h = 0; h < 2; h++) {
				P[2 * j + h] = ws_pack(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
				P[32 + 2 * j + h] = ws_pack(acc[64 + 4 * j + 2 * h],
				                            acc[64 + 4 * j + 2 * h + 1]);
			}
		}
		pd.row = row;
		pd.r1 = r1;
		pd.n0 = n0;
	} else {
		float *dst = row < r1 ? a.out + (size_t)a.perm[row] * a.D : NULL;
		pd.dst = row + 8 < r1 ? a.out + (size_t)a.perm[row + 8] * a.D : NULL;
		pd.n0 = n0;
		/* xor a.beta (0 in these modes; unknown to ptxas): a plain copy
		 * is coalesced into the accumulators' registers, and ptxas then
		 * serialises the next tile's wgmma with the chunks (C7517 / C7519) */
		const uint32_t key = (uint32_t)a.beta;
#pragma unroll
		for (int j = 0; j < 32; j++) { /* 32 8-column blocks of 256 columns */
			P[2 * j] = __float_as_uint(acc[4 * j + 2]) ^ key;
			P[2 * j + 1] = __float_as_uint(acc[4 * j + 3]) ^ key;
		}
#pragma unroll
		for (int g = 0; g < 8; g++) {
			uint32_t lo[4], hi[4];
#pragma unroll
			for (int jj = 0; jj < 4; jj++) {
				lo[jj] = __float_as_uint(acc[4 * (4 * g + jj)]);
				hi[jj] = __float_as_uint(acc[4 * (4 * g + jj) + 1]);
			}
			ws_f32_blocks(dst, n0, a.D, g, q, lo, hi);
		}
	}
}

/* KNOB (wsb6r's UP only, for measurements): POLICY_GPU_MOE_WSB_EPI=none
 * skips the chunks (no outputs), =nostore keeps their math but not the
 * stores, as ws_epi's knobs do for wsb2 */
template <int MB, bool KNOB>
__device__ __forceinline__ static void ws_def_chunk(const struct ws_args &a,
                                                    const uint32_t (&P)[64],
                                                    const struct ws_pend &pd, int q, int i)
{
	if constexpr (MB == WS_UP) {
		const int h = i >> 2, g = i & 3, row = pd.row + 8 * h;
		if (KNOB && a.epi == WS_EPI_NONE)
			return;
		uint32_t v1[4], v3[4], vh[4];
#pragma unroll
		for (int jj = 0; jj < 4; jj++) {
			const int j = 4 * g + jj;
			v1[jj] = P[2 * j + h];
			v3[jj] = P[32 + 2 * j + h];
			vh[jj] = ws_pack(ws_silu(ws_lo(v1[jj])) * ws_lo(v3[jj]),
			                 ws_silu(ws_hi(v1[jj])) * ws_hi(v3[jj]));
		}
		ws_transpose4(v1, q);
		ws_transpose4(v3, q);
		ws_transpose4(vh, q);
		if (KNOB && a.epi == WS_EPI_NOSTORE) {
			if (row < 0) /* never taken: keeps the math */
				*(uint32_t *)a.hh = v1[0] ^ v1[1] ^ v1[2] ^ v1[3] ^ v3[0] ^ v3[1] ^
				                    v3[2] ^ v3[3] ^ vh[0] ^ vh[1] ^ vh[2] ^ vh[3];
			return;
		}
		const int f = pd.n0 + 8 * (4 * g + q);
		if (row < pd.r1 && f < a.F) {
			const size_t o = (size_t)row * a.F + f;
			*(uint4 *)(a.h1 + o) = make_uint4(v1[0], v1[1], v1[2], v1[3]);
			*(uint4 *)(a.h3 + o) = make_uint4(v3[0], v3[1], v3[2], v3[3]);
			*(uint4 *)(a.hh + o) = make_uint4(vh[0], vh[1], vh[2], vh[3]);
		}
	} else {
		uint32_t lo[4], hi[4];
#pragma unroll
		for (int jj = 0; jj < 4; jj++) { /* ws_def_keep's xor undone */
			lo[jj] = P[2 * (4 * i + jj)] ^ (uint32_t)a.beta;
			hi[jj] = P[2 * (4 * i + jj) + 1] ^ (uint32_t)a.beta;
		}
		ws_f32_blocks(pd.dst, pd.n0, a.D, i, q, lo, hi);
	}
}

/* round 24: the 256 consumer threads' sums of squares ss of a weight-gradient
 * tile (ct: the thread's index among them) summed in a fixed order (a
 * shuffle tree a warp, the 8 warps in order) into *dst; every consumer
 * thread calls it (two named barriers) */
__device__ __forceinline__ static void ws_sq_tile(float *dst, float ss, int ct)
{
	__shared__ float part[8];
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		ss += __shfl_xor_sync(0xffffffffu, ss, o);
	if ((ct & 31) == 0)
		part[ct >> 5] = ss;
	asm volatile("bar.sync 3, 256;\n" ::: "memory");
	if (ct == 0) {
		float t = 0;
		for (int i = 0; i < 8; i++)
			t += part[i];
		*dst = t;
	}
	asm volatile("bar.sync 3, 256;\n" ::: "memory");
}

/* Round 13 (WS_DOWN_DXT, "wsb5"): why every mbarrier wait is matched.
 * The ring: slot n of the CTA's running counter (producer and consumers
 * each count it alike) uses stage n % ST; its full barrier (count 1)
 * completes a phase when the producer's one arrive.expect_tx(bytes) has
 * arrived and the TMA has delivered exactly those bytes; its empty barrier
 * (count 8) when lane 0 of each of the 8 consumer warps has arrived once.
 * Waits use parity (n / ST) & 1 (full) and ((n / ST) & 1) ^ 1 (empty; the
 * first lap passes on a fresh barrier), which names the right phase as long
 * as no side runs more than one lap ahead of the other: the producer waits
 * for slot n's empty phase before it writes slot n (so it is never more than
 * ST slots ahead of the slowest consumer), and a consumer waits for slots in
 * increasing n (so it is never ahead of the loads).
 * DOWN_DXT's slots a tile: nk k blocks (nk = ceil(D / 64), the same for every
 * tile of a row mode), then WS_NH = 3 h1 / h3 slots. The producer, for each
 * of its CTA's tiles (static stride, the same tile list as the consumers):
 * nk slots with expect_tx(STG) and 1 + 4 boxes (16 + 4 x 8 KB = STG), then 3
 * slots with expect_tx(3, 3, 2 x 16 KB) and 3, 3, 2 boxes of 16 KB (the
 * boxes' full bytes arrive even where they pass R or F: zero fill counts).
 * The consumers, for the same tiles: each thread waits full for the nk
 * blocks (lane 0 of each warp arrives empty for block kb - 1 after the
 * wgmma of block kb is issued and block kb - 1's retired, and for block nk
 * - 1 after wait_group 0), then ws_dxt_epi waits full for h slots 0, 1, 2
 * (before chunks 0, 1, 3) and lane 0 of each warp arrives empty on h slots
 * 0, 1, 2 (after chunks 1, 2, 3): unconditionally, outside the row / column
 * predicates (which only skip math and stores), and the counter advances
 * by WS_NH. Both sides leave the tile loop at the same t >= ntiles, so
 * every expect_tx is matched by its TMA bytes and waited once, and every
 * empty phase the producer waits for gets its 8 arrivals. No consumer waits
 * on anything of the producer after the last tile; the producer's last
 * empty waits are for slots the consumers release in their last tile (it
 * waits for the empty phase of slot n - ST only). A TMA error (a bad map)
 * would leave a full phase incomplete: a hang, so ws_map_planes's encode
 * is checked on the host and the launch refused on failure. */
/* Round 16 (CL: WS_UPC, WS_DOWNC, WS_UP_DXC, "wsb7"): why every wait is
 * matched. A cluster of 2 CTAs (ranks 0, 1) walks the 128-row tiles t =
 * cluster + j x clusters (both CTAs the same list: the same offs, nx, nk);
 * CTA rank r computes rows 64 r.. of tile t (PP: its consumer j % 2 the
 * whole 64 x 256; a half at or past the expert's end still runs, with A
 * from the tile's first rows, and stores nothing). Each CTA's ring slot n
 * (40 KB: A 8 KB, B 32 KB) gets: its own A box (8 KB), its own half of B
 * (16 KB) multicast to both CTAs and the peer's half (16 KB) multicast to
 * both; each CTA's producer arrives once with expect_tx(40 KB) on its own
 * full barrier (count 1), so the phase completes when the producer's
 * arrival and all 40 KB have landed (the peer's bytes may land first: the
 * tx count goes negative within the phase; it cannot complete without the
 * arrival). The empty barrier of each CTA counts 8: lane 0 of each of the 4
 * warps of the consumer warpgroup that read the slot, in BOTH CTAs (each
 * arrives on its own and, by mapa, on the peer's), so a producer writes slot
 * n (into both CTAs) only after both CTAs released slot n - ST; the peer's
 * bytes for slot n therefore never land in a full barrier still in slot n -
 * ST's phase (the releases of n - ST follow that phase's completion in each
 * CTA). No cycle: a producer at slot n waits for slot n - ST's releases,
 * which wait only for both producers' loads of slot n - ST. Start: the
 * barriers are initialised and a cluster barrier passed before any
 * multicast or remote arrive. End: no CTA exits while the peer may still
 * arrive on its barriers or write its shared memory: each producer, after
 * its last slot, waits for the empty phases of the last ST slots (all 8
 * arrivals, the peer's included; the peer's consumers released them after
 * the multicasts into the peer landed) */
/* PP (round 12, "wsb4", row modes only): ping-pong consumers: consumer
 * warpgroup c takes the CTA's tiles j = c, c + 2, ... (64 x 256 each, the
 * whole of it), so while one does its epilogue the other's MMAs run; the
 * ring holds the tiles' k blocks in j order, so the two main loops
 * alternate without a further barrier (a stage is released by the 4 warps
 * of the warpgroup that read it) */
template <int MODE, int WS_ST, bool PP>
__global__ static void __launch_bounds__(WS_THREADS, 1)
        k_ws(struct ws_args a, const __grid_constant__ struct ws_maps tm)
{
	pdl::enter(); /* round 20: launched with PDL under POLICY_GPU_PDL=on */
	typedef ws_geo<MODE> G;
	constexpr int MB = ws_base(MODE);
	/* round 24: the window's weight gradients (segments), their tile counters */
	constexpr bool SEG = ws_seg(MODE);
	constexpr int SCH = (MB == WS_UP_DW) + (SEG ? 2 : 0);
	/* round 14: the deferred epilogue */
	constexpr bool DEF = MODE >= WS_UPD && MODE <= WS_UP_DXR;
	constexpr bool REL = MODE >= WS_UPR && MODE <= WS_UP_DXR; /* its chunks after the release */
	static_assert(!PP || !G::DW, "ping-pong: row modes only");
	static_assert(!PP || MB != WS_DOWN_DXT, "ping-pong: not with h1 / h3 by TMA");
	static_assert(!PP || !DEF, "ping-pong: its epilogue is hidden already");
	/* round 16: the 2-CTA clusters, each CTA ping-pong over its halves */
	constexpr bool CL = ws_cl(MODE);
	static_assert(!CL || PP, "clusters: with ping-pong consumers only");
	constexpr int BMR = PP && !CL ? 64 : WS_BM;      /* rows a tile (CL: a cluster's) */
	constexpr int ATL = PP ? WS_PP_ATILE : WS_ATILE; /* A's bytes a stage */
	constexpr int STG = PP ? WS_PP_STAGE : WS_STAGE; /* a stage's bytes */
	extern __shared__ __align__(1024) unsigned char ws_sm[];
	__shared__ __align__(8) uint64_t full[WS_ST], empty[WS_ST];
	/* DW: the tile a stage's k block belongs to, written by the producer
	 * with a tile's first block (-1: no more tiles) */
	__shared__ int tile_of[WS_ST];
	__shared__ struct ws_dwlist L[1];
	/* PP: the last tile j whose k blocks consumer c has all waited for */
	__shared__ int pp_done[2];
	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int D = a.D, F = a.F, E = a.E;
	const int nx = (G::n(D, F) + G::BN - 1) / G::BN, my = (G::m(D, F) + WS_BM - 1) / WS_BM;
	const uint32_t sbase = (ptx::smem_u32(ws_sm) + 1023u) & ~1023u;
	const uint32_t fb = ptx::smem_u32(full), eb = ptx::smem_u32(empty);
	/* CL: this CTA's half (rows 64 crank.. of the cluster's tiles); the
	 * cluster's walk over the tiles: first tb, stride ts */
	const uint32_t crank = CL ? ws_cl_sreg(0) : 0u, tb = CL ? ws_cl_sreg(1) : 0u,
	               ts = CL ? ws_cl_sreg(2) : 1u;
	int ntiles = 0;
	if (G::DW) {
		const int NE = a.np * E;         /* round 23: the virtual experts of a.np layers */
		if (NE <= WS_EMAX && tid < NE) { /* rank: larger segments first, ties by index */
			const int n = ws_vrows<SEG>(a, tid);
			int rk = 0;
			for (int j = 0; j < NE; j++) {
				const int nj = ws_vrows<SEG>(a, j);
				rk += nj > n || (nj == n && j < tid);
			}
			L->ord[rk] = tid;
		}
		__syncthreads();
		if (tid == 0 && NE <= WS_EMAX) {
			/* the split: tiles of at most kch k blocks: none by default
			 * (kch 0; H100, auto against none, ms balanced / skewed: up
			 * dW 0.108 / 0.113 vs 0.106 / 0.103, down dW 0.070 / 0.081
			 * vs 0.068 / 0.087; 16: 0.145 / 0.217, 0.090 / 0.140); auto (kch < 0): so
			 * the longest expert's tiles take no more than a CTA's share of the whole
			 * (the mean k blocks a CTA) */
			const int per = my * nx;
			long sum = 0;
			int mx = 1;
			for (int i = 0; i < NE; i++) {
				const int nk = ws_vnk<SEG>(a, i);
				sum += nk;
				mx = max(mx, nk);
			}
			const int avg = (int)max(1L, (sum * per + gridDim.x - 1) / gridDim.x);
			int kch = a.kch > 0 ? a.kch : mx;
			if (a.kch < 0 && mx > avg)
				kch = (mx + (mx + avg - 1) / avg - 1) / ((mx + avg - 1) / avg);
			L->kch = kch;
			L->tbase[0] = 0;
			for (int r = 0; r < NE; r++) {
				const int i = L->ord[r], nk = ws_vnk<SEG>(a, i);
				L->tbase[r + 1] = L->tbase[r] + max(1, (nk + kch - 1) / kch) * per;
			}
		}
		__syncthreads();
		ntiles = NE <= WS_EMAX ? L->tbase[NE] : 0; /* more: refused on the host */
	} else {
		int nrt = 0; /* row tiles of all experts */
		for (int i = 0; i < E; i++)
			nrt += (a.offs[i + 1] - a.offs[i] + BMR - 1) / BMR;
		ntiles = nrt * nx;
	}

	if (tid == 0) {
		for (int s = 0; s < WS_ST; s++) {
			ws_bar_init(fb + 8 * s, 1);
			ws_bar_init(eb + 8 * s, PP && !CL ? 4 : 8);
		}
		asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
		pp_done[0] = pp_done[1] = -1;
	}
	__syncthreads();
	if constexpr (CL) /* the peer's barriers initialised before any multicast or arrive */
		ws_cl_sync();

	if (warp < 4) { /* the producer warpgroup: one thread issues the loads */
		asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
		if (tid != 0)
			return;
		int it = 0;
		for (int t = CL ? tb : blockIdx.x;;) {
			int e = 0, r0 = 0, r1 = 0, m0 = 0, n0 = 0, nk = 0, sp, nsp;
			if (t >= ntiles) {
				if (!G::DW)
					break;
				t = -1;
			} else {
				ws_tile<MODE>(a, *L, t, nx, my, BMR, &e, &r0, &r1, &m0, &n0, &nk,
				              &sp, &nsp);
			}
			if constexpr (MODE == WS_DOWN_DXP || MODE == WS_DOWN_DXQ) {
				/* round 19: h1 / h3 boxes of this tile (kch 1) or of the
				 * next (kch 2; the first tile's too) into L2 */
				for (int w = a.kch == 2 && t == (int)blockIdx.x ? 0 : a.kch - 1;
				     t < ntiles && a.kch > 0 && w < a.kch; w++) {
					const int tp = t + w * (int)gridDim.x;
					if (tp >= ntiles)
						break;
					int pe, pr0, pr1, pm0, pn0, pnk, psp, pnsp;
					ws_tile<MODE>(a, *L, tp, nx, my, BMR, &pe, &pr0, &pr1, &pm0,
					              &pn0, &pnk, &psp, &pnsp);
					for (int b = 0; b < 8; b++)
						ws_pf3(&tm.w3, pn0 + 64 * (b >> 1), pr0,
						       (b & 1) ^ a.beta);
				}
			}
			/* DW: a tile without k blocks (an expert without rows) and
			 * the end mark take one stage without loads */
			const int nslot = G::DW && nk == 0 ? 1 : nk;
			struct ws_cur cur = {0, 0, 0, 0, 0}; /* round 24 (SEG): block kb's rows */
			if (SEG && t >= 0)
				ws_cur_seg(a, e, cur);
			for (int kb = 0; kb < nslot; kb++, it++) {
				const int s = it % WS_ST, k0 = kb * WS_BK;
				const uint32_t sa = sbase + s * STG, sb = sa + ATL,
				               bar = fb + 8 * s;
				ptx::mbar_wait(eb + 8 * s, ((it / WS_ST) & 1) ^ 1);
				if (G::DW) {
					if (kb == 0)
						*(volatile int *)&tile_of[s] = t;
					if (nk == 0) { /* the phase completes with this arrival */
						ws_arrive(bar);
						continue;
					}
				}
				ptx::mbar_expect(bar, STG);
				if (G::DW) { /* A (k, m): two 64 x 64 boxes; B (k, n): four */
					/* round 23: the second layer's maps for its experts */
					const CUtensorMap *ma = e < E ? &tm.a : &tm.a2,
					                  *mb = e < E ? &tm.w1 : &tm.b2;
					int kr = r0 + k0;
					if constexpr (SEG) { /* round 24: the window's segment */
						kr = cur.row0 + cur.j * WS_BK;
						ws_cur_next(a, e, cur);
					}
					ptx::tma_load2(sa, ma, m0, kr, bar);
					ptx::tma_load2(sa + 8192, ma, m0 + 64, kr, bar);
					for (int i = 0; i < 4; i++)
						ptx::tma_load2(sb + i * 8192, mb, n0 + 64 * i, kr,
						               bar);
					continue;
				}
				if constexpr (CL) {
					/* A: this CTA's 64 rows (an empty half: the tile's
					 * first rows, computed, not stored); B: this CTA's
					 * half of the block multicast into both CTAs' stage
					 * (the peer loads the other half; each CTA's full
					 * barrier expects the whole STG) */
					const int hr = r0 + 64 * (int)crank, ay = hr < r1 ? hr : r0;
					ptx::tma_load2(sa, &tm.a, k0, ay, bar);
					if (MB == WS_UP) { /* rank 0 W1's box, rank 1 W3's */
						ws_tma3_mc(sb + crank * WS_ATILE,
						           crank ? &tm.w3 : &tm.w1, k0, n0, e, bar,
						           3);
					} else if (MB == WS_DOWN) {
						ws_tma3_mc(sb + crank * WS_ATILE, &tm.w1, k0,
						           n0 + 128 * (int)crank, e, bar, 3);
					} else {
						/* UP_DX: the 64-column atoms 2 crank, 2 crank + 1
						 * of four as one 16 KB box of the atoms map
						 * (H100 call 1: two 8 KB multicasts a CTA, as
						 * non-CL UP_DX loads them, left the peer's copy
						 * of each CTA's second box unwritten or stale) */
						const CUtensorMap *m = k0 < F ? &tm.w1 : &tm.w3;
						const int kr = k0 < F ? k0 : k0 - F;
						ws_tma3_mc(sb + crank * WS_ATILE, m, 0, e * F + kr,
						           n0 / 64 + 2 * (int)crank, bar, 3);
					}
					continue;
				}
				ptx::tma_load2(sa, &tm.a, k0, r0, bar);
				if (MB == WS_UP) { /* W1 rows n0.., then W3's */
					ptx::tma_load3(sb, &tm.w1, k0, n0, e, bar);
					ptx::tma_load3(sb + WS_ATILE, &tm.w3, k0, n0, e, bar);
				} else if (MB == WS_DOWN) { /* W2 rows (d) n0.., n0 + 128.. */
					ptx::tma_load3(sb, &tm.w1, k0, n0, e, bar);
					ptx::tma_load3(sb + WS_ATILE, &tm.w1, k0, n0 + 128, e, bar);
				} else if (MB == WS_DOWN_DX ||
				           MB == WS_DOWN_DXT) {              /* W2 (k = d, n = f) */
					if constexpr (MODE == WS_DOWN_DXH) { /* round 19 */
						const uint64_t pl = ptx::l2_policy(true);
						for (int i = 0; i < 4; i++)
							ws_ld3_h(sb + i * 8192, &tm.w1, n0 + 64 * i,
							         k0, e, bar, pl);
					} else {
						for (int i = 0; i < 4; i++)
							ptx::tma_load3(sb + i * 8192, &tm.w1,
							               n0 + 64 * i, k0, e, bar);
					}
				} else { /* [W1; W3] (k, n): F % 64 == 0, a block in one */
					const CUtensorMap *m = k0 < F ? &tm.w1 : &tm.w3;
					const int kr = k0 < F ? k0 : k0 - F;
					for (int i = 0; i < 4; i++)
						ptx::tma_load3(sb + i * 8192, m, n0 + 64 * i, kr, e,
						               bar);
				}
			}
			if constexpr (MB == WS_DOWN_DXT) {
				/* the tile's h1 / h3 into the WS_NH slots after its k
				 * blocks (so issued while the consumers run the last k
				 * blocks): box b = h1 (b even) or h3 of the 64 hidden
				 * units n0 + 64 (b / 2).., 128 rows from r0 (rows past R,
				 * columns past F zero-filled; the full box bytes count);
				 * tm.w3 is the two-plane map of h1 / h3, h1 in plane a.beta */
				for (int hs = 0; hs < WS_NH; hs++, it++) {
					const int s = it % WS_ST, nb = min(3, 8 - 3 * hs);
					const uint32_t sa = sbase + s * STG, bar = fb + 8 * s;
					ptx::mbar_wait(eb + 8 * s, ((it / WS_ST) & 1) ^ 1);
					ptx::mbar_expect(bar, nb * WS_ATILE);
					for (int i = 0; i < nb; i++) {
						const int b = 3 * hs + i;
						if constexpr (MODE == WS_DOWN_DXH) /* round 19 */
							ws_ld3_h(sa + i * WS_ATILE, &tm.w3,
							         n0 + 64 * (b >> 1), r0,
							         (b & 1) ^ a.beta, bar,
							         ptx::l2_policy(false));
						else
							ptx::tma_load3(sa + i * WS_ATILE, &tm.w3,
							               n0 + 64 * (b >> 1), r0,
							               (b & 1) ^ a.beta, bar);
					}
				}
			}
			if (t < 0)
				break;
			if (G::DW && a.dyn)
				t = gridDim.x + atomicAdd(&ws_sched[SCH][0], 1);
			else
				t += CL ? ts : gridDim.x;
		}
		if constexpr (CL) {
			/* the last WS_ST slots released by both CTAs' consumers: the
			 * peer's remote arrivals on this CTA's barriers (and its reads
			 * of this CTA's multicasts) are done before this CTA exits */
			for (int i = 0; i < WS_ST; i++, it++)
				ptx::mbar_wait(eb + 8 * (it % WS_ST), ((it / WS_ST) & 1) ^ 1);
		}
		if (G::DW && a.dyn && atomicAdd(&ws_sched[SCH][1], 1) == (int)gridDim.x - 1) {
			atomicExch(&ws_sched[SCH][0], 0);
			atomicExch(&ws_sched[SCH][1], 0);
		}
		return;
	}

	/* consumers: warpgroup c = rows 64 c.. of the tile, all 256 columns
	 * (PP: the whole 64-row tile of every other tile j) */
	asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
	const int c = (warp >> 2) - 1, w4 = warp & 3, wt = tid - 128 * (c + 1);
	const int nkr = (G::kd(D, F) + WS_BK - 1) / WS_BK; /* k blocks of a row-mode tile */
	float acc[128];
	int it = 0, j = PP ? c : 0;
	/* round 14 (DEF): the previous tile's kept outputs, pend: not yet all stored */
	uint32_t P[DEF ? 64 : 1];
	struct ws_pend pd = {0, 0, 0, NULL};
	bool pend = false;
	for (int t = CL ? tb + j * ts : blockIdx.x + j * gridDim.x;;
	     j += PP ? 2 : 1, t = CL ? tb + j * ts : blockIdx.x + j * gridDim.x) {
		if (G::DW) { /* the tile of the next stage's block */
			ptx::mbar_wait(fb + 8 * (it % WS_ST), (it / WS_ST) & 1);
			t = *(volatile int *)&tile_of[it % WS_ST];
			if (t < 0)
				break;
		} else if (t >= ntiles) {
			break;
		}
		int e, r0, r1, m0, n0, nk, sp, nsp;
		ws_tile<MODE>(a, *L, t, nx, my, BMR, &e, &r0, &r1, &m0, &n0, &nk, &sp, &nsp);
		if constexpr (CL) /* this CTA's half of the cluster's tile */
			r0 += 64 * (int)crank;
		if (PP) {
			/* the ring's blocks of tile j (the tiles before it, either
			 * consumer's). Its main loop starts only once the other
			 * consumer has waited for all of tile j - 1's blocks: a full
			 * barrier's parity names a phase only within one lap of the
			 * ring, so tile j's first blocks must not be waited for while
			 * the stage's previous load (tile j - 1's, or earlier) is not
			 * complete (that is also the ping-pong order of the MMAs) */
			it = j * nkr;
			if (j > 0)
				while (*(volatile int *)&pp_done[1 - c] < j - 1)
					;
		}
		struct ws_cur cur = {0, 0, 0, 0, 0}; /* round 24 (SEG): block kb's rows */
		if constexpr (SEG)
			ws_cur_seg(a, e, cur);
		for (int kb = 0; kb < nk; kb++, it++) {
			const int s = it % WS_ST;
			const uint32_t sa = sbase + s * STG;
			ptx::mbar_wait(fb + 8 * s, (it / WS_ST) & 1);
			if (G::DW) {
				/* an expert's partial last k block (round 24: a segment's):
				 * the rows past its end (the next expert's; past R the TMA
				 * zero-fills) zeroed in this warpgroup's A block, so they
				 * add 0 (predicated stores; the fence and barrier only in
				 * that block) */
				int v = r1 - r0 - kb * WS_BK;
				if constexpr (SEG) {
					v = cur.n - cur.j * WS_BK;
					ws_cur_next(a, e, cur);
				}
				if (v < WS_BK) {
#pragma unroll
					for (int j = 0; j < 4; j++) {
						const int i = wt + 128 * j;
						asm volatile(
						        "{\n.reg .pred p;\nsetp.ge.s32 p, %1, %2;\n"
						        "@p st.shared.v4.u32 [%0], {%3, %3, %3, "
						        "%3};\n}\n" ::"r"(sa + c * 8192 + i * 16),
						        "r"(i >> 3), "r"(v), "r"(0)
						        : "memory");
					}
					ptx::fence_proxy_async();
					asm volatile("bar.sync %0, 128;\n" ::"r"(1 + c) : "memory");
				}
			}
			const uint32_t la = ptx::dlo(sa + (PP ? 0 : c * 8192)),
			               lb = ptx::dlo(sa + ATL);
			ptx::fence();
#pragma unroll
			for (int kk = 0; kk < WS_BK / 16; kk++) {
				/* K-major: 16 k a step = 32 bytes along the row; (k, m) /
				 * (k, n): 16 k rows = 2048 bytes */
				const uint64_t da = ptx::dsc(la, G::TA ? kk * 2048 : kk * 32);
				const uint64_t db = G::TB ? ws_desc_n(sa + ATL + kk * 2048, 8192)
				                          : ptx::dsc(lb, kk * 32);
				ws_wgmma256<G::TA ? 1 : 0, G::TB ? 1 : 0>(acc, da, db,
				                                          kb > 0 || kk > 0);
			}
			ptx::commit();
			if constexpr (DEF &&
			              !REL) { /* the previous tile's chunk kb, under the MMAs */
				if (pend) {
#pragma unroll
					for (int i = 0; i < WS_NCH; i++)
						if (i == kb)
							ws_def_chunk<MB, REL>(a, P, pd, lane & 3,
							                      i);
				}
			}
			ptx::wait<1>();
			if (kb > 0) { /* block it - 1's products are done: its stage is free */
				__syncwarp();
				if (lane == 0)
					ws_release<CL>(eb + 8 * ((it - 1) % WS_ST), crank ^ 1u,
					               a.kch);
			}
			if constexpr (REL) { /* wsb6r: chunk kb once block kb - 1's stage is free */
				if (pend) {
#pragma unroll
					for (int i = 0; i < WS_NCH; i++)
						if (i == kb)
							ws_def_chunk<MB, REL>(a, P, pd, lane & 3,
							                      i);
				}
			}
		}
		if (G::DW && nk == 0) /* the tile's one stage, without loads */
			it++;
		if (PP && wt == 0) /* each thread waited for every block of tile j */
			*(volatile int *)&pp_done[c] = j;
		if constexpr (DEF) { /* chunks the k blocks did not reach */
			if (pend) {
#pragma unroll
				for (int i = 0; i < WS_NCH; i++)
					if (i >= nk)
						ws_def_chunk<MB, REL>(a, P, pd, lane & 3, i);
			}
		}
		/* the epilogue's first row of inputs in flight under the last wgmma
		 * (DOWN_DX: h1 / h3; an unsplit added dW: its old values) */
		const int rr = (PP ? 0 : c * 64) + w4 * 16 + (lane >> 2), q = lane & 3;
		const bool dwadd = G::DW && nsp == 1 && a.beta && nk > 0;
		uint4 xin[MB == WS_DOWN_DX ? 8 : 1][2];
		float4 win[G::DW ? 8 : 1][2];
		if constexpr (MB == WS_DOWN_DX)
			ws_dx_load(a, r0 + rr, r1, n0, q, 0, xin);
		if constexpr (G::DW)
			if (dwadd && !a.red)
				ws_dw_load<MB>(a, e, m0 + rr, n0, q, 0, win);
		ptx::wait<0>();
		ws_reg_fence(acc);
		__syncwarp();
		if (lane == 0)
			ws_release<CL>(eb + 8 * ((it - 1) % WS_ST), crank ^ 1u, a.kch);

		if constexpr (DEF) {
			ws_def_keep<MB>(a, acc, P, pd, r0 + rr, r1, n0, q);
			pend = true;
		} else if constexpr (MODE == WS_UPF || ws_stsm(MODE)) { /* round 15 */
			ws_epi15<MODE != WS_UPSX, ws_stsm(MODE)>(
			        a, acc, r0 + rr, r1, n0, q, lane,
			        sbase + WS_ST * STG + (uint32_t)(warp - 4) * WS_STG_WARP);
		} else if constexpr (MB == WS_UP) { /* WS_UP, round 15's WS_UPZ */
			ws_epi<MODE == WS_UPZ>(a, acc, r0 + rr, r1, n0, q);
		} else if constexpr (MB == WS_DOWN_DXT) {
			/* it is the tile's first h1 / h3 slot */
			ws_dxt_epi<WS_ST, MODE == WS_DOWN_DXH>(a, acc, sbase, fb, eb, it, rr, r0,
			                                       r1, n0, q, lane);
			it += WS_NH;
		} else if constexpr (MB == WS_DOWN_DX) {
			ws_dx_store(a, acc, r0 + rr, r1, n0, q, 0, xin);
			ws_dx_load(a, r0 + rr, r1, n0, q, 1, xin);
			ws_dx_store(a, acc, r0 + rr, r1, n0, q, 1, xin);
		} else if constexpr (MODE == WS_DOWNB || MODE == WS_UP_DXB) { /* round 16 */
			ws_epi_b16(a, acc, r0 + rr, r1, n0, q);
		} else if constexpr (!G::DW) {
			ws_epi_f32(a, acc, r0 + rr, r1, n0, q);
		} else if (SEG) {
			/* round 24: the window's tile (never split, never added in
			 * L2): stored or added, and with a.sq the sum of squares of
			 * what it leaves in memory (an expert without rows in every
			 * segment leaves the old values when adding) */
			float ss = 0;
			if (nk == 0 && a.beta) {
				for (int h = 0; a.sq && h < 2; h++) {
					ws_dw_load<MB>(a, e, m0 + rr, n0, q, h, win);
#pragma unroll
					for (int g = 0; g < 8; g++)
						ss += win[g][0].x * win[g][0].x +
						      win[g][0].y * win[g][0].y +
						      win[g][0].z * win[g][0].z +
						      win[g][0].w * win[g][0].w +
						      (win[g][1].x * win[g][1].x +
						       win[g][1].y * win[g][1].y +
						       win[g][1].z * win[g][1].z +
						       win[g][1].w * win[g][1].w);
				}
			} else {
				ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, 0, nk == 0, dwadd, win,
				                false, a.sq ? &ss : nullptr);
				if (dwadd)
					ws_dw_load<MB>(a, e, m0 + rr, n0, q, 1, win);
				ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, 1, nk == 0, dwadd, win,
				                false, a.sq ? &ss : nullptr);
			}
			if (a.sq)
				ws_sq_tile(a.sq + t, ss, tid - 128);
		} else if (nsp == 1) {
			if (nk == 0 && a.beta) /* an expert without rows adds nothing */
				continue;
			if (dwadd && a.red) { /* round 23: added in L2, no old values read */
				ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, 0, false, false, win,
				                true);
				ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, 1, false, false, win,
				                true);
				continue;
			}
			ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, 0, nk == 0, dwadd, win);
			if (dwadd)
				ws_dw_load<MB>(a, e, m0 + rr, n0, q, 1, win);
			ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, 1, nk == 0, dwadd, win);
		} else { /* split sp of nsp: added after split sp - 1's */
			int *flag =
			        a.flags + ((size_t)(e * my + m0 / WS_BM) * nx + n0 / G::BN) * 2 + c;
			if (wt == 0)
				ptx::flag_wait(flag, sp);
			asm volatile("bar.sync %0, 128;\n" ::"r"(1 + c) : "memory");
			const bool add = a.beta || sp > 0;
			for (int h = 0; h < 2; h++) {
				if (add)
					ws_dw_load<MB>(a, e, m0 + rr, n0, q, h, win);
				ws_dw_store<MB>(a, acc, e, m0 + rr, n0, q, h, false, add, win);
			}
			__threadfence();
			asm volatile("bar.sync %0, 128;\n" ::"r"(1 + c) : "memory");
			if (wt == 0) /* the last split leaves the flag 0 for the next launch */
				ptx::flag_set(flag, sp + 1 < nsp ? sp + 1 : 0);
		}
	}
	if constexpr (DEF) { /* the CTA's last tile */
		if (pend) {
#pragma unroll
			for (int i = 0; i < WS_NCH; i++)
				ws_def_chunk<MB, REL>(a, P, pd, lane & 3, i);
		}
	}
}

/* ---- host side ------------------------------------------------------------- */

/* a bf16 tensor map, dims innermost first, boxes of 64 x box_rows (x 1) */
static int ws_map(CUtensorMap *m, const void *p, int nd, const cuuint64_t *dim, int box_rows)
{
	return swerve_tma_map_bf16(m, p, nd, dim, box_rows, "gpu moe wsb");
}

/* round 13 (DOWN_DXT): h1 and h3 (R, F) as one 3-D map {F, R, 2} from the
 * lower address, the planes |h3 - h1| bytes apart (a multiple of 16: both
 * are 16-byte aligned), boxes 64 x 128 x 1; *plane: h1's plane (0 or 1). A
 * distance of 2^40 bytes or more (the map's stride limit) is refused
 * (SWERVE_ELIMIT: the caller falls back to round 11's register loads) */
static int ws_map_planes(CUtensorMap *m, const uint16_t *h1, const uint16_t *h3, int F, int R,
                         int *plane)
{
	const swerve_tma_encode_fn encode = swerve_tma_encoder("gpu moe wsb5");
	if (!encode)
		return SWERVE_ERROR;
	const uint16_t *lo = h1 < h3 ? h1 : h3, *hi = h1 < h3 ? h3 : h1;
	const cuuint64_t dist = (cuuint64_t)((const char *)hi - (const char *)lo);
	if (dist == 0)
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb5: h1 and h3 are one buffer");
	if (dist >= ((cuuint64_t)1 << 40))
		return swerve_error_set(SWERVE_ELIMIT,
		                        "gpu moe wsb5: h1 and h3 %llu bytes apart (limit 2^40)",
		                        (unsigned long long)dist);
	*plane = h1 < h3 ? 0 : 1;
	const cuuint64_t dim[3] = {(cuuint64_t)F, (cuuint64_t)R, 2},
	                 stride[2] = {(cuuint64_t)F * 2, dist};
	const cuuint32_t box[3] = {64, WS_BM, 1}, es[3] = {1, 1, 1};
	CUresult r = encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)lo, dim, stride, box,
	                    es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
	                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS)
		return swerve_error_set(SWERVE_ERROR,
		                        "gpu moe wsb5: tensor map of h1 / h3 (planes %llu bytes "
		                        "apart): CUresult %d",
		                        (unsigned long long)dist, (int)r);
	return 0;
}

static int ws_aligned(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

/* the dynamic shared memory of k_ws<MODE, st, pp>: the ring (+ round 15's
 * staging) */
static constexpr int ws_smem(int mode, int st, bool pp)
{
	return WS_SMEMX(st, pp) + (ws_stsm(mode) ? WS_STG : 0);
}

/* the CTAs of a full grid of k_ws<MODE, ST> (SMs x CTAs an SM; the shared
 * memory attribute set once), or a negative code */

template <int MODE, int ST, bool PP> static int ws_ctas(void)
{
	static int ctas;
	if (!ctas) {
		int dev, sms, occ;
		CK(cudaFuncSetAttribute(k_ws<MODE, ST, PP>,
		                        cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        ws_smem(MODE, ST, PP)));
		CK(cudaGetDevice(&dev));
		CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
		CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		        &occ, k_ws<MODE, ST, PP>, WS_THREADS, ws_smem(MODE, ST, PP)));
		if (occ < 1)
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu moe wsb: no CTA fits an SM (%d bytes)",
			                        ws_smem(MODE, ST, PP));
		ctas = sms * occ;
	}
	return ctas;
}

/* round 16 (WS_UP_DXC): W (E, F, D) bf16 as (k = f, n = d) 64-column atoms:
 * a 3-D map {64, E F, D / 64} (strides D x 2 and 128 bytes; D % 64 == 0),
 * boxes 64 x 64 x 2: two N-major atoms (the wgmma's 8 KB apart) in one box,
 * at (0, e F + k, n / 64) */
static int ws_map_atoms(CUtensorMap *m, const uint16_t *w, int D, int F, int E)
{
	const swerve_tma_encode_fn encode = swerve_tma_encoder("gpu moe wsb7");
	if (!encode)
		return SWERVE_ERROR;
	const cuuint64_t dim[3] = {64, (cuuint64_t)E * F, (cuuint64_t)D / 64},
	                 stride[2] = {(cuuint64_t)D * 2, 128};
	const cuuint32_t box[3] = {64, 64, 2}, es[3] = {1, 1, 1};
	CUresult r = encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)w, dim, stride, box, es,
	                    CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
	                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS)
		return swerve_error_set(SWERVE_ERROR,
		                        "gpu moe wsb7: tensor map of the weights' 64-column atoms "
		                        "(D %d): CUresult %d",
		                        D, (int)r);
	return 0;
}

/* round 16: the clusters of 2 CTAs of k_ws<MODE, ST, true> (a CL mode)
 * that can be resident at once (the shared memory attribute set once), or a
 * negative code; ws_cl_launch: a grid of grid CTAs (even) in such clusters */
template <int MODE, int ST> static cudaLaunchConfig_t ws_cl_cfg(cudaLaunchAttribute *at, int grid)
{
	cudaLaunchConfig_t cfg = {};
	at->id = cudaLaunchAttributeClusterDimension;
	at->val.clusterDim.x = 2;
	at->val.clusterDim.y = 1;
	at->val.clusterDim.z = 1;
	cfg.gridDim = dim3(grid);
	cfg.blockDim = dim3(WS_THREADS);
	cfg.dynamicSmemBytes = ws_smem(MODE, ST, true);
	cfg.attrs = at;
	cfg.numAttrs = 1;
	return cfg;
}
template <int MODE, int ST> static int ws_ncl(void)
{
	static int ncl;
	if (!ncl) {
		CK(cudaFuncSetAttribute(k_ws<MODE, ST, true>,
		                        cudaFuncAttributeMaxDynamicSharedMemorySize,
		                        ws_smem(MODE, ST, true)));
		cudaLaunchAttribute at;
		const cudaLaunchConfig_t cfg = ws_cl_cfg<MODE, ST>(&at, 2);
		int n = 0;
		CK(cudaOccupancyMaxActiveClusters(&n, k_ws<MODE, ST, true>, &cfg));
		if (n < 1)
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu moe wsb7: no cluster of 2 CTAs fits (%d bytes "
			                        "each)",
			                        ws_smem(MODE, ST, true));
		ncl = n;
	}
	return ncl;
}
template <int MODE, int ST>
static int ws_cl_launch(int grid, const struct ws_args &a, const struct ws_maps &tm,
                        cudaStream_t cs)
{
	cudaLaunchAttribute at;
	cudaLaunchConfig_t cfg = ws_cl_cfg<MODE, ST>(&at, grid);
	cfg.stream = cs;
	CK(cudaLaunchKernelEx(&cfg, k_ws<MODE, ST, true>, a, tm));
	return 0;
}

/* POLICY_GPU_MOE_WSB_ST (measurements): the stages of the ring, 3 or 4 (the
 * default); round 12's ping-pong kernel (40 KB stages): 4 or 5 (the default) */
static const char *const ws_st_names[] = {"3", "4", "5"};

/* one product: the checks, the tensor maps, a grid of min(tiles, SMs, cap)
 * persistent CTAs */
template <int MODE, bool PP = false>
static int ws_launch(const struct policy_moe_dims *d, struct ws_args *a, const uint16_t *A,
                     const uint16_t *b0, const uint16_t *b1, int cap, void *stream)
{
	const int R = d->T * d->K;
	constexpr int MB = ws_base(MODE);
	if (MODE == WS_UP_DXC && d->D % 64)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe wsb7: up dX needs D (%d) a multiple "
		                        "of 64",
		                        d->D);
	if (d->D <= 0 || d->F <= 0 || d->D % 8 || d->F % 8 || (MB == WS_UP_DX && d->F % 64))
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe wsb: D (%d) and F (%d) must be multiples of 8 "
		                        "(F of 64 for up dX)",
		                        d->D, d->F);
	const bool outs_ok = MB == WS_UP
	                             ? ws_aligned(a->h1) && ws_aligned(a->h3) && ws_aligned(a->hh)
	                     : MB == WS_DOWN_DX || MB == WS_DOWN_DXT
	                             ? ws_aligned(a->x1) && ws_aligned(a->x3) && ws_aligned(a->dh13)
	                     : MB == WS_DOWN_DW ? ws_aligned(a->dw1)
	                     : MB == WS_UP_DW   ? ws_aligned(a->dw1) && ws_aligned(a->dw3)
	                                        : ws_aligned(a->out);
	if (!ws_aligned(A) || !ws_aligned(b0) || (b1 && !ws_aligned(b1)) || !outs_ok)
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb: operands not 16-byte aligned");
	static const char *const epis[] = {"st16", "st4", "nostore", "none"};
	const int epi = policy_env_choice("POLICY_GPU_MOE_WSB_EPI", epis, 4, WS_EPI_ST16);
	if (epi < 0)
		return epi;
	/* round 19 (WS_DOWN_DXP, "wsb8"): its h1 / h3 prefetch into L2 */
	static const char *const pfs[] = {"none", "tile", "next"};
	const int pf = MODE == WS_DOWN_DXP || MODE == WS_DOWN_DXQ
	                       ? policy_env_choice("POLICY_GPU_MOE_WSB8_PF", pfs, 3, 1)
	                       : 0;
	if (pf < 0)
		return pf;
	const int st = policy_env_choice("POLICY_GPU_MOE_WSB_ST", ws_st_names, 3, PP ? 2 : 1) + 3;
	if (st < 3)
		return st - 3;
	if (ws_cl(MODE) ? false : PP ? st < 4 : st > 4)
		return swerve_error_set(SWERVE_EINVAL,
		                        "POLICY_GPU_MOE_WSB_ST=%d: this kernel takes %s stages", st,
		                        PP ? "4 or 5" : "3 or 4");
	/* round 11, the weight gradients (measurements): dyn (the default) hands
	 * the tiles out by a counter, largest experts first; static: a stride */
	static const char *const scheds[] = {"static", "dyn"};
	const int dyn = policy_env_choice("POLICY_GPU_MOE_WSB_SCHED", scheds, 2, 1);
	if (dyn < 0)
		return dyn;
	/* round 14 (measurements, opt-in): POLICY_GPU_MOE_DW_CTAS=n, at most n
	 * persistent CTAs for the weight gradients (wsb3's DOWN_DW / UP_DW), so
	 * that on the side stream (POLICY_GPU_STREAMS=2) they leave SMs to the
	 * main stream's kernels; unset or 0: a full grid */
	if (MB == WS_DOWN_DW || MB == WS_UP_DW) {
		int v;
		int rc = policy_env_count("POLICY_GPU_MOE_DW_CTAS", "CTAs", 1000000, &v);
		if (rc)
			return rc;
		if (v > 0 && (cap <= 0 || v < cap))
			cap = v;
	}
	if (a->np < 1)
		a->np = 1;
	/* round 24 (the window's modes): the segments of policy_moe_dims */
	a->nseg = 1;
	a->rstride = 0;
	a->ostride = 0;
	if (ws_seg(MODE)) {
		if (d->nseg < 1 || d->rstride < R || d->ostride < d->E + 1)
			return swerve_error_set(
			        SWERVE_EINVAL,
			        "gpu moe wsb: %d segments %d rows / %d offsets apart "
			        "(at least %d / %d)",
			        d->nseg, d->rstride, d->ostride, R, d->E + 1);
		a->nseg = d->nseg;
		a->rstride = d->rstride;
		a->ostride = d->ostride;
		a->sq = d->sq;
	} else if (d->nseg > 1) {
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe wsb: %d segments: only the weight gradients sum "
		                        "segments",
		                        d->nseg);
	}
	if ((MB == WS_DOWN_DW || MB == WS_UP_DW) && a->np * d->E > WS_EMAX)
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb3: %d experts (at most %d)",
		                        a->np * d->E, WS_EMAX);
	/* POLICY_GPU_MOE_WSB_KCH (measurements): the weight gradients' split,
	 * at most that many k blocks a tile; auto: the kernel picks; unset or
	 * 0: none */
	int kch = 0;
	const char *ks = getenv("POLICY_GPU_MOE_WSB_KCH");
	if (ks && !strcmp(ks, "auto")) {
		kch = -1;
	} else {
		int rc = policy_env_count("POLICY_GPU_MOE_WSB_KCH", "k blocks", 1000000, &kch);
		if (rc)
			return rc;
	}
	/* round 23: POLICY_GPU_MOE_DW_ADD, how an unsplit added dW tile reaches
	 * memory: load (the old values loaded, added, stored) or red
	 * (red.global.add.v4.f32: the add done in L2, no wait for the old
	 * values); the same fp32 sum either way */
	static const char *const dwadds[] = {"load", "red"};
	const int red = MB == WS_DOWN_DW || MB == WS_UP_DW
	                        ? policy_env_choice("POLICY_GPU_MOE_DW_ADD", dwadds, 2, 0)
	                        : 0;
	if (red < 0)
		return red;
	a->red = ws_seg(MODE) ? 0 : red; /* round 24: the window's tiles load and add */
	if (d->E < 1 || R < 1)
		return 0;
	int ctas;
	if constexpr (ws_cl(MODE)) { /* round 16: 2 CTAs a cluster, 3 to 5 stages */
		ctas = st == 5   ? ws_ncl<MODE, 5>()
		       : st == 4 ? ws_ncl<MODE, 4>()
		                 : ws_ncl<MODE, 3>();
		ctas = ctas < 0 ? ctas : 2 * ctas;
	} else if constexpr (PP)
		ctas = st == 5 ? ws_ctas<MODE, 5, true>() : ws_ctas<MODE, 4, true>();
	else
		ctas = st == 3 ? ws_ctas<MODE, 3, false>() : ws_ctas<MODE, 4, false>();
	if (ctas < 0)
		return ctas;
	struct ws_maps tm;
	memset(&tm, 0, sizeof(tm));
	const cuuint64_t D = (cuuint64_t)d->D, F = (cuuint64_t)d->F, E = (cuuint64_t)d->E;
	/* A's row width: K of the row modes; M of the weight gradients */
	const cuuint64_t kd =
	        MB == WS_UP || MB == WS_DOWN_DX || MB == WS_DOWN_DW || MB == WS_DOWN_DXT ? D
	        : MB == WS_DOWN                                                          ? F
	                                                                                 : 2 * F;
	/* the rows A (and B) span: round 24's segments, or R */
	const cuuint64_t rows = ws_seg(MODE) ? (cuuint64_t)a->nseg * a->rstride : (cuuint64_t)R;
	const cuuint64_t adim[2] = {kd, rows}, wfd[3] = {D, F, E}, wdf[3] = {F, D, E};
	int rc;
	if (MB == WS_DOWN_DW || MB == WS_UP_DW) {
		/* A (dyp / dh13 rows) and B (hh / xg rows): 64 x 64 boxes */
		const cuuint64_t bdim[2] = {MB == WS_DOWN_DW ? F : D, rows};
		rc = ws_map(&tm.a, A, 2, adim, 64);
		if (!rc)
			rc = ws_map(&tm.w1, b0, 2, bdim, 64);
		if (!rc && a->np == 2) /* round 23: the second layer's */
			rc = ws_map(&tm.a2, a->pa2, 2, adim, 64);
		if (!rc && a->np == 2)
			rc = ws_map(&tm.b2, a->pb2, 2, bdim, 64);
	} else {
		rc = ws_map(&tm.a, A, 2, adim, PP ? 64 : WS_BM);
		/* UP: W1 / W3 rows, 128 a box; DOWN: W2 rows; UP_DX: (k, n) 64 x 64;
		 * DOWN_DX: W2 (k = d, n = f) 64 x 64 */
		if (!rc)
			rc = ws_map(
			        &tm.w1, b0, 3,
			        MB == WS_DOWN || MB == WS_DOWN_DX || MB == WS_DOWN_DXT ? wdf : wfd,
			        MB == WS_UP_DX || MB == WS_DOWN_DX || MB == WS_DOWN_DXT ? 64 : 128);
		/* round 13: DOWN_DXT's h1 / h3 planes (h1's plane in a->beta) */
		if (!rc && (MB == WS_DOWN_DXT || MODE == WS_DOWN_DXQ))
			rc = ws_map_planes(&tm.w3, a->x1, a->x3, d->F, R, &a->beta);
		if (!rc && (MB == WS_UP || MB == WS_UP_DX))
			rc = ws_map(&tm.w3, b1, 3, wfd, MB == WS_UP_DX ? 64 : 128);
		/* round 16: WS_UP_DXC's B halves as one box (the atoms maps) */
		if (!rc && MODE == WS_UP_DXC)
			rc = ws_map_atoms(&tm.w1, b0, d->D, d->F, d->E);
		if (!rc && MODE == WS_UP_DXC)
			rc = ws_map_atoms(&tm.w3, b1, d->D, d->F, d->E);
	}
	if (rc)
		return rc;
	a->offs = d->offs;
	a->perm = d->perm;
	a->E = d->E;
	a->D = d->D;
	a->F = d->F;
	a->epi = epi;
	a->dyn = dyn;
	a->kch = ws_seg(MODE) ? 0 : kch; /* round 24: the window's tiles are never split */
	if (ws_cl(MODE)) { /* round 16: a.kch is the clusters' release form (see ws_release) */
		static const char *const arrives[] = {"cluster", "cta"};
		const int ar = policy_env_choice("POLICY_GPU_MOE_WSB7_ARRIVE", arrives, 2, 1);
		if (ar < 0)
			return ar;
		a->kch = ar;
	}
	if (MODE == WS_DOWN_DXP || MODE == WS_DOWN_DXQ) /* round 19: the prefetch (WS_DOWN_DXP) */
		a->kch = pf;
	typedef ws_geo<MODE> G;
	const int nx = (G::n(d->D, d->F) + G::BN - 1) / G::BN;
	long tiles = G::DW ? (long)a->np * d->E * nx * ((G::m(d->D, d->F) + WS_BM - 1) / WS_BM)
	                   : (long)((R + (PP ? 64 : WS_BM) - 1) / (PP ? 64 : WS_BM) + d->E) * nx;
	if (ws_cl(MODE)) /* round 16: the clusters' 128-row tiles */
		tiles = (long)((R + WS_BM - 1) / WS_BM + d->E) * nx;
	if (G::DW) { /* the split order flags, 2 a dW tile (zero between launches) */
		static int *flags;
		static size_t nflags;
		const size_t n =
		        (size_t)2 * a->np * d->E * nx * ((G::m(d->D, d->F) + WS_BM - 1) / WS_BM);
		if (n > nflags) {
			if (flags)
				cudaFree(flags);
			flags = NULL;
			nflags = 0;
			CK(cudaMalloc(&flags, n * sizeof(int)));
			policy_gpu_alloc_gen++; /* gpu_util.h */
			CK(cudaMemset(flags, 0, n * sizeof(int)));
			nflags = n;
		}
		a->flags = flags;
	}
	int grid = cap > 0 && cap < ctas ? cap : ctas;
	if (ws_cl(MODE)) /* two tiles at a time a cluster of two CTAs */
		tiles = 2 * ((tiles + 1) / 2);
	else if (PP) /* two tiles at a time a CTA */
		tiles = (tiles + 1) / 2;
	if (tiles < grid)
		grid = (int)tiles;
	const cudaStream_t cs = (cudaStream_t)stream;
	if constexpr (ws_cl(MODE)) { /* whole clusters (POLICY_GPU_MOE_CTAS=3: one) */
		grid = grid < 2 ? 2 : grid & ~1;
		rc = st == 5   ? ws_cl_launch<MODE, 5>(grid, *a, tm, cs)
		     : st == 4 ? ws_cl_launch<MODE, 4>(grid, *a, tm, cs)
		               : ws_cl_launch<MODE, 3>(grid, *a, tm, cs);
		if (rc)
			return rc;
	} else if constexpr (PP) {
		if (st == 5)
			CK(pdl::launch(k_ws<MODE, 5, true>, dim3(grid), dim3(WS_THREADS),
			               ws_smem(MODE, 5, true), cs, *a, tm));
		else
			CK(pdl::launch(k_ws<MODE, 4, true>, dim3(grid), dim3(WS_THREADS),
			               ws_smem(MODE, 4, true), cs, *a, tm));
	} else {
		if (st == 3)
			CK(pdl::launch(k_ws<MODE, 3, false>, dim3(grid), dim3(WS_THREADS),
			               ws_smem(MODE, 3, false), cs, *a, tm));
		else
			CK(pdl::launch(k_ws<MODE, 4, false>, dim3(grid), dim3(WS_THREADS),
			               ws_smem(MODE, 4, false), cs, *a, tm));
	}
	LAUNCHED();
	return 0;
}

/* the launchers of the row products: UP from xg (name: the variant, for
 * the message) and the fp32 ones (DOWN: b1 NULL; UP_DX) */
template <int MODE, bool PP = false>
static int ws_up_as(const char *name, const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3,
                    uint16_t *hh, const uint16_t *xg, const uint16_t *w1, const uint16_t *w3,
                    int cap, void *stream)
{
	struct ws_args a = {};
	if (!d->gathered)
		return swerve_error_set(SWERVE_EINVAL, "gpu moe %s: up needs the gathered xg",
		                        name);
	a.h1 = h1;
	a.h3 = h3;
	a.hh = hh;
	return ws_launch<MODE, PP>(d, &a, xg, w1, w3, cap, stream);
}

template <int MODE, bool PP = false>
static int ws_f32_as(const struct policy_moe_dims *d, float *out, const uint16_t *A,
                     const uint16_t *b0, const uint16_t *b1, int cap, void *stream)
{
	struct ws_args a = {};
	a.out = out;
	return ws_launch<MODE, PP>(d, &a, A, b0, b1, cap, stream);
}

template <int MODE, bool PP = false>
static int ws_down_dx_as(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                         const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                         void *stream)
{
	struct ws_args a = {};
	a.x1 = h1;
	a.x3 = h3;
	a.dh13 = dh13;
	return ws_launch<MODE, PP>(d, &a, dyp, w2, NULL, cap, stream);
}

/* round 15: POLICY_GPU_MOE_WSB_SILU picks UP's epilogue: exact (unset: wsb2's
 * ws_epi), fast (WS_UPS), stsm (WS_UPSX), fastshfl (WS_UPF), ftz (WS_UPZ);
 * see ws_epi15 */
int policy_moe_ws_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3, uint16_t *hh,
                     const uint16_t *xg, const uint16_t *w1, const uint16_t *w3, int cap,
                     void *stream)
{
	static const char *const silus[] = {"exact", "fast", "stsm", "fastshfl", "ftz"};
	const int si = policy_env_choice("POLICY_GPU_MOE_WSB_SILU", silus, 5, 0);
	if (si < 0)
		return si;
	if (si == 1)
		return ws_up_as<WS_UPS>("wsb", d, h1, h3, hh, xg, w1, w3, cap, stream);
	if (si == 2)
		return ws_up_as<WS_UPSX>("wsb", d, h1, h3, hh, xg, w1, w3, cap, stream);
	if (si == 3)
		return ws_up_as<WS_UPF>("wsb", d, h1, h3, hh, xg, w1, w3, cap, stream);
	if (si == 4)
		return ws_up_as<WS_UPZ>("wsb", d, h1, h3, hh, xg, w1, w3, cap, stream);
	return ws_up_as<WS_UP>("wsb", d, h1, h3, hh, xg, w1, w3, cap, stream);
}

int policy_moe_ws_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,
                       const uint16_t *w2, int cap, void *stream)
{
	return ws_f32_as<WS_DOWN>(d, yp, hh, w2, NULL, cap, stream);
}

int policy_moe_ws_up_dx(const struct policy_moe_dims *d, float *dxp, const uint16_t *dh13,
                        const uint16_t *w1, const uint16_t *w3, int cap, void *stream)
{
	return ws_f32_as<WS_UP_DX>(d, dxp, dh13, w1, w3, cap, stream);
}

/* round 16 (POLICY_GPU_ACT16=slots): the slots in bf16 */
int policy_moe_ws_down_b16(const struct policy_moe_dims *d, uint16_t *yp, const uint16_t *hh,
                           const uint16_t *w2, int cap, void *stream)
{
	return ws_f32_as<WS_DOWNB>(d, (float *)(void *)yp, hh, w2, NULL, cap, stream);
}

int policy_moe_ws_up_dx_b16(const struct policy_moe_dims *d, uint16_t *dxp, const uint16_t *dh13,
                            const uint16_t *w1, const uint16_t *w3, int cap, void *stream)
{
	return ws_f32_as<WS_UP_DXB>(d, (float *)(void *)dxp, dh13, w1, w3, cap, stream);
}

int policy_moe_ws_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                          const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                          void *stream)
{
	return ws_down_dx_as<WS_DOWN_DX>(d, dh13, dyp, w2, h1, h3, cap, stream);
}

int policy_moe_ws_down_dw(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                          const uint16_t *hh, int beta, int cap, void *stream)
{
	struct ws_args a = {};
	a.dw1 = dw2;
	a.beta = beta != 0;
	if (d->nseg >= 1) /* round 24: a window of micro-batches */
		return ws_launch<WS_DOWN_DWS>(d, &a, dyp, hh, NULL, cap, stream);
	return ws_launch<WS_DOWN_DW>(d, &a, dyp, hh, NULL, cap, stream);
}

/* round 23: two layers' down dW in one launch (the same T, K, E, D, F; d2
 * the second's routing) */
int policy_moe_ws_down_dw_pair(const struct policy_moe_dims *d, float *dw2, const uint16_t *dyp,
                               const uint16_t *hh, const struct policy_moe_dims *d2, float *dw2b,
                               const uint16_t *dyp2, const uint16_t *hh2, int beta, int cap,
                               void *stream)
{
	struct ws_args a = {};
	if (d2->T != d->T || d2->K != d->K || d2->E != d->E || d2->D != d->D || d2->F != d->F ||
	    d2->nseg != d->nseg || d2->rstride != d->rstride || d2->ostride != d->ostride)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu moe wsb3: paired down dW of different shapes");
	if (!ws_aligned(dyp2) || !ws_aligned(hh2) || !ws_aligned(dw2b))
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb: operands not 16-byte aligned");
	a.dw1 = dw2;
	a.beta = beta != 0;
	a.np = 2;
	a.offs2 = d2->offs;
	a.dw1b = dw2b;
	a.pa2 = dyp2;
	a.pb2 = hh2;
	if (d->nseg >= 1) /* round 24: a window of micro-batches */
		return ws_launch<WS_DOWN_DWS>(d, &a, dyp, hh, NULL, cap, stream);
	return ws_launch<WS_DOWN_DW>(d, &a, dyp, hh, NULL, cap, stream);
}

int policy_moe_ws_up_dw(const struct policy_moe_dims *d, float *dw1, float *dw3,
                        const uint16_t *dh13, const uint16_t *xg, int beta, int cap, void *stream)
{
	struct ws_args a = {};
	if (!d->gathered)
		return swerve_error_set(SWERVE_EINVAL, "gpu moe wsb3: up dW needs the gathered xg");
	a.dw1 = dw1;
	a.dw3 = dw3;
	a.beta = beta != 0;
	if (d->nseg >= 1) /* round 24: a window of micro-batches */
		return ws_launch<WS_UP_DWS>(d, &a, dh13, xg, NULL, cap, stream);
	return ws_launch<WS_UP_DW>(d, &a, dh13, xg, NULL, cap, stream);
}

/* round 12 ("wsb4", opt-in): down dX with ping-pong consumers (up, down
 * and up dX: WS_ROW3 below) */
int policy_moe_ws4_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream)
{
	return ws_down_dx_as<WS_DOWN_DX, true>(d, dh13, dyp, w2, h1, h3, cap, stream);
}

/* WS_ROW3(P, NAME, U, D, X, PP) defines policy_moe_P_up / _down / _up_dx
 * on modes U, D, X (PP: the ping-pong consumers). Round 12 ("wsb4",
 * opt-in): the same products with ping-pong consumers (64 x 256 tiles, one
 * warpgroup each, 5 stages of 40 KB). Round 14 ("wsb6", opt-in): up (from
 * xg), down and up dX with the epilogue deferred under the next tile's
 * main loop (WS_UPD, WS_DOWND, WS_UP_DXD; outputs bit for bit those of
 * policy_moe_ws_up / _down / _up_dx); "wsb6r" (opt-in): the same, each
 * chunk after the previous block's release (WS_UPR, WS_DOWNR, WS_UP_DXR).
 * Round 16 ("wsb7", opt-in): the ping-pong kernel run by 2-CTA clusters
 * sharing B by TMA multicast (WS_UPC, WS_DOWNC, WS_UP_DXC; outputs those
 * of policy_moe_ws_up / _down / _up_dx: the same k order and epilogue
 * code) */
#define WS_ROW3(P, NAME, U, DN, X, PP)                                                             \
	int policy_moe_##P##_up(const struct policy_moe_dims *d, uint16_t *h1, uint16_t *h3,       \
	                        uint16_t *hh, const uint16_t *xg, const uint16_t *w1,              \
	                        const uint16_t *w3, int cap, void *stream)                         \
	{                                                                                          \
		return ws_up_as<U, PP>(NAME, d, h1, h3, hh, xg, w1, w3, cap, stream);              \
	}                                                                                          \
	int policy_moe_##P##_down(const struct policy_moe_dims *d, float *yp, const uint16_t *hh,  \
	                          const uint16_t *w2, int cap, void *stream)                       \
	{                                                                                          \
		return ws_f32_as<DN, PP>(d, yp, hh, w2, NULL, cap, stream);                        \
	}                                                                                          \
	int policy_moe_##P##_up_dx(const struct policy_moe_dims *d, float *dxp,                    \
	                           const uint16_t *dh13, const uint16_t *w1, const uint16_t *w3,   \
	                           int cap, void *stream)                                          \
	{                                                                                          \
		return ws_f32_as<X, PP>(d, dxp, dh13, w1, w3, cap, stream);                        \
	}
WS_ROW3(ws4, "wsb4", WS_UP, WS_DOWN, WS_UP_DX, true)
WS_ROW3(ws6, "wsb6", WS_UPD, WS_DOWND, WS_UP_DXD, false)
WS_ROW3(ws6r, "wsb6r", WS_UPR, WS_DOWNR, WS_UP_DXR, false)
WS_ROW3(ws7, "wsb7", WS_UPC, WS_DOWNC, WS_UP_DXC, true)

/* down dX by kernel mode M; where its TMA boxes cannot take h1 / h3
 * (SWERVE_ELIMIT: 2^40 bytes apart or more), round 11's kernel, said once */
template <int M>
static int ws_down_dx_or11(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream)
{
	int rc = ws_down_dx_as<M>(d, dh13, dyp, w2, h1, h3, cap, stream);
	if (rc == SWERVE_ELIMIT) {
		static int told;
		if (!told++)
			fprintf(stderr, "%s; down dX by round 11's kernel\n", swerve_error_last());
		rc = policy_moe_ws_down_dx(d, dh13, dyp, w2, h1, h3, cap, stream);
	}
	return rc;
}

/* round 13 ("wsb5", opt-in): down dX with h1 / h3 by TMA into the ring
 * (WS_DOWN_DXT); h1 and h3 2^40 bytes apart or more: round 11's kernel */
int policy_moe_ws5_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream)
{
	return ws_down_dx_or11<WS_DOWN_DXT>(d, dh13, dyp, w2, h1, h3, cap, stream);
}

/* round 19 ("wsb8", opt-in): down dX as wsb5 with the tile's h1 / h3 boxes
 * prefetched into L2 before its main loop (WS_DOWN_DXP; the prefetch by
 * POLICY_GPU_MOE_WSB8_PF: tile (default), next, none); h1 and h3 2^40 bytes
 * apart or more: round 11's kernel */
int policy_moe_ws8_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                           const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                           void *stream)
{
	return ws_down_dx_or11<WS_DOWN_DXP>(d, dh13, dyp, w2, h1, h3, cap, stream);
}

/* round 19 ("wsb8r", opt-in): round 11's down dX (h1 / h3 into registers)
 * with the tile's h1 / h3 prefetched into L2 (WS_DOWN_DXQ); h1 and h3 2^40
 * bytes apart or more: without the prefetch */
int policy_moe_ws8r_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                            const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                            void *stream)
{
	return ws_down_dx_or11<WS_DOWN_DXQ>(d, dh13, dyp, w2, h1, h3, cap, stream);
}

/* round 19 ("wsb8k", opt-in): wsb5's down dX under L2 eviction priorities
 * (WS_DOWN_DXH); h1 and h3 2^40 bytes apart or more: round 11's kernel */
int policy_moe_ws8k_down_dx(const struct policy_moe_dims *d, uint16_t *dh13, const uint16_t *dyp,
                            const uint16_t *w2, const uint16_t *h1, const uint16_t *h3, int cap,
                            void *stream)
{
	return ws_down_dx_or11<WS_DOWN_DXH>(d, dh13, dyp, w2, h1, h3, cap, stream);
}
