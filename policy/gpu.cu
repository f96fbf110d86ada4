/* gpu.cu - the policy model on one GPU: the same function as the CPU
 * reference (ref.c), forward and backward, with cuBLAS GEMMs and
 * kernels/lightning for the lightning-attention core.
 *
 * Master weights, moments and gradients are fp32; the residual stream is
 * fp32 in POLICY_GPU_FP32 and, since round 16, bf16 in POLICY_GPU_BF16
 * where POLICY_GPU_ACT16=resid (the default) takes (every add and norm in
 * fp32 registers, the sum rounded once; POLICY_GPU_ACT16=off keeps it fp32).
 * POLICY_GPU_BF16 stores the GEMM operands in bf16 (the norms, gates, SiLU
 * and SwiGLU kernels write bf16 directly; a bf16 copy of the weights is
 * refreshed by the AdamW kernel itself) and runs the GEMMs on bf16 tensor
 * cores with fp32 accumulation (CUBLAS_COMPUTE_32F); POLICY_GPU_ACT=fp32
 * keeps the older fp32 storage with CUBLAS_COMPUTE_32F_FAST_16BF.
 * POLICY_GPU_FP32 is fp32 throughout (TF32 never). The LM head, router and
 * loss are fp32 always (M1: an fp32 head fixes the train/inference
 * probability mismatch; under ACT16=resid the router's fp32 math reads the
 * experts' bf16 input). In bf16 mode the head is kernels/policy_loss's
 * fused head: POLICY_GPU_HEAD=fp32fwd (the default) keeps its forward
 * (logits, log-probs, entropy, ratios, loss) fp32-accurate and runs its
 * backward's products at bf16 with fp32 accumulation like every other
 * layer (5 bf16 product passes); POLICY_GPU_HEAD=fp32 makes the gradients
 * fp32-accurate too (8 passes). The lightning kernel takes bf16 q/k/v
 * (kernels/lightning.h).
 *
 * The MoE routes on the device: top-k, a stable counting sort of the
 * assignments by expert (one block) and the balance loss. In bf16 mode the
 * experts run as grouped GEMMs (policy/gpu_moe.cu: one launch per
 * projection over all experts, the segment offsets read on the device, the
 * gather, SwiGLU and its backward fused; no host round trip). The rest of
 * this paragraph is the cuBLASLt path (POLICY_GPU_MOE=lt, round 3's default;
 * fp32 mode and POLICY_GPU_ACT=fp32 always): only the E + 2
 * segment offsets come back to the host. Expert segments are padded to a
 * common capacity (a multiple of 64 rows, zero rows in the padding) so each
 * projection is one strided-batched GEMM over the experts; when the routing
 * is too unbalanced for the padded buffers (or POLICY_GPU_MOE=loop) the
 * segments are compact and each expert gets its own GEMM. In bf16 mode the
 * expert GEMMs go through cuBLASLt with the algorithm chosen once per
 * projection and reused for every row count: plain cuBLAS reruns its
 * heuristic for each new shape, and the routing makes new shapes every layer
 * and step (H200: 189 ms of host time a step inside cuBLAS, 14 with the
 * cached algorithms; POLICY_GPU_LT=0 restores plain cuBLAS). The lightning
 * layers' wq, wk, wv, wgate are adjacent in the arena and run as one
 * (4 Hd, D) GEMM. Softmax attention runs as cuBLAS batched GEMMs per
 * sequence and KV group (TF32 in bf16 mode).
 *
 * Round 7 (gpu_route.cu, gpu_linew.cu): the routing runs as a fused
 * logits/softmax/top-k/count pass, a multi-block stable counting sort and
 * one fused backward pass with a deterministic dW reduction
 * (POLICY_GPU_ROUTE=old: the router GEMMs, k_route, the one-block
 * k_route_sort and k_route_bwd); the lightning layer's elementwise passes
 * are vectorised SiLU / SiLU backward, the output norm reading the core's
 * bf16 output directly (no k_to_f32 copy) and the gate and norm backward
 * in one pass (POLICY_GPU_LIN_EW=old: k_silu*, k_to_f32, k_rms_gate,
 * k_gate_bwd + rms_bwd, k_dsilu). The default is each one's variant v2
 * (more loads in flight; POLICY_GPU_ROUTE=v1 / POLICY_GPU_LIN_EW=v1: the
 * first versions).
 *
 * Round 8 (gpu_ew.cu): the embedding (fused with the first norm), the
 * residual adds fused with the next RMSNorm (and the MoE combine), the
 * final norm and the RMSNorm backward run as a warp per row with a row's
 * float4 loads all in flight and no block barrier per row
 * (POLICY_GPU_EW=old: k_embed, k_embed_bwd, k_rms_fwd, k_add_rms,
 * k_add_rms_moe, k_rms_bwd_dw / k_rms_bwd).
 *
 * Round 10 (the default since the lead's round-10 run; POLICY_GPU_STREAMS=1
 * restores one stream): the backward's weight-gradient
 * products on a second, non-blocking stream beside the dX chain, ordered by
 * events (struct policy_gpu's streams; the results bit for bit one
 * stream's). H100, 2026-11-27
 * (gpu_train quick, K = 4, two runs): 94.0 -> 91.2 ms an optimizer step
 * (-3.0 %; gpu_idle's CUPTI trace: 14 ms of the dW products overlapped with
 * the dX chain's kernels, busy time 91.8 -> 88.8 ms). POLICY_GPU_COPY=async
 * (pinned asynchronous uploads, one read-back synchronisation) measured
 * within noise (94.2 vs 94.0 ms): the default step has only ~0.7 ms of host
 * synchronisation gaps and ~2.6 ms of launch gaps in 95 ms.
 *
 * Round 14 (opt-in, POLICY_GPU_GRAPH=1; policy/gpu_graph.h): every launch,
 * copy and cuBLAS call of the step on policy_gpu_st (gpu_util.h: 0, the
 * legacy default stream, unless a graph-mode model's step runs), so that a
 * micro-batch's forward + head and its backward are each captured once per
 * shape and replayed as CUDA graphs; the head's read-backs between the two;
 * AdamW's clip scale on the device (k_clip_scale: the host's arithmetic).
 * Bit for bit the default's results. H100, 2026-11-27 (gpu_train x, K = 4):
 * 84.0 / 84.1 against 84.6 / 85.1 ms an optimizer step (-0.9 %); CUPTI:
 * launch gaps 2.4 -> 1.1 ms a step. POLICY_GPU_GRAPH=2 (the backward's graph
 * queued before the read-backs, which run on a copy stream) first ran in
 * round 21 (bit for bit; the default since, as GRAPH=auto).
 *
 * Round 20 (opt-in, POLICY_GPU_ADAMW=overlap / overlap16|32|64; struct
 * policy_gpu's adam_ovl): the update in parameter groups on its own
 * non-blocking stream, the next step's forward waiting on the device for
 * each group just before it reads it; bit for bit fused (graph mode keeps
 * fused). H100, 2026-11-27 (gpu_train x, K = 4, steps back to back):
 * 20.05 (overlap32) / 20.15 (overlap) against 20.12 ms a micro-batch: the
 * update runs beside the forward (CUPTI: 5.3 of 10.3 ms with overlap32)
 * but the forward slows by what it hides; not the default.
 *
 * Shapes are noted as (T, C) row-major; W (out, in) as in ref.c. */
#include "kernels/gemm_tune.h"
#include "kernels/lightning.h"
#include "kernels/pdl.cuh"
#include "kernels/policy_loss.h"
#include "policy/gpu_ew.h"
#include "policy/gpu_flash.h"
#include "policy/gpu_linew.h"
#include "policy/gpu_gate.h"
#include "policy/gpu_moe.h"
#include "policy/gpu_route.h"
#include "policy/gpu_comb.h"
#include "policy/gpu_graph.h"
#include "policy/gpu_util.h"
#include "policy/gpu_dev.cuh"
#include "policy/policy.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <time.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- phase profile ---------------------------------------------------------- */

enum {
	PROF_OTHER,    /* embedding, norms, residuals, uploads */
	PROF_LIN_CORE, /* lightning core (kernels/lightning or the fp32 kernel) */
	PROF_LIN_PROJ, /* lightning projections, gate, norm */
	PROF_SOFTMAX,  /* softmax attention layers */
	PROF_ROUTE,    /* router, top-k, host sort, gather/scatter */
	PROF_EXPERTS,  /* expert GEMMs */
	PROF_EXP_EW,   /* the experts' SwiGLU and combine passes (and their backward) */
	PROF_HEAD,     /* LM head and loss */
	PROF_ADAMW,
	PROF_GEMM_HOST, /* host time inside GEMM calls (overlaps the phases above) */
	PROF_N
};
static const char *const prof_names[PROF_N] = {
        "other",       "lightning core",  "lightning proj", "softmax attn", "moe routing",
        "moe experts", "moe swiglu/comb", "lm head+loss",   "adamw",        "gemm host"};

/* a cuBLASLt algorithm chosen once per expert projection and reused for any
 * row count (the routing changes the row counts every layer and step) */
/* the cuBLASLt descriptors of one GEMM (column-major, as gemm()) */
struct lt_slot {
	int used, kind, I, O, yt, acc, batched, ok;
	cublasLtMatmulAlgo_t algo;
	int have_desc;              /* desc: the slot's descriptors, reshaped per call (cached) */
	struct swerve_lt_desc desc; /* (POLICY_GPU_LT_CACHE=0: made and destroyed per call) */
};
#define LT_SLOTS 32

/* ---- per-layer saved activations ------------------------------------------ */

/* "A" marks an activation stored in the activation type: bf16 (uint16_t) in
 * bf16 mode, fp32 otherwise (g->ab, g->at, g->as) */
struct glayer {
	float *xin, *rstd1; /* block input (T, D), 1/rms (T) */
	void *n1;           /* A (T, D) its norm */
	float *hmid, *n2, *rstd2;
	/* lightning */
	void *pre;         /* A (T, 4 Hd): q, k, v before SiLU, gate pre-activation */
	uint16_t *qkv_b;   /* (3, T, Hd) bf16 after SiLU (kernels/lightning) */
	float *qkv_f;      /* (3, T, Hd) fp32 after SiLU (the fp32 kernel) */
	float *o, *rstd_o; /* (T, Hd) core output, 1/rms over Hd */
	void *gn;          /* A (T, Hd) gate * norm(o) */
	/* softmax */
	float *q, *k, *v, *lse; /* q (T, Hd) rotated, k/v (T, KVd), lse (T, H) */
	void *oa;               /* POLICY_GPU_SOFTMAX_WO=bf16: o (T, Hd) in bf16, wo's operand */
	/* MoE; rows are the T K assignments sorted by expert (with padding rows
	 * when h_cap > 0: expert e owns rows [e cap, (e + 1) cap)) */
	float *prob, *gate;      /* (T, E), (T, K) */
	int *sel;                /* (T, K) device */
	int *perm, *rowof;       /* row -> assignment t K + j (-1: padding), (t, j) -> row */
	float *auxc;             /* (E) device: d aux / d p_e (per token) */
	int *h_off, h_cap;       /* host: rows of expert e are [h_off[e], h_off[e + 1]) */
	int *doffs;              /* (E + 2) device: this layer's offsets (grouped path) */
	void *xp, *h1, *h3, *hh; /* A (rows, D), (rows, F) x3 */
	void *xg;                /* grouped, POLICY_GPU_MOE_GATHER=copy: xp gathered (T K, D) */
	float *yp;               /* (rows, D) */
	/* round 24 (POLICY_GPU_MOE_DW_WIN): the window's slices, Rp rows apart
	 * (xg, hh, doffs point at the micro-batch's own; dyp, dh13 its
	 * backward's): the expert dW's inputs kept until win_flush */
	uint16_t *xgw, *hhw, *dypw, *dh13w;
	int *offsw;
};

/* the side stream's scratch readers (POLICY_GPU_STREAMS=2): SV_DX g->dx,
 * SV_DXB g->dxb, SV_DT1 g->dt1, SV_DBIG g->dbig, SV_MOE g->moe_scr */
enum { SV_DX, SV_DXB, SV_DT1, SV_DBIG, SV_MOE, SV_N };

/* round 21: a range of the gradient arena (struct policy_gpu's gz) */
struct gz_range {
	size_t off, n;
};

struct policy_gpu {
	struct policy_config cfg;
	const struct policy_layout *L;
	int Tm, Sm, prec;
	int ab;            /* GEMM operands in bf16 (bf16 mode unless POLICY_GPU_ACT=fp32) */
	cudaDataType_t at; /* the activation / weight operand type */
	size_t as;         /* its size */
	int Rp;            /* rows of the MoE buffers (T K plus room for padding) */
	int moe_loop;      /* POLICY_GPU_MOE=loop: compact segments, a GEMM per expert */
	int moe_grouped;   /* bf16: the grouped kernels of gpu_moe.cu (POLICY_GPU_MOE=lt|loop:
	                    * cuBLASLt per expert or batched, with a host round trip) */
	int moe_round;     /* capacity granularity (rows; POLICY_GPU_MOE_ROUND) */
	/* round 6 (grouped path, fused residual stream): the RMSNorm before the
	 * MoE also writes its bf16 input, and the residual add after it sums the
	 * K slots itself (no y pass); POLICY_GPU_MOE_FUSE=0: the separate passes */
	int moe_fused;
	/* the expert dW stored instead of added when the arena was just cleared
	 * (POLICY_GPU_MOE_DWSTORE=0: always added) */
	int moe_dwstore;
	/* round 7: the up projection's rows gathered once into ly->xg after the
	 * routing sort, read contiguously by up and up dW (the default;
	 * POLICY_GPU_MOE_GATHER=load: round 6's gather in the loads) */
	int moe_gather;
	int use_lt;   /* expert GEMMs through cuBLASLt with cached algorithms (bf16) */
	int lt_cache; /* and cached descriptors (POLICY_GPU_LT_CACHE=0: made per call) */
	cublasLtHandle_t lt;
	void *lt_ws;
	/* compact segments: the experts' GEMMs spread over blocking streams, so
	 * the small per-expert GEMMs run side by side (each stream with its own
	 * cuBLASLt workspace; the legacy default stream, which everything else
	 * uses, orders itself with them implicitly). POLICY_GPU_MOE_STREAMS=n
	 * (default 4; 1: the default stream only) */
#define MOE_STREAMS_MAX 8
	int n_xs;
	cudaStream_t xs[MOE_STREAMS_MAX];
	void *xs_ws[MOE_STREAMS_MAX];
	cudaStream_t cur_st; /* the stream lt_gemm issues on (0: legacy default) */
	void *cur_ws;
	size_t lt_ws_bytes;
	struct lt_slot lts[LT_SLOTS];
	long lt_calls, lt_fallbacks;
	cublasHandle_t blas;
	float *params, *grads, *m, *v;
	uint16_t *pb;  /* bf16 copy of params (ab), refreshed by AdamW */
	float *slopes; /* (L, H) */
	struct glayer *ly;
	float *x, *xf, *nf, *rstdf, *logits;
	float *dx, *dn, *dt1, *dt2, *dt3, *dbig; /* scratch */
	uint16_t *dxb;                           /* bf16 copy of dx (ab) */
	uint16_t *bscr;                          /* (3, T, Hd) bf16 scratch */
	int *tok, *tgt, *pos, *sstart, *send, *cu;
	int *offs, *h_offs;    /* (E + 2) device / host: routing offsets and capacity */
	double *aux_d;         /* (n_layers) device: balance loss per layer */
	float *old, *adv, *tl; /* per token: logp_old, adv; tl (4, T): logp, ent, loss, clipped */
	float *h_tl;
	void *ws;
	size_t ws_bytes;
	float *red; /* reduction scratch */
	/* bf16 mode: the LM head and loss through kernels/policy_loss (fused,
	 * chunked over tokens, fp32-accurate split-bf16 products) */
	struct swerve_pl_ctx *pl;
	uint16_t *nf_b;
	int *tgt_c;
	uint8_t *mask, *clip8;
	float *pl_old, *pl_adv, *pl_loss;
	void *ws2;
	size_t ws2_bytes;
	/* round 21: the LM head's W unchanged since the last fused head call
	 * (cleared by every write of the weights: params_changed, AdamW), so
	 * that call's bf16 parts of W in ws2 are reused (swerve_pl_opts
	 * w_split_ready; in graph mode split again at once, w_written) */
	int w_fresh, wsplit_reuse;
	int maxlen; /* round 21: the step's maxlen_bucket (flash attention's) */
	/* round 21, POLICY_GPU_GRADZERO=stored (opt-in, not yet run on a GPU):
	 * the ranges of the gradient arena a window's first micro-batch clears,
	 * leaving out the tensors it stores without reading (the experts' w1,
	 * w3, w2 with moe_dwstore, the fused head's lm_head); gz NULL: the
	 * whole arena (the default, all) */
	struct gz_range *gz;
	int gz_n;
	/* round 21: POLICY_GPU_GRAPH=auto (graph 1, a key captured on its
	 * second sighting) */
	int graph_auto;
	int lin32; /* the fp32 lightning kernel (fp32 mode, or POLICY_GPU_LIGHTNING=fp32) */
	/* round 14: POLICY_GPU_LW_SILU=keep (2, the default) | core (1) | pass (0): the SiLU
	 * and its backward folded into kernels/lightning (gpu_linew.h; bf16 mode
	 * with the bf16 core only, else the passes run) */
	int lw_silu;
	/* round 7: the fused routing (gpu_route.cu; POLICY_GPU_ROUTE=old: off)
	 * and its scratch; the lightning passes of gpu_linew.cu
	 * (POLICY_GPU_LIN_EW=old: off). With lin_ew and kernels/lightning, a
	 * lightning layer's o holds the core's bf16 output. route_new 2:
	 * gpu_route.cu's variant v2, lin_ew 2: gpu_linew.cu's v2 norm kernels
	 * (both the default since the lead's round-7 run, H100: 24.6 against
	 * 25.4 ms a micro-batch; POLICY_GPU_ROUTE=v1 / POLICY_GPU_LIN_EW=v1:
	 * the first versions). */
	int route_new, lin_ew;
	int lw_gate; /* round 14: POLICY_GPU_LW_GATE (gpu_gate.h mode; 0: v2, 1: v3 the default) */
	/* round 22: POLICY_GPU_SOFTMAX_WO=bf16 (1): the softmax layer's output
	 * projection on bf16 operands (o's bf16 copy, the bf16 residual gradient
	 * g->dxb, the bf16 weights) as the lightning layers' wo; fp32 (0,
	 * rounds 1-21): fp32 operands with FAST_16BF. bf16 mode only */
	int sm_wo16;
	/* round 23: POLICY_GPU_WO_ADD=gemm (1, the default): the attention's output
	 * projection adds the residual in its epilogue (cuBLASLt, C = xin in,
	 * D = hmid out, bf16), so the add + norm after the attention reads hmid
	 * alone (norm only) and fp32 g->dn is neither written nor read; pass (0):
	 * wo writes fp32 g->dn, the add + norm pass adds it. Taken with the bf16
	 * residual stream, bf16 operands and the fused passes (wo_fused) */
	int wo_add;
	/* round 23: POLICY_GPU_MOE_DW_PAIR=on (1, the default): the grouped MoE backward
	 * defers a layer's down dW to the next layer's (in backward order) and
	 * runs the two in one launch (policy_moe_down_dw_pair: 2 x 192 tiles in
	 * 3 waves of 132 SMs instead of 2 + 2); the deferred layer's dyp lives
	 * in dyp2 until then; pair_l: the deferred layer (-1: none) */
	int dw_pair, pair_l;
	uint16_t *dyp2;
	/* round 24: POLICY_GPU_MOE_DW_WIN=n (2..8; off: 0): the experts' dW of up
	 * to n micro-batches of a gradient window summed in one launch a product
	 * (K n times longer: fewer tiles' fills and epilogues, one store instead
	 * of n read-add-writes), at win_flush: when n are kept, and before the
	 * gradients are read (AdamW, policy_gpu_get_grads); win_n the slices
	 * kept, win_added 1 once a flush of this gradient window wrote the
	 * arena (later ones add) */
	int win, win_n, win_added;
	int win_bwd; /* this micro-batch fills the window: its backward runs the dW */
	/* round 24: the window's dW tiles' sums of squares (sqw: up dW's, sq_up a
	 * layer, then down dW's, sq_dn a layer), valid (sq_ok) while the last
	 * write of every expert dW was a window launch: AdamW's norm then sums
	 * the other tensors only (the arena's non-expert ranges, nsq_rng of
	 * them, on the device at sq_rng_d) */
	float *sqw;
	int sq_up, sq_dn, sq_ok, nsq_rng;
	struct gz_range *sq_rng_d;
	/* round 23: POLICY_GPU_RT_NORM=fused (1, opt-in): the route backward
	 * does the ffn norm's backward on each row of dn in registers
	 * (policy_route_bwd_slots_b16n), so dn (fp32, T x D) is neither written
	 * nor read back by policy_ew_rms_bwd16g; taken with the bf16 gradient
	 * (a16g), bf16 slots, the router on xp and where the staged route
	 * backward runs; ffn_done: this layer's norm backward is done. H100:
	 * dx bit for bit the two passes, level end to end (69.7-70.3 against
	 * 69.7-70.4 ms a 4 x 8192 step); a first form with a block-wide row
	 * sum a 2-token batch was 0.9 ms a step slower */
	int rt_norm, ffn_done;
	/* round 26: POLICY_GPU_NORM_ROUTE=fused (1) | off (0): the ffn norm of
	 * hmid (wo's epilogue added the residual) and the router's forward in
	 * one pass (policy_route_fwd_norm_b16: xp, rstd2 and the routing bit for
	 * bit the two calls'), taken with the router on xp where wo adds the
	 * residual (wo_fused) and the operands are 16-byte aligned */
	int norm_route;
	/* round 25: POLICY_GPU_DN16=on (1, opt-in) | off (0, the default): the
	 * gradient that enters a lightning layer's attention norm (its fused
	 * projection's dX) and every layer's ffn norm (the route backward's dn,
	 * where its staged kernel runs) stored in bf16 (T x D, in g->dn's
	 * buffer) instead of fp32, as llm.c keeps activation gradients; taken
	 * with the bf16 gradient (a16g). dn_b16: what g->dn holds now (set by
	 * the producer, read by the norm backward). H100 (2026-11-27): the
	 * norm backward is not faster reading half the bytes (27.2 against 27.6
	 * us a call: latency-bound, rounds 19-20), the route backward's 2-byte
	 * stores are slower (29.5 against 27.4 us), kernels summed 19.94 against
	 * 19.98 ms a K = 1 step; end to end level at 4 x 8192 and 1.9-2.7 ms
	 * slower at 65,536 tokens a step (RESULTS.md, round 25) */
	int dn16, dn_b16;
	float *route_ws;
	size_t route_ws_n;
	/* round 10: route_new 3 / 4 = POLICY_GPU_ROUTE=v3 / v4 (gpu_route.cu; v4
	 * the default; the grouped backward leaves its slots in route_slots for
	 * policy_route_bwd_slots to sum); moe_comb: POLICY_GPU_MOE_COMB=new
	 * (gpu_comb.cu, the default; "old": gpu_moe.cu's passes) */
	int moe_comb;
	const float *route_slots;
	/* round 8: the residual stream's passes of gpu_ew.cu (POLICY_GPU_EW=old
	 * or a dim they do not take: gpu.cu's kernels) */
	int ew;
	/* round 16 (issue 10): POLICY_GPU_ACT16=resid (rounds 16-18's default:
	 * H100, 2026-11-27, 20.2 / 20.1 against off's 20.7 / 20.8 / 20.9 ms a
	 * micro-batch; all, below, is the default since round 19) | off
	 * (rounds 1-15: fp32) |
	 * slots (act16 1: the MoE's slot tensors yp, dxp in bf16) | stream
	 * (slots and a16x: the residual stream's value xin / hmid / xf in bf16)
	 * | router (slots and a16r: the router reads the experts' bf16 input xp,
	 * n2 not written) | resid (all three); taken where the fused grouped
	 * path with the v3 / v4 route (a16r: v4), gpu_ew.cu, gpu_comb.cu and
	 * wsb2's down / up dX kernel run, else off */
	int act16, a16x, a16r;
	/* round 19 (issue 10): POLICY_GPU_ACT16=all = resid and a16g: the
	 * residual stream's gradient in bf16, kept in g->dxb (bf16 mode's copy
	 * for the attention's GEMMs, which read it as before); g->dx then holds
	 * only the fp32 copy the softmax layers' backward reads; taken with
	 * resid's conditions in bf16 mode (g->ab), else resid */
	int a16g;
	/* softmax attention through cuBLAS (scores materialised per sequence and
	 * KV group; POLICY_GPU_ATTN=naive: the warp-per-query kernels) */
	int attn_gemm;
	int flash;    /* the tiled kernels (bf16 mode, head_dim 64; POLICY_GPU_ATTN=gemm: cuBLAS) */
	float *att_s; /* (grp, Lmax, Lmax) scores / probabilities */
	float *att_d; /* (grp, Lmax, Lmax) dP / dS */
	size_t att_n;
	/* POLICY_GPU_PROFILE=1: per-phase times (synchronising) */
	int prof;
	double prof_t[PROF_N], prof_last;
	int T; /* tokens of the last step */
	/* gradient accumulation: micro-batches whose gradients the arena holds
	 * (summed) since it was last cleared; AdamW takes their mean and resets
	 * it. The arena is cleared by the first backward step of a window. */
	int n_acc;
	/* the fused AdamW's tensor table (made at the first update);
	 * POLICY_GPU_ADAMW=tensor: a launch per tensor (round 6's kernels) */
	struct adam_seg *adam_seg;
	int adam_nseg, adam_blocks, adam_per_tensor;
	/* round 20 (issue 10), POLICY_GPU_ADAMW=overlap (adam_ovl 1) |
	 * overlap16 / overlap32 / overlap64 (adam_ovl 16 / 32 / 64): after the
	 * clip scale is known, the update runs in parameter groups in the
	 * forward's order of use (group 0 tok_emb, group l + 1 layer l's
	 * tensors, the last final_norm + lm_head) on its own non-blocking
	 * stream ast, an event aev[k] recorded after group k; the next step's
	 * forward waits (adam_wait, on the device) for group k just before it
	 * first reads group k's weights, and everything else that touches the
	 * arenas waits for the last group (adam_join). overlap: each group as
	 * k_adamw_all over its own tensor table (adam_gseg, blk0 from 0);
	 * overlapN: groups after the first as k_adamw_grp on N blocks of 1024
	 * threads (N SMs), so the update leaves the rest of the GPU to the
	 * forward. The same per-element arithmetic (adam_one), so the same
	 * bits as fused. Graph mode (POLICY_GPU_GRAPH=1/2) keeps fused. */
	int adam_ovl, adam_ngrp, adam_pend, adam_waited;
	/* round 20: POLICY_GPU_PDL=on: the step's chains of own kernels
	 * (kernels/pdl.cuh) launched with programmatic dependent launch */
	int pdl;
	/* round 21: POLICY_GPU_PRIO=off | main | side: which of the step's
	 * stream (graph mode's gst) and the weight-gradient stream gets the
	 * device's greatest priority; graphs run their kernels at the priority
	 * of the stream each was captured from */
	int prio;
	/* SWERVE_GEMM_TUNE (kernels/gemm_tune.h): 0 off, 1 on, 2 log; gemm()'s
	 * algorithm timed once a shape */
	int gemm_tune;
	/* round 22 (measurements, opt-in): POLICY_GPU_SIDE_SMS=n, the side
	 * stream's tuned cuBLAS GEMMs (the backward's weight gradients) sized
	 * for n SMs (CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET), so that the main
	 * stream's kernels may run beside them; 0 / unset: all */
	int side_sms;
	int *adam_gs, *adam_gblk; /* host: group k's first tensor (ngrp + 1), its blocks */
	struct adam_seg *adam_gseg;
	cudaStream_t ast;
	cudaEvent_t aev_in, *aev;
	/* the residual adds fused with the next RMSNorm (no copies of the
	 * stream) and the RMSNorm backward with its weight gradient;
	 * POLICY_GPU_FUSE=0: the separate passes of round 2 */
	int fuse;
	/* summed over layers and steps: token-expert assignments, GEMM rows, and E
	 * times the busiest expert's rows (what a padded layout needs) */
	long moe_rows, moe_rows_padded, moe_rows_peak;
	/* round 10, POLICY_GPU_STREAMS=2 (streams = 1, the default; "1": 0): the
	 * backward's weight-gradient products (the lightning wo / wq..wgate, the
	 * softmax wo and, in bf16 mode, wq / wk / wv through cuBLAS; the grouped
	 * experts' down and up dW through gpu_moe.cu) on a second, non-blocking
	 * stream beside the dX chain on the legacy default stream. Each forks
	 * after the main stream's work so far (ev_fork); ev[SV_*] marks the side
	 * stream done reading a scratch buffer, which the main stream waits for
	 * before it writes the buffer again; the step ends by joining the side
	 * stream (ev_join), so AdamW, the next micro-batch and every copy are
	 * ordered after it. Same kernels, same sums, bit for bit: only the order
	 * of independent launches changes. The grouped MoE's backward scratch
	 * (moe_scr) and dgate (dgate_s) get their own buffers, so the expert dW
	 * can run on beside the lightning core's backward, which writes dbig. */
	int streams;
	int on_side; /* gemm() issues on blas_side */
	cudaStream_t side;
	cublasHandle_t blas_side;
	cudaEvent_t ev_fork, ev_join, ev[SV_N];
	void *moe_scr;
	float *dgate_s;
	/* round 10, POLICY_GPU_COPY=async (copy_async 1; "sync", the default: 0):
	 * the step's uploads (tokens, targets, positions, sequence bounds,
	 * cu_seqlens, logp_old, advantages) go through pinned staging (h_stage)
	 * as asynchronous copies, so the host does not wait for the previous
	 * micro-batch's backward before queueing this one (ev_stage: the last
	 * uploads have read the staging), and the fused head's read-backs (the
	 * per-token results into a pinned h_tl, the loss, the clip flags, the
	 * balance losses: h_pin) are one synchronisation instead of four. The
	 * same values either way. */
	int copy_async, aux_ready;
	int *h_stage;
	cudaEvent_t ev_stage;
	char *h_pin;
	/* round 14, POLICY_GPU_GRAPH=1 (graph 1; "0", the default: 0; only
	 * where the step has no host round trip: bf16 mode with the grouped
	 * experts and the fused head, no POLICY_GPU_PROFILE): the step on its
	 * own stream gst (policy_gpu_st while it runs; cuBLAS bound to it with
	 * a fixed workspace blas_ws, the side handle with side_ws), its
	 * uploads and read-backs as POLICY_GPU_COPY=async's, each micro-batch
	 * a CUDA graph (graphs, gpu_graph.h); AdamW's clip scale on the device
	 * (gnorm: the norm, then the float scale) with one read-back of the
	 * norm (h_norm) at its end. ev_leg orders gst after the legacy default
	 * stream's earlier work; ev_live: the side-stream events recorded by
	 * this step (side_wait waits for those only). */
	int graph;
	cudaStream_t gst;
	cudaEvent_t ev_leg, ev_norm;
	cudaStream_t cst; /* graph 2: the head's read-backs, after ev_fwd */
	cudaEvent_t ev_fwd;
	void *blas_ws, *side_ws;
	size_t blas_ws_bytes;
	struct policy_graphs *graphs;
	double *gnorm, *h_norm;
	unsigned ev_live;
};

