/* policy_loss.h - fused policy-gradient loss over the vocabulary, LM head included.
 *
 * One call takes the last hidden states X [N, d], the LM head W [V, d] (fp32),
 * the sampled tokens and the rollout data, and returns per-token log-probs,
 * entropies, importance ratios and clip flags, the scalar loss, and the
 * gradients dX [N, d] and dW [V, d]. The N x V logits are never held at once:
 * the GPU version walks the tokens in chunks of `chunk_tokens` rows.
 *
 * Loss variants (SPEC.md section 1), per token t of sequence i, with
 * r = exp(logp - logp_old) and A the advantage:
 *   CISPO   l = -sg(w) * M * A * logp,  w = min(r, 1 + eps_high)
 *           [and w = max(w, 1 - eps_low) with cispo_lower_bound];
 *           M = 1, or with cispo_mask (M1 eq. 6-7) M = 0 where
 *           (A > 0 and r > 1 + eps_high) or (A < 0 and r < 1 - eps_low).
 *   GRPO    l = max(-A r, -A clip(r, 1 - eps_low, 1 + eps_high))  (PPO-clip)
 *   DAPO    the same PPO-clip term with clip-higher defaults (0.2 / 0.28)
 *           and token-level normalisation.
 * loss = sum_t norm_t * mask_t * l_t, with norm_t = 1 / (masked tokens in the
 * batch) (SWERVE_PL_NORM_TOKENS) or 1 / (n_seqs * masked tokens of t's
 * sequence) (SWERVE_PL_NORM_SEQUENCE: mean over sequences of the token mean).
 * No KL term. "clipped" means the token's gradient was changed by the clip:
 * CISPO: w != r (or M = 0); GRPO/DAPO: the clipped branch was taken.
 *
 * Two implementations of the same function:
 *   swerve_policy_loss_cpu()   plain C, double accumulation (the reference);
 *   swerve_policy_loss_cuda()  cuBLAS GEMMs + a fused row kernel (policy_loss.cu).
 * This header needs no CUDA headers: the stream is `struct CUstream_st *`,
 * which is what cudaStream_t is. */
#ifndef SWERVE_KERNELS_POLICY_LOSS_H
#define SWERVE_KERNELS_POLICY_LOSS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum swerve_pl_variant {
	SWERVE_PL_CISPO = 0,
	SWERVE_PL_GRPO = 1,
	SWERVE_PL_DAPO = 2,
};

enum swerve_pl_norm {
	SWERVE_PL_NORM_TOKENS = 0,   /* divide by the masked tokens of the batch */
	SWERVE_PL_NORM_SEQUENCE = 1, /* mean over sequences of each one's token mean */
};

/* How the GPU computes the head's products (the CPU reference always uses
 * double). X is bf16 and so exact in every mode; what differs is W and dZ:
 *   FP32      W split into 2 bf16 parts (to 2^-18 of each weight; 3 parts,
 *             all 24 bits, with the env switch SWERVE_PL_WPARTS=3: the
 *             tensor cores' truncating accumulator makes 2 the more exact
 *             against float64), the logit gradient into 2 (16 bits),
 *             products on bf16 tensor cores with fp32 accumulation, the
 *             target logit recomputed exactly: fp32-accurate forward and
 *             gradients (M1). 7 bf16 product passes: forward 2, dX 3, dW 2.
 *   TF32      one cuBLAS TF32 product per GEMM (10-bit mantissas).
 *   BF16      W and dZ rounded to bf16 (8-bit mantissas): fastest, least exact.
 *   FP32_FWD  the forward exactly as FP32 (logp, entropy, ratio, loss and the
 *             clip decisions fp32-accurate: the train/inference probability
 *             match), the backward at bf16 product precision with fp32
 *             accumulation like the rest of a bf16 model: dZ as one bf16 part,
 *             dX = dZ W0 (W0 = bf16(W)) and dW = dZ^T X one GEMM each.
 *             4 product passes (5 with 3 parts). The CPU reference treats it as FP32. */
enum swerve_pl_precision {
	SWERVE_PL_FP32 = 0,
	SWERVE_PL_TF32 = 1,
	SWERVE_PL_BF16 = 2,
	SWERVE_PL_FP32_FWD = 3,
};