cudaStream_t policy_gpu_st; /* gpu_util.h */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* adds the time since the last mark to bucket b (profiling only) */
static void mark(struct policy_gpu *g, int b)
{
	double t;
	if (!g->prof)
		return;
	cudaDeviceSynchronize();
	t = now_s();
	if (b >= 0)
		g->prof_t[b] += t - g->prof_last;
	g->prof_last = t;
}

void policy_gpu_moe_stats(const struct policy_gpu *g, long *rows, long *gemm_rows, long *peak_rows)
{
	*rows = g->moe_rows;
	*gemm_rows = g->moe_rows_padded;
	*peak_rows = g->moe_rows_peak;
}

void policy_gpu_gemm_stats(const struct policy_gpu *g, long *lt_calls, long *lt_fallbacks)
{
	*lt_calls = g->lt_calls;
	*lt_fallbacks = g->lt_fallbacks;
}

int policy_gpu_graph_stats(const struct policy_gpu *g, long *captures, long *replays)
{
	*captures = g->graphs ? g->graphs->captures : 0;
	*replays = g->graphs ? g->graphs->replays : 0;
	return g->graph;
}

double policy_gpu_peak_flops(void)
{
	struct { /* name contains key (and key2 where set) -> peak */
		const char *key, *key2;
		double peak;
	} const tab[] = {{"H100", "PCIe", 756e12},
	                 {"H100", "NVL", 835e12},
	                 {"H100", NULL, 989e12},
	                 {"H200", NULL, 989e12},
	                 {"A100", NULL, 312e12}};
	cudaDeviceProp pr;
	int dev = 0;
	if (cudaGetDevice(&dev) != cudaSuccess ||
	    cudaGetDeviceProperties(&pr, dev) != cudaSuccess) {
		cudaGetLastError();
		return 0;
	}
	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strstr(pr.name, tab[i].key) && (!tab[i].key2 || strstr(pr.name, tab[i].key2)))
			return tab[i].peak;
	return 0;
}

int policy_gpu_bf16_storage(const struct policy_gpu *g)
{
	return (g->act16 ? POLICY_GPU_BF16_SLOTS : 0) | (g->a16x ? POLICY_GPU_BF16_STREAM : 0) |
	       (g->a16r ? POLICY_GPU_BF16_ROUTER : 0) | (g->a16g ? POLICY_GPU_BF16_DRES : 0) |
	       (g->dn16 && g->act16 && g->a16r && !g->rt_norm ? POLICY_GPU_BF16_DN_FFN : 0) |
	       (g->dn16 ? POLICY_GPU_BF16_DN_ATTN : 0);
}

int policy_gpu_profile(const char **names, double *seconds, int max, struct policy_gpu *g)
{
	int n = max < PROF_N ? max : PROF_N;
	for (int i = 0; i < n; i++) {
		names[i] = prof_names[i];
		seconds[i] = g->prof_t[i];
		g->prof_t[i] = 0;
	}
	return n;
}

/* ---- small kernels ---------------------------------------------------------- */

#define NBLK(n) (unsigned)(((n) + 255) / 256)
/* launches kern<TA> with TA the activation type of g */
#define LAUNCH_A(g, kern, nblk, nthr, ...)                                                         \
	do {                                                                                       \
		if ((g)->ab)                                                                       \
			kern<uint16_t><<<(nblk), (nthr), 0, PST>>>(__VA_ARGS__);                   \
		else                                                                               \
			kern<float><<<(nblk), (nthr), 0, PST>>>(__VA_ARGS__);                      \
	} while (0)

#include "policy/gpu_rows.cuh"

/* the RMSNorm backward (as k_rms_bwd) and its weight gradient (as rms_dw):
 * one fused pass, or the two kernels (POLICY_GPU_FUSE=0, or C > 1024) */
static int rms_bwd(const struct policy_gpu *g, float *dx, uint16_t *xb, int acc, float *dw,
                   const float *dy, const float *x, const float *w, const float *rstd, int T, int C)
{
	if (g->ew && policy_ew_supported(C)) { /* round 8: a warp per row (gpu_ew.cu) */
		CKR(policy_ew_rms_bwd(dx, xb, acc, g->fuse ? dw : NULL, dy, x, w, rstd, T, C));
		if (!g->fuse)
			rms_dw(dw, dy, x, rstd, T, C);
		return 0;
	}
	if (g->fuse && C <= RMS_BWD_COLS * 256) {
		k_rms_bwd_dw<<<(unsigned)((T + RMS_BWD_ROWS - 1) / RMS_BWD_ROWS), 256, 0, PST>>>(
		        dx, xb, acc, dw, dy, x, w, rstd, T, C);
		return 0;
	}
	k_rms_bwd<<<T, 256, 0, PST>>>(dx, xb, acc, dy, x, w, rstd, C);
	rms_dw(dw, dy, x, rstd, T, C);
	return 0;
}

/* rms_bwd of a norm over the residual stream (x = xin, hmid or xf), which
 * is bf16 under POLICY_GPU_ACT16=resid (round 16) */
static int resid_rms_bwd(const struct policy_gpu *g, float *dx, uint16_t *xb, int acc, float *dw,
                         const float *dy, const float *x, const float *w, const float *rstd, int T,
                         int C)
{
	if (g->a16x)
		return policy_ew_rms_bwd16(dx, xb, acc, dw, dy, (const uint16_t *)x, w, rstd, T, C);
	return rms_bwd(g, dx, xb, acc, dw, dy, x, w, rstd, T, C);
}

/* softmax attention forward: a warp per (t, h); online softmax over the
 * keys of t's sequence up to t. d <= 128. */
__global__ static void k_attn_fwd(float *o, float *lse, const float *q, const float *k,
                                  const float *v, const int *sstart, int T, int H, int KV, int d,
                                  float scale)
{
	int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
	if (w >= T * H)
		return;
	int t = w / H, h = w % H, g = h / (H / KV);
	const float *qt = q + ((size_t)t * H + h) * d;
	float qr[4], acc[4] = {0, 0, 0, 0}, mx = -INFINITY, z = 0;
	for (int c = 0; c < 4; c++)
		qr[c] = lane + 32 * c < d ? qt[lane + 32 * c] : 0.0f;
	for (int s = sstart[t]; s <= t; s++) {
		const float *ks = k + ((size_t)s * KV + g) * d, *vs = v + ((size_t)s * KV + g) * d;
		float dot = 0, sc, nm, a, b;
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d)
				dot += qr[c] * ks[lane + 32 * c];
		sc = warp_sum(dot) * scale;
		nm = fmaxf(mx, sc);
		a = expf(mx - nm);
		b = expf(sc - nm);
		z = z * a + b;
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d)
				acc[c] = acc[c] * a + b * vs[lane + 32 * c];
		mx = nm;
	}
	for (int c = 0; c < 4; c++)
		if (lane + 32 * c < d)
			o[((size_t)t * H + h) * d + lane + 32 * c] = acc[c] / z;
	if (lane == 0)
		lse[(size_t)t * H + h] = mx + logf(z);
}

/* Dt = rowsum(dO * O) per (t, h) */
__global__ static void k_attn_dsum(float *D, const float *dout, const float *o, int TH, int d)
{
	int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
	float s = 0;
	if (w >= TH)
		return;
	for (int i = lane; i < d; i += 32)
		s += dout[(size_t)w * d + i] * o[(size_t)w * d + i];
	s = warp_sum(s);
	if (lane == 0)
		D[w] = s;
}

/* causal softmax of score rows in place: block (row i, head j of the group);
 * S (grp, L, L) row-major scaled by scale; keys > i zeroed; with lse != NULL
 * (forward) the row's log-sum-exp is stored at lse[(t0 + i) * H + h0 + j];
 * with lse_in (backward) P = exp(scale S - lse) is rebuilt from it */
__global__ static void k_causal_softmax(float *S, float *lse, const float *lse_in, int L,
                                        float scale, int t0, int H, int h0)
{
	int i = blockIdx.x, j = blockIdx.y;
	float *r = S + ((size_t)j * L + i) * L, mx = -INFINITY, z = 0, lz;
	size_t li = (size_t)(t0 + i) * H + h0 + j;
	if (lse_in) {
		for (int c = threadIdx.x; c < L; c += blockDim.x)
			r[c] = c <= i ? expf(r[c] * scale - lse_in[li]) : 0.0f;
		return;
	}
	for (int c = threadIdx.x; c <= i; c += blockDim.x)
		mx = fmaxf(mx, r[c] * scale);
	mx = block_max(mx);
	for (int c = threadIdx.x; c <= i; c += blockDim.x)
		z += expf(r[c] * scale - mx);
	z = block_sum(z);
	lz = mx + logf(z);
	for (int c = threadIdx.x; c < L; c += blockDim.x)
		r[c] = c <= i ? expf(r[c] * scale - lz) : 0.0f;
	if (threadIdx.x == 0 && lse)
		lse[li] = lz;
}

/* dS = P (dP - D_t) scale, in place in dP: block (row i, head j) */
__global__ static void k_causal_ds(float *dP, const float *P, const float *Dsum, int L, float scale,
                                   int t0, int H, int h0)
{
	int i = blockIdx.x, j = blockIdx.y;
	size_t o = ((size_t)j * L + i) * L;
	float Dt = Dsum[(size_t)(t0 + i) * H + h0 + j];
	for (int c = threadIdx.x; c < L; c += blockDim.x)
		dP[o + c] = c <= i ? P[o + c] * (dP[o + c] - Dt) * scale : 0.0f;
}

/* dq: a warp per (t, h) */
__global__ static void k_attn_dq(float *dq, const float *dout, const float *q, const float *k,
                                 const float *v, const float *lse, const float *D,
                                 const int *sstart, int T, int H, int KV, int d, float scale)
{
	int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
	if (w >= T * H)
		return;
	int t = w / H, h = w % H, g = h / (H / KV);
	float qr[4], gr[4], acc[4] = {0, 0, 0, 0}, L = lse[w], Dt = D[w];
	for (int c = 0; c < 4; c++) {
		int i = lane + 32 * c;
		qr[c] = i < d ? q[(size_t)w * d + i] : 0.0f;
		gr[c] = i < d ? dout[(size_t)w * d + i] : 0.0f;
	}
	for (int s = sstart[t]; s <= t; s++) {
		const float *ks = k + ((size_t)s * KV + g) * d, *vs = v + ((size_t)s * KV + g) * d;
		float dot = 0, dp = 0, p, ds;
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d) {
				dot += qr[c] * ks[lane + 32 * c];
				dp += gr[c] * vs[lane + 32 * c];
			}
		dot = warp_sum(dot);
		dp = warp_sum(dp);
		p = expf(dot * scale - L);
		ds = p * (dp - Dt) * scale;
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d)
				acc[c] += ds * ks[lane + 32 * c];
	}
	for (int c = 0; c < 4; c++)
		if (lane + 32 * c < d)
			dq[(size_t)w * d + lane + 32 * c] = acc[c];
}

/* dk, dv: a warp per (s, kv head), over the group's heads and t >= s */
__global__ static void k_attn_dkv(float *dk, float *dv, const float *dout, const float *q,
                                  const float *k, const float *v, const float *lse, const float *D,
                                  const int *send, int T, int H, int KV, int d, float scale)
{
	int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
	if (w >= T * KV)
		return;
	int s = w / KV, g = w % KV, grp = H / KV;
	float kr[4], vr[4], ak[4] = {0, 0, 0, 0}, av[4] = {0, 0, 0, 0};
	for (int c = 0; c < 4; c++) {
		int i = lane + 32 * c;
		kr[c] = i < d ? k[(size_t)w * d + i] : 0.0f;
		vr[c] = i < d ? v[(size_t)w * d + i] : 0.0f;
	}
	for (int h = g * grp; h < (g + 1) * grp; h++)
		for (int t = s; t < send[s]; t++) {
			const float *qt = q + ((size_t)t * H + h) * d;
			const float *gt = dout + ((size_t)t * H + h) * d;
			float dot = 0, dp = 0, p, ds;
			for (int c = 0; c < 4; c++)
				if (lane + 32 * c < d) {
					dot += qt[lane + 32 * c] * kr[c];
					dp += gt[lane + 32 * c] * vr[c];
				}
			dot = warp_sum(dot);
			dp = warp_sum(dp);
			p = expf(dot * scale - lse[(size_t)t * H + h]);
			ds = p * (dp - D[(size_t)t * H + h]) * scale;
			for (int c = 0; c < 4; c++)
				if (lane + 32 * c < d) {
					av[c] += p * gt[lane + 32 * c];
					ak[c] += ds * qt[lane + 32 * c];
				}
		}
	for (int c = 0; c < 4; c++)
		if (lane + 32 * c < d) {
			dk[(size_t)w * d + lane + 32 * c] = ak[c];
			dv[(size_t)w * d + lane + 32 * c] = av[c];
		}
}

/* fp32 lightning core (the comparison mode; kernels/lightning is bf16):
 * o_t = sum_{s<=t} lambda^(t-s) (q_t . k_s) v_s, a warp per (t, h), d <= 128.
 * q, k, v are (T, H, d) after SiLU. */
__global__ static void k_lin_fwd(float *o, const float *q, const float *k, const float *v,
                                 const float *slopes, const int *sstart, int T, int H, int d)
{
	int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
	if (w >= T * H)
		return;
	int t = w / H, h = w % H;
	float ll = -slopes[h], qr[4], acc[4] = {0, 0, 0, 0};
	for (int c = 0; c < 4; c++)
		qr[c] = lane + 32 * c < d ? q[(size_t)w * d + lane + 32 * c] : 0.0f;
	for (int s = sstart[t]; s <= t; s++) {
		const float *ks = k + ((size_t)s * H + h) * d, *vs = v + ((size_t)s * H + h) * d;
		float dot = 0, a;
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d)
				dot += qr[c] * ks[lane + 32 * c];
		a = warp_sum(dot) * expf(ll * (float)(t - s));
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d)
				acc[c] += a * vs[lane + 32 * c];
	}
	for (int c = 0; c < 4; c++)
		if (lane + 32 * c < d)
			o[(size_t)w * d + lane + 32 * c] = acc[c];
}

/* dq_t = sum_{s<=t} lambda^(t-s) (do_t . v_s) k_s (mode 0, a warp per (t, h));
 * dk_s = sum_{t>=s} lambda^(t-s) (do_t . v_s) q_t and
 * dv_s = sum_{t>=s} lambda^(t-s) (q_t . k_s) do_t (mode 1, a warp per (s, h)) */
__global__ static void k_lin_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                 const float *k, const float *v, const float *slopes,
                                 const int *sstart, const int *send, int T, int H, int d, int mode)
{
	int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
	if (w >= T * H)
		return;
	int t = w / H, h = w % H;
	float ll = -slopes[h], x[4], y[4], a1[4] = {0, 0, 0, 0}, a2[4] = {0, 0, 0, 0};
	if (mode == 0) {
		for (int c = 0; c < 4; c++) {
			int i = lane + 32 * c;
			x[c] = i < d ? dout[(size_t)w * d + i] : 0.0f;
		}
		for (int s = sstart[t]; s <= t; s++) {
			const float *ks = k + ((size_t)s * H + h) * d,
			            *vs = v + ((size_t)s * H + h) * d;
			float gv = 0, a;
			for (int c = 0; c < 4; c++)
				if (lane + 32 * c < d)
					gv += x[c] * vs[lane + 32 * c];
			a = warp_sum(gv) * expf(ll * (float)(t - s));
			for (int c = 0; c < 4; c++)
				if (lane + 32 * c < d)
					a1[c] += a * ks[lane + 32 * c];
		}
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d)
				dq[(size_t)w * d + lane + 32 * c] = a1[c];
		return;
	}
	/* here t plays s: the key position */
	for (int c = 0; c < 4; c++) {
		int i = lane + 32 * c;
		x[c] = i < d ? k[(size_t)w * d + i] : 0.0f;
		y[c] = i < d ? v[(size_t)w * d + i] : 0.0f;
	}
	for (int u = t; u < send[t]; u++) {
		const float *qu = q + ((size_t)u * H + h) * d, *gu = dout + ((size_t)u * H + h) * d;
		float qk = 0, gv = 0, dec = expf(ll * (float)(u - t));
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d) {
				qk += qu[lane + 32 * c] * x[c];
				gv += gu[lane + 32 * c] * y[c];
			}
		qk = warp_sum(qk) * dec;
		gv = warp_sum(gv) * dec;
		for (int c = 0; c < 4; c++)
			if (lane + 32 * c < d) {
				a1[c] += gv * qu[lane + 32 * c];
				a2[c] += qk * gu[lane + 32 * c];
			}
	}
	for (int c = 0; c < 4; c++)
		if (lane + 32 * c < d) {
			dk[(size_t)w * d + lane + 32 * c] = a1[c];
			dv[(size_t)w * d + lane + 32 * c] = a2[c];
		}
}

/* planar fp32 q, k, v = SiLU(pre) for the fp32 lightning kernel */
template <typename TA> __global__ static void k_silu(float *out, const void *prev, size_t n, int Hd)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < 3 * n) {
		float a = ldf(((const TA *)prev)[qkv_at(i, n, Hd)]);
		out[i] = a * sigm(a);
	}
}

#include "policy/gpu_route_r6.cuh"

/* xp[row] = x[token of perm[row]] (zero on padding rows), in type TA */
template <typename TA>
__global__ static void k_gather(void *xpv, const float *x, const int *perm, int rows, int K, int D)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < (size_t)rows * D) {
		int a = perm[i / D];
		stf((TA *)xpv + i, a >= 0 ? x[(size_t)(a / K) * D + i % D] : 0.0f);
	}
}

template <typename TA>
__global__ static void k_swiglu(void *hhv, const void *h1v, const void *h3v, size_t n)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n) {
		float a = ldf(((const TA *)h1v)[i]);
		stf((TA *)hhv + i, a * sigm(a) * ldf(((const TA *)h3v)[i]));
	}
}

/* dh -> dh1, dh3 */
template <typename TA>
__global__ static void k_swiglu_bwd(void *dh1v, void *dh3v, const void *dhv, const void *h1v,
                                    const void *h3v, size_t n)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i < n) {
		float a = ldf(((const TA *)h1v)[i]), g = ldf(((const TA *)dhv)[i]);
		stf((TA *)dh3v + i, g * a * sigm(a));
		stf((TA *)dh1v + i, g * ldf(((const TA *)h3v)[i]) * dsilu(a));
	}
}

/* y[t] = sum_j gate[t, j] yp[rowof[t, j]] */
__global__ static void k_combine(float *y, const float *yp, const float *gate, const int *rowof,
                                 int T, int K, int D)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)T * D)
		return;
	int t = (int)(i / D), c = (int)(i % D);
	float s = 0;
	for (int j = 0; j < K; j++)
		s += gate[(size_t)t * K + j] * yp[(size_t)rowof[(size_t)t * K + j] * D + c];
	y[i] = s;
}

/* a block per row, assignment tj = perm[row] (t = tj / K): dyp[row] =
 * gate dy[t] (TA; zero on padding rows), dgate[tj] = dy[t] . yp[row] */
template <typename TA>
__global__ static void k_combine_bwd(void *dypv, float *dgate, const float *dy, const float *yp,
                                     const float *gate, const int *perm, int K, int D)
{
	int row = blockIdx.x, tj = perm[row], t = tj / K;
	TA *dyp = (TA *)dypv + (size_t)row * D;
	float g, s = 0;
	if (tj < 0) {
		for (int c = threadIdx.x; c < D; c += blockDim.x)
			stf(&dyp[c], 0.0f);
		return;
	}
	g = gate[tj];
	for (int c = threadIdx.x; c < D; c += blockDim.x) {
		float v = dy[(size_t)t * D + c];
		stf(&dyp[c], g * v);
		s += v * yp[(size_t)row * D + c];
	}
	s = block_sum(s);
	if (threadIdx.x == 0)
		dgate[tj] = s;
}

/* dx[t] = sum_j dxp[rowof[t, j]] */
__global__ static void k_scatter(float *dx, const float *dxp, const int *rowof, int T, int K, int D)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= (size_t)T * D)
		return;
	int t = (int)(i / D), c = (int)(i % D);
	float s = 0;
	for (int j = 0; j < K; j++)
		s += dxp[(size_t)rowof[(size_t)t * K + j] * D + c];
	dx[i] = s;
}

/* loss rows: a block per token; logits overwritten with dloss/dlogits.
 * tl: (4, T) logp, entropy, loss term, clipped. mode 0: cross-entropy with
 * weight inv_n; mode 1: policy loss (swerve_pl_token_eval, norm inv_n). */
__global__ static void k_loss(float *z, float *tl, const int *tgt, const float *old,
                              const float *adv, int T, int V, float inv_n, int mode,
                              struct swerve_pl_opts o, int backward)
{
	int t = blockIdx.x, y = tgt[t];
	float *r = z + (size_t)t * V, mx, s = 0, lse, h = 0, lp, dl;
	if (y < 0) {
		if (backward)
			for (int v = threadIdx.x; v < V; v += blockDim.x)
				r[v] = 0;
		if (threadIdx.x == 0)
			tl[t] = tl[T + t] = tl[2 * T + t] = tl[3 * T + t] = 0;
		return;
	}
	mx = -INFINITY;
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		mx = fmaxf(mx, r[v]);
	mx = block_max(mx);
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		s += expf(r[v] - mx);
	s = block_sum(s);
	lse = mx + logf(s);
	for (int v = threadIdx.x; v < V; v += blockDim.x) {
		float l = r[v] - lse;
		h -= expf(l) * l;
	}
	h = block_sum(h);
	lp = r[y] - lse;
	__syncthreads(); /* every thread has read r[y] before it is overwritten */
	if (mode == 0) {
		dl = -inv_n;
		if (threadIdx.x == 0) {
			tl[2 * T + t] = -lp * inv_n;
			tl[3 * T + t] = 0;
		}
	} else {
		struct swerve_pl_token k = swerve_pl_token_eval(&o, lp, old[t], adv[t], inv_n);
		dl = (float)k.dlogp;
		if (threadIdx.x == 0) {
			tl[2 * T + t] = (float)k.loss;
			tl[3 * T + t] = (float)k.clipped;
		}
	}
	if (threadIdx.x == 0) {
		tl[t] = lp;
		tl[T + t] = h;
	}
	if (backward)
		for (int v = threadIdx.x; v < V; v += blockDim.x)
			r[v] = dl * ((v == y ? 1.0f : 0.0f) - expf(r[v] - lse));
}

__global__ static void k_sumsq(float *out, const float *g, size_t n)
{
	float s = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		s += g[i] * g[i];
	s = block_sum(s);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

/* the AdamW update; pb (bf16 mode) gets the bf16 copy of the new weights */
__global__ static void k_adamw(float *p, uint16_t *pb, const float *g, float *m, float *v, size_t n,
                               float scale, float lr, float b1, float b2, float eps, float wd,
                               float bc1, float bc2)
{
	size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	float gi = g[i] * scale;
	float mi = b1 * m[i] + (1.0f - b1) * gi;
	float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
	float pi = p[i];
	m[i] = mi;
	v[i] = vi;
	pi -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * pi);
	p[i] = pi;
	if (pb)
		pb[i] = f2bf(pi);
}

/* The fused AdamW: one launch over every tensor of the arena. Tensor i owns
 * blocks [blk0[i], blk0[i + 1]) of ADAM_CHUNK elements each; a block finds
 * its tensor by binary search over the n + 1 block starts, then updates its
 * chunk with float4 loads and stores where the tensor's offset and size
 * allow (the same arithmetic per element as k_adamw, so the same bits). */
#define ADAM_THREADS 256
#define ADAM_CHUNK   (ADAM_THREADS * 4 * 4)
struct adam_seg {
	size_t off, n;
	int decay, blk0;
};

__device__ static inline void adam_one(float &p, float gi, float &m, float &v, float scale,
                                       float lr, float b1, float b2, float eps, float wd, float bc1,
                                       float bc2)
{
	gi *= scale;
	float mi = b1 * m + (1.0f - b1) * gi;
	float vi = b2 * v + (1.0f - b2) * gi * gi;
	float pi = p;
	m = mi;
	v = vi;
	pi -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * pi);
	p = pi;
}

/* DEV (round 14, graph mode): the scale read from scale_d (k_clip_scale's) */
template <bool DEV>
__global__ static void __launch_bounds__(ADAM_THREADS)
        k_adamw_all(float *p, uint16_t *pb, const float *g, float *m, float *v,
                    const struct adam_seg *seg, int nseg, float scale, const float *scale_d,
                    float lr, float b1, float b2, float eps, float wd, float bc1, float bc2)
{
	int lo = 0, hi = nseg - 1, b = blockIdx.x;
	if (DEV)
		scale = *scale_d;
	while (lo < hi) { /* the last tensor whose first block is <= b */
		int mid = (lo + hi + 1) / 2;
		if (seg[mid].blk0 <= b)
			lo = mid;
		else
			hi = mid - 1;
	}
	const struct adam_seg s = seg[lo];
	const float w = s.decay ? wd : 0.0f;
	size_t i0 = (size_t)(b - s.blk0) * ADAM_CHUNK;
	size_t i1 = i0 + ADAM_CHUNK < s.n ? i0 + ADAM_CHUNK : s.n;
	if ((s.off & 3) == 0 && (s.n & 3) == 0) {
		for (size_t i = i0 + 4 * threadIdx.x; i < i1; i += 4 * ADAM_THREADS) {
			size_t j = s.off + i;
			float4 pp = *(float4 *)(p + j), mm = *(float4 *)(m + j);
			float4 vv = *(float4 *)(v + j);
			const float4 gg = *(const float4 *)(g + j);
			adam_one(pp.x, gg.x, mm.x, vv.x, scale, lr, b1, b2, eps, w, bc1, bc2);
			adam_one(pp.y, gg.y, mm.y, vv.y, scale, lr, b1, b2, eps, w, bc1, bc2);
			adam_one(pp.z, gg.z, mm.z, vv.z, scale, lr, b1, b2, eps, w, bc1, bc2);
			adam_one(pp.w, gg.w, mm.w, vv.w, scale, lr, b1, b2, eps, w, bc1, bc2);
			*(float4 *)(p + j) = pp;
			*(float4 *)(m + j) = mm;
			*(float4 *)(v + j) = vv;
			if (pb) /* four bf16 in one 8-byte store */
				*(uint2 *)(pb + j) =
				        make_uint2(f2bf(pp.x) | (unsigned)f2bf(pp.y) << 16,
				                   f2bf(pp.z) | (unsigned)f2bf(pp.w) << 16);
		}
	} else {
		for (size_t i = i0 + threadIdx.x; i < i1; i += ADAM_THREADS) {
			size_t j = s.off + i;
			adam_one(p[j], g[j], m[j], v[j], scale, lr, b1, b2, eps, w, bc1, bc2);
			if (pb)
				pb[j] = f2bf(p[j]);
		}
	}
}

/* round 20 (POLICY_GPU_ADAMW=overlap16/32/64): one group of the update on
 * a few blocks of 1024 threads (a block an SM), the group's tensors in turn,
 * each a grid-stride loop two float4 steps deep (8 loads in flight a
 * thread), so that the update takes gridDim.x SMs and leaves the others to
 * the next step's forward. adam_one per element, float4 or scalar where
 * k_adamw_all takes each: the same bits. */
#define ADAM_GRP_THREADS 1024
__global__ static void __launch_bounds__(ADAM_GRP_THREADS)
        k_adamw_grp(float *__restrict__ p, uint16_t *__restrict__ pb, const float *__restrict__ g,
                    float *__restrict__ m, float *__restrict__ v, const struct adam_seg *seg,
                    int nseg, float scale, float lr, float b1, float b2, float eps, float wd,
                    float bc1, float bc2)
{
	const size_t stride = (size_t)gridDim.x * blockDim.x;
	const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	for (int t = 0; t < nseg; t++) {
		const struct adam_seg s = seg[t];
		const float w = s.decay ? wd : 0.0f;
		if ((s.off & 3) == 0 && (s.n & 3) == 0) {
			float4 *p4 = (float4 *)(p + s.off), *m4 = (float4 *)(m + s.off);
			float4 *v4 = (float4 *)(v + s.off);
			const float4 *g4 = (const float4 *)(g + s.off);
			uint2 *b4 = pb ? (uint2 *)(pb + s.off) : NULL;
			const size_t n4 = s.n / 4;
			for (size_t i = tid; i < n4; i += 2 * stride) {
				const size_t i1 = i + stride;
				const bool two = i1 < n4;
				float4 pp[2], mm[2], vv[2], gg[2];
				pp[0] = p4[i];
				mm[0] = m4[i];
				vv[0] = v4[i];
				gg[0] = g4[i];
				if (two) {
					pp[1] = p4[i1];
					mm[1] = m4[i1];
					vv[1] = v4[i1];
					gg[1] = g4[i1];
				}
#pragma unroll
				for (int u = 0; u < 2; u++) {
					const size_t j = u ? i1 : i;
					if (u && !two)
						break;
					adam_one(pp[u].x, gg[u].x, mm[u].x, vv[u].x, scale, lr, b1,
					         b2, eps, w, bc1, bc2);
					adam_one(pp[u].y, gg[u].y, mm[u].y, vv[u].y, scale, lr, b1,
					         b2, eps, w, bc1, bc2);
					adam_one(pp[u].z, gg[u].z, mm[u].z, vv[u].z, scale, lr, b1,
					         b2, eps, w, bc1, bc2);
					adam_one(pp[u].w, gg[u].w, mm[u].w, vv[u].w, scale, lr, b1,
					         b2, eps, w, bc1, bc2);
					p4[j] = pp[u];
					m4[j] = mm[u];
					v4[j] = vv[u];
					if (b4)
						b4[j] = make_uint2(
						        f2bf(pp[u].x) | (unsigned)f2bf(pp[u].y)
						                                << 16,
						        f2bf(pp[u].z) | (unsigned)f2bf(pp[u].w)
						                                << 16);
				}
			}
		} else {
			for (size_t i = tid; i < s.n; i += stride) {
				size_t j = s.off + i;
				adam_one(p[j], g[j], m[j], v[j], scale, lr, b1, b2, eps, w, bc1,
				         bc2);
				if (pb)
					pb[j] = f2bf(p[j]);
			}
		}
	}
}

/* round 14 (graph mode): policy_gpu_adamw's host arithmetic on the device,
 * in the same order and precision (double; IEEE sqrt and division): the
 * 1024 partial sums added in order, the norm (out[0]) and the float clip
 * scale (at out + 1) that k_adamw_all<true> reads */
__global__ static void k_clip_scale(double *out, const float *part, double inv, double clip,
                                    const float *part2 = NULL, int n2 = 0)
{
	__shared__ float p[1024];
	__shared__ double p2[256]; /* round 24: part2's sums a thread, in order */
	for (int i = threadIdx.x; i < 1024; i += blockDim.x)
		p[i] = part[i];
	if (threadIdx.x < 256) {
		double t = 0;
		const int per = (n2 + 255) / 256, i0 = threadIdx.x * per;
		for (int i = i0; i < n2 && i < i0 + per; i++)
			t += part2[i];
		p2[threadIdx.x] = t;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		double ss = 0, norm, scale = 1.0;
		for (int i = 0; i < 1024; i++)
			ss += p[i];
		for (int i = 0; i < 256; i++) /* round 24: the window's tiles (0 without) */
			ss += p2[i];
		norm = sqrt(ss) * inv;
		if (clip > 0 && norm > clip)
			scale = clip / (norm + 1e-30);
		scale *= inv;
		out[0] = norm;
		*(float *)(out + 1) = (float)scale;
	}
}

/* sum of squares with float4 loads (n % 4 elements by the first threads) */
__global__ static void k_sumsq4(float *out, const float *g, size_t n)
{
	float s = 0;
	size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += stride) {
		float4 x = ((const float4 *)g)[i];
		s += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
	}
	if (blockIdx.x == 0 && threadIdx.x < n - 4 * n4)
		s += g[4 * n4 + threadIdx.x] * g[4 * n4 + threadIdx.x];
	s = block_sum(s);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

/* round 24: k_sumsq4 over the arena's ranges rng[0..nr) only (the experts'
 * dW summed by the window's tiles): block b sums the elements i = b
 * blockDim + t + k gridDim blockDim of each range in turn (float4 where the
 * range allows), out[b] its share; a fixed order, as k_sumsq4's */
__global__ static void k_sumsq_rng(float *out, const float *g, const struct gz_range *rng, int nr)
{
	float s = 0;
	const size_t stride = (size_t)gridDim.x * blockDim.x;
	for (int r = 0; r < nr; r++) {
		const float *p = g + rng[r].off;
		const size_t n = rng[r].n;
		if (rng[r].off % 4 == 0) {
			const size_t n4 = n / 4;
			for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4;
			     i += stride) {
				const float4 x = ((const float4 *)p)[i];
				s += x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w;
			}
			for (size_t i = 4 * n4 + blockIdx.x * (size_t)blockDim.x + threadIdx.x;
			     i < n; i += stride)
				s += p[i] * p[i];
		} else {
			for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
			     i += stride)
				s += p[i] * p[i];
		}
	}
	s = block_sum(s);
	if (threadIdx.x == 0)
		out[blockIdx.x] = s;
}

/* inputs of the fused head: targets clamped to >= 0 with a mask; for
 * cross-entropy (xent), CISPO with A = 1 and a ratio capped at 1 (logp_old
 * far below any logp, eps_high 0) is exactly -logp / N */
__global__ static void k_pl_prep(int *tgt_c, uint8_t *mask, float *old, float *adv, const int *tgt,
                                 const float *old_in, const float *adv_in, int T, int xent)
{
	int t = blockIdx.x * blockDim.x + threadIdx.x;
	if (t >= T)
		return;
	tgt_c[t] = tgt[t] >= 0 ? tgt[t] : 0;
	mask[t] = tgt[t] >= 0;
	old[t] = xent ? -1e4f : old_in[t];
	adv[t] = xent ? 1.0f : adv_in[t];
}

/* ---- GEMMs (row-major views) ---------------------------------------------- */

/* fp32 GEMMs run CUBLAS_COMPUTE_32F (no TF32); bf16 operands run
 * CUBLAS_COMPUTE_32F (bf16 tensor cores, fp32 accumulation); fp32 operands
 * in bf16 mode (POLICY_GPU_ACT=fp32, and the softmax layer's wo) let cuBLAS
 * down-convert (FAST_16BF). Tried and dropped: converting both operands to
 * bf16 copies before each GEMM (H100: 117 vs 70 ms a benchmark step). */
static cublasComputeType_t ctype(const struct policy_gpu *g, int force32)
{
	return force32 || g->prec == POLICY_GPU_FP32 ? CUBLAS_COMPUTE_32F
	                                             : CUBLAS_COMPUTE_32F_FAST_16BF;
}

/* the main cuBLAS handle back on the step's stream (graph mode: gst with
 * its fixed workspace, which cublasSetStream resets) */
static int blas_home(struct policy_gpu *g)
{
	CKB(cublasSetStream(g->blas, g->gst));
	if (g->graph)
		CKB(cublasSetWorkspace(g->blas, g->blas_ws, g->blas_ws_bytes));
	return 0;
}

/* column-major C (m, n) = op(A) op(B) + beta C; A and B of type ab, C of
 * type ct; strided-batched when batch > 1 */
static int gemm_c(struct policy_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                  int k, const void *A, int lda, long long sa, const void *B, int ldb, long long sb,
                  cudaDataType_t ab, float beta, void *C, cudaDataType_t ct, int ldc, long long sc,
                  int batch, int f32, const void *Cin);

static int gemm(struct policy_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                int k, const void *A, int lda, long long sa, const void *B, int ldb, long long sb,
                cudaDataType_t ab, float beta, void *C, cudaDataType_t ct, int ldc, long long sc,
                int batch, int f32)
{
	return gemm_c(g, ta, tb, m, n, k, A, lda, sa, B, ldb, sb, ab, beta, C, ct, ldc, sc, batch,
	              f32, NULL);
}

/* gemm with C's input apart (Cin not NULL, round 23: C = A B + beta Cin
 * through gemm_tune's cuBLASLt path, tuned or not) */
static int gemm_c(struct policy_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                  int k, const void *A, int lda, long long sa, const void *B, int ldb, long long sb,
                  cudaDataType_t ab, float beta, void *C, cudaDataType_t ct, int ldc, long long sc,
                  int batch, int f32, const void *Cin)
{
	float one = 1.0f;
	cublasComputeType_t cp = ab == CUDA_R_16BF ? CUBLAS_COMPUTE_32F : ctype(g, f32);
	cublasStatus_t st;
	double t0;
	if (!m || !n || !k || !batch)
		return 0;
	t0 = g->prof ? now_s() : 0;
	cublasHandle_t h = g->on_side ? g->blas_side : g->blas;
	if (g->gemm_tune || Cin) { /* the workspace the handle uses on this stream (graph mode's) */
		const struct swerve_gemm c = {
		        ta, tb, m,    n, k,  A,   lda, sa,    B,  ldb,
		        sb, ab, beta, C, ct, ldc, sc,  batch, cp, g->on_side ? g->side_sms : 0,
		        Cin};
		void *ws = g->on_side ? g->side_ws : g->blas_ws;
		st = (cublasStatus_t)swerve_gemm_run(h, g->gemm_tune, ws, ws ? g->blas_ws_bytes : 0,
		                                     &c);
	} else if (batch == 1)
		st = cublasGemmEx(h, ta, tb, m, n, k, &one, A, ab, lda, B, ab, ldb, &beta, C, ct,
		                  ldc, cp, CUBLAS_GEMM_DEFAULT);
	else
		st = cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &one, A, ab, lda, sa, B, ab,
		                                ldb, sb, &beta, C, ct, ldc, sc, batch, cp,
		                                CUBLAS_GEMM_DEFAULT);
	if (g->prof)
		g->prof_t[PROF_GEMM_HOST] += now_s() - t0;
	if (st != CUBLAS_STATUS_SUCCESS)
		return swerve_error_set(SWERVE_ERROR,
		                        "gpu: cuBLAS GEMM %dx%dx%d (batch %d): status %d", m, n, k,
		                        batch, (int)st);
	return 0;
}

#define LTOK(x) ((x) == CUBLAS_STATUS_SUCCESS)
/* the cached descriptors of a slot set to this call's shape: rows, columns,
 * leading dimensions and batch strides (the transposes and types are the
 * slot's); 0 where cuBLASLt refuses an attribute */
static int lt_call_reshape(struct swerve_lt_desc *c, cublasOperation_t ta, cublasOperation_t tb,
                           int m, int n, int k, int lda, long long sa, int ldb, long long sb,
                           int ldc, long long sc, int batch)
{
	cublasLtMatrixLayout_t ls[3] = {c->la, c->lb, c->lc};
	uint64_t rows[3] = {(uint64_t)(ta == CUBLAS_OP_N ? m : k),
	                    (uint64_t)(tb == CUBLAS_OP_N ? k : n), (uint64_t)m};
	uint64_t cols[3] = {(uint64_t)(ta == CUBLAS_OP_N ? k : m),
	                    (uint64_t)(tb == CUBLAS_OP_N ? n : k), (uint64_t)n};
	int64_t ld[3] = {lda, ldb, ldc}, st[3] = {sa, sb, sc};
	int32_t bc = batch;
	int ok = 1;
	for (int i = 0; i < 3; i++) {
		ok = ok &&
		     LTOK(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_ROWS,
		                                           &rows[i], sizeof(rows[i]))) &&
		     LTOK(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_COLS,
		                                           &cols[i], sizeof(cols[i]))) &&
		     LTOK(cublasLtMatrixLayoutSetAttribute(ls[i], CUBLASLT_MATRIX_LAYOUT_LD, &ld[i],
		                                           sizeof(ld[i])));
		if (batch > 1)
			ok = ok &&
			     LTOK(cublasLtMatrixLayoutSetAttribute(
			             ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc))) &&
			     LTOK(cublasLtMatrixLayoutSetAttribute(
			             ls[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st[i],
			             sizeof(st[i])));
	}
	return ok;
}

/* the heuristic's first choice for c (16-byte alignment, the workspace) */
static int lt_pick(struct policy_gpu *g, struct swerve_lt_desc *c, cublasLtMatmulAlgo_t *algo)
{
	cublasLtMatmulPreference_t pref = NULL;
	cublasLtMatmulHeuristicResult_t res;
	uint32_t al = 16;
	uint64_t wsb = g->lt_ws_bytes;
	int nres = 0, ok;
	memset(&res, 0, sizeof(res));
	ok = LTOK(cublasLtMatmulPreferenceCreate(&pref)) &&
	     LTOK(cublasLtMatmulPreferenceSetAttribute(
	             pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof(wsb))) &&
	     LTOK(cublasLtMatmulPreferenceSetAttribute(
	             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof(al))) &&
	     LTOK(cublasLtMatmulPreferenceSetAttribute(
	             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof(al))) &&
	     LTOK(cublasLtMatmulPreferenceSetAttribute(
	             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof(al))) &&
	     LTOK(cublasLtMatmulPreferenceSetAttribute(
	             pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof(al))) &&
	     LTOK(cublasLtMatmulAlgoGetHeuristic(g->lt, c->op, c->la, c->lb, c->lc, c->lc, pref, 1,
	                                         &res, &nres)) &&
	     nres > 0;
	if (pref)
		cublasLtMatmulPreferenceDestroy(pref);
	if (ok)
		*algo = res.algo;
	return ok;
}

/* gemm() through cuBLASLt with the algorithm of the slot (kind, I, O, C
 * type, accumulate, batched): the heuristic's choice at the slot's first
 * use, reused for every other row count. Where the cached algorithm refuses
 * a shape, plain cuBLAS runs it (counted in lt_fallbacks). */
static int lt_gemm(struct policy_gpu *g, int kind, int I, int O, cublasOperation_t ta,
                   cublasOperation_t tb, int m, int n, int k, const void *A, int lda, long long sa,
                   const void *B, int ldb, long long sb, cudaDataType_t ab, float beta, void *C,
                   cudaDataType_t ct, int ldc, long long sc, int batch)
{
	struct swerve_lt_desc c;
	struct lt_slot *sl = NULL;
	float one = 1.0f;
	int acc = beta != 0.0f, ok;
	double t0;
	if (!m || !n || !k || !batch)
		return 0;
	t0 = g->prof ? now_s() : 0;
	for (int i = 0; i < LT_SLOTS && !sl; i++) {
		struct lt_slot *s = &g->lts[i];
		if (!s->used) {
			memset(s, 0, sizeof(*s));
			s->used = 1;
			s->kind = kind;
			s->I = I;
			s->O = O;
			s->yt = (int)ct;
			s->acc = acc;
			s->batched = batch > 1;
			sl = s;
		} else if (s->kind == kind && s->I == I && s->O == O && s->yt == (int)ct &&
		           s->acc == acc && s->batched == (batch > 1))
			sl = s;
	}
	int cached = sl && sl->have_desc && g->lt_cache, keep = 0;
	if (cached) { /* the slot's descriptors, reshaped */
		ok = lt_call_reshape(&sl->desc, ta, tb, m, n, k, lda, sa, ldb, sb, ldc, sc, batch);
		c = sl->desc;
	} else {
		const struct swerve_gemm shape = {ta,
		                                  tb,
		                                  m,
		                                  n,
		                                  k,
		                                  A,
		                                  lda,
		                                  sa,
		                                  B,
		                                  ldb,
		                                  sb,
		                                  ab,
		                                  beta,
		                                  C,
		                                  ct,
		                                  ldc,
		                                  sc,
		                                  batch,
		                                  CUBLAS_COMPUTE_32F,
		                                  0,
		                                  NULL};
		ok = swerve_lt_desc_make(&c, &shape); /* bf16 compute */
		keep = ok && sl && g->lt_cache;
	}
	if (ok && sl && !sl->ok)
		sl->ok = lt_pick(g, &c, &sl->algo);
	ok = ok && sl && sl->ok &&
	     LTOK(cublasLtMatmul(g->lt, c.op, &one, A, c.la, B, c.lb, &beta, C, c.lc, C, c.lc,
	                         &sl->algo, g->cur_ws ? g->cur_ws : g->lt_ws, g->lt_ws_bytes,
	                         g->cur_st ? g->cur_st : PST));
	if (keep) { /* kept for the slot's later calls */
		sl->desc = c;
		sl->have_desc = 1;
	} else if (!cached) {
		swerve_lt_desc_free(&c);
	}
	g->lt_calls++;
	if (g->prof)
		g->prof_t[PROF_GEMM_HOST] += now_s() - t0;
	if (ok)
		return 0;
	g->lt_fallbacks++;
	if (g->cur_st) { /* plain cuBLAS on the same stream */
		int rc;
		CKB(cublasSetStream(g->blas, g->cur_st));
		rc = gemm(g, ta, tb, m, n, k, A, lda, sa, B, ldb, sb, ab, beta, C, ct, ldc, sc,
		          batch, 0);
		CKR(blas_home(g));
		return rc;
	}
	return gemm(g, ta, tb, m, n, k, A, lda, sa, B, ldb, sb, ab, beta, C, ct, ldc, sc, batch, 0);
}

/* Y (T, O) = X (T, I) W^T (+ beta Y), W (O, I); X and W of type ab */
static int mm_fwd(struct policy_gpu *g, void *Y, cudaDataType_t yt, const void *X, const void *W,
                  cudaDataType_t ab, int T, int I, int O, float beta, int f32)
{
	return gemm(g, CUBLAS_OP_T, CUBLAS_OP_N, O, T, I, W, I, 0, X, I, 0, ab, beta, Y, yt, O, 0,
	            1, f32);
}

/* round 23: whether layer l's output projection adds the residual in its
 * epilogue (POLICY_GPU_WO_ADD=gemm; the softmax layer's on bf16 operands
 * only) */
static int wo_fused(const struct policy_gpu *g, int softmax)
{
	return g->wo_add && (!softmax || g->sm_wo16);
}

/* the attention's output projection: Y (T, O) fp32 = X W^T, or (wo_fused)
 * ly->hmid = ly->xin + X W^T in bf16, the residual added in the epilogue */
static int wo_fwd(struct policy_gpu *g, struct glayer *ly, int softmax, float *Y, const void *X,
                  const void *W, cudaDataType_t ab, int T, int I, int O)
{
	if (wo_fused(g, softmax))
		return gemm_c(g, CUBLAS_OP_T, CUBLAS_OP_N, O, T, I, W, I, 0, X, I, 0, ab, 1.0f,
		              ly->hmid, CUDA_R_16BF, O, 0, 1, 0, ly->xin);
	return mm_fwd(g, Y, CUDA_R_32F, X, W, ab, T, I, O, 0, 0);
}

/* dX (T, I) = dY (T, O) W (+ beta dX) */
static int mm_dx(struct policy_gpu *g, void *dX, cudaDataType_t xt, const void *dY, const void *W,
                 cudaDataType_t ab, int T, int I, int O, float beta, int f32)
{
	return gemm(g, CUBLAS_OP_N, CUBLAS_OP_N, I, T, O, W, I, 0, dY, O, 0, ab, beta, dX, xt, I, 0,
	            1, f32);
}

/* dW (O, I) += dY^T (O, T) X (T, I), dW fp32 */
static int mm_dw(struct policy_gpu *g, float *dW, const void *dY, const void *X, cudaDataType_t ab,
                 int T, int I, int O, int f32)
{
	return gemm(g, CUBLAS_OP_N, CUBLAS_OP_T, I, O, T, X, I, 0, dY, O, 0, ab, 1.0f, dW,
	            CUDA_R_32F, I, 0, 1, f32);
}

/* ---- round 10: the weight gradients on a second stream ------------------------ */

/* from here on, issue on the side stream (POLICY_GPU_STREAMS=2), after
 * the main stream's work so far */
static int side_fork(struct policy_gpu *g)
{
	CK(cudaEventRecord(g->ev_fork, PST));
	CK(cudaStreamWaitEvent(g->side, g->ev_fork, 0));
	g->on_side = 1;
	policy_moe_stream(g->side);
	return 0;
}

/* back to the main stream (rc: the side calls' result); the side stream's
 * work so far marks the buffers of slot as read */
static int side_done(struct policy_gpu *g, int slot, int rc)
{
	g->on_side = 0;
	policy_moe_stream(PST);
	CKR(rc);
	CK(cudaEventRecord(g->ev[slot], g->side));
	g->ev_live |= 1u << slot;
	return 0;
}

/* the main stream waits until the side stream has read slot's buffers (a
 * no-op without the side stream, or for a slot not yet recorded) */
static int side_wait(struct policy_gpu *g, int slot)
{
	/* graph mode: an event of an earlier step (outside the capture) is
	 * not waited for; that step's side_join already ordered it */
	if (g->streams && (!g->graph || (g->ev_live >> slot & 1)))
		CK(cudaStreamWaitEvent(PST, g->ev[slot], 0));
	return 0;
}

/* the main stream waits for everything issued on the side stream */
static int side_join(struct policy_gpu *g)
{
	if (!g->streams)
		return 0;
	CK(cudaEventRecord(g->ev_join, g->side));
	CK(cudaStreamWaitEvent(PST, g->ev_join, 0));
	return 0;
}

/* mm_dw on the side stream when there is one (its inputs dY and X then
 * marked read in slot), else on the main stream */
static int mm_dw_side(struct policy_gpu *g, int slot, float *dW, const void *dY, const void *X,
                      cudaDataType_t ab, int T, int I, int O, int f32)
{
	if (!g->streams)
		return mm_dw(g, dW, dY, X, ab, T, I, O, f32);
	CKR(side_fork(g));
	return side_done(g, slot, mm_dw(g, dW, dY, X, ab, T, I, O, f32));
}

/* the weights of GEMM operands: the bf16 copy in bf16 mode */
static const void *wp(const struct policy_gpu *g, size_t off)
{
	return g->ab ? (const void *)(g->pb + off) : (const void *)(g->params + off);
}

static size_t tsize(cudaDataType_t t)
{
	return t == CUDA_R_16BF ? 2 : 4;
}

/* The E expert GEMMs of one projection (W_e (O, I) at W + e O I, activation
 * operands of g->at): one strided-batched GEMM over the padded segments, or
 * a GEMM per compact segment.
 *   EX_FWD: Y (rows, O) = A1 (rows, I) W_e^T
 *   EX_DX:  Y (rows, I) = A1 (rows, O) W_e (+ beta Y)
 *   EX_DW:  dW_e (O, I) += A1^T (O, rows) A2 (rows, I), Y = the fp32 dW */
enum { EX_FWD, EX_DX, EX_DW };
static int xgemm(struct policy_gpu *g, int kind, int I, int O, cublasOperation_t ta,
                 cublasOperation_t tb, int m, int n, int k, const void *A, int lda, long long sa,
                 const void *B, int ldb, long long sb, cudaDataType_t ab, float beta, void *C,
                 cudaDataType_t ct, int ldc, long long sc, int batch)
{
	if (g->use_lt)
		return lt_gemm(g, kind, I, O, ta, tb, m, n, k, A, lda, sa, B, ldb, sb, ab, beta, C,
		               ct, ldc, sc, batch);
	return gemm(g, ta, tb, m, n, k, A, lda, sa, B, ldb, sb, ab, beta, C, ct, ldc, sc, batch, 0);
}

static int expert_mm(struct policy_gpu *g, const struct glayer *ly, int kind, void *Y,
                     cudaDataType_t yt, const void *A1, const void *A2, const void *W, int I, int O,
                     float beta)
{
	int E = g->cfg.n_experts, cap = ly->h_cap, batch = cap ? E : 1;
	size_t as = g->as, ys = tsize(yt);
	int w1 = kind == EX_FWD ? I : O, wy = kind == EX_FWD ? O : I;
	long long sW = (long long)O * I;
	int rc = 0;
	for (int e = 0; e < (cap ? 1 : E) && !rc; e++) {
		int o = cap ? 0 : ly->h_off[e], n = cap ? cap : ly->h_off[e + 1] - o;
		const char *a1 = (const char *)A1 + (size_t)o * w1 * as;
		const char *we = W ? (const char *)W + (size_t)e * sW * as : NULL;
		if (!cap && g->n_xs > 1 && g->use_lt) {
			/* expert e's stream: the same for every projection of e, so
			 * its dX accumulation (beta 1) follows its first product */
			g->cur_st = g->xs[e % g->n_xs];
			g->cur_ws = g->xs_ws[e % g->n_xs];
		}
		if (kind == EX_DW) {
			const char *a2 = (const char *)A2 + (size_t)o * I * as;
			rc = xgemm(g, kind, I, O, CUBLAS_OP_N, CUBLAS_OP_T, I, O, n, a2, I,
			           (long long)cap * I, a1, O, (long long)cap * O, g->at, 1.0f,
			           (float *)Y + (size_t)e * sW, CUDA_R_32F, I, sW, batch);
		} else {
			char *y = (char *)Y + (size_t)o * wy * ys;
			if (kind == EX_FWD)
				rc = xgemm(g, kind, I, O, CUBLAS_OP_T, CUBLAS_OP_N, O, n, I, we, I,
				           sW, a1, I, (long long)cap * I, g->at, beta, y, yt, O,
				           (long long)cap * O, batch);
			else
				rc = xgemm(g, kind, I, O, CUBLAS_OP_N, CUBLAS_OP_N, I, n, O, we, I,
				           sW, a1, O, (long long)cap * O, g->at, beta, y, yt, I,
				           (long long)cap * I, batch);
		}
	}
	g->cur_st = 0; /* back to the legacy default stream */
	g->cur_ws = NULL;
	return rc;
}

/* C = op(A) op(B), column-major, batched with strides (fp32; TF32 in bf16
 * mode) */