#define SWERVE_PL_OPTS_VERSION 1

struct swerve_pl_opts {
	int version; /* SWERVE_PL_OPTS_VERSION */
	enum swerve_pl_variant variant;
	float eps_low;         /* lower clip 1 - eps_low */
	float eps_high;        /* upper clip/cap 1 + eps_high (not an absolute cap) */
	int cispo_lower_bound; /* CISPO: also floor w at 1 - eps_low (M1: off) */
	int cispo_mask;        /* CISPO: M1's unified token mask (M1 trained with it off) */
	enum swerve_pl_norm norm;
	enum swerve_pl_precision precision; /* GPU only */
	int logprob_only;                   /* only logp (and entropy): no loss, no gradients */
	int accumulate_dw;                  /* dW += gradient instead of dW = gradient */
	int chunk_tokens;                   /* GPU: tokens per chunk; 0 = automatic */
	int row_tokens;    /* GPU: tokens per forward GEMM + row kernel sub-chunk inside a
	                    * chunk (the logits buffer holds this many rows); 0 = automatic
	                    * (swerve_pl_row_tokens). dX and dW still run per chunk. */
	int row_reread;    /* GPU: which row kernel (SWERVE_PL_ROWS_*, end of this file):
	                    * 0 the row in registers (default), 1 two-pass (reads it twice),
	                    * 2 persistent, next row prefetched, 3 lean registers, 4 streamed
	                    * from L2, 5 = 4 without cache hints; all but 1 need V%4 = 0,
	                    * V <= 32768 (else 1 runs) */
	int w_split_ready; /* GPU (FP32, FP32_FWD, BF16): 1 = W's values are those of this
	                    * context's previous call, so the bf16 parts of W that call wrote at
	                    * the start of the workspace are reused (skipped where the parts,
	                    * W, V, d or the workspace differ: the split then runs); 0 = split */
};

/* Defaults for a variant: CISPO eps_high 4 (ratio cap 5, ScaleRL), no lower
 * bound, mask off, token normalisation; GRPO 0.2/0.2, sequence normalisation;
 * DAPO 0.2/0.28, token normalisation. Precision FP32. Never fails. */
void swerve_pl_opts_init(struct swerve_pl_opts *opts, enum swerve_pl_variant variant);

/* The per-token rollout data. Pointers are host memory for the CPU version and
 * device memory for the CUDA version. */
struct swerve_pl_batch {
	int n_tokens;            /* N */
	int d;                   /* hidden size */
	int vocab;               /* V */
	const int32_t *targets;  /* [N] sampled token ids, 0 <= id < V */
	const float *logp_old;   /* [N] behaviour-policy log-probs (unused: logprob_only) */
	const float *advantages; /* [N] per token, or [n_seqs] with adv_per_seq */
	const int32_t *seq_idx;  /* [N] sequence of each token in 0..n_seqs-1; NULL: one sequence */
	int n_seqs;              /* number of sequences (>= 1 when seq_idx is set) */
	int adv_per_seq;         /* advantages are indexed by seq_idx[t] */
	const uint8_t *mask;     /* [N] nonzero = token is trained on; NULL = all */
};

/* Outputs. logp is required; entropy, ratio and clipped may be NULL when not
 * wanted; loss, dX and dW are required unless logprob_only, in which mode
 * only logp and entropy are written. */
struct swerve_pl_out {
	float *logp;      /* [N] log pi(target) */
	float *entropy;   /* [N] -sum_v p log p, for logging */
	float *ratio;     /* [N] exp(logp - logp_old) */
	uint8_t *clipped; /* [N] 1 where the clip changed the token's gradient */
	float *loss;      /* [1] the scalar loss */
	float *dX;        /* [N, d] dLoss/dX (fp32), overwritten */
	float *dW;        /* [V, d] dLoss/dW (fp32), overwritten or accumulated */
};

/* The CPU reference: X is float [N, d] (convert bf16 with swerve_bf16_to_float
 * first), W float [V, d]; every sum in double. Returns 0, or SWERVE_EINVAL
 * naming the bad field (shape, target out of range, seq_idx out of range). */
int swerve_policy_loss_cpu(const struct swerve_pl_out *out, const struct swerve_pl_batch *batch,
                           const float *X, const float *W, const struct swerve_pl_opts *opts);