static int gemm_b(struct policy_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                  int k, const float *A, int lda, long long sa, const float *B, int ldb,
                  long long sb, float beta, float *C, int ldc, long long sc, int batch)
{
	float one = 1.0f;
	CKB(cublasGemmStridedBatchedEx(g->blas, ta, tb, m, n, k, &one, A, CUDA_R_32F, lda, sa, B,
	                               CUDA_R_32F, ldb, sb, &beta, C, CUDA_R_32F, ldc, sc, batch,
	                               g->ab ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
	                               CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* Softmax attention of one layer through cuBLAS, per sequence and KV group
 * (the group's heads batched): S = Q K^T, P = causal softmax(scale S),
 * O = P V. Row-major (L, L) matrices are read by cuBLAS as their
 * transposes, so S^T = K Q^T etc. */
static int attn_gemm_fwd(struct policy_gpu *g, float *o, float *lse, const float *q, const float *k,
                         const float *v, const struct policy_batch *b)
{
	const struct policy_config *c = &g->cfg;
	int H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim, grp = H / KV;
	float scale = 1.0f / sqrtf((float)d);
	for (int sq = 0; sq < b->n_seqs; sq++) {
		int t0 = b->cu_seqlens[sq], L = b->cu_seqlens[sq + 1] - t0;
		if (L == 0)
			continue;
		if ((size_t)grp * L * L > g->att_n)
			return swerve_error_set(SWERVE_ELIMIT,
			                        "gpu: sequence of %d tokens exceeds "
			                        "the attention scratch",
			                        L);
		for (int kg = 0; kg < KV; kg++) {
			const float *K = k + ((size_t)t0 * KV + kg) * d;
			const float *V = v + ((size_t)t0 * KV + kg) * d;
			const float *Q = q + ((size_t)t0 * H + kg * grp) * d;
			float *O = o + ((size_t)t0 * H + kg * grp) * d;
			CKR(gemm_b(g, CUBLAS_OP_T, CUBLAS_OP_N, L, L, d, K, KV * d, 0, Q, H * d, d,
			           0, g->att_s, L, (long long)L * L, grp));
			k_causal_softmax<<<dim3((unsigned)L, (unsigned)grp), 128, 0, PST>>>(
			        g->att_s, lse, NULL, L, scale, t0, H, kg * grp);
			LAUNCHED();
			CKR(gemm_b(g, CUBLAS_OP_N, CUBLAS_OP_N, d, L, L, V, KV * d, 0, g->att_s, L,
			           (long long)L * L, 0, O, H * d, d, grp));
		}
	}
	return 0;
}

/* backward: dP = dO V^T, dS = P (dP - D) scale, dQ = dS K, dK = sum_h dS^T Q,
 * dV = sum_h P^T dO (P rebuilt from the saved log-sum-exp) */
static int attn_gemm_bwd(struct policy_gpu *g, float *dq, float *dk, float *dv, const float *dout,
                         const float *Dsum, const float *q, const float *k, const float *v,
                         const float *lse, const struct policy_batch *b)
{
	const struct policy_config *c = &g->cfg;
	int H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim, grp = H / KV;
	float scale = 1.0f / sqrtf((float)d);
	for (int sq = 0; sq < b->n_seqs; sq++) {
		int t0 = b->cu_seqlens[sq], L = b->cu_seqlens[sq + 1] - t0;
		if (L == 0)
			continue;
		for (int kg = 0; kg < KV; kg++) {
			const float *K = k + ((size_t)t0 * KV + kg) * d;
			const float *V = v + ((size_t)t0 * KV + kg) * d;
			const float *Q = q + ((size_t)t0 * H + kg * grp) * d;
			const float *dO = dout + ((size_t)t0 * H + kg * grp) * d;
			float *dQ = dq + ((size_t)t0 * H + kg * grp) * d;
			float *dK = dk + ((size_t)t0 * KV + kg) * d;
			float *dV = dv + ((size_t)t0 * KV + kg) * d;
			long long LL = (long long)L * L;
			dim3 rows((unsigned)L, (unsigned)grp);
			/* P from S and the saved lse */
			CKR(gemm_b(g, CUBLAS_OP_T, CUBLAS_OP_N, L, L, d, K, KV * d, 0, Q, H * d, d,
			           0, g->att_s, L, LL, grp));
			k_causal_softmax<<<rows, 128, 0, PST>>>(g->att_s, NULL, lse, L, scale, t0,
			                                        H, kg * grp);
			LAUNCHED();
			/* dP^T = V dO^T, then dS */
			CKR(gemm_b(g, CUBLAS_OP_T, CUBLAS_OP_N, L, L, d, V, KV * d, 0, dO, H * d, d,
			           0, g->att_d, L, LL, grp));
			k_causal_ds<<<rows, 128, 0, PST>>>(g->att_d, g->att_s, Dsum, L, scale, t0,
			                                   H, kg * grp);
			LAUNCHED();
			/* dQ^T = K^T dS^T */
			CKR(gemm_b(g, CUBLAS_OP_N, CUBLAS_OP_N, d, L, L, K, KV * d, 0, g->att_d, L,
			           LL, 0, dQ, H * d, d, grp));
			/* dK^T = sum_h Q_h^T dS_h, dV^T = sum_h dO_h^T P_h */
			for (int j = 0; j < grp; j++) {
				CKR(gemm_b(g, CUBLAS_OP_N, CUBLAS_OP_T, d, L, L, Q + (size_t)j * d,
				           H * d, 0, g->att_d + (size_t)j * LL, L, 0,
				           j ? 1.0f : 0.0f, dK, KV * d, 0, 1));
				CKR(gemm_b(g, CUBLAS_OP_N, CUBLAS_OP_T, d, L, L, dO + (size_t)j * d,
				           H * d, 0, g->att_s + (size_t)j * LL, L, 0,
				           j ? 1.0f : 0.0f, dV, KV * d, 0, 1));
			}
		}
	}
	return 0;
}

/* round 21: the longest sequence as the kernels see it (flash attention's
 * grid, the lightning plan, their scratch): rounded up to 256 tokens, at
 * most the config's max_seq_len where the batch fits in it, so that batches
 * packed differently share a CUDA graph (graph_part's key: with flash
 * attention every kernel reads the sequence bounds from the device) */
static int maxlen_bucket(const struct policy_config *c, int m)
{
	int r = (m + 255) / 256 * 256;
	return m <= c->max_seq_len && r > c->max_seq_len ? c->max_seq_len : r;
}

/* ---- setup ------------------------------------------------------------------ */

/* round 21: the device's greatest stream priority (high) or its least */
static int stream_priority(int high)
{
	int least = 0, greatest = 0;
	if (cudaDeviceGetStreamPriorityRange(&least, &greatest) != cudaSuccess)
		return 0;
	return high ? greatest : least;
}

/* fixed cuBLAS workspaces for the main and the side handle (cuBLAS's
 * default size on the card: 32 MiB on compute capability 9, else 4 MiB, so
 * that it picks the same algorithms as the default step): graph mode sets
 * them on the handles; SWERVE_GEMM_TUNE's cuBLASLt calls use them in every
 * mode, so that a shape's key (which holds the workspace size) and so its
 * algorithm are the same with and without graphs */
static int blas_ws_setup(struct policy_gpu *g)
{
	int dev = 0, major = 0;
	CK(cudaGetDevice(&dev));
	CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
	g->blas_ws_bytes = (size_t)(major >= 9 ? 32 : 4) << 20;
	CK(cudaMalloc(&g->blas_ws, g->blas_ws_bytes));
	if (g->blas_side)
		CK(cudaMalloc(&g->side_ws, g->blas_ws_bytes));
	return 0;
}

/* round 14: graph mode's stream, events and fixed cuBLAS workspaces */
static int graph_setup(struct policy_gpu *g)
{
	CKR(blas_ws_setup(g));
	CK(cudaStreamCreateWithPriority(&g->gst, cudaStreamNonBlocking,
	                                stream_priority(g->prio == 1)));
	CK(cudaEventCreateWithFlags(&g->ev_leg, cudaEventDisableTiming));
	CK(cudaEventCreateWithFlags(&g->ev_norm, cudaEventDisableTiming));
	if (g->graph == 2) {
		CK(cudaStreamCreateWithFlags(&g->cst, cudaStreamNonBlocking));
		CK(cudaEventCreateWithFlags(&g->ev_fwd, cudaEventDisableTiming));
	}
	CK(cudaMalloc(&g->gnorm, 16));
	CK(cudaHostAlloc((void **)&g->h_norm, sizeof(double), cudaHostAllocDefault));
	if (g->blas_side)
		CKB(cublasSetWorkspace(g->blas_side, g->side_ws, g->blas_ws_bytes));
	g->graphs = (struct policy_graphs *)calloc(1, sizeof(*g->graphs));
	if (!g->graphs)
		return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
	return blas_home(g);
}

#define ALLOC(p, n)                                                                                \
	do {                                                                                       \
		CK(cudaMalloc((void **)&(p), (size_t)(n) * sizeof(*(p)) + 16));                    \
	} while (0)

/* round 21: POLICY_GPU_GRADZERO=all (the default) | stored: g->gz, the
 * arena's ranges left to clear (fused head, bf16) */
/* the arena's tensors other than the experts' w1 / w2 / w3 (skip_experts)
 * and the LM head (skip_head) as ranges, adjacent tensors merged (tensors
 * in offset order): *out (malloc'd, *n of them) */
static int arena_ranges(const struct policy_layout *L, int skip_experts, int skip_head,
                        struct gz_range **out, int *n)
{
	struct gz_range *r = (struct gz_range *)calloc((size_t)L->n + 1, sizeof(*r));
	if (!r)
		return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
	*n = 0;
	for (int i = 0; i < L->n; i++) {
		const struct policy_tensor *t = &L->t[i];
		const int expert = strstr(t->name, ".moe.w1") || strstr(t->name, ".moe.w3") ||
		                   strstr(t->name, ".moe.w2");
		if ((skip_experts && expert) || (skip_head && t->offset == L->lm_head))
			continue;
		if (*n && r[*n - 1].off + r[*n - 1].n == t->offset)
			r[*n - 1].n += t->numel; /* adjacent: one range */
		else
			r[(*n)++] = (struct gz_range){t->offset, t->numel};
	}
	*out = r;
	return 0;
}

static int gz_setup(struct policy_gpu *g, const struct policy_layout *L)
{
	static const char *const names[] = {"all", "stored"};
	int v = policy_env_choice("POLICY_GPU_GRADZERO", names, 2, 0);
	if (v <= 0)
		return v;
	return arena_ranges(L, g->moe_grouped && g->moe_dwstore, 1, &g->gz, &g->gz_n);
}

/* round 24 (POLICY_GPU_MOE_DW_WIN): the layers' xg, hh and doffs at slice s
 * of their window buffers (struct glayer; the grouped path's rows are the T K
 * assignments, no padding: slices Tm K rows apart) */
static void win_point(struct policy_gpu *g, int s)
{
	const size_t rp = (size_t)g->Tm * g->cfg.top_k, D = g->cfg.dim, F = g->cfg.expert_hidden;
	for (int l = 0; g->win && l < g->cfg.n_layers; l++) {
		struct glayer *y = &g->ly[l];
		if (!y->xgw)
			continue;
		y->xg = y->xgw + s * rp * D;
		y->hh = y->hhw + s * rp * F;
		y->doffs = y->offsw + (size_t)s * (g->cfg.n_experts + 2);
	}
}
static int win_flush(struct policy_gpu *g);

/* a window's first micro-batch: the gradient arena cleared (g->gz's ranges
 * where POLICY_GPU_GRADZERO=stored) */
static int grads_clear(struct policy_gpu *g)
{
	if (!g->gz)
		CK(cudaMemsetAsync(g->grads, 0, g->L->total * 4, PST));
	for (int i = 0; g->gz && i < g->gz_n; i++)
		CK(cudaMemsetAsync(g->grads + g->gz[i].off, 0, g->gz[i].n * 4, PST));
	return 0;
}

static int gpu_build(struct policy_gpu *g, const struct policy_config *cfg,
                     const struct policy_layout *L, int Tm, int Sm, enum policy_gpu_precision prec)
{
	int ndev = 0, D = cfg->dim, Hd = cfg->n_heads * cfg->head_dim;
	int KVd = cfg->n_kv_heads * cfg->head_dim, E = cfg->n_experts, K = cfg->top_k;
	int F = cfg->expert_hidden, H = cfg->n_heads, V = cfg->vocab_size;
	size_t TK = (size_t)Tm * K, big, Rp, as;

	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1)
		return swerve_error_set(SWERVE_EUNSUPPORTED, "gpu: no CUDA device");
	if (cfg->head_dim > 128 || E > 64)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "gpu: head_dim <= 128 and n_experts <= 64 are supported");
	for (int l = 0; l < cfg->n_layers; l++)
		if (!cfg->softmax_layer[l] && cfg->head_dim != 64 && cfg->head_dim != 128)
			return swerve_error_set(SWERVE_EUNSUPPORTED,
			                        "gpu: lightning layers need head_dim 64 or 128 "
			                        "(kernels/lightning), got %d",
			                        cfg->head_dim);
	for (int l = 0; l < cfg->n_layers; l++) {
		const struct policy_layer_params *lp = &L->layers[l];
		size_t m = (size_t)Hd * D;
		if (!lp->softmax &&
		    (lp->wk != lp->wq + m || lp->wv != lp->wk + m || lp->wgate != lp->wv + m))
			return swerve_error_set(SWERVE_EINVAL,
			                        "gpu: layer %d: wq, wk, wv, wgate are not adjacent "
			                        "in the parameter layout",
			                        l);
	}
	g->cfg = *cfg;
	g->L = L;
	g->Tm = Tm;
	g->Sm = Sm;
	g->prec = prec;
	g->ab = prec == POLICY_GPU_BF16 &&
	        !(getenv("POLICY_GPU_ACT") && !strcmp(getenv("POLICY_GPU_ACT"), "fp32"));
	g->at = g->ab ? CUDA_R_16BF : CUDA_R_32F;
	g->as = as = g->ab ? 2 : 4;
	g->moe_loop = getenv("POLICY_GPU_MOE") && !strcmp(getenv("POLICY_GPU_MOE"), "loop");
	g->moe_grouped = g->ab && policy_moe_supported(D, F) &&
	                 !(getenv("POLICY_GPU_MOE") && (!strcmp(getenv("POLICY_GPU_MOE"), "lt") ||
	                                                !strcmp(getenv("POLICY_GPU_MOE"), "loop")));
	for (int l = 0; l < cfg->n_layers && g->moe_grouped; l++) {
		const struct policy_layer_params *lp = &L->layers[l];
		if (lp->w1 % 8 || lp->w3 % 8 || lp->w2 % 8) /* 16-byte cp.async operands */
			g->moe_grouped = 0;
	}
	g->moe_round = getenv("POLICY_GPU_MOE_ROUND") ? atoi(getenv("POLICY_GPU_MOE_ROUND")) : 64;
	g->use_lt = g->ab && !(getenv("POLICY_GPU_LT") && !strcmp(getenv("POLICY_GPU_LT"), "0"));
	g->lt_cache =
	        !(getenv("POLICY_GPU_LT_CACHE") && !strcmp(getenv("POLICY_GPU_LT_CACHE"), "0"));
	if (g->moe_round < 1 || g->moe_round > 4096)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu: POLICY_GPU_MOE_ROUND must be 1..4096 rows");
	/* the MoE rows: T K assignments, padded up to 1.5 T K (POLICY_GPU_MOE_PAD=f:
	 * f T K, 1 <= f <= E) plus a round a segment; past that, compact segments */
	{
		double f = getenv("POLICY_GPU_MOE_PAD") ? atof(getenv("POLICY_GPU_MOE_PAD")) : 1.5;
		if (!(f >= 1.0 && f <= E))
			return swerve_error_set(SWERVE_EINVAL,
			                        "gpu: POLICY_GPU_MOE_PAD must be 1..%d (times the "
			                        "token-expert rows)",
			                        E);
		Rp = (size_t)((double)TK * f) + (size_t)E * g->moe_round;
	}
	if (Rp > (size_t)Tm * E)
		Rp = (size_t)Tm * E > TK ? (size_t)Tm * E : TK;
	g->Rp = (int)Rp;
	g->prof = getenv("POLICY_GPU_PROFILE") && atoi(getenv("POLICY_GPU_PROFILE")) > 0;
	g->fuse = !(getenv("POLICY_GPU_FUSE") && !strcmp(getenv("POLICY_GPU_FUSE"), "0"));
	g->moe_fused =
	        g->moe_grouped && g->fuse &&
	        !(getenv("POLICY_GPU_MOE_FUSE") && !strcmp(getenv("POLICY_GPU_MOE_FUSE"), "0"));
	g->moe_dwstore = !(getenv("POLICY_GPU_MOE_DWSTORE") &&
	                   !strcmp(getenv("POLICY_GPU_MOE_DWSTORE"), "0"));
	if (g->moe_grouped && (g->moe_gather = policy_moe_gather_mode()) < 0)
		return g->moe_gather;
	g->attn_gemm = !(getenv("POLICY_GPU_ATTN") && !strcmp(getenv("POLICY_GPU_ATTN"), "naive"));
	g->flash = g->ab && cfg->head_dim == POLICY_FLASH_HEAD_DIM &&
	           !(getenv("POLICY_GPU_ATTN") && (!strcmp(getenv("POLICY_GPU_ATTN"), "gemm") ||
	                                           !strcmp(getenv("POLICY_GPU_ATTN"), "naive")));
	if (g->flash)
		CKR(policy_flash_setup());
	g->lin32 = prec == POLICY_GPU_FP32 || (getenv("POLICY_GPU_LIGHTNING") &&
	                                       !strcmp(getenv("POLICY_GPU_LIGHTNING"), "fp32"));
	{ /* round 14: POLICY_GPU_LW_SILU=keep (the default) | core | pass (rounds 7-13) */
		int v = policy_lin_silu_mode();
		if (v < 0)
			return v;
		/* 3 (auto, round 26): keep or core by the micro-batch's tokens,
		 * per step (policy_lin_silu_pick) */
		g->lw_silu = !g->lin32 && g->ab ? v : 0;
	}
	{ /* POLICY_GPU_ROUTE=v4 (the default where supported, round 10) | v3 | v2
	   * (round 7-9's default) | v1 | old (round 6) */
		static const char *const names[] = {"v2", "v1", "old", "v3", "v4"};
		int v = policy_env_choice("POLICY_GPU_ROUTE", names, 5, 4);
		if (v < 0)
			return v;
		g->route_new = v == 2 ? 0 : policy_route_supported(E, K, D);
		if (g->route_new && (v == 0 || v >= 3) && policy_route_v2_supported(E, K, D))
			g->route_new = v >= 3 ? v : 2;
		if ((g->moe_comb = policy_moe_comb_mode()) < 0)
			return g->moe_comb;
		g->moe_comb = g->moe_comb && policy_moe_comb_supported(D);
	}
	{ /* POLICY_GPU_LIN_EW=v2 (the default where supported) | v1 | old (round 6) */
		static const char *const names[] = {"v2", "v1", "old"};
		int v = policy_env_choice("POLICY_GPU_LIN_EW", names, 3, 0);
		if (v < 0)
			return v;
		g->lin_ew = v == 2 ? 0 : policy_lin_ew_supported(Tm, Hd);
		if (g->lin_ew && v == 0)
			g->lin_ew = 2;
	}
	{ /* round 14: POLICY_GPU_LW_GATE=v3 (the default) | v2 (rounds 7-13) | v3a | v4 | v5
	   * (gpu_gate.cu; taken where the v2 passes run; v4: dgn in bf16; v5: a fast sigmoid) */
		int v = policy_gate_mode();
		if (v < 0)
			return v;
		g->lw_gate = g->lin_ew == 2 && policy_gate_supported(Tm, Hd) ? v : 0;
		if (g->lw_gate)
			CKR(policy_gate_reserve(Hd));
	}
	{ /* round 22: POLICY_GPU_SOFTMAX_WO=bf16 (the default in bf16 mode) | fp32 */
		static const char *const names[] = {"fp32", "bf16"};
		int v = policy_env_choice("POLICY_GPU_SOFTMAX_WO", names, 2, 1);
		if (v < 0)
			return v;
		g->sm_wo16 = v && g->ab;
	}
	{ /* POLICY_GPU_EW=new (the default where supported) | old (round 7's kernels) */
		static const char *const names[] = {"new", "old"};
		int v = policy_env_choice("POLICY_GPU_EW", names, 2, 0);
		if (v < 0)
			return v;
		g->ew = v == 0 && policy_ew_supported(D);
	}
	{ /* round 16: POLICY_GPU_ACT16=resid (the default) | off | slots | stream | router
	   * | all (round 19) */
		static const char *const names[] = {"off",    "slots",  "resid",
		                                    "stream", "router", "all"};
		int v = policy_env_choice("POLICY_GPU_ACT16", names, 6, 5); /* all (round 19) */
		if (v < 0)
			return v;
		g->act16 = g->moe_fused && g->ew && g->route_new >= 3 && g->moe_comb &&
		                           policy_moe_slots16_supported(cfg->expert_hidden)
		                   ? (v ? 1 : 0)
		                   : 0;
		/* the stream: the embedding's add writes x_0 (the embedding 16-byte
		 * aligned); the router on xp: v4's forward */
		g->a16x = g->act16 && (v == 2 || v == 3 || v == 5) && !(L->tok_emb & 3);
		g->a16r = g->act16 && (v == 2 || v == 4 || v == 5) && g->route_new == 4;
		g->a16g = v == 5 && g->a16x && g->a16r && g->ab;
	}
	{ /* round 23: POLICY_GPU_WO_ADD=gemm (the default) | pass (rounds 8-22) */
		static const char *const names[] = {"pass", "gemm"};
		int v = policy_env_choice("POLICY_GPU_WO_ADD", names, 2, 1);
		if (v < 0)
			return v;
		g->wo_add = v && g->a16x && g->ew && g->fuse && g->ab;
	}
	{ /* round 23: POLICY_GPU_RT_NORM=off (the default) | fused (measured level) */
		static const char *const names[] = {"off", "fused"};
		int v = policy_env_choice("POLICY_GPU_RT_NORM", names, 2, 0);
		if (v < 0)
			return v;
		g->rt_norm = v && g->a16g && g->act16 && g->a16r && g->route_new >= 3;
	}
	{ /* round 26: POLICY_GPU_NORM_ROUTE=fused (the default) | off (rounds 16-25) */
		static const char *const names[] = {"off", "fused"};
		int v = policy_env_choice("POLICY_GPU_NORM_ROUTE", names, 2, 1);
		if (v < 0)
			return v;
		g->norm_route =
		        v && g->a16r && g->a16x &&
		        policy_route_fwd_norm_supported(cfg->n_experts, cfg->top_k, cfg->dim);
	}
	{ /* round 25: POLICY_GPU_DN16=off (the default: fp32, as rounds 19-24) | on
	   * (measured level at 4 x 8192, slower at 65,536 tokens: opt-in) */
		static const char *const names[] = {"off", "on"};
		int v = policy_env_choice("POLICY_GPU_DN16", names, 2, 0);
		if (v < 0)
			return v;
		g->dn16 = v && g->a16g;
	}
	{ /* round 24: POLICY_GPU_MOE_DW_WIN=auto (the default: 4, or 2, where the
	   * slices take at most a fifth of the card's memory and the model can
	   * take them, checked in gpu_build; else off) | off | 2 .. 8 */
		static const char *const names[] = {"off", "2", "3", "4",   "5",
		                                    "6",   "7", "8", "auto"};
		int v = policy_env_choice("POLICY_GPU_MOE_DW_WIN", names, 9, 8);
		if (v < 0)
			return v;
		g->win = v == 8 ? -4 : v ? v + 1 : 0; /* -4: auto's 4, if it fits */
	}
	{ /* round 23: POLICY_GPU_MOE_DW_PAIR=on (the default) | off (rounds 1-22) */
		static const char *const names[] = {"off", "on"};
		int v = policy_env_choice("POLICY_GPU_MOE_DW_PAIR", names, 2, 1);
		if (v < 0)
			return v;
		g->dw_pair = v;
		g->pair_l = -1;
	}
	{ /* POLICY_GPU_ADAMW=fused (the default) | tensor (a launch per tensor) |
	   * round 20: overlap, overlap16, overlap32, overlap64 (the update in
	   * groups beside the next step's forward; adam_ovl) */
		static const char *const names[] = {"fused",     "tensor",    "overlap",
		                                    "overlap16", "overlap32", "overlap64"};
		static const int ovl[] = {0, 0, 1, 16, 32, 64};
		int v = policy_env_choice("POLICY_GPU_ADAMW", names, 6, 0);
		if (v < 0)
			return v;
		g->adam_per_tensor = v == 1;
		g->adam_ovl = ovl[v];
	}
	{ /* round 20: POLICY_GPU_PDL=off | on: the add + norm, routing,
	   * gather, expert, gate, lightning and combine kernels of a step
	   * launched with programmatic dependent launch (each waits for the
	   * kernel before it with griddepcontrol.wait; kernels/pdl.cuh);
	   * round 21: auto (the default): on in the launches a CUDA graph
	   * captures (graph_part), off in those launched directly */
		static const char *const names[] = {"off", "on", "auto"};
		int v = policy_env_choice("POLICY_GPU_PDL", names, 3, 2);
		if (v < 0)
			return v;
		g->pdl = v;
	}
	{ /* round 21: POLICY_GPU_WSPLIT=keep (the default: the LM head's bf16
	   * parts of W split once per weight update, w_fresh) | each (split at
	   * every micro-batch's head, rounds 7-20) */
		static const char *const names[] = {"each", "keep"};
		int v = policy_env_choice("POLICY_GPU_WSPLIT", names, 2, 1);
		if (v < 0)
			return v;
		g->wsplit_reuse = v;
	}
	CKB(cublasCreate(&g->blas));
	{ /* round 10: POLICY_GPU_STREAMS=2 (the default: weight gradients on a
	   * second stream) | 1 (one stream, rounds 1-9) */
		static const char *const names[] = {"1", "2"};
		int v = policy_env_choice("POLICY_GPU_STREAMS", names, 2, 1);
		if (v < 0)
			return v;
		g->streams = v;
	}
	{ /* round 21: POLICY_GPU_PRIO=off (the default) | main | side (struct
	   * policy_gpu's prio) */
		static const char *const names[] = {"off", "main", "side"};
		int v = policy_env_choice("POLICY_GPU_PRIO", names, 3, 0);
		if (v < 0)
			return v;
		g->prio = v;
	}
	CKR(swerve_gemm_tune_setting(&g->gemm_tune));
	CKR(policy_env_count("POLICY_GPU_SIDE_SMS", "SMs", 100000, &g->side_sms));
	if (g->streams) {
		/* non-blocking: the legacy default stream does not order itself
		 * with it; the events do */
		CK(cudaStreamCreateWithPriority(&g->side, cudaStreamNonBlocking,
		                                stream_priority(g->prio == 2)));
		CKB(cublasCreate(&g->blas_side)); /* its own workspace */
		CKB(cublasSetStream(g->blas_side, g->side));
		CK(cudaEventCreateWithFlags(&g->ev_fork, cudaEventDisableTiming));
		CK(cudaEventCreateWithFlags(&g->ev_join, cudaEventDisableTiming));
		for (int i = 0; i < SV_N; i++)
			CK(cudaEventCreateWithFlags(&g->ev[i], cudaEventDisableTiming));
	}
	if (g->use_lt) {
		CKB(cublasLtCreate(&g->lt));
		g->lt_ws_bytes = (size_t)64 << 20;
		CK(cudaMalloc(&g->lt_ws, g->lt_ws_bytes));
		g->n_xs = getenv("POLICY_GPU_MOE_STREAMS") ? atoi(getenv("POLICY_GPU_MOE_STREAMS"))
		                                           : 4;
		if (g->n_xs < 1 || g->n_xs > MOE_STREAMS_MAX)
			return swerve_error_set(SWERVE_EINVAL,
			                        "gpu: POLICY_GPU_MOE_STREAMS must be 1..%d",
			                        MOE_STREAMS_MAX);
		for (int i = 0; i < g->n_xs && g->n_xs > 1; i++) {
			CK(cudaStreamCreate(&g->xs[i])); /* blocking: ordered with stream 0 */
			CK(cudaMalloc(&g->xs_ws[i], g->lt_ws_bytes));
		}
	}
	ALLOC(g->params, L->total);
	ALLOC(g->grads, L->total);
	ALLOC(g->m, L->total);
	ALLOC(g->v, L->total);
	if (g->ab)
		ALLOC(g->pb, L->total);
	CK(cudaMemset(g->m, 0, L->total * 4));
	CK(cudaMemset(g->v, 0, L->total * 4));
	{
		float *s = (float *)malloc((size_t)cfg->n_layers * H * sizeof(float));
		for (int l = 0; l < cfg->n_layers; l++)
			for (int h = 0; h < H; h++)
				s[l * H + h] = swerve_lightning_slope(h, H, l, cfg->n_layers);
		ALLOC(g->slopes, (size_t)cfg->n_layers * H);
		CK(cudaMemcpy(g->slopes, s, (size_t)cfg->n_layers * H * 4, cudaMemcpyHostToDevice));
		free(s);
	}
	g->ly = (struct glayer *)calloc((size_t)cfg->n_layers, sizeof(struct glayer));
	for (int l = 0; l < cfg->n_layers; l++) {
		struct glayer *y = &g->ly[l];
		ALLOC(y->xin, (size_t)Tm * D);
		CK(cudaMalloc(&y->n1, (size_t)Tm * D * as + 16));
		ALLOC(y->rstd1, Tm);
		ALLOC(y->hmid, (size_t)Tm * D);
		ALLOC(y->n2, (size_t)Tm * D);
		ALLOC(y->rstd2, Tm);
		if (cfg->softmax_layer[l]) {
			ALLOC(y->q, (size_t)Tm * Hd);
			ALLOC(y->k, (size_t)Tm * KVd);
			ALLOC(y->v, (size_t)Tm * KVd);
			ALLOC(y->o, (size_t)Tm * Hd);
			ALLOC(y->lse, (size_t)Tm * H);
			if (g->sm_wo16)
				CK(cudaMalloc(&y->oa, (size_t)Tm * Hd * 2 + 16));
		} else {
			CK(cudaMalloc(&y->pre, (size_t)4 * Tm * Hd * as + 16));
			ALLOC(y->qkv_b, (size_t)3 * Tm * Hd);
			if (g->lin32)
				ALLOC(y->qkv_f, (size_t)3 * Tm * Hd);
			ALLOC(y->o, (size_t)Tm * Hd);
			ALLOC(y->rstd_o, Tm);
			CK(cudaMalloc(&y->gn, (size_t)Tm * Hd * as + 16));
		}
		ALLOC(y->prob, (size_t)Tm * E);
		ALLOC(y->gate, TK);
		ALLOC(y->sel, TK);
		ALLOC(y->perm, Rp);
		ALLOC(y->rowof, TK);
		ALLOC(y->auxc, E);
		ALLOC(y->doffs, E + 2);
		y->h_off = (int *)calloc((size_t)E + 1, sizeof(int));
		if (!y->h_off)
			return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
		CK(cudaMalloc(&y->xp, Rp * D * as + 16));
		CK(cudaMalloc(&y->h1, Rp * F * as + 16));
		CK(cudaMalloc(&y->h3, Rp * F * as + 16));
		CK(cudaMalloc(&y->hh, Rp * F * as + 16));
		ALLOC(y->yp, Rp * D);
		if (g->moe_gather) /* kept for the backward's up dW */
			CK(cudaMalloc(&y->xg, TK * D * 2 + 16));
	}
	ALLOC(g->x, (size_t)Tm * D);
	ALLOC(g->xf, (size_t)Tm * D);
	ALLOC(g->nf, (size_t)Tm * D);
	ALLOC(g->rstdf, Tm);
	ALLOC(g->logits, (size_t)Tm * V);
	ALLOC(g->dx, (size_t)Tm * D);
	ALLOC(g->dn, (size_t)Tm * D);
	/* scratch sized for the largest per-layer need (floats) */
	big = (size_t)Tm * (4 * Hd + D);
	if ((Rp * ((D + 3 * F) * as + 4 * D) + 64) / 4 > big)
		big = (Rp * ((D + 3 * F) * as + 4 * D) + 64) / 4;
	{
		size_t n1 = (size_t)Tm * (Hd > D ? Hd : D) * 4;
		ALLOC(g->dt1, n1 > (size_t)Tm * (K + E) ? n1 : (size_t)Tm * (K + E));
	}
	if (g->ab)
		ALLOC(g->dxb, (size_t)Tm * D);
	{ /* round 10: POLICY_GPU_COPY=sync (the default) | async (pinned staging) */
		static const char *const names[] = {"sync", "async"};
		int v = policy_env_choice("POLICY_GPU_COPY", names, 2, 0);
		if (v < 0)
			return v;
		g->copy_async = v;
	}
	{ /* round 14: POLICY_GPU_GRAPH=0 | 1 (the micro-batch as CUDA graphs
	   * where the step has no host round trip; elsewhere 1 runs the
	   * default step) | 2 (1 with the backward's graph queued before the
	   * head's read-backs, which run on a copy stream; first run on a GPU
	   * in round 21: bit for bit, 71.6 / 71.6 against 1's 72.0 / 71.6 ms a
	   * step, and no host wait between the two graphs) | auto (round 21,
	   * the default: 2, a key's graph captured the second time the key
	   * comes, so that a run whose shapes never repeat, as an RL batch's
	   * packed lengths, launches as 0 does and captures nothing) */
		static const char *const names[] = {"0", "1", "2", "auto"};
		int v = policy_env_choice("POLICY_GPU_GRAPH", names, 4, 3);
		if (v < 0)
			return v;
		g->graph_auto = v == 3;
		v = v == 3 ? 2 : v;
		g->graph = prec == POLICY_GPU_BF16 && g->moe_grouped && !g->prof ? v : 0;
		if (g->graph) /* its staging and pinned read-backs */
			g->copy_async = 1;
	}
	if (g->copy_async) {
		CK(cudaHostAlloc((void **)&g->h_stage, ((size_t)7 * Tm + Sm + 1) * 4,
		                 cudaHostAllocDefault));
		CK(cudaHostAlloc((void **)&g->h_pin, 16 + (size_t)cfg->n_layers * 8 + Tm,
		                 cudaHostAllocDefault));
		CK(cudaEventCreateWithFlags(&g->ev_stage, cudaEventDisableTiming));
	}
	g->dw_pair = g->dw_pair && g->moe_grouped && cfg->n_layers > 1;
	if (g->dw_pair) /* round 23: a deferred layer's dyp (moe_bwd_grouped) */
		CK(cudaMalloc((void **)&g->dyp2, TK * D * 2 + 16));
	if (g->win < 0) { /* round 24, auto: 4, or 2, where that fits and can run; else off */
		size_t fr = 0, tot = 0;
		const size_t slice = (size_t)cfg->n_layers * TK * (2 * D + 3 * F) * 2;
		const int ok = g->moe_grouped && g->moe_gather && g->ab &&
		               policy_moe_dw_window_supported() &&
		               cudaMemGetInfo(&fr, &tot) == cudaSuccess;
		g->win = ok && 4 * slice <= tot / 5 ? 4 : ok && 2 * slice <= tot / 5 ? 2 : 0;
	}
	/* round 24: a window only where the model can take one (bf16, the grouped
	 * experts with the gathered rows, a kernel whose weight gradients sum
	 * segments); elsewhere off, as POLICY_GPU_MOE_DW_PAIR is */
	if (g->win &&
	    (!g->moe_grouped || !g->moe_gather || !g->ab || !policy_moe_dw_window_supported()))
		g->win = 0;
	if (g->win) { /* round 24: the window's slices (see struct glayer) */
		const size_t w = (size_t)g->win, rp = TK; /* see win_point */
		for (int l = 0; l < cfg->n_layers; l++) {
			struct glayer *y = &g->ly[l];
			cudaFree(y->xg); /* replaced by slice 0 of the window's */
			cudaFree(y->hh);
			cudaFree(y->doffs);
			y->xg = y->hh = NULL;
			y->doffs = NULL;
			CK(cudaMalloc((void **)&y->xgw, w * rp * D * 2 + 16));
			CK(cudaMalloc((void **)&y->hhw, w * rp * F * 2 + 16));
			CK(cudaMalloc((void **)&y->dypw, w * rp * D * 2 + 16));
			CK(cudaMalloc((void **)&y->dh13w, w * rp * 2 * F * 2 + 16));
			CK(cudaMalloc((void **)&y->offsw, w * (E + 2) * sizeof(int)));
		}
		win_point(g, 0);
		/* the dW tiles' sums of squares (policy_moe_dims's sq) and the
		 * arena's other ranges, for AdamW's norm */
		g->sq_up = E * ((2 * F + 127) / 128) * ((D + 255) / 256);
		g->sq_dn = E * ((D + 127) / 128) * ((F + 255) / 256);
		ALLOC(g->sqw, (size_t)cfg->n_layers * (g->sq_up + g->sq_dn));
		struct gz_range *rng;
		CKR(arena_ranges(L, 1, 0, &rng, &g->nsq_rng));
		cudaError_t e =
		        cudaMalloc((void **)&g->sq_rng_d, (size_t)g->nsq_rng * sizeof(*rng));
		if (e == cudaSuccess)
			e = cudaMemcpy(g->sq_rng_d, rng, (size_t)g->nsq_rng * sizeof(*rng),
			               cudaMemcpyHostToDevice);
		free(rng);
		CK(e);
	}
	if (g->streams) { /* the grouped MoE backward's own scratch (moe_bwd_grouped) */
		ALLOC(g->dgate_s, TK);
		if (g->moe_grouped)
			CK(cudaMalloc(&g->moe_scr,
			              ((TK * D + 7) / 8 * 8 + TK * 2 * F) * 2 + TK * D * 4 + 64));
	}
	ALLOC(g->offs, E + 2);
	ALLOC(g->aux_d, cfg->n_layers);
	g->h_offs = (int *)calloc((size_t)E + 2, sizeof(int));
	ALLOC(g->dt2, (size_t)Tm * (Hd > D ? Hd : D));
	ALLOC(g->dt3, (size_t)Tm * (Hd > D ? Hd : D));
	ALLOC(g->dbig, big);
	ALLOC(g->bscr, (size_t)3 * Tm * Hd);
	ALLOC(g->tok, Tm);
	ALLOC(g->tgt, Tm);
	ALLOC(g->pos, Tm);
	ALLOC(g->sstart, Tm);
	ALLOC(g->send, Tm);
	ALLOC(g->cu, Sm + 1);
	ALLOC(g->old, Tm);
	ALLOC(g->adv, Tm);
	ALLOC(g->tl, (size_t)4 * Tm);
	ALLOC(g->red, 1024);
	for (int l = 0; l < cfg->n_layers && g->attn_gemm && !g->flash; l++)
		if (cfg->softmax_layer[l]) {
			size_t lm = (size_t)(cfg->max_seq_len < Tm ? cfg->max_seq_len : Tm);
			g->att_n = (size_t)(H / cfg->n_kv_heads) * lm * lm;
			ALLOC(g->att_s, g->att_n);
			ALLOC(g->att_d, g->att_n);
			break;
		}
	if (prec == POLICY_GPU_BF16) {
		CKR(swerve_pl_ctx_new(&g->pl));
		CKR(gz_setup(g, L));
		ALLOC(g->nf_b, (size_t)Tm * D);
		ALLOC(g->tgt_c, Tm);
		ALLOC(g->mask, Tm);
		ALLOC(g->clip8, Tm);
		ALLOC(g->pl_old, Tm);
		ALLOC(g->pl_adv, Tm);
		ALLOC(g->pl_loss, 1);
	}
	if (g->copy_async) /* pinned: the fused head's asynchronous read-back */
		CK(cudaHostAlloc((void **)&g->h_tl, (size_t)4 * Tm * sizeof(float),
		                 cudaHostAllocDefault));
	else
		g->h_tl = (float *)malloc((size_t)4 * Tm * sizeof(float));
	if (!g->h_tl || !g->h_offs)
		return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
	if (g->graph)
		return graph_setup(g);
	return g->gemm_tune ? blas_ws_setup(g) : 0;
}

int policy_gpu_new(struct policy_gpu **out, const struct policy_config *cfg,
                   const struct policy_layout *L, int Tm, int Sm, enum policy_gpu_precision prec)
{
	struct policy_gpu *g = (struct policy_gpu *)calloc(1, sizeof(*g));
	int rc;
	if (!g)
		return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
	g->cfg = *cfg; /* policy_gpu_free needs n_layers to free a half-built one */
	if ((rc = gpu_build(g, cfg, L, Tm, Sm, prec))) {
		policy_gpu_free(g);
		return rc;
	}
	*out = g;
	return 0;
}

void policy_gpu_free(struct policy_gpu *g)
{
	if (!g)
		return;
	if (g->gst)
		cudaStreamSynchronize(g->gst);
	if (g->ly)
		win_point(g, 0); /* round 24: xg, hh, doffs are the window's (freed below) */
	for (int l = 0; g->ly && l < g->cfg.n_layers; l++) {
		struct glayer *y = &g->ly[l];
		if (y->xgw) { /* the per-layer buffers the window replaced were freed */
			y->xg = y->hh = NULL;
			y->doffs = NULL;
			cudaFree(y->xgw);
			cudaFree(y->hhw);
			cudaFree(y->dypw);
			cudaFree(y->dh13w);
			cudaFree(y->offsw);
		}
		void *p[] = {y->xin, y->n1,    y->rstd1, y->hmid,  y->n2,     y->rstd2,
		             y->pre, y->qkv_b, y->qkv_f, y->o,     y->rstd_o, y->gn,
		             y->q,   y->k,     y->v,     y->lse,   y->prob,   y->gate,
		             y->sel, y->perm,  y->rowof, y->auxc,  y->xp,     y->h1,
		             y->h3,  y->hh,    y->yp,    y->doffs, y->xg,     y->oa};
		for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
			cudaFree(p[i]);
		free(y->h_off);
	}
	{
		void *p[] = {g->params, g->grads, g->m,      g->v,   g->slopes, g->x,   g->xf,
		             g->nf,     g->rstdf, g->logits, g->dx,  g->dn,     g->dt1, g->dt2,
		             g->dt3,    g->dbig,  g->bscr,   g->tok, g->tgt,    g->pos, g->sstart,
		             g->send,   g->cu,    g->old,    g->adv, g->tl,     g->red, g->ws};
		for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
			cudaFree(p[i]);
	}
	cudaFree(g->adam_seg);
	if (g->ast) { /* round 20: the overlapped update done first */
		cudaStreamSynchronize(g->ast);
		cudaStreamDestroy(g->ast);
	}
	for (int k = 0; g->aev && k < g->adam_ngrp; k++)
		if (g->aev[k])
			cudaEventDestroy(g->aev[k]);
	free(g->aev);
	if (g->aev_in)
		cudaEventDestroy(g->aev_in);
	cudaFree(g->adam_gseg);
	free(g->adam_gs);
	free(g->adam_gblk);
	cudaFree(g->route_ws);
	if (g->blas)
		cublasDestroy(g->blas);
	if (g->blas_side)
		cublasDestroy(g->blas_side);
	if (g->side)
		cudaStreamDestroy(g->side);
	if (g->ev_fork)
		cudaEventDestroy(g->ev_fork);
	if (g->ev_join)
		cudaEventDestroy(g->ev_join);
	for (int i = 0; i < SV_N; i++)
		if (g->ev[i])
			cudaEventDestroy(g->ev[i]);
	cudaFree(g->moe_scr);
	cudaFree(g->dgate_s);
	cudaFree(g->dyp2);
	cudaFree(g->sqw); /* round 24 */
	cudaFree(g->sq_rng_d);
	for (int i = 0; i < LT_SLOTS; i++)
		if (g->lts[i].have_desc)
			swerve_lt_desc_free(&g->lts[i].desc);
	if (g->lt)
		cublasLtDestroy(g->lt);
	cudaFree(g->lt_ws);
	for (int i = 0; i < MOE_STREAMS_MAX; i++) {
		if (g->xs[i])
			cudaStreamDestroy(g->xs[i]);
		cudaFree(g->xs_ws[i]);
	}
	if (g->pl)
		swerve_pl_ctx_free(g->pl);
	{
		void *p[] = {g->nf_b,   g->tgt_c,   g->mask, g->clip8, g->pl_old,
		             g->pl_adv, g->pl_loss, g->ws2,  g->att_s, g->att_d,
		             g->pb,     g->dxb,     g->offs, g->aux_d};
		for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
			cudaFree(p[i]);
	}
	free(g->ly);
	free(g->gz);
	if (g->copy_async)
		cudaFreeHost(g->h_tl);
	else
		free(g->h_tl);
	cudaFreeHost(g->h_stage);
	cudaFreeHost(g->h_pin);
	if (g->ev_stage)
		cudaEventDestroy(g->ev_stage);
	if (g->graphs) {
		policy_graph_clear(g->graphs);
		free(g->graphs);
	}
	if (g->gst)
		cudaStreamDestroy(g->gst);
	if (g->ev_leg)
		cudaEventDestroy(g->ev_leg);
	if (g->ev_norm)
		cudaEventDestroy(g->ev_norm);
	if (g->cst)
		cudaStreamDestroy(g->cst);
	if (g->ev_fwd)
		cudaEventDestroy(g->ev_fwd);
	cudaFree(g->blas_ws);
	cudaFree(g->side_ws);
	cudaFree(g->gnorm);
	cudaFreeHost(g->h_norm);
	free(g->h_offs);
	free(g);
}

/* round 21: the weights were written (on PST): the head's kept split of W
 * is stale. Graph mode writes it again at once, since a replayed graph
 * captured with the split skipped reads it; elsewhere the next head call
 * splits (w_fresh 0) */
static int w_written(struct policy_gpu *g)
{
	g->w_fresh = 0;
	if (g->graph && g->pl && g->wsplit_reuse) {
		int r = swerve_pl_resplit_w(g->pl, (struct CUstream_st *)PST);
		if (r < 0)
			return r;
		g->w_fresh = r == 1;
	}
	return 0;
}

/* after the fp32 weights changed other than through AdamW: the bf16 copy */
static int params_changed(struct policy_gpu *g)
{
	if (g->pb) {
		k_to_bf16<<<GRID(g->L->total), 0, PST>>>(g->pb, g->params, g->L->total);
		LAUNCHED();
	}
	return w_written(g);
}

/* round 20 (POLICY_GPU_ADAMW=overlap*): the step's stream waits, on the
 * device, until the overlapped update has written group k (and, the
 * stream being in order, every group before it); k >= the last group: the
 * whole update (adam_join). A no-op once waited for, or with none pending. */
static int adam_wait(struct policy_gpu *g, int k)
{
	if (!g->adam_pend)
		return 0;
	if (k >= g->adam_ngrp - 1)
		k = g->adam_ngrp - 1;
	if (k > g->adam_waited) {
		CK(cudaStreamWaitEvent(PST, g->aev[k], 0));
		g->adam_waited = k;
	}
	if (k == g->adam_ngrp - 1)
		g->adam_pend = 0;
	return 0;
}
static int adam_join(struct policy_gpu *g)
{
	return adam_wait(g, g->adam_ngrp);
}

/* graph mode: the step's stream done (a backward or AdamW may still run on
 * it when the step returns) before the legacy default stream's copies;
 * round 20: the legacy default stream after the overlapped update */
static int gst_drain(struct policy_gpu *g)
{
	CKR(adam_join(g));
	if (g->gst)
		CK(cudaStreamSynchronize(g->gst));
	return 0;
}

int policy_gpu_set_params(struct policy_gpu *g, const float *p)
{
	CKR(gst_drain(g));
	CK(cudaMemcpy(g->params, p, g->L->total * 4, cudaMemcpyHostToDevice));
	return params_changed(g);
}
int policy_gpu_get_params(struct policy_gpu *g, float *p)
{
	CKR(gst_drain(g));
	CK(cudaMemcpy(p, g->params, g->L->total * 4, cudaMemcpyDeviceToHost));
	return 0;
}
int policy_gpu_get_grads(struct policy_gpu *g, float *p)
{
	CKR(gst_drain(g));
	CKR(win_flush(g)); /* round 24: the window's expert dW first */
	CK(cudaMemcpy(p, g->grads, g->L->total * 4, cudaMemcpyDeviceToHost));
	return 0;
}
int policy_gpu_set_grads(struct policy_gpu *g, const float *grads)
{
	CKR(gst_drain(g));
	CK(cudaMemcpy(g->grads, grads, g->L->total * 4, cudaMemcpyHostToDevice));
	/* round 24: the kept micro-batches' expert dW are replaced too; later
	 * ones add to these gradients */
	g->win_n = 0;
	g->win_added = 1;
	g->sq_ok = 0;
	return 0;
}
int policy_gpu_get_moments(struct policy_gpu *g, float *m, float *v)
{
	CKR(gst_drain(g));
	CK(cudaMemcpy(m, g->m, g->L->total * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(v, g->v, g->L->total * 4, cudaMemcpyDeviceToHost));
	return 0;
}
int policy_gpu_get_bf16_params(struct policy_gpu *g, uint16_t *pb)
{
	if (!g->pb)
		return swerve_error_set(SWERVE_EUNSUPPORTED,
		                        "gpu: no bf16 copy of the weights (fp32 operands)");
	CKR(gst_drain(g));
	CK(cudaMemcpy(pb, g->pb, g->L->total * 2, cudaMemcpyDeviceToHost));
	return 0;
}
int policy_gpu_get_logits(struct policy_gpu *g, float *p)
{
	if (g->pl)
		return swerve_error_set(
		        SWERVE_EUNSUPPORTED,
		        "gpu: bf16 mode never materialises the logits (fused head)");
	CK(cudaMemcpy(p, g->logits, (size_t)g->T * g->cfg.vocab_size * 4, cudaMemcpyDeviceToHost));
	return 0;
}
int policy_gpu_sync(struct policy_gpu *g)
{
	(void)g;
	CK(cudaDeviceSynchronize());
	return 0;
}

/* ---- layers ----------------------------------------------------------------- */

static int lightning_fwd(struct policy_gpu *g, int l, float *y, const struct policy_batch *b,
                         int maxlen)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	int T = b->n_tokens, D = c->dim, Hd = c->n_heads * c->head_dim;
	size_t n = (size_t)T * Hd, need;
	const int ls = policy_lin_silu_pick(g->lw_silu, T); /* round 26: auto by T */
	struct swerve_lightning_dims dims = {b->n_seqs, c->n_heads, c->head_dim, maxlen};

	/* q, k, v and the gate pre-activation in one GEMM: wq..wgate are one
	 * (4 Hd, D) matrix */
	CKR(mm_fwd(g, ly->pre, g->at, ly->n1, wp(g, lp->wq), g->at, T, D, 4 * Hd, 0, 0));
	mark(g, PROF_LIN_PROJ);
	if (g->lin32) {
		if (g->lin_ew) {
			CKR(policy_lin_silu(ly->qkv_f, 0, ly->pre, g->ab, T, Hd));
		} else {
			LAUNCH_A(g, k_silu, NBLK(3 * n), 256, ly->qkv_f, ly->pre, n, Hd);
			LAUNCHED();
		}
		k_lin_fwd<<<GRID(n / c->head_dim * 32), 0, PST>>>(
		        ly->o, ly->qkv_f, ly->qkv_f + n, ly->qkv_f + 2 * n,
		        g->slopes + (size_t)l * c->n_heads, g->sstart, T, c->n_heads, c->head_dim);
		LAUNCHED();
	} else {
		if (ls) {
			/* round 14: the core applies the SiLU to pre's columns itself */
		} else if (g->lin_ew) {
			CKR(policy_lin_silu(ly->qkv_b, 1, ly->pre, g->ab, T, Hd));
		} else {
			LAUNCH_A(g, k_silu_bf16, NBLK(3 * n), 256, ly->qkv_b, ly->pre, n, Hd);
			LAUNCHED();
		}
		need = swerve_lightning_forward_workspace(&dims);
		if (swerve_lightning_backward_workspace(&dims) > need)
			need = swerve_lightning_backward_workspace(&dims);
		if (ls && swerve_lightning_forward_silu_workspace(&dims) > need)
			need = swerve_lightning_forward_silu_workspace(&dims);
		if (ls && swerve_lightning_backward_silu_workspace(&dims) > need)
			need = swerve_lightning_backward_silu_workspace(&dims);
		if (need > g->ws_bytes) {
			cudaFree(g->ws);
			g->ws = NULL;
			CK(cudaMalloc(&g->ws, need));
			policy_gpu_alloc_gen++;
			g->ws_bytes = need;
		}
		/* lin_ew: the core's bf16 output stays in o (no fp32 copy) */
		if (ls) /* keep (2): the activated q, k, v into qkv_b too */
			CKR(swerve_lightning_forward_silu(
			        g->lin_ew ? (uint16_t *)ly->o : g->bscr, NULL,
			        ls == 2 ? ly->qkv_b : NULL, ls == 2 ? ly->qkv_b + n : NULL,
			        ls == 2 ? ly->qkv_b + 2 * n : NULL, (const uint16_t *)ly->pre,
			        4 * Hd, g->cu, g->slopes + (size_t)l * c->n_heads, NULL, &dims,
			        g->ws, g->ws_bytes, PST));
		else
			CKR(swerve_lightning_forward(g->lin_ew ? (uint16_t *)ly->o : g->bscr, NULL,
			                             ly->qkv_b, ly->qkv_b + n, ly->qkv_b + 2 * n,
			                             g->cu, g->slopes + (size_t)l * c->n_heads,
			                             NULL, &dims, g->ws, g->ws_bytes, PST));
		if (!g->lin_ew) {
			k_to_f32<<<GRID(n), 0, PST>>>(ly->o, g->bscr, n);
			LAUNCHED();
		}
	}
	mark(g, PROF_LIN_CORE);
	if (g->lw_gate) {
		CKR(policy_gate_fwd(ly->gn, ly->rstd_o, ly->o, !g->lin32, g->params + lp->out_norm,
		                    ly->pre, g->ab, T, Hd, (float)c->norm_eps, g->lw_gate));
	} else if (g->lin_ew) {
		CKR(policy_lin_rms_gate(ly->gn, ly->rstd_o, ly->o, !g->lin32,
		                        g->params + lp->out_norm, ly->pre, g->ab, T, Hd,
		                        (float)c->norm_eps, g->lin_ew == 2));
	} else {
		LAUNCH_A(g, k_rms_gate, T, 256, ly->gn, ly->rstd_o, ly->o, g->params + lp->out_norm,
		         ly->pre, Hd, 4 * Hd, 3 * Hd, (float)c->norm_eps);
		LAUNCHED();
	}
	CKR(wo_fwd(g, ly, 0, y, ly->gn, wp(g, lp->wo), g->at, T, Hd, D));
	mark(g, PROF_LIN_PROJ);
	return 0;
}

/* dn (T, D) = d attention input, from dy (fp32 g->dx; its bf16 copy g->dxb
 * in bf16 mode) */
static int lightning_bwd(struct policy_gpu *g, int l, float *dn, const float *dy,
                         const struct policy_batch *b, int maxlen)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	const float *P = g->params;
	float *G = g->grads;
	int T = b->n_tokens, D = c->dim, Hd = c->n_heads * c->head_dim;
	size_t n = (size_t)T * Hd;
	const int ls = policy_lin_silu_pick(g->lw_silu, T); /* round 26: as the forward's */
	const void *dyA = g->ab ? (const void *)g->dxb : (const void *)dy;
	float *dgn = g->dt2, *dnn = g->dt3, *dO = g->dbig, *dqkv = g->dbig + n;
	void *dpre = g->dt1; /* A (T, 4 Hd) */
	uint16_t *dO_b = g->bscr;
	uint16_t *dq_b = (uint16_t *)(g->dbig + n); /* 3n bf16 */
	struct swerve_lightning_dims dims = {b->n_seqs, c->n_heads, c->head_dim, maxlen};

	CKR(mm_dw_side(g, g->ab ? SV_DXB : SV_DX, G + lp->wo, dyA, ly->gn, g->at, T, Hd, D, 0));
	/* round 14, POLICY_GPU_LW_GATE=v4: dgn in bf16 (bf16 mode) */
	CKR(mm_dx(g, dgn, g->lw_gate == 3 && g->ab ? CUDA_R_16BF : CUDA_R_32F, dyA, wp(g, lp->wo),
	          g->at, T, Hd, D, 0, 0));
	/* dpre (dt1) and dO / dq (dbig) are rewritten below: the side stream's
	 * readers of them (the layer above) done first */
	CKR(side_wait(g, SV_DT1));
	CKR(side_wait(g, SV_DBIG));
	/* d o through the gate and the output norm: fp32 for the fp32 kernel,
	 * else bf16 */
	if (g->lw_gate) { /* round 14 (gpu_gate.cu) */
		CKR(policy_gate_bwd(g->lin32 ? (void *)dO : (void *)dO_b, G + lp->out_norm, dpre,
		                    g->ab, dgn, g->lw_gate == 3 && g->ab, ly->o, !g->lin32, ly->pre,
		                    P + lp->out_norm, ly->rstd_o, T, Hd, g->lw_gate == 4));
	} else if (g->lin_ew) { /* one pass; o in the core's output type */
		CKR(policy_lin_gate_rms_bwd(g->lin32 ? (void *)dO : (void *)dO_b, G + lp->out_norm,
		                            dpre, g->ab, dgn, ly->o, !g->lin32, ly->pre,
		                            P + lp->out_norm, ly->rstd_o, T, Hd, g->lin_ew == 2));
	} else {
		LAUNCH_A(g, k_gate_bwd, NBLK(n), 256, dnn, dpre, dgn, ly->gn, ly->pre, n, Hd);
		LAUNCHED();
		if (g->lin32)
			rms_bwd(g, dO, NULL, 0, G + lp->out_norm, dnn, ly->o, P + lp->out_norm,
			        ly->rstd_o, T, Hd);
		else
			rms_bwd(g, NULL, dO_b, 0, G + lp->out_norm, dnn, ly->o, P + lp->out_norm,
			        ly->rstd_o, T, Hd);
		LAUNCHED();
	}
	mark(g, PROF_LIN_PROJ);
	if (g->lin32) {
		const float *sl = g->slopes + (size_t)l * c->n_heads;
		k_lin_bwd<<<GRID(n / c->head_dim * 32), 0, PST>>>(
		        dqkv, NULL, NULL, dO, ly->qkv_f, ly->qkv_f + n, ly->qkv_f + 2 * n, sl,
		        g->sstart, g->send, T, c->n_heads, c->head_dim, 0);
		LAUNCHED();
		k_lin_bwd<<<GRID(n / c->head_dim * 32), 0, PST>>>(
		        NULL, dqkv + n, dqkv + 2 * n, dO, ly->qkv_f, ly->qkv_f + n,
		        ly->qkv_f + 2 * n, sl, g->sstart, g->send, T, c->n_heads, c->head_dim, 1);
		LAUNCHED();
		if (g->lin_ew)
			CKR(policy_lin_dsilu(dpre, g->ab, dqkv, 0, ly->pre, T, Hd));
		else if (g->ab)
			k_dsilu<uint16_t, float>
			        <<<GRID(3 * n), 0, PST>>>(dpre, dqkv, ly->pre, n, Hd);
		else
			k_dsilu<float, float><<<GRID(3 * n), 0, PST>>>(dpre, dqkv, ly->pre, n, Hd);
		LAUNCHED();
	} else if (ls == 2) {
		/* round 14, keep: the forward's activated q, k, v; d pre's q, k, v
		 * columns straight from the core */
		CKR(swerve_lightning_backward_dsilu(
		        (uint16_t *)dpre, NULL, ly->qkv_b, ly->qkv_b + n, ly->qkv_b + 2 * n,
		        (const uint16_t *)ly->pre, 4 * Hd, dO_b, NULL, g->cu,
		        g->slopes + (size_t)l * c->n_heads, NULL, &dims, g->ws, g->ws_bytes, PST));
	} else if (ls) {
		/* round 14: d pre's q, k, v columns straight from the core */
		CKR(swerve_lightning_backward_silu((uint16_t *)dpre, NULL,
		                                   (const uint16_t *)ly->pre, 4 * Hd, dO_b, NULL,
		                                   g->cu, g->slopes + (size_t)l * c->n_heads, NULL,
		                                   &dims, g->ws, g->ws_bytes, PST));
	} else {
		CKR(swerve_lightning_backward(dq_b, dq_b + n, dq_b + 2 * n, NULL, ly->qkv_b,
		                              ly->qkv_b + n, ly->qkv_b + 2 * n, dO_b, NULL, g->cu,
		                              g->slopes + (size_t)l * c->n_heads, NULL, &dims,
		                              g->ws, g->ws_bytes, PST));
		if (g->lin_ew)
			CKR(policy_lin_dsilu(dpre, g->ab, dq_b, 1, ly->pre, T, Hd));
		else if (g->ab)
			k_dsilu<uint16_t, uint16_t>
			        <<<GRID(3 * n), 0, PST>>>(dpre, dq_b, ly->pre, n, Hd);
		else
			k_dsilu<float, uint16_t>
			        <<<GRID(3 * n), 0, PST>>>(dpre, dq_b, ly->pre, n, Hd);
		LAUNCHED();
	}
	mark(g, PROF_LIN_CORE);
	/* wq..wgate as one (4 Hd, D) matrix */
	CKR(mm_dw_side(g, SV_DT1, G + lp->wq, dpre, ly->n1, g->at, T, D, 4 * Hd, 0));
	/* round 25 (dn16): dn in bf16 for the attention norm's backward */
	g->dn_b16 = g->dn16;
	CKR(mm_dx(g, dn, g->dn_b16 ? CUDA_R_16BF : CUDA_R_32F, dpre, wp(g, lp->wq), g->at, T, D,
	          4 * Hd, 0, 0));
	mark(g, PROF_LIN_PROJ);
	return 0;
}

static int softmax_fwd(struct policy_gpu *g, int l, float *y, const struct policy_batch *b)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	const float *P = g->params;
	int T = b->n_tokens, D = c->dim, H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim;
	float scale = 1.0f / sqrtf((float)d);

	CKR(mm_fwd(g, ly->q, CUDA_R_32F, ly->n1, wp(g, lp->wq), g->at, T, D, H * d, 0, 0));
	CKR(mm_fwd(g, ly->k, CUDA_R_32F, ly->n1, wp(g, lp->wk), g->at, T, D, KV * d, 0, 0));
	CKR(mm_fwd(g, ly->v, CUDA_R_32F, ly->n1, wp(g, lp->wv), g->at, T, D, KV * d, 0, 0));
	if (c->rotary_dim) /* round 19: q and k in one launch (fused, the default) */
		CKR((g->flash && policy_flash_rope_fused() ? policy_flash_rope
		                                           : policy_flash_rope_elem)(
		        ly->q, ly->k, g->pos, T, H, KV, d, c->rotary_dim, (float)c->rope_theta, 0));
	if (g->flash) {
		CKR(policy_flash_fwd(ly->o, ly->lse, ly->q, ly->k, ly->v, g->cu, b->n_seqs,
		                     g->maxlen, H, KV));
	} else if (g->attn_gemm) {
		CKR(attn_gemm_fwd(g, ly->o, ly->lse, ly->q, ly->k, ly->v, b));
	} else {
		k_attn_fwd<<<GRID((size_t)T * H * 32), 0, PST>>>(
		        ly->o, ly->lse, ly->q, ly->k, ly->v, g->sstart, T, H, KV, d, scale);
		LAUNCHED();
	}
	if (g->sm_wo16) { /* round 22: o in bf16 (kept for wo's dW), wo on bf16 operands */
		const size_t n = (size_t)T * H * d;
		k_to_bf16<<<GRID(n), 0, PST>>>((uint16_t *)ly->oa, ly->o, n);
		LAUNCHED();
		return wo_fwd(g, ly, 1, y, ly->oa, wp(g, lp->wo), g->at, T, H * d, D);
	}
	/* o is fp32 (the attention GEMMs): wo on the fp32 master weights */
	return mm_fwd(g, y, CUDA_R_32F, ly->o, P + lp->wo, CUDA_R_32F, T, H * d, D, 0, 0);
}

static int softmax_bwd(struct policy_gpu *g, int l, float *dn, const float *dy,
                       const struct policy_batch *b)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	const float *P = g->params;
	float *G = g->grads;
	int T = b->n_tokens, D = c->dim, H = c->n_heads, KV = c->n_kv_heads, d = c->head_dim;
	float scale = 1.0f / sqrtf((float)d);
	size_t nk = (size_t)T * KV * d;
	float *dO = g->dt2, *dq = g->dt3, *dk = g->dt1, *dv = g->dt1 + nk, *Dsum = g->dbig;

	if (g->sm_wo16) { /* round 22: the bf16 residual gradient (g->dxb) and o's bf16 copy */
		CKR(mm_dw_side(g, SV_DXB, G + lp->wo, g->dxb, ly->oa, g->at, T, H * d, D, 0));
		CKR(mm_dx(g, dO, CUDA_R_32F, g->dxb, wp(g, lp->wo), g->at, T, H * d, D, 0, 0));
	} else {
		CKR(mm_dw_side(g, SV_DX, G + lp->wo, dy, ly->o, CUDA_R_32F, T, H * d, D, 0));
		CKR(mm_dx(g, dO, CUDA_R_32F, dy, P + lp->wo, CUDA_R_32F, T, H * d, D, 0, 0));
	}
	/* Dsum (dbig), dk / dv (dt1) are rewritten below */
	CKR(side_wait(g, SV_DT1));
	CKR(side_wait(g, SV_DBIG));
	k_attn_dsum<<<GRID((size_t)T * H * 32), 0, PST>>>(Dsum, dO, ly->o, T * H, d);
	LAUNCHED();
	if (g->flash) {
		CKR(policy_flash_bwd(dq, dk, dv, dO, Dsum, ly->q, ly->k, ly->v, ly->lse, g->cu,
		                     b->n_seqs, g->maxlen, H, KV));
	} else if (g->attn_gemm) {
		CKR(attn_gemm_bwd(g, dq, dk, dv, dO, Dsum, ly->q, ly->k, ly->v, ly->lse, b));
	} else {
		k_attn_dq<<<GRID((size_t)T * H * 32), 0, PST>>>(
		        dq, dO, ly->q, ly->k, ly->v, ly->lse, Dsum, g->sstart, T, H, KV, d, scale);
		LAUNCHED();
		k_attn_dkv<<<GRID((size_t)T * KV * 32), 0, PST>>>(dk, dv, dO, ly->q, ly->k, ly->v,
		                                                  ly->lse, Dsum, g->send, T, H, KV,
		                                                  d, scale);
		LAUNCHED();
	}
	if (c->rotary_dim)
		CKR((g->flash && policy_flash_rope_fused() ? policy_flash_rope
		                                           : policy_flash_rope_elem)(
		        dq, dk, g->pos, T, H, KV, d, c->rotary_dim, (float)c->rope_theta, 1));
	{
		/* n1 and the weights are bf16 in bf16 mode: dq, dk, dv too */
		const void *aq = dq, *ak = dk, *av = dv;
		if (g->ab) {
			size_t nq = (size_t)T * H * d, at = ((size_t)T * H + 63) / 64 * 64;
			uint16_t *b16 = (uint16_t *)(g->dbig + at);
			k_to_bf16<<<GRID(nq), 0, PST>>>(b16, dq, nq);
			LAUNCHED();
			k_to_bf16<<<GRID(2 * nk), 0, PST>>>(b16 + nq, dk,
			                                    2 * nk); /* dv follows dk */
			LAUNCHED();
			aq = b16;
			ak = b16 + nq;
			av = b16 + nq + nk;
		}
		/* the side stream (bf16 mode: the operands are in dbig) */
		int side = g->streams && g->ab, rc;
		if (side)
			CKR(side_fork(g));
		rc = mm_dw(g, G + lp->wq, aq, ly->n1, g->at, T, D, H * d, 0);
		if (!rc)
			rc = mm_dw(g, G + lp->wk, ak, ly->n1, g->at, T, D, KV * d, 0);
		if (!rc)
			rc = mm_dw(g, G + lp->wv, av, ly->n1, g->at, T, D, KV * d, 0);
		CKR(side ? side_done(g, SV_DBIG, rc) : rc);
		CKR(mm_dx(g, dn, CUDA_R_32F, aq, wp(g, lp->wq), g->at, T, D, H * d, 0, 0));
		CKR(mm_dx(g, dn, CUDA_R_32F, ak, wp(g, lp->wk), g->at, T, D, KV * d, 1, 0));
		return mm_dx(g, dn, CUDA_R_32F, av, wp(g, lp->wv), g->at, T, D, KV * d, 1, 0);
	}
}