/* bf16 (stored as uint16_t) <-> float, round to nearest even. */
float swerve_bf16_to_float(uint16_t h);
uint16_t swerve_float_to_bf16(float f);

/* The chunk size a call with these options uses (opts->chunk_tokens, or the
 * automatic choice, a multiple of 64: FP32, TF32, BF16 at most 2^28 logits
 * per chunk, 64 to 2048 tokens; FP32_FWD at most 2^28 dZ elements, 64 to
 * 8192 tokens), at most n_tokens. Host code (policy_loss.c): both libraries. */
int swerve_pl_chunk_tokens(int n_tokens, int vocab, const struct swerve_pl_opts *opts);

/* The sub-chunk a call with these options runs its forward GEMM and row
 * kernel on (opts->row_tokens, or automatic: at most 2^28 logits, 64 to 2048
 * tokens), at most the chunk size; TF32 mode (dZ written in place of the
 * logits) always uses the chunk. Host code, as swerve_pl_chunk_tokens. */
int swerve_pl_row_tokens(int n_tokens, int vocab, const struct swerve_pl_opts *opts);

/* ---- CUDA (policy_loss.cu; only in libswerve_cuda.a) ---------------------- */

struct CUstream_st;
struct swerve_pl_ctx;

/* A context owns a cuBLAS handle; use one per stream/thread. */
int swerve_pl_ctx_new(struct swerve_pl_ctx **out);
void swerve_pl_ctx_free(struct swerve_pl_ctx *ctx);

/* Bytes of device workspace swerve_policy_loss_cuda needs: the split W (FP32,
 * FP32_FWD: 6 V d, BF16: 2 V d, TF32: 0), one sub-chunk of logits (4 R V, R =
 * swerve_pl_row_tokens()) and one chunk of the split logit gradient (FP32:
 * 4 C V, FP32_FWD and BF16: 2 C V, TF32: in place), chunk copies of X, and
 * O(N + n_seqs) per-token scratch. C = swerve_pl_chunk_tokens(). This is
 * the whole extra memory: nothing else is allocated per call. */
size_t swerve_pl_workspace_size(const struct swerve_pl_batch *batch,
                                const struct swerve_pl_opts *opts);

/* Enqueues the whole computation on `stream` (NULL: the legacy default
 * stream) and returns without synchronising; all pointers in batch/out and X
 * (bf16 [N, d]), W (fp32 [V, d]) are device memory, workspace at least
 * swerve_pl_workspace_size() bytes, 256-byte aligned. Returns 0, SWERVE_EINVAL
 * for bad shapes/options/too small a workspace, or -1 for a CUDA/cuBLAS error
 * (message names the call). Targets out of range give logp = NaN for that
 * token (the device cannot report it without a synchronisation). */
/* Round 21: after W's values changed, writes the split the context keeps
 * (opts.w_split_ready) again from them, on `stream` (same W, parts and
 * workspace as the call that made it), so that a later call, or a CUDA
 * graph captured with w_split_ready, reads W's new parts. Returns 1 (the
 * split launched), 0 (the context keeps none: nothing to do) or -1 (a CUDA
 * error; the kept split is forgotten). */
int swerve_pl_resplit_w(struct swerve_pl_ctx *ctx, struct CUstream_st *stream);

int swerve_policy_loss_cuda(struct swerve_pl_ctx *ctx, const struct swerve_pl_out *out,
                            const struct swerve_pl_batch *batch, const uint16_t *X, const float *W,
                            const struct swerve_pl_opts *opts, void *workspace,
                            size_t workspace_bytes, struct CUstream_st *stream);

/* Phase timing, for benchmarks: with profiling on, every call records a CUDA
 * event after each phase and synchronises on it (so the phases do not
 * overlap and the call is slower), adding the GPU milliseconds of each
 * phase to the context's totals. swerve_pl_profile(ctx, on) switches it and
 * zeroes the totals; swerve_pl_profile_read copies them out. */