static struct policy_moe_dims moe_dims(const struct policy_gpu *g, const struct glayer *ly, int T)
{
	struct policy_moe_dims d = {};
	d.T = T;
	d.K = g->cfg.top_k;
	d.E = g->cfg.n_experts;
	d.D = g->cfg.dim;
	d.F = g->cfg.expert_hidden;
	d.offs = ly->doffs;
	d.perm = ly->perm;
	d.gathered = g->moe_gather;
	return d;
}

/* round 24: the expert dW's rows over the window's slices (win_point) as
 * kept so far and this micro-batch's where a backward runs them (win_bwd) */
static struct policy_moe_dims win_dims(const struct policy_gpu *g, const struct glayer *ly)
{
	struct policy_moe_dims d = moe_dims(g, ly, g->Tm);
	d.offs = ly->offsw;
	d.nseg = g->win_n + (g->win_bwd ? 1 : 0);
	d.rstride = g->Tm * g->cfg.top_k;
	d.ostride = g->cfg.n_experts + 2;
	return d;
}

/* round 24: where the window's dW tiles of layer l leave their sums of
 * squares: up dW (dn 0) or down dW (dn 1; a pair's tiles from its lower
 * layer's on, two layers' worth) */
static float *win_sq(const struct policy_gpu *g, int dn, int l)
{
	return g->sqw + (dn ? (size_t)g->cfg.n_layers * g->sq_up + (size_t)l * g->sq_dn
	                    : (size_t)l * g->sq_up);
}

/* round 7: the routing's scratch (grown on demand) */
static int route_ws(struct policy_gpu *g, int T)
{
	size_t n = policy_route_scratch_floats(T, g->cfg.n_experts, g->cfg.dim);
	if (n > g->route_ws_n) {
		cudaFree(g->route_ws);
		g->route_ws = NULL;
		g->route_ws_n = 0;
		CK(cudaMalloc(&g->route_ws, n * 4));
		policy_gpu_alloc_gen++;
		g->route_ws_n = n;
	}
	return 0;
}

/* the stable counting sort of layer l's assignments by expert into perm,
 * rowof and offs (E + 2), with the balance loss: the multi-block sort of
 * gpu_route.cu after policy_route_fwd, else the one-block k_route_sort */
static int route_sort(struct policy_gpu *g, int l, int *offs, int compact, int rnd, int T)
{
	const struct policy_config *c = &g->cfg;
	struct glayer *ly = &g->ly[l];
	int E = c->n_experts, K = c->top_k;
	if (g->route_new)
		return policy_route_sort(ly->perm, ly->rowof, offs, ly->auxc, g->aux_d + l,
		                         g->route_ws, ly->sel, T, E, K, g->Rp, compact, rnd,
		                         c->aux_loss_coef, g->route_new - 1);
	k_route_sort<<<1, SORT_THREADS, 0, PST>>>(ly->perm, ly->rowof, offs, ly->auxc, g->aux_d + l,
	                                          ly->sel, ly->prob, T, E, K, g->Rp, compact, rnd,
	                                          c->aux_loss_coef);
	LAUNCHED();
	return 0;
}

/* The grouped path (gpu_moe.cu) after the router: compact segments sorted
 * on the device into this layer's offsets, which stay there (no host round
 * trip); the normed input in bf16 (ly->xp, (T, D)) is gathered inside the
 * up projection, SwiGLU is its epilogue, the down projection writes yp per
 * assignment slot and one pass sums the K slots with the gates. */
static int moe_fwd_grouped(struct policy_gpu *g, int l, float *y, int T)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	int D = c->dim, K = c->top_k, R = T * K;
	struct policy_moe_dims d = moe_dims(g, ly, T);

	CKR(route_sort(g, l, ly->doffs, 1, 1, T));
	if (!g->moe_fused) /* else the RMSNorm wrote it */
		CKR(policy_moe_to_bf16((uint16_t *)ly->xp, ly->n2, (size_t)T * D));
	g->moe_rows += R;
	g->moe_rows_padded += R;
	if (g->moe_gather) /* round 7: the rows once, in row order (kept for up dW) */
		CKR(policy_moe_gather(&d, (uint16_t *)ly->xg, (const uint16_t *)ly->xp));
	mark(g, PROF_ROUTE);
	CKR(policy_moe_up(&d, (uint16_t *)ly->h1, (uint16_t *)ly->h3, (uint16_t *)ly->hh,
	                  (const uint16_t *)(g->moe_gather ? ly->xg : ly->xp), g->pb + lp->w1,
	                  g->pb + lp->w3));
	if (g->act16) /* round 16: the slots in bf16 */
		CKR(policy_moe_down_b16(&d, (uint16_t *)ly->yp, (const uint16_t *)ly->hh,
		                        g->pb + lp->w2));
	else
		CKR(policy_moe_down(&d, ly->yp, (const uint16_t *)ly->hh, g->pb + lp->w2));
	mark(g, PROF_EXPERTS);
	if (!g->moe_fused) { /* else the residual add after the MoE sums the slots */
		CKR(policy_moe_combine(y, ly->yp, ly->gate, T, K, D));
		mark(g, PROF_EXP_EW);
	}
	return 0;
}

/* the MoE backward's dgate (T K): dt1, or with the side stream its own
 * buffer (the side stream may still be reading dt1: lightning's dpre) */
static float *moe_dgate(const struct policy_gpu *g)
{
	return g->streams && g->moe_grouped ? g->dgate_s : g->dt1;
}

/* backward of the grouped path: dyp (rows, D) = gate dy[tok] and dgate in one
 * pass; dW2 and dh = dyp W2 with the SwiGLU backward in its epilogue
 * (dh13 = [dh1 | dh3]); dW1, dW3 and dxp = dh13 [W1; W3] per slot; one pass
 * sums the slots into dn */
static int moe_bwd_grouped(struct policy_gpu *g, int l, float *dn, const float *dy, int T)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	float *G = g->grads;
	int D = c->dim, F = c->expert_hidden, K = c->top_k, R = T * K;
	struct policy_moe_dims d = moe_dims(g, ly, T);
	/* scratch: dyp (R, D), dh13 (R, 2F) bf16, then dxp (R, D) fp32; in dbig,
	 * or with the side stream in moe_scr (the weight gradients read dyp and
	 * dh13 there while the attention's backward writes dbig) */
	char *sp = (char *)(g->streams ? g->moe_scr : g->dbig);
	uint16_t *dyp = (uint16_t *)sp, *dh13 = dyp + ((size_t)R * D + 7) / 8 * 8;
	float *dxp = (float *)(dh13 + (size_t)R * 2 * F);
	/* round 23 (dw_pair): the first layer of a pair (in backward order; not
	 * layer 0) leaves its down dW to the next, its dyp kept in dyp2; the
	 * next runs both */
	/* round 24 (the window): the inputs kept in the micro-batch's slice;
	 * the expert dW only where this micro-batch fills the window (win_bwd:
	 * then over all its slices, here, beside the dX chain as without a
	 * window), else at win_flush. The pair's deferred layer keeps its dyp
	 * in its own slice then, not in dyp2 */
	const int dw = !g->win || g->win_bwd;
	const int pair = g->dw_pair && dw ? g->pair_l : -1,
	          defer = g->dw_pair && dw && pair < 0 && l >= 1;
	struct policy_moe_dims dwd = d; /* the dW's rows: the window's slices, or d's */
	if (g->win) {
		const size_t s = (size_t)g->win_n * g->Tm * K;
		dyp = ly->dypw + s * D;
		dh13 = ly->dh13w + s * 2 * F;
		dwd = win_dims(g, ly);
	} else if (defer) {
		dyp = g->dyp2;
	}
	float *dgate = moe_dgate(g);
	int rc;

	CKR(side_wait(g, SV_MOE)); /* the layer above's expert dW have read moe_scr */
	/* round 16: the slots in bf16; round 19 (a16g): dy too (the caller
	 * passes the bf16 gradient g->dxb) */
	if (g->a16g)
		CKR(policy_moe_combine_bwd2_b16g(dyp, dgate, (const uint16_t *)dy,
		                                 (const uint16_t *)ly->yp, ly->gate, ly->rowof, T,
		                                 K, D));
	else if (g->act16)
		CKR(policy_moe_combine_bwd2_b16(dyp, dgate, dy, (const uint16_t *)ly->yp, ly->gate,
		                                ly->rowof, T, K, D));
	else
		CKR(g->moe_comb ? policy_moe_combine_bwd2(dyp, dgate, dy, ly->yp, ly->gate,
		                                          ly->rowof, T, K, D)
		                : policy_moe_combine_bwd(&d, dyp, dgate, dy, ly->yp, ly->gate));
	mark(g, PROF_EXP_EW);
	/* the arena was cleared by this step (first micro-batch of a window):
	 * store the expert dW instead of reading and adding */
	int beta = !(g->moe_dwstore && g->n_acc == 0);
	if (g->win) /* round 24: the gradient window's first flush stores */
		beta = !(g->moe_dwstore && !g->win_added);
	/* round 24: the window's dW read from its slices' starts */
	const uint16_t *dyp_w = g->win ? ly->dypw : dyp,
	               *hh_w = g->win ? ly->hhw : (const uint16_t *)ly->hh;
	if (!dw) {          /* round 24: the expert dW at win_flush */
	} else if (defer) { /* round 23: run with the next layer's (dyp2 kept until then) */
		g->pair_l = l;
	} else {
		if (g->streams)
			CKR(side_fork(g));
		if (pair >= 0) { /* the deferred layer's and this one's */
			const struct policy_layer_params *lq = &g->L->layers[pair];
			const struct glayer *lyq = &g->ly[pair];
			struct policy_moe_dims dq = g->win ? win_dims(g, lyq) : moe_dims(g, lyq, T);
			if (g->win) /* round 24: the pair's tiles, from this (lower) layer's on */
				dq.sq = win_sq(g, 1, l);
			g->pair_l = -1;
			rc = policy_moe_down_dw_pair(&dq, G + lq->w2, g->win ? lyq->dypw : g->dyp2,
			                             g->win ? lyq->hhw : (const uint16_t *)lyq->hh,
			                             &dwd, G + lp->w2, dyp_w, hh_w, beta);
		} else {
			if (g->win)
				dwd.sq = win_sq(g, 1, l);
			rc = policy_moe_down_dw(&dwd, G + lp->w2, dyp_w, hh_w, beta);
		}
		if (g->streams) /* SV_MOE again after up dW, which reads moe_scr too */
			CKR(side_done(g, SV_MOE, rc));
		CKR(rc);
	}
	CKR(policy_moe_down_dx(&d, dh13, dyp, g->pb + lp->w2, (const uint16_t *)ly->h1,
	                       (const uint16_t *)ly->h3));
	if (dw) {
		if (g->streams)
			CKR(side_fork(g));
		if (g->win)
			dwd.sq = win_sq(g, 0, l);
		rc = policy_moe_up_dw(&dwd, G + lp->w1, G + lp->w3, g->win ? ly->dh13w : dh13,
		                      g->win ? ly->xgw
		                             : (const uint16_t *)(g->moe_gather ? ly->xg : ly->xp),
		                      beta);
		if (g->streams)
			CKR(side_done(g, SV_MOE, rc));
		CKR(rc);
	}
	if (g->act16) /* round 16: the slots in bf16 (route_new >= 3 sums them) */
		CKR(policy_moe_up_dx_b16(&d, (uint16_t *)dxp, dh13, g->pb + lp->w1,
		                         g->pb + lp->w3));
	else
		CKR(policy_moe_up_dx(&d, dxp, dh13, g->pb + lp->w1, g->pb + lp->w3));
	mark(g, PROF_EXPERTS);
	if (g->route_new >= 3) { /* round 10 (v3, v4): the route backward sums the slots */
		g->route_slots = dxp;
		return 0;
	}
	return g->moe_comb ? policy_moe_scatter2(dn, dxp, T, K, D, 0)
	                   : policy_moe_scatter(dn, dxp, T, K, D, 0);
}

/* round 24 (POLICY_GPU_MOE_DW_WIN): the experts' dW of the win_n kept
 * micro-batches, a launch a product and layer (down dW two layers a launch
 * with POLICY_GPU_MOE_DW_PAIR), on the step's stream: stored by the
 * gradient window's first flush (the arena was cleared), added by later
 * ones (win_dims: the slices' rows Tm K apart, their offsets E + 2), each
 * tile's sum of squares to sqw (win_sq); a no-op where the filling
 * micro-batch's backward ran them (win_bwd) but the bookkeeping */
static int win_flush(struct policy_gpu *g)
{
	const struct policy_config *c = &g->cfg;
	if (g->win_bwd) { /* the filling micro-batch's backward ran them */
		g->win_bwd = 0;
		g->win_n = 0;
		g->win_added = 1;
		g->sq_ok = 1;
		return 0;
	}
	if (!g->win || !g->win_n)
		return 0;
	const int beta = !(g->moe_dwstore && !g->win_added);
	void *old = policy_moe_stream((void *)PST);
	int rc = 0;
	for (int l = c->n_layers - 1; l >= 0 && !rc; l--) {
		const struct policy_layer_params *lp = &g->L->layers[l];
		const struct glayer *ly = &g->ly[l];
		struct policy_moe_dims d = win_dims(g, ly);
		d.sq = win_sq(g, 0, l);
		rc = policy_moe_up_dw(&d, g->grads + lp->w1, g->grads + lp->w3, ly->dh13w, ly->xgw,
		                      beta);
		if (rc)
			break;
		if (g->dw_pair && l >= 1) { /* this layer's and the next one down's */
			const struct policy_layer_params *lq = &g->L->layers[l - 1];
			const struct glayer *lyq = &g->ly[l - 1];
			struct policy_moe_dims dq = d;
			dq.offs = lyq->offsw;
			dq.sq = win_sq(g, 0, l - 1);
			rc = policy_moe_up_dw(&dq, g->grads + lq->w1, g->grads + lq->w3, lyq->dh13w,
			                      lyq->xgw, beta);
			d.sq = win_sq(g, 1, l - 1); /* the pair's tiles: layers l - 1 and l */
			if (!rc)
				rc = policy_moe_down_dw_pair(&d, g->grads + lp->w2, ly->dypw,
				                             ly->hhw, &dq, g->grads + lq->w2,
				                             lyq->dypw, lyq->hhw, beta);
			l--;
		} else {
			d.sq = win_sq(g, 1, l);
			rc = policy_moe_down_dw(&d, g->grads + lp->w2, ly->dypw, ly->hhw, beta);
		}
	}
	policy_moe_stream(old);
	CKR(rc);
	g->win_n = 0;
	g->win_added = 1;
	g->sq_ok = 1;
	return 0;
}

/* routed (round 26): policy_route_fwd_norm_b16 has run this layer's router */
static int moe_fwd(struct policy_gpu *g, int l, float *y, int T, int routed)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	const float *P = g->params;
	int D = c->dim, E = c->n_experts, K = c->top_k, F = c->expert_hidden, R = T * K, rows;
	float *logit = g->dbig;

	if (routed) {
		/* round 26: done with the ffn norm (step_fwd) */
	} else if (g->route_new) { /* logits, softmax, top-k and per-block counts in one pass */
		CKR(route_ws(g, T));
		if (g->a16r) /* round 16: the experts' bf16 input */
			CKR(policy_route_fwd_b16(ly->prob, ly->sel, ly->gate, ly->rowof,
			                         g->route_ws, (const uint16_t *)ly->xp,
			                         P + lp->router, T, E, K, D));
		else
			CKR(policy_route_fwd(ly->prob, ly->sel, ly->gate, ly->rowof, g->route_ws,
			                     ly->n2, P + lp->router, T, E, K, D, g->route_new - 1));
	} else {
		CKR(mm_fwd(g, logit, CUDA_R_32F, ly->n2, P + lp->router, CUDA_R_32F, T, D, E, 0,
		           1));
		k_route<<<GRID(T), 0, PST>>>(ly->prob, ly->sel, ly->gate, logit, T, E, K);
		LAUNCHED();
	}
	if (g->moe_grouped)
		return moe_fwd_grouped(g, l, y, T);
	CKR(route_sort(g, l, g->offs, g->moe_loop, g->moe_round, T));
	/* the one host round trip of the layer: E + 2 ints */
	CK(cudaMemcpy(g->h_offs, g->offs, (size_t)(E + 2) * 4, cudaMemcpyDeviceToHost));
	memcpy(ly->h_off, g->h_offs, (size_t)(E + 1) * sizeof(int));
	ly->h_cap = g->h_offs[E + 1];
	rows = ly->h_off[E];
	g->moe_rows += R;
	g->moe_rows_padded += rows;
	{
		int mx = ly->h_cap;
		for (int e = 0; e < E && !ly->h_cap; e++)
			mx = ly->h_off[e + 1] - ly->h_off[e] > mx ? ly->h_off[e + 1] - ly->h_off[e]
			                                          : mx;
		g->moe_rows_peak += (long)E * mx;
	}
	if (rows < R || rows > g->Rp)
		return swerve_error_set(SWERVE_ERROR, "gpu: routing produced %d rows for %d", rows,
		                        R);
	LAUNCH_A(g, k_gather, NBLK((size_t)rows * D), 256, ly->xp, ly->n2, ly->perm, rows, K, D);
	LAUNCHED();
	mark(g, PROF_ROUTE);
	CKR(expert_mm(g, ly, EX_FWD, ly->h1, g->at, ly->xp, NULL, wp(g, lp->w1), D, F, 0));
	CKR(expert_mm(g, ly, EX_FWD, ly->h3, g->at, ly->xp, NULL, wp(g, lp->w3), D, F, 0));
	mark(g, PROF_EXPERTS);
	LAUNCH_A(g, k_swiglu, NBLK((size_t)rows * F), 256, ly->hh, ly->h1, ly->h3,
	         (size_t)rows * F);
	LAUNCHED();
	mark(g, PROF_EXP_EW);
	CKR(expert_mm(g, ly, EX_FWD, ly->yp, CUDA_R_32F, ly->hh, NULL, wp(g, lp->w2), F, D, 0));
	mark(g, PROF_EXPERTS);
	k_combine<<<GRID((size_t)T * D), 0, PST>>>(y, ly->yp, ly->gate, ly->rowof, T, K, D);
	LAUNCHED();
	mark(g, PROF_EXP_EW);
	return 0;
}

static int moe_bwd(struct policy_gpu *g, int l, float *dn, const float *dy, int T)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layer_params *lp = &g->L->layers[l];
	struct glayer *ly = &g->ly[l];
	const float *P = g->params;
	float *G = g->grads;
	int D = c->dim, E = c->n_experts, K = c->top_k, F = c->expert_hidden, R = T * K;
	int rows = ly->h_off[E];
	size_t as = g->as;
	/* scratch: dyp, dh, dh1, dh3 (A), then dxp (fp32) */
	char *sp = (char *)g->dbig;
	void *dyp = sp, *dh = sp + (size_t)rows * D * as, *dh1 = (char *)dh + (size_t)rows * F * as;
	void *dh3 = (char *)dh1 + (size_t)rows * F * as;
	float *dxp = (float *)((char *)dh3 + ((size_t)rows * F * as + 15) / 16 * 16);
	float *dgate = moe_dgate(g), *dlog = g->dt1 + R;

	if (g->moe_grouped) {
		CKR(moe_bwd_grouped(g, l, dn, dy, T));
		goto router;
	}
	/* the cuBLASLt path writes dt1 and dbig (read by the side stream) */
	CKR(side_wait(g, SV_DT1));
	CKR(side_wait(g, SV_DBIG));
	LAUNCH_A(g, k_combine_bwd, rows, 128, dyp, dgate, dy, ly->yp, ly->gate, ly->perm, K, D);
	LAUNCHED();
	mark(g, PROF_EXP_EW);
	CKR(expert_mm(g, ly, EX_DW, G + lp->w2, CUDA_R_32F, dyp, ly->hh, NULL, F, D, 0));
	CKR(expert_mm(g, ly, EX_DX, dh, g->at, dyp, NULL, wp(g, lp->w2), F, D, 0));
	mark(g, PROF_EXPERTS);
	LAUNCH_A(g, k_swiglu_bwd, NBLK((size_t)rows * F), 256, dh1, dh3, dh, ly->h1, ly->h3,
	         (size_t)rows * F);
	LAUNCHED();
	mark(g, PROF_EXP_EW);
	CKR(expert_mm(g, ly, EX_DW, G + lp->w1, CUDA_R_32F, dh1, ly->xp, NULL, D, F, 0));
	CKR(expert_mm(g, ly, EX_DW, G + lp->w3, CUDA_R_32F, dh3, ly->xp, NULL, D, F, 0));
	CKR(expert_mm(g, ly, EX_DX, dxp, CUDA_R_32F, dh1, NULL, wp(g, lp->w1), D, F, 0));
	CKR(expert_mm(g, ly, EX_DX, dxp, CUDA_R_32F, dh3, NULL, wp(g, lp->w3), D, F, 1));
	mark(g, PROF_EXPERTS);
	k_scatter<<<GRID((size_t)T * D), 0, PST>>>(dn, dxp, ly->rowof, T, K, D);
	LAUNCHED();
router:
	if (g->route_new) { /* d logits, dn += d logits Wr, dW parts; their sum */
		const float *slots = g->route_slots;
		g->route_slots = NULL;
		CKR(route_ws(g, T));
		/* round 23: the ffn norm's backward inside the route backward (not
		 * where the softmax layer wants dx's fp32 copy) */
		if (slots && g->rt_norm && !(lp->softmax && !g->sm_wo16) &&
		    policy_route_bwd_norm_supported(E, K, D, slots, ly->xp)) {
			const struct policy_route_nb nb = {g->dxb, G + lp->ffn_norm,
			                                   (const uint16_t *)ly->hmid,
			                                   P + lp->ffn_norm, ly->rstd2};
			/* dxb is rewritten: the side stream's dW have read it (as the
			 * caller's norm backward waits for) */
			CKR(side_wait(g, SV_DX));
			CKR(side_wait(g, SV_DXB));
			CKR(policy_route_bwd_slots_b16n(
			        g->route_ws, (const uint16_t *)slots, ly->xp, 1, P + lp->router,
			        ly->prob, ly->sel, ly->gate, dgate, ly->auxc, T, E, K, D, &nb));
			g->ffn_done = 1;
		} else if (slots && g->act16) { /* round 16: bf16 slots (and x, resid) */
			const void *rx = g->a16r ? (const void *)ly->xp : (const void *)ly->n2;
			/* round 25 (dn16): dn in bf16 where the staged kernel runs */
			g->dn_b16 = g->dn16 && g->a16r &&
			            policy_route_bwd_norm_supported(E, K, D, slots, rx);
			CKR(policy_route_bwd_slots_b16o(dn, g->dn_b16, g->route_ws,
			                                (const uint16_t *)slots, rx, g->a16r,
			                                P + lp->router, ly->prob, ly->sel, ly->gate,
			                                dgate, ly->auxc, T, E, K, D));
		} else if (slots)
			CKR(policy_route_bwd_slots(dn, g->route_ws, slots, ly->n2, P + lp->router,
			                           ly->prob, ly->sel, ly->gate, dgate, ly->auxc, T,
			                           E, K, D));
		else
			CKR(policy_route_bwd(dn, g->route_ws, ly->n2, P + lp->router, ly->prob,
			                     ly->sel, ly->gate, dgate, ly->auxc, T, E, K, D,
			                     g->route_new - 1));
		CKR(policy_route_dw(G + lp->router, g->route_ws, T, E, D));
		mark(g, PROF_ROUTE);
		return 0;
	}
	CKR(side_wait(g, SV_DT1)); /* dlog is in dt1 */
	k_route_bwd<<<GRID(T), 0, PST>>>(dlog, ly->prob, ly->sel, ly->gate, dgate, ly->auxc, T, E,
	                                 K);
	LAUNCHED();
	CKR(mm_dw(g, G + lp->router, dlog, ly->n2, CUDA_R_32F, T, D, E, 1));
	CKR(mm_dx(g, dn, CUDA_R_32F, dlog, P + lp->router, CUDA_R_32F, T, D, E, 1, 1));
	mark(g, PROF_ROUTE);
	return 0;
}

/* ---- the step ---------------------------------------------------------------- */

static void pl_opts(struct swerve_pl_opts *ko, const struct policy_loss_opts *opts)
{
	swerve_pl_opts_init(ko, opts && opts->kind == POLICY_LOSS_GRPO   ? SWERVE_PL_GRPO
	                        : opts && opts->kind == POLICY_LOSS_DAPO ? SWERVE_PL_DAPO
	                                                                 : SWERVE_PL_CISPO);
	ko->norm = SWERVE_PL_NORM_TOKENS; /* the CPU reference normalises by tokens */
	if (opts) {
		ko->eps_low = (float)opts->eps_low;
		ko->eps_high = (float)opts->eps_high;
		ko->cispo_lower_bound = opts->kind == POLICY_LOSS_CISPO && opts->eps_low > 0;
	}
}

/* the LM head and loss in plain fp32: logits (T, V) materialised, a row
 * kernel with kernels/policy_loss.h's per-token math; dlogits in place */
static int plain_head(struct policy_gpu *g, struct policy_loss_stats *st, int T, int n,
                      const int *targets, int pg, const struct policy_loss_opts *opts, int backward)
{
	const struct policy_layout *L = g->L;
	int D = g->cfg.dim, V = g->cfg.vocab_size;
	struct swerve_pl_opts ko;
	CKR(mm_fwd(g, g->logits, CUDA_R_32F, g->nf, g->params + L->lm_head, CUDA_R_32F, T, D, V, 0,
	           1));
	pl_opts(&ko, opts);
	k_loss<<<T, 256, 0, PST>>>(g->logits, g->tl, g->tgt, g->old, g->adv, T, V,
	                           n ? 1.0f / n : 0.0f, pg, ko, backward);
	LAUNCHED();
	CK(cudaMemcpy(g->h_tl, g->tl, (size_t)4 * T * 4, cudaMemcpyDeviceToHost));
	if (st) {
		memset(st, 0, sizeof(*st));
		for (int t = 0; t < T; t++) {
			if (targets[t] < 0)
				continue;
			st->loss += g->h_tl[2 * T + t];
			st->logp_sum += g->h_tl[t];
			st->entropy_sum += g->h_tl[T + t];
			st->clipped += g->h_tl[3 * T + t];
		}
		st->n_tokens = n;
	}
	return 0;
}

/* the fused head's precision (kernels/policy_loss.h), POLICY_GPU_HEAD:
 * fp32fwd (the default: the forward fp32-accurate, the backward's products
 * at bf16 with fp32 accumulation) or fp32 (every product fp32-accurate) */
static int head_precision(enum swerve_pl_precision *p)
{
	static const char *const names[] = {"fp32fwd", "fp32"};
	int v = policy_env_choice("POLICY_GPU_HEAD", names, 2, 0);
	if (v < 0)
		return v;
	*p = v == 0 ? SWERVE_PL_FP32_FWD : SWERVE_PL_FP32;
	return 0;
}

/* the fused head's row kernel (kernels/policy_loss.h), POLICY_GPU_HEAD_ROWS:
 * reg (the default: a block a row, the row held in registers) or prefetch
 * (persistent blocks, the next row bulk-copied into shared memory while the
 * current one is reduced) */
static int head_rows(int *row_reread)
{
	/* round 21: stream, the default (kernels/policy_loss.h: 2 rows an SM,
	 * each row read 3 times, the 2nd and 3rd from L2; bit for bit reg;
	 * under graphs -0.5 to -1.1 ms a 4 x 8192 step on two H100s, level at
	 * 65,536 tokens a micro-batch) */
	static const char *const names[] = {"reg", "prefetch", "stream"};
	static const int kinds[] = {SWERVE_PL_ROWS_REG, SWERVE_PL_ROWS_PREFETCH,
	                            SWERVE_PL_ROWS_STREAM};
	int v = policy_env_choice("POLICY_GPU_HEAD_ROWS", names, 3, 2);
	if (v < 0)
		return v;
	*row_reread = kinds[v];
	return 0;
}

static int head_collect(struct policy_gpu *g, struct policy_loss_stats *st, int T, int n,
                        const int *targets, int pg, int backward);

/* the LM head and loss through the fused kernel: X = bf16(final norm), W
 * the fp32 master head; dX lands in g->dn, dW in the gradient arena (which
 * it overwrites, so the arena is cleared first) */
static int fused_head(struct policy_gpu *g, struct policy_loss_stats *st, int T, int n,
                      const int *targets, int pg, const struct policy_loss_opts *opts, int backward)
{
	const struct policy_layout *L = g->L;
	int D = g->cfg.dim, V = g->cfg.vocab_size;
	struct swerve_pl_opts ko;
	struct swerve_pl_batch pb;
	struct swerve_pl_out po;
	size_t need;

	pl_opts(&ko, opts);
	if (!pg) { /* cross-entropy as CISPO with w = 1 */
		swerve_pl_opts_init(&ko, SWERVE_PL_CISPO);
		ko.norm = SWERVE_PL_NORM_TOKENS;
		ko.eps_high = 0.0f;
	}
	CKR(head_precision(&ko.precision));
	CKR(head_rows(&ko.row_reread));
	ko.logprob_only = !backward;
	/* the first micro-batch of a window clears the arena and writes the
	 * head's gradient; later ones add to it */
	ko.accumulate_dw = g->n_acc > 0;
	if (backward && g->n_acc == 0)
		CKR(grads_clear(g));
	if (!g->ab) { /* bf16 mode's final norm wrote nf_b itself */
		k_to_bf16<<<GRID((size_t)T * D), 0, PST>>>(g->nf_b, g->nf, (size_t)T * D);
		LAUNCHED();
	}
	k_pl_prep<<<GRID(T), 0, PST>>>(g->tgt_c, g->mask, g->pl_old, g->pl_adv, g->tgt, g->old,
	                               g->adv, T, !pg);
	LAUNCHED();
	memset(&pb, 0, sizeof(pb));
	pb.n_tokens = T;
	pb.d = D;
	pb.vocab = V;
	pb.targets = g->tgt_c;
	pb.logp_old = g->pl_old;
	pb.advantages = g->pl_adv;
	pb.n_seqs = 1;
	pb.mask = g->mask;
	memset(&po, 0, sizeof(po));
	po.logp = g->tl;
	po.entropy = g->tl + T;
	po.clipped = g->clip8;
	po.loss = g->pl_loss;
	po.dX = g->dn;
	po.dW = g->grads + L->lm_head;
	need = swerve_pl_workspace_size(&pb, &ko);
	if (need > g->ws2_bytes) {
		cudaFree(g->ws2);
		g->ws2 = NULL;
		g->ws2_bytes = 0;
		CK(cudaMalloc(&g->ws2, need));
		policy_gpu_alloc_gen++;
		g->ws2_bytes = need;
		g->w_fresh = 0; /* round 21: a new buffer (maybe at the old address) */
	}
	/* in graph mode every write of the weights splits W again at once
	 * (w_written), so a graph captured with the split skipped stays right */
	ko.w_split_ready = g->w_fresh && g->wsplit_reuse;
	g->w_fresh = 0;
	CKR(swerve_policy_loss_cuda(g->pl, &po, &pb, g->nf_b, g->params + L->lm_head, &ko, g->ws2,
	                            g->ws2_bytes, PST));
	g->w_fresh = 1;
	if (g->graph) /* round 14: read back after the step's launches */
		return 0;
	return head_collect(g, st, T, n, targets, pg, backward);
}

/* the fused head's read-backs: per-token results, loss, clip flags (and
 * with POLICY_GPU_COPY=async the balance losses) into st */
static int head_collect(struct policy_gpu *g, struct policy_loss_stats *st, int T, int n,
                        const int *targets, int pg, int backward)
{
	float loss = 0;
	uint8_t *clip = NULL;

	if (g->copy_async) { /* one synchronisation for every read-back */
		float *h_loss = (float *)g->h_pin;
		double *h_aux = (double *)(g->h_pin + 16);
		uint8_t *h_clip = (uint8_t *)(h_aux + g->cfg.n_layers);
		CK(cudaMemcpyAsync(g->h_tl, g->tl, (size_t)2 * T * 4, cudaMemcpyDeviceToHost, PST));
		if (backward)
			CK(cudaMemcpyAsync(h_loss, g->pl_loss, 4, cudaMemcpyDeviceToHost, PST));
		if (st && pg && backward)
			CK(cudaMemcpyAsync(h_clip, g->clip8, (size_t)T, cudaMemcpyDeviceToHost,
			                   PST));
		CK(cudaMemcpyAsync(h_aux, g->aux_d, (size_t)g->cfg.n_layers * sizeof(double),
		                   cudaMemcpyDeviceToHost, PST));
		CK(cudaStreamSynchronize(PST));
		g->aux_ready = 1; /* policy_gpu_step reads h_aux */
		if (backward)
			loss = *h_loss;
		if (st && pg && backward) {
			clip = (uint8_t *)malloc((size_t)T);
			if (!clip)
				return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
			memcpy(clip, h_clip, (size_t)T);
		}
	} else {
		CK(cudaMemcpy(g->h_tl, g->tl, (size_t)2 * T * 4, cudaMemcpyDeviceToHost));
		if (backward)
			CK(cudaMemcpy(&loss, g->pl_loss, 4, cudaMemcpyDeviceToHost));
	}
	if (st) {
		memset(st, 0, sizeof(*st));
		if (pg && backward && !g->copy_async) {
			clip = (uint8_t *)malloc((size_t)T);
			if (!clip)
				return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
			if (cudaMemcpy(clip, g->clip8, (size_t)T, cudaMemcpyDeviceToHost) !=
			    cudaSuccess) {
				free(clip);
				return swerve_error_set(SWERVE_ERROR,
				                        "gpu: copying clip flags failed");
			}
		}
		for (int t = 0; t < T; t++) {
			if (targets[t] < 0)
				continue;
			st->logp_sum += g->h_tl[t];
			st->entropy_sum += g->h_tl[T + t];
			st->clipped += clip ? clip[t] : 0;
		}
		free(clip);
		st->n_tokens = n;
		if (backward)
			st->loss = loss;
		else { /* logprob_only: the loss is known for cross-entropy only */
			for (int t = 0; t < T; t++)
				if (targets[t] >= 0 && !pg)
					st->loss -= g->h_tl[t] / n;
		}
	}
	return 0;
}

/* ---- the step's launches --------------------------------------------------- */

/* round 16: gpu_ew.cu's add + RMSNorm with the residual stream (out, a) in
 * bf16 under POLICY_GPU_ACT16=resid and the slots yp in bf16 under slots or
 * resid; off: policy_ew_add_rms */
static int ew_add_rms(const struct policy_gpu *g, void *out, void *y, int y_bf16, uint16_t *yb,
                      float *rstd, const void *a, const float *emb, const int *tok, const float *b,
                      const void *yp, const float *gate, int K, const float *w, int T, int C,
                      float eps)
{
	return policy_ew_add_rms16(out, g->a16x, y, y_bf16, yb, rstd, a, emb, tok, b, yp,
	                           g->act16 && yp, gate, K, w, T, C, eps);
}

/* the forward and the head (its read-backs inline, or in graph mode by
 * head_collect after the step's launches) */
static int step_fwd(struct policy_gpu *g, struct policy_loss_stats *st,
                    const struct policy_batch *b, const int *targets, int pg,
                    const struct policy_loss_opts *opts, int backward, int maxlen, int n)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layout *L = g->L;
	int T = b->n_tokens, D = c->dim;
	size_t TD = (size_t)T * D;
	int emb_norm = 0; /* the embedding wrote the first norm (round 8) */

	mark(g, -1);
	/* round 20: the overlapped update's tok_emb and layer 0 (its attn_norm
	 * read by the embedding's fused norm) written */
	CKR(adam_wait(g, 1));
	/* the residual stream: x_l lives in ly[l].xin, the value after the
	 * attention in ly[l].hmid, the last one in xf. Fused (default): each add
	 * writes the next buffer and normalises it in the same pass; else the
	 * round-2 passes (add in place in g->x, copies, a norm kernel). */
	if (g->ew && g->fuse && c->n_layers > 0 &&
	    !((uintptr_t)(g->params + L->tok_emb) & 15)) { /* round 8: with the first norm */
		emb_norm = 1;
		CKR(ew_add_rms(g, g->ly[0].xin, g->ly[0].n1, g->ab, NULL, g->ly[0].rstd1, NULL,
		               g->params + L->tok_emb, g->tok, NULL, NULL, NULL, 0,
		               g->params + L->layers[0].attn_norm, T, D, (float)c->norm_eps));
	} else if (g->ew) {
		CKR(policy_ew_embed(g->fuse ? g->ly[0].xin : g->x, g->params + L->tok_emb, g->tok,
		                    T, D));
	} else {
		k_embed<<<GRID(TD), 0, PST>>>(g->fuse ? g->ly[0].xin : g->x, g->params + L->tok_emb,
		                              g->tok, T, D);
		LAUNCHED();
	}
	for (int l = 0; l < c->n_layers; l++) {
		const struct policy_layer_params *lp = &L->layers[l];
		struct glayer *ly = &g->ly[l];
		float eps = (float)c->norm_eps;
		int routed = 0;           /* round 26: the router ran with the ffn norm */
		CKR(adam_wait(g, l + 1)); /* round 20: layer l's weights written */
		if (!g->fuse)
			CK(cudaMemcpyAsync(ly->xin, g->x, TD * 4, cudaMemcpyDeviceToDevice, PST));
		if (g->ew && (!g->fuse || (l == 0 && !emb_norm))) {
			CKR(policy_ew_add_rms(NULL, ly->n1, g->ab, NULL, ly->rstd1, ly->xin, NULL,
			                      NULL, NULL, NULL, NULL, 0, g->params + lp->attn_norm,
			                      T, D, eps));
		} else if (!g->fuse || (l == 0 && !g->a16x)) {
			/* l == 0 after the embedding's add (emb_norm): the same norm
			 * again (n1, rstd1 rewritten, the default's bits); not with the
			 * bf16 stream (round 16), where xin is bf16 and the add's norm
			 * stands */
			LAUNCH_A(g, k_rms_fwd, T, 256, ly->n1, ly->rstd1, ly->xin,
			         g->params + lp->attn_norm, D, eps);
			LAUNCHED();
		}
		mark(g, PROF_OTHER);
		if (lp->softmax) {
			CKR(softmax_fwd(g, l, g->dn, b));
			mark(g, PROF_SOFTMAX);
		} else {
			CKR(lightning_fwd(g, l, g->dn, b, maxlen));
		}
		if (g->ew && g->fuse) { /* round 8 (gpu_ew.cu); xp: the experts' bf16 input */
			/* round 23: wo wrote hmid = xin + its product (WO_ADD=gemm): the
			 * norm of hmid alone */
			const int wf = wo_fused(g, lp->softmax);
			void *ho = wf ? NULL : ly->hmid;
			const void *ha = wf ? (const void *)ly->hmid : (const void *)ly->xin;
			const float *hb = wf ? NULL : g->dn;
			/* round 26: the norm and the router in one pass (hmid alone) */
			const float *wr = g->params + lp->router;
			routed = g->norm_route && wf &&
			         !(((uintptr_t)wr | (uintptr_t)ly->xp | (uintptr_t)ly->hmid) & 15);
			/* round 16: the router on xp: n2 not written */
			if (routed) {
				CKR(route_ws(g, T));
				CKR(policy_route_fwd_norm_b16(
				        ly->prob, ly->sel, ly->gate, ly->rowof, g->route_ws,
				        (uint16_t *)ly->xp, ly->rstd2, (const uint16_t *)ly->hmid,
				        g->params + lp->ffn_norm, wr, T, c->n_experts, c->top_k, D,
				        eps));
			} else if (g->a16r)
				CKR(ew_add_rms(g, ho, ly->xp, 1, NULL, ly->rstd2, ha, NULL, NULL,
				               hb, NULL, NULL, 0, g->params + lp->ffn_norm, T, D,
				               eps));
			else
				CKR(ew_add_rms(g, ho, ly->n2, 0,
				               g->moe_fused ? (uint16_t *)ly->xp : NULL, ly->rstd2,
				               ha, NULL, NULL, hb, NULL, NULL, 0,
				               g->params + lp->ffn_norm, T, D, eps));
		} else if (g->moe_fused) {
			k_add_rms_moe<float><<<T, 256, 0, PST>>>(
			        ly->hmid, ly->n2, (uint16_t *)ly->xp, ly->rstd2, ly->xin, g->dn,
			        NULL, NULL, 0, g->params + lp->ffn_norm, D, eps);
			LAUNCHED();
		} else if (g->fuse) {
			k_add_rms<float><<<T, 256, 0, PST>>>(ly->hmid, ly->n2, ly->rstd2, ly->xin,
			                                     g->dn, g->params + lp->ffn_norm, D,
			                                     eps);
			LAUNCHED();
		} else {
			k_add<<<GRID(TD), 0, PST>>>(g->x, g->dn, TD);
			LAUNCHED();
			CK(cudaMemcpyAsync(ly->hmid, g->x, TD * 4, cudaMemcpyDeviceToDevice, PST));
			if (g->ew)
				CKR(policy_ew_add_rms(NULL, ly->n2, 0, NULL, ly->rstd2, g->x, NULL,
				                      NULL, NULL, NULL, NULL, 0,
				                      g->params + lp->ffn_norm, T, D, eps));
			else
				k_rms_fwd<float><<<T, 256, 0, PST>>>(
				        ly->n2, ly->rstd2, g->x, g->params + lp->ffn_norm, D, eps);
			LAUNCHED();
		}
		mark(g, PROF_OTHER);
		CKR(moe_fwd(g, l, g->dn, T, routed));
		/* round 20: the next layer's weights (its attn_norm, read by the
		 * fused add below) or, after the last layer, the final norm and the
		 * head (the whole update: the head writes its gradient) */
		CKR(adam_wait(g, l + 2));
		if (!g->fuse) {
			k_add<<<GRID(TD), 0, PST>>>(g->x, g->dn, TD);
			LAUNCHED();
		} else if (g->ew) { /* round 8: the next norm (or the final one) in one pass */
			int last = l + 1 == c->n_layers;
			struct glayer *nx = last ? NULL : &g->ly[l + 1];
			const float *w =
			        g->params + (last ? L->final_norm : L->layers[l + 1].attn_norm);
			/* the last: the fused head's bf16 input in bf16 mode */
			int yb16 = g->ab || g->moe_fused; /* the grouped MoE is bf16 only */
			void *y = last ? (yb16 ? (void *)g->nf_b : (void *)g->nf) : nx->n1;
			/* the combine inside the residual add (the grouped MoE) */
			CKR(ew_add_rms(g, last ? g->xf : nx->xin, y, yb16, NULL,
			               last ? g->rstdf : nx->rstd1, ly->hmid, NULL, NULL,
			               g->moe_fused ? NULL : g->dn, g->moe_fused ? ly->yp : NULL,
			               g->moe_fused ? ly->gate : NULL, c->top_k, w, T, D, eps));
		} else if (g->moe_fused) { /* the combine inside the residual add */
			const float *w =
			        g->params +
			        (l + 1 < c->n_layers ? L->layers[l + 1].attn_norm : L->final_norm);
			if (l + 1 < c->n_layers) { /* the fused path is bf16: n1 in bf16 */
				struct glayer *nx = &g->ly[l + 1];
				k_add_rms_moe<uint16_t><<<T, 256, 0, PST>>>(
				        nx->xin, nx->n1, NULL, nx->rstd1, ly->hmid, NULL, ly->yp,
				        ly->gate, c->top_k, w, D, eps);
			} else {
				k_add_rms_moe<uint16_t><<<T, 256, 0, PST>>>(
				        g->xf, g->nf_b, NULL, g->rstdf, ly->hmid, NULL, ly->yp,
				        ly->gate, c->top_k, w, D, eps);
			}
			LAUNCHED();
		} else if (l + 1 < c->n_layers) {
			struct glayer *nx = &g->ly[l + 1];
			LAUNCH_A(g, k_add_rms, T, 256, nx->xin, nx->n1, nx->rstd1, ly->hmid, g->dn,
			         g->params + L->layers[l + 1].attn_norm, D, eps);
			LAUNCHED();
		} else {
			/* the last add and the final norm: the fused head's bf16 input
			 * in bf16 mode */
			if (g->ab)
				k_add_rms<uint16_t><<<T, 256, 0, PST>>>(
				        g->xf, g->nf_b, g->rstdf, ly->hmid, g->dn,
				        g->params + L->final_norm, D, eps);
			else
				k_add_rms<float><<<T, 256, 0, PST>>>(
				        g->xf, g->nf, g->rstdf, ly->hmid, g->dn,
				        g->params + L->final_norm, D, eps);
			LAUNCHED();
		}
	}
	if (!g->fuse) {
		CK(cudaMemcpyAsync(g->xf, g->x, TD * 4, cudaMemcpyDeviceToDevice, PST));
		if (g->ew) /* only the fused head's bf16 input is needed in bf16 mode */
			CKR(policy_ew_add_rms(NULL, g->ab ? (void *)g->nf_b : (void *)g->nf, g->ab,
			                      NULL, g->rstdf, g->x, NULL, NULL, NULL, NULL, NULL, 0,
			                      g->params + L->final_norm, T, D, (float)c->norm_eps));
		else if (g->ab) /* only the fused head's bf16 input is needed */
			k_rms_fwd<uint16_t><<<T, 256, 0, PST>>>(g->nf_b, g->rstdf, g->x,
			                                        g->params + L->final_norm, D,
			                                        (float)c->norm_eps);
		else
			k_rms_fwd<float><<<T, 256, 0, PST>>>(g->nf, g->rstdf, g->x,
			                                     g->params + L->final_norm, D,
			                                     (float)c->norm_eps);
		LAUNCHED();
	}
	mark(g, PROF_OTHER);
	CKR(adam_join(g)); /* round 20: a no-op by now (n_layers > 0) */
	if (g->pl)
		CKR(fused_head(g, st, T, n, targets, pg, opts, backward));
	else
		CKR(plain_head(g, st, T, n, targets, pg, opts, backward));
	mark(g, PROF_HEAD);
	return 0;
}

/* the backward after step_fwd, ending joined with the side stream */
static int step_bwd(struct policy_gpu *g, const struct policy_batch *b, int maxlen)
{
	const struct policy_config *c = &g->cfg;
	const struct policy_layout *L = g->L;
	int T = b->n_tokens, D = c->dim, V = c->vocab_size;
	size_t TD = (size_t)T * D;

	CKR(adam_join(g)); /* round 20: the forward already waited for the update */
	g->pair_l = -1;    /* round 23: no layer's down dW deferred yet */
	/* backward: dlogits are in g->logits (the fused head already wrote dn and
	 * the head's gradient) */
	if (!g->pl) {
		if (g->n_acc == 0)
			CK(cudaMemsetAsync(g->grads, 0, L->total * 4, PST));
		CKR(mm_dw(g, g->grads + L->lm_head, g->logits, g->nf, CUDA_R_32F, T, D, V, 1));
		CKR(mm_dx(g, g->dn, CUDA_R_32F, g->logits, g->params + L->lm_head, CUDA_R_32F, T, D,
		          V, 0, 1));
		mark(g, PROF_HEAD);
	}
	if (g->a16g) /* round 19: the residual gradient in bf16 (g->dxb) */
		CKR(policy_ew_rms_bwd16g(g->dxb, NULL, 0, g->grads + L->final_norm, g->dn,
		                         (const uint16_t *)g->xf, g->params + L->final_norm,
		                         g->rstdf, T, D));
	else
		CKR(resid_rms_bwd(g, g->dx, NULL, 0, g->grads + L->final_norm, g->dn, g->xf,
		                  g->params + L->final_norm, g->rstdf, T, D));
	LAUNCHED();
	for (int l = c->n_layers - 1; l >= 0; l--) {
		const struct policy_layer_params *lp = &L->layers[l];
		struct glayer *ly = &g->ly[l];
		mark(g, PROF_OTHER);
		g->ffn_done = 0;
		g->dn_b16 = 0; /* round 25: set where the route backward stores dn in bf16 */
		CKR(moe_bwd(g, l, g->dn, g->a16g ? (const float *)g->dxb : g->dx, T));
		/* dx and dxb rewritten: the side stream's dW above have read them */
		CKR(side_wait(g, SV_DX));
		CKR(side_wait(g, SV_DXB));
		/* the attention's dy: also in bf16 for its GEMMs (bf16 mode); round
		 * 19 (a16g): the bf16 gradient itself, with an fp32 copy in g->dx
		 * for a softmax layer; round 23: done by the route backward */
		if (g->ffn_done)
			;
		else if (g->a16g)
			CKR(policy_ew_rms_bwd16gy(g->dxb, lp->softmax && !g->sm_wo16 ? g->dx : NULL,
			                          1, g->grads + lp->ffn_norm, g->dn, g->dn_b16,
			                          (const uint16_t *)ly->hmid,
			                          g->params + lp->ffn_norm, ly->rstd2, T, D));
		else
			CKR(resid_rms_bwd(g, g->dx, g->ab ? g->dxb : NULL, 1,
			                  g->grads + lp->ffn_norm, g->dn, ly->hmid,
			                  g->params + lp->ffn_norm, ly->rstd2, T, D));
		LAUNCHED();
		mark(g, PROF_OTHER);
		g->dn_b16 = 0; /* round 25: lightning_bwd sets it (dn16) */
		if (lp->softmax) {
			CKR(softmax_bwd(g, l, g->dn, g->dx, b));
			mark(g, PROF_SOFTMAX);
		} else {
			CKR(lightning_bwd(g, l, g->dn, g->dx, b, maxlen));
		}
		CKR(side_wait(g, SV_DX)); /* dx rewritten */
		if (g->a16g) {
			/* round 19: dxb rewritten (the wo dW has read it) */
			CKR(side_wait(g, SV_DXB));
			CKR(policy_ew_rms_bwd16gy(g->dxb, NULL, 1, g->grads + lp->attn_norm, g->dn,
			                          g->dn_b16, (const uint16_t *)ly->xin,
			                          g->params + lp->attn_norm, ly->rstd1, T, D));
		} else
			CKR(resid_rms_bwd(g, g->dx, NULL, 1, g->grads + lp->attn_norm, g->dn,
			                  ly->xin, g->params + lp->attn_norm, ly->rstd1, T, D));
		LAUNCHED();
	}
	/* round 19 (a16g): the bf16 gradient's embedding backward (its float4
	 * atomics over repeated tokens are as order-dependent as the fp32
	 * kernel's: tok_emb is not bit-reproducible in either) */
	if (g->a16g) {
		CKR(policy_ew_embed_bwd16(g->grads + L->tok_emb, g->dxb, g->tok, T, D));
	} else if (g->ew) {
		CKR(policy_ew_embed_bwd(g->grads + L->tok_emb, g->dx, g->tok, T, D));
	} else {
		k_embed_bwd<<<GRID(TD), 0, PST>>>(g->grads + L->tok_emb, g->dx, g->tok, T, D);
		LAUNCHED();
	}
	/* the side stream's weight gradients done before anything that follows
	 * (AdamW, the next micro-batch, copies of the arena) */
	CKR(side_join(g));
	mark(g, PROF_OTHER);
	return 0;
}