enum swerve_pl_phase {
	SWERVE_PL_PH_PREP = 0, /* counts, the split of W */
	SWERVE_PL_PH_XCOPY,    /* chunk copies of X ([X X], [X; X], fp32) */
	SWERVE_PL_PH_FWD,      /* forward GEMM(s) Z = X W^T */
	SWERVE_PL_PH_ROW,      /* the row kernel (log-sum-exp, loss math, dZ) */
	SWERVE_PL_PH_DX,       /* dX GEMM(s) */
	SWERVE_PL_PH_DW,       /* dW GEMM */
	SWERVE_PL_PH_LOSS,     /* the loss sum */
	SWERVE_PL_NPHASES
};
const char *swerve_pl_phase_name(int phase);
int swerve_pl_profile(struct swerve_pl_ctx *ctx, int on);
void swerve_pl_profile_read(const struct swerve_pl_ctx *ctx, double ms[SWERVE_PL_NPHASES]);

/* ---- the per-token math, shared by both implementations ------------------ */

#ifdef __CUDACC__
#define SWERVE_PL_HD __host__ __device__
#else
#define SWERVE_PL_HD
#endif

struct swerve_pl_token {
	double ratio; /* exp(logp - logp_old) */
	double loss;  /* norm * l_t (0 for masked tokens) */
	double dlogp; /* dLoss/dlogp_t: the logit gradient is dlogp * (onehot - p) */
	int clipped;
};

/* Per-token loss term and gradient, given logp, logp_old, advantage A, the
 * normalisation weight norm (already 0 for masked tokens). */
static inline SWERVE_PL_HD struct swerve_pl_token
swerve_pl_token_eval(const struct swerve_pl_opts *o, double logp, double logp_old, double A,
                     double norm)
{
	struct swerve_pl_token t;
	double r = exp(logp - logp_old);
	double hi = 1.0 + (double)o->eps_high, lo = 1.0 - (double)o->eps_low;
	t.ratio = r;
	t.clipped = 0;
	if (o->variant == SWERVE_PL_CISPO) {
		double w = r < hi ? r : hi;
		if (o->cispo_lower_bound && w < lo)
			w = lo;
		double m = 1.0;
		if (o->cispo_mask && ((A > 0 && r > hi) || (A < 0 && r < lo)))
			m = 0.0;
		t.clipped = w != r || m == 0.0;
		t.loss = -norm * w * m * A * logp;
		t.dlogp = -norm * w * m * A;
	} else {
		/* PPO-clip: max(-A r, -A clip(r)); the clipped branch has no gradient */
		double rc = r < lo ? lo : r > hi ? hi : r;
		double a = -A * r, b = -A * rc;
		if (b > a) {
			t.clipped = 1;
			t.loss = norm * b;
			t.dlogp = 0.0;
		} else {
			t.loss = norm * a;
			t.dlogp = -norm * A * r; /* d(-A r)/dlogp = -A r */
		}
	}
	if (norm == 0.0) {
		t.loss = 0.0;
		t.dlogp = 0.0;
	}
	return t;
}

/* opts.row_reread: the row kernel. Where V % 4 != 0 or V > 32768, 0 and 2
 * run the two-pass kernel too. 2 is opt-in: bit-identical to 0, its row
 * phase ~11% faster on an H100, no gain end to end (2026-11-27). */
enum swerve_pl_rows {
	SWERVE_PL_ROWS_REG = 0,          /* one block a row, the row held in registers */
	SWERVE_PL_ROWS_TWOPASS = 1,      /* one block a row, read twice (issue 9's kernel) */
	SWERVE_PL_ROWS_PREFETCH = 2,     /* persistent blocks; the next row bulk-copied into
	                                  * shared memory while this one is reduced */
	SWERVE_PL_ROWS_LEAN = 3,         /* as REG with the token's inputs loaded up front
	                                  * and two barriers a row instead of five */
	SWERVE_PL_ROWS_STREAM = 4,       /* as LEAN, the row not held: two blocks an SM,
	                                  * the row re-read from L2 (round 19) */
	SWERVE_PL_ROWS_STREAM_PLAIN = 5, /* STREAM without its evict-first load/store
	                                  * hints (prepared, not yet run on a GPU) */
};
/* The environment value SWERVE_PL_ROWS = reg | twopass | prefetch | lean |
 * stream | stream-plain, where set, overrides opts.row_reread in swerve_policy_loss_cuda
 * (a misspelt value is refused by name). LEAN and STREAM are opt-in and
 * meant to be bit-identical to REG. */

#ifdef __cplusplus
}
#endif

#endif