/* ---- round 14: the micro-batch as a CUDA graph (POLICY_GPU_GRAPH=1) ------- */

/* the host counters a step's launch code adds to (a replay adds the same) */
static void graph_stats(const struct policy_gpu *g, long *s)
{
	s[0] = g->moe_rows;
	s[1] = g->moe_rows_padded;
	s[2] = g->moe_rows_peak;
	s[3] = g->lt_calls;
	s[4] = g->lt_fallbacks;
}

static void graph_stats_add(struct policy_gpu *g, const long *d)
{
	g->moe_rows += d[0];
	g->moe_rows_padded += d[1];
	g->moe_rows_peak += d[2];
	g->lt_calls += d[3];
	g->lt_fallbacks += d[4];
}

/* part 0 (the forward and the head) or 1 (the backward) of a micro-batch,
 * launched on g->gst (graph mode) */
static int step_launch(struct policy_gpu *g, int part, const struct policy_batch *b,
                       const int *targets, int pg, const struct policy_loss_opts *opts,
                       int backward, int maxlen, int n)
{
	if (!part)
		return step_fwd(g, NULL, b, targets, pg, opts, backward, maxlen, n);
	g->ev_live = 0; /* no side-stream event recorded by this backward yet */
	return step_bwd(g, b, maxlen);
}

/* A part of the micro-batch (two graphs: the head's read-backs come
 * between them, as in the default step, so that the backward runs while
 * the caller prepares the next micro-batch): its graph replayed when one
 * was captured for the key, else launched as it is, then captured (the
 * capture runs nothing) and instantiated for the next micro-batch of the
 * same key. */
static int graph_part(struct policy_gpu *g, int part, const struct policy_batch *b,
                      const int *targets, int pg, const struct policy_loss_opts *opts, int backward,
                      int maxlen, int n)
{
	struct policy_graph_key k;
	struct policy_graph_slot *e;
	long s0[POLICY_GRAPH_STATS], s1[POLICY_GRAPH_STATS], d[POLICY_GRAPH_STATS];
	int rc;
	memset(&k, 0, sizeof(k)); /* the padding too: keys compare with memcmp */
	k.T = b->n_tokens;
	k.n_seqs = b->n_seqs;
	k.maxlen = maxlen;
	k.backward = backward;
	k.first = g->n_acc == 0;
	/* round 24: the window slice's buffers and, where this micro-batch's
	 * backward runs the window's dW, whether they store or add */
	k.slice = g->win ? g->win_n | (g->win_bwd ? 1 + g->win_added : 0) << 8 : 0;
	k.pg = pg;
	k.part = part;
	if (pg && opts) {
		k.kind = (int)opts->kind + 1;
		k.eps_low = opts->eps_low;
		k.eps_high = opts->eps_high;
	}
	/* round 21: with flash attention no launch reads the sequence bounds
	 * on the host, so batches of one (T, sequences, maxlen bucket) share
	 * a graph; cuBLAS attention loops over the sequences on the host */
	const int *cu = g->flash ? NULL : b->cu_seqlens;
	if ((e = policy_graph_find(g->graphs, &k, cu))) {
		CK(cudaGraphLaunch(e->exec, g->gst));
		graph_stats_add(g, e->stats);
		return 0;
	}
	swerve_gpu_pdl = g->pdl == 1; /* launched directly */
	/* round 21 (auto): a key's first time only launches */
	if (g->graph_auto && !policy_graph_seen(g->graphs, &k, cu))
		return step_launch(g, part, b, targets, pg, opts, backward, maxlen, n);
	graph_stats(g, s0);
	CKR(step_launch(g, part, b, targets, pg, opts, backward, maxlen, n));
	graph_stats(g, s1);
	for (int i = 0; i < POLICY_GRAPH_STATS; i++)
		d[i] = s1[i] - s0[i];
	CKR(policy_graph_capture_begin(g->gst));
	swerve_gpu_pdl = g->pdl != 0; /* round 21: on (or auto) in captures */
	rc = step_launch(g, part, b, targets, pg, opts, backward, maxlen, n);
	swerve_gpu_pdl = g->pdl == 1;
	for (int i = 0; i < POLICY_GRAPH_STATS; i++) /* the capture ran nothing */
		d[i] = s1[i] - s0[i];
	g->moe_rows = s1[0];
	g->moe_rows_padded = s1[1];
	g->moe_rows_peak = s1[2];
	g->lt_calls = s1[3];
	g->lt_fallbacks = s1[4];
	return policy_graph_capture_end(g->graphs, &k, cu, g->gst, rc, d);
}

static int step_impl(struct policy_loss_stats *st, double *aux_out, float *out_logp,
                     struct policy_gpu *g, const struct policy_batch *b, const int *targets,
                     const float *logp_old, const float *adv, const struct policy_loss_opts *opts,
                     int backward)
{
	const struct policy_config *c = &g->cfg;
	int T = b->n_tokens, V = c->vocab_size, maxlen = 0, n = 0;
	swerve_gpu_pdl = g->pdl == 1; /* round 20: pdl::launch's switch (auto: graph_part) */
	double aux = 0;
	int *hp, rc;

	if (backward < 0 || backward > POLICY_GPU_BACKWARD_ACC)
		return swerve_error_set(SWERVE_EINVAL, "gpu: backward must be 0, 1 or 2, got %d",
		                        backward);
	if (T < 1 || T > g->Tm || b->n_seqs < 1 || b->n_seqs > g->Sm)
		return swerve_error_set(SWERVE_EINVAL,
		                        "gpu: batch of %d tokens in %d sequences exceeds the "
		                        "buffers (%d, %d)",
		                        T, b->n_seqs, g->Tm, g->Sm);
	if (b->cu_seqlens[0] != 0 || b->cu_seqlens[b->n_seqs] != T)
		return swerve_error_set(SWERVE_EINVAL, "gpu: cu_seqlens must run from 0 to %d", T);
	for (int t = 0; t < T; t++) {
		if (b->tokens[t] < 0 || b->tokens[t] >= V || targets[t] >= V)
			return swerve_error_set(SWERVE_EINVAL,
			                        "gpu: token %d: id outside the vocabulary (%d)", t,
			                        V);
		n += targets[t] >= 0;
	}
	g->T = T;
	/* per-token positions and sequence bounds */
	hp = (int *)malloc((size_t)T * 3 * sizeof(int));
	for (int s = 0; s < b->n_seqs; s++) {
		int a = b->cu_seqlens[s], e = b->cu_seqlens[s + 1];
		if (e - a > maxlen)
			maxlen = e - a;
		for (int t = a; t < e; t++) {
			hp[t] = t - a;
			hp[T + t] = a;
			hp[2 * T + t] = e;
		}
	}
	maxlen = g->maxlen = maxlen_bucket(c, maxlen);
	if (g->copy_async) { /* round 10: through the pinned staging, not waiting */
		int *s = g->h_stage, ns1 = b->n_seqs + 1;
		float *f = (float *)(s + 5 * (size_t)T + ns1);
		cudaError_t e = cudaEventSynchronize(g->ev_stage); /* the last uploads read it */
		if (e != cudaSuccess) {
			free(hp);
			CK(e);
		}
		memcpy(s, b->tokens, (size_t)T * 4);
		memcpy(s + T, targets, (size_t)T * 4);
		memcpy(s + 2 * (size_t)T, hp, (size_t)3 * T * 4); /* pos, sstart, send */
		memcpy(s + 5 * (size_t)T, b->cu_seqlens, (size_t)ns1 * 4);
		free(hp);
		if (logp_old) {
			memcpy(f, logp_old, (size_t)T * 4);
			memcpy(f + T, adv, (size_t)T * 4);
		}
		{
			void *dst[8] = {g->tok,  g->tgt, g->pos, g->sstart,
			                g->send, g->cu,  g->old, g->adv};
			const void *src[8] = {s,
			                      s + T,
			                      s + 2 * (size_t)T,
			                      s + 3 * (size_t)T,
			                      s + 4 * (size_t)T,
			                      s + 5 * (size_t)T,
			                      f,
			                      f + T};
			size_t nb[8] = {(size_t)T * 4, (size_t)T * 4, (size_t)T * 4,
			                (size_t)T * 4, (size_t)T * 4, (size_t)ns1 * 4,
			                (size_t)T * 4, (size_t)T * 4};
			for (int i = 0; i < (logp_old ? 8 : 6); i++)
				CK(cudaMemcpyAsync(dst[i], src[i], nb[i], cudaMemcpyHostToDevice,
				                   PST));
		}
		CK(cudaEventRecord(g->ev_stage, PST));
	} else {
		CK(cudaMemcpy(g->tok, b->tokens, (size_t)T * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(g->tgt, targets, (size_t)T * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(g->pos, hp, (size_t)T * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(g->sstart, hp + T, (size_t)T * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(g->send, hp + 2 * T, (size_t)T * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(g->cu, b->cu_seqlens, (size_t)(b->n_seqs + 1) * 4,
		              cudaMemcpyHostToDevice));
		free(hp);
		if (logp_old) {
			CK(cudaMemcpy(g->old, logp_old, (size_t)T * 4, cudaMemcpyHostToDevice));
			CK(cudaMemcpy(g->adv, adv, (size_t)T * 4, cudaMemcpyHostToDevice));
		}
	}

	if (backward == POLICY_GPU_BACKWARD) /* a window of one micro-batch */
		g->n_acc = 0;
	if (g->win) {         /* round 24: this micro-batch's slice of the expert dW window */
		if (backward) /* the experts' dW change: their tiles' sums are stale */
			g->sq_ok = 0;
		if (backward && g->n_acc == 0) { /* a new gradient window */
			g->win_n = 0;
			g->win_added = 0;
		}
		win_point(g, g->win_n);
		g->win_bwd = backward && g->win_n == g->win - 1;
	}

	if (g->graph == 2 && backward) { /* the backward queued behind the forward */
		CKR(graph_part(g, 0, b, targets, logp_old != NULL, opts, backward, maxlen, n));
		CK(cudaEventRecord(g->ev_fwd, g->gst));
		CKR(graph_part(g, 1, b, targets, logp_old != NULL, opts, backward, maxlen, n));
		/* the head's results (which the backward does not write) read back
		 * on the copy stream once the forward is done */
		CK(cudaStreamWaitEvent(g->cst, g->ev_fwd, 0));
		policy_gpu_st = g->cst;
		rc = head_collect(g, st, T, n, targets, logp_old != NULL, backward);
		policy_gpu_st = g->gst;
		CKR(rc);
	} else if (g->graph) { /* round 14: the forward's graph, then the read-backs */
		CKR(graph_part(g, 0, b, targets, logp_old != NULL, opts, backward, maxlen, n));
		CKR(head_collect(g, st, T, n, targets, logp_old != NULL, backward));
	} else {
		CKR(step_fwd(g, st, b, targets, logp_old != NULL, opts, backward, maxlen, n));
	}
	if (g->aux_ready) { /* the fused head read them back (POLICY_GPU_COPY=async) */
		const double *h_aux = (const double *)(g->h_pin + 16);
		for (int l = 0; l < c->n_layers; l++)
			aux += h_aux[l];
		g->aux_ready = 0;
	} else {
		double la[256];
		for (int l0 = 0; l0 < c->n_layers; l0 += 256) {
			int nl = c->n_layers - l0 < 256 ? c->n_layers - l0 : 256;
			CK(cudaMemcpy(la, g->aux_d + l0, (size_t)nl * sizeof(double),
			              cudaMemcpyDeviceToHost));
			for (int l = 0; l < nl; l++)
				aux += la[l];
		}
	}
	if (out_logp)
		memcpy(out_logp, g->h_tl, (size_t)T * 4);
	if (aux_out)
		*aux_out = aux;
	if (!backward)
		return 0;

	if (g->graph == 1) /* the backward's graph, left running */
		CKR(graph_part(g, 1, b, targets, logp_old != NULL, opts, backward, maxlen, n));
	else if (!g->graph)
		CKR(step_bwd(g, b, maxlen));
	g->n_acc++;
	if (g->win && ++g->win_n == g->win) /* round 24: every slice kept */
		CKR(win_flush(g));
	return 0;
}

int policy_gpu_step(struct policy_loss_stats *st, double *aux_out, float *out_logp,
                    struct policy_gpu *g, const struct policy_batch *b, const int *targets,
                    const float *logp_old, const float *adv, const struct policy_loss_opts *opts,
                    int backward)
{
	int rc;
	if (!g->graph)
		return step_impl(st, aux_out, out_logp, g, b, targets, logp_old, adv, opts,
		                 backward);
	/* round 14: everything on g->gst, after what the legacy default stream
	 * was given before (weights set, their bf16 copy); the backward may
	 * still run on gst when the step returns (gst_drain) */
	if (cudaEventRecord(g->ev_leg, 0) != cudaSuccess ||
	    cudaStreamWaitEvent(g->gst, g->ev_leg, 0) != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "gpu: ordering the step's stream failed");
	policy_gpu_st = g->gst;
	policy_moe_stream(g->gst);
	rc = step_impl(st, aux_out, out_logp, g, b, targets, logp_old, adv, opts, backward);
	policy_gpu_st = 0;
	policy_moe_stream(NULL);
	return rc;
}

/* round 20: the overlapped update's groups (made at its first update): in
 * arena order, group 0 the tensors before layer 0 (tok_emb), group l + 1
 * layer l's, the last those from final_norm on; each group's tensor table
 * with blk0 counted from the group's first block; the stream and events */
static int adam_groups(struct policy_gpu *g)
{
	const struct policy_layout *L = g->L;
	int nl = g->cfg.n_layers, ng = nl + 2, nb = 0, k = 0;
	struct adam_seg *h = (struct adam_seg *)calloc((size_t)L->n, sizeof(*h));
	g->adam_gs = (int *)calloc((size_t)ng + 1, sizeof(int));
	g->adam_gblk = (int *)calloc((size_t)ng, sizeof(int));
	if (!h || !g->adam_gs || !g->adam_gblk) {
		free(h);
		return swerve_error_set(SWERVE_ENOMEM, "gpu: AdamW group table");
	}
	for (int i = 0; i < L->n; i++) {
		size_t off = L->t[i].offset;
		int gi = 0; /* the group of tensor i */
		if (nl > 0 && off >= L->final_norm)
			gi = ng - 1;
		else
			for (int l = 0; l < nl; l++)
				if (off >= L->layers[l].attn_norm)
					gi = l + 1;
		if (gi < k) {
			free(h);
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu: AdamW groups: tensor %s out of "
			                        "the forward's order",
			                        L->t[i].name);
		}
		for (; k < gi; k++) { /* groups k .. gi - 1 end before tensor i */
			g->adam_gs[k + 1] = i;
			nb = 0;
		}
		h[i].off = off;
		h[i].n = L->t[i].numel;
		h[i].decay = L->t[i].decay;
		h[i].blk0 = nb;
		nb += (int)((L->t[i].numel + ADAM_CHUNK - 1) / ADAM_CHUNK);
		g->adam_gblk[gi] = nb;
	}
	for (; k < ng; k++)
		g->adam_gs[k + 1] = L->n;
	g->adam_ngrp = ng;
	cudaError_t e = cudaMalloc(&g->adam_gseg, (size_t)L->n * sizeof(*h));
	if (e == cudaSuccess)
		e = cudaMemcpy(g->adam_gseg, h, (size_t)L->n * sizeof(*h), cudaMemcpyHostToDevice);
	free(h);
	CK(e);
	CK(cudaStreamCreateWithFlags(&g->ast, cudaStreamNonBlocking));
	CK(cudaEventCreateWithFlags(&g->aev_in, cudaEventDisableTiming));
	g->aev = (cudaEvent_t *)calloc((size_t)ng, sizeof(cudaEvent_t));
	if (!g->aev)
		return swerve_error_set(SWERVE_ENOMEM, "gpu: AdamW group events");
	for (int i = 0; i < ng; i++)
		CK(cudaEventCreateWithFlags(&g->aev[i], cudaEventDisableTiming));
	return 0;
}

static int adamw_impl(double *grad_norm, struct policy_gpu *g, struct policy_adamw *o)
{
	const struct policy_layout *L = g->L;
	float part[1024];
	double ss = 0, norm, scale = 1.0, bc1, bc2;
	/* the arena holds the sum over the window's micro-batches: their mean */
	double inv = g->n_acc > 1 ? 1.0 / g->n_acc : 1.0;
	g->w_fresh = 0; /* round 21: the head's split of W is stale from here on */
	mark(g, -1);
	if (!g->adam_seg) {
		struct adam_seg *h = (struct adam_seg *)calloc((size_t)L->n, sizeof(*h));
		int nb = 0;
		if (!h)
			return swerve_error_set(SWERVE_ENOMEM, "gpu: AdamW tensor table");
		for (int i = 0; i < L->n; i++) {
			h[i].off = L->t[i].offset;
			h[i].n = L->t[i].numel;
			h[i].decay = L->t[i].decay;
			h[i].blk0 = nb;
			nb += (int)((L->t[i].numel + ADAM_CHUNK - 1) / ADAM_CHUNK);
		}
		cudaError_t e = cudaMalloc(&g->adam_seg, (size_t)L->n * sizeof(*h));
		if (e == cudaSuccess)
			e = cudaMemcpy(g->adam_seg, h, (size_t)L->n * sizeof(*h),
			               cudaMemcpyHostToDevice);
		free(h);
		CK(e);
		g->adam_nseg = L->n;
		g->adam_blocks = nb;
	}
	/* round 20: a pending overlapped update done before this one reads the
	 * gradients and rewrites the arenas */
	CKR(adam_join(g));
	CKR(win_flush(g)); /* round 24: the window's expert dW first */
	if (g->adam_ovl && !g->graph && !g->aev)
		CKR(adam_groups(g));
	/* round 24: with the window's tile sums valid, the other tensors only */
	const int wsq = g->sq_ok && g->sqw && g->sq_rng_d && !g->adam_per_tensor;
	const int nsq = wsq ? g->cfg.n_layers * (g->sq_up + g->sq_dn) : 0;
	if (g->adam_per_tensor)
		k_sumsq<<<1024, 256, 0, PST>>>(g->red, g->grads, L->total);
	else if (wsq)
		k_sumsq_rng<<<1024, 256, 0, PST>>>(g->red, g->grads, g->sq_rng_d, g->nsq_rng);
	else
		k_sumsq4<<<1024, 256, 0, PST>>>(g->red, g->grads, L->total);
	LAUNCHED();
	if (g->graph && !g->adam_per_tensor) { /* round 14: the scale on the device */
		k_clip_scale<<<1, 256, 0, PST>>>(g->gnorm, g->red, inv, o->clip_norm, g->sqw, nsq);
		LAUNCHED();
		/* the norm the caller gets: read back while the update runs */
		CK(cudaMemcpyAsync(g->h_norm, g->gnorm, sizeof(double), cudaMemcpyDeviceToHost,
		                   PST));
		CK(cudaEventRecord(g->ev_norm, PST));
		g->n_acc = 0;
		o->step++;
		bc1 = 1.0 - pow(o->beta1, (double)o->step);
		bc2 = 1.0 - pow(o->beta2, (double)o->step);
		k_adamw_all<true><<<g->adam_blocks, ADAM_THREADS, 0, PST>>>(
		        g->params, g->pb, g->grads, g->m, g->v, g->adam_seg, g->adam_nseg, 0.0f,
		        (const float *)(g->gnorm + 1), (float)o->lr, (float)o->beta1,
		        (float)o->beta2, (float)o->eps, (float)o->weight_decay, (float)bc1,
		        (float)bc2);
		LAUNCHED();
		CKR(w_written(g));
		CK(cudaEventSynchronize(g->ev_norm));
		if (grad_norm)
			*grad_norm = *g->h_norm;
		return 0;
	}
	if (g->graph) { /* per tensor: gst's sums */
		CK(cudaMemcpyAsync(part, g->red, sizeof(part), cudaMemcpyDeviceToHost, PST));
		CK(cudaStreamSynchronize(PST));
	} else {
		CK(cudaMemcpy(part, g->red, sizeof(part), cudaMemcpyDeviceToHost));
	}
	for (int i = 0; i < 1024; i++)
		ss += part[i];
	if (nsq) { /* round 24: the window's tiles, in k_clip_scale's order */
		float *p2 = (float *)malloc((size_t)nsq * sizeof(float));
		if (!p2)
			return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
		if (cudaMemcpy(p2, g->sqw, (size_t)nsq * sizeof(float), cudaMemcpyDeviceToHost) !=
		    cudaSuccess) {
			free(p2);
			return swerve_error_set(SWERVE_ERROR,
			                        "gpu: reading the window's sums failed");
		}
		const int per = (nsq + 255) / 256;
		for (int t = 0; t < 256; t++) {
			double c = 0;
			for (int i = t * per; i < nsq && i < (t + 1) * per; i++)
				c += p2[i];
			ss += c;
		}
		free(p2);
	}
	norm = sqrt(ss) * inv;
	if (o->clip_norm > 0 && norm > o->clip_norm)
		scale = o->clip_norm / (norm + 1e-30);
	scale *= inv;
	g->n_acc = 0; /* the next backward step starts a new window */
	o->step++;
	bc1 = 1.0 - pow(o->beta1, (double)o->step);
	bc2 = 1.0 - pow(o->beta2, (double)o->step);
	if (g->aev) { /* round 20: in groups on ast, after the step's stream */
		CK(cudaEventRecord(g->aev_in, PST));
		CK(cudaStreamWaitEvent(g->ast, g->aev_in, 0));
		for (int k = 0; k < g->adam_ngrp; k++) {
			const struct adam_seg *sg = g->adam_gseg + g->adam_gs[k];
			int ns = g->adam_gs[k + 1] - g->adam_gs[k];
			if (ns && (g->adam_ovl == 1 || k == 0)) /* k 0: the forward's first wait */
				k_adamw_all<false><<<g->adam_gblk[k], ADAM_THREADS, 0, g->ast>>>(
				        g->params, g->pb, g->grads, g->m, g->v, sg, ns,
				        (float)scale, NULL, (float)o->lr, (float)o->beta1,
				        (float)o->beta2, (float)o->eps, (float)o->weight_decay,
				        (float)bc1, (float)bc2);
			else if (ns)
				k_adamw_grp<<<g->adam_ovl, ADAM_GRP_THREADS, 0, g->ast>>>(
				        g->params, g->pb, g->grads, g->m, g->v, sg, ns,
				        (float)scale, (float)o->lr, (float)o->beta1,
				        (float)o->beta2, (float)o->eps, (float)o->weight_decay,
				        (float)bc1, (float)bc2);
			LAUNCHED();
			CK(cudaEventRecord(g->aev[k], g->ast));
		}
		g->adam_pend = 1;
		g->adam_waited = -1;
	} else if (!g->adam_per_tensor) {
		k_adamw_all<false><<<g->adam_blocks, ADAM_THREADS, 0, PST>>>(
		        g->params, g->pb, g->grads, g->m, g->v, g->adam_seg, g->adam_nseg,
		        (float)scale, NULL, (float)o->lr, (float)o->beta1, (float)o->beta2,
		        (float)o->eps, (float)o->weight_decay, (float)bc1, (float)bc2);
		LAUNCHED();
	}
	for (int i = 0; i < L->n && g->adam_per_tensor; i++) {
		const struct policy_tensor *t = &L->t[i];
		k_adamw<<<GRID(t->numel), 0, PST>>>(
		        g->params + t->offset, g->pb ? g->pb + t->offset : NULL,
		        g->grads + t->offset, g->m + t->offset, g->v + t->offset, t->numel,
		        (float)scale, (float)o->lr, (float)o->beta1, (float)o->beta2, (float)o->eps,
		        (float)(t->decay ? o->weight_decay : 0.0), (float)bc1, (float)bc2);
		LAUNCHED();
	}
	CKR(w_written(g));
	mark(g, PROF_ADAMW);
	if (grad_norm)
		*grad_norm = norm;
	return 0;
}

int policy_gpu_adamw(double *grad_norm, struct policy_gpu *g, struct policy_adamw *o)
{
	int rc;
	if (!g->graph)
		return adamw_impl(grad_norm, g, o);
	/* round 14: on gst after the legacy stream's earlier work; the update
	 * may still run on it when this returns (gst_drain) */
	if (cudaEventRecord(g->ev_leg, 0) != cudaSuccess ||
	    cudaStreamWaitEvent(g->gst, g->ev_leg, 0) != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR, "gpu: ordering AdamW's stream failed");
	policy_gpu_st = g->gst;
	rc = adamw_impl(grad_norm, g, o);
	policy_gpu_st = 0;
	return rc;
}

/* ---- the trainer's GPU backend ---------------------------------------------- */

static int ops_step(void *dev, struct policy_loss_stats *st, double *aux, double *out_logp,
                    const struct policy_batch *b, const int *targets, const double *logp_old,
                    const double *adv, const struct policy_loss_opts *opts, int backward)
{
	struct policy_gpu *g = (struct policy_gpu *)dev;
	int T = b->n_tokens, rc;
	float *f = (float *)malloc((size_t)(T > 0 ? T : 1) * 3 * sizeof(float));
	if (!f)
		return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
	if (logp_old)
		for (int t = 0; t < T; t++) {
			f[t] = (float)logp_old[t];
			f[T + t] = (float)adv[t];
		}
	rc = policy_gpu_step(st, aux, out_logp ? f + 2 * T : NULL, g, b, targets,
	                     logp_old ? f : NULL, logp_old ? f + T : NULL, opts, backward);
	if (!rc && out_logp)
		for (int t = 0; t < T; t++)
			out_logp[t] = targets[t] >= 0 ? f[2 * T + t] : 0.0;
	free(f);
	return rc;
}

static int ops_adamw(void *dev, double *grad_norm, struct policy_adamw *opt)
{
	return policy_gpu_adamw(grad_norm, (struct policy_gpu *)dev, opt);
}

static int ops_pull(void *dev, float *params, float *m, float *v)
{
	struct policy_gpu *g = (struct policy_gpu *)dev;
	size_t n = g->L->total * 4;
	CKR(gst_drain(g));
	CK(cudaMemcpy(params, g->params, n, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(m, g->m, n, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(v, g->v, n, cudaMemcpyDeviceToHost));
	return 0;
}

static void ops_free(void *dev)
{
	policy_gpu_free((struct policy_gpu *)dev);
}

static const struct policy_trainer_ops gpu_ops = {ops_step, ops_adamw, ops_pull, ops_free};

int policy_trainer_use_gpu(struct policy_trainer *tr, int max_tokens, int max_seqs,
                           enum policy_gpu_precision prec)
{
	struct policy_gpu *g = NULL;
	size_t n = tr->layout.total * 4;
	int rc;
	if (tr->ops)
		return swerve_error_set(SWERVE_EINVAL, "gpu: the trainer already runs on a device");
	if ((rc = policy_gpu_new(&g, &tr->cfg, &tr->layout, max_tokens, max_seqs, prec)))
		return rc;
	if (cudaMemcpy(g->params, tr->params, n, cudaMemcpyHostToDevice) != cudaSuccess ||
	    cudaMemcpy(g->m, tr->m, n, cudaMemcpyHostToDevice) != cudaSuccess ||
	    cudaMemcpy(g->v, tr->v, n, cudaMemcpyHostToDevice) != cudaSuccess ||
	    params_changed(g)) {
		policy_gpu_free(g);
		return swerve_error_set(SWERVE_ERROR, "gpu: uploading the weights failed");
	}
	tr->ops = &gpu_ops;
	tr->dev = g;
	return 0;
}
