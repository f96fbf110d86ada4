/* policy.h - the policy trainer's public API: model config, parameter arena,
 * tokenizers, safetensors checkpoints, the CPU reference model (forward and
 * backward in double precision), policy losses, AdamW and the training steps
 * (supervised and RL).
 *
 * The model is MiniMax-M1 in miniature: per layer either lightning attention
 * or softmax attention (GQA, partial rotary), then an MoE feed-forward
 * (softmax router, top-k renormalised, SwiGLU experts, auxiliary balance
 * loss); pre-RMSNorm residual blocks; untied fp32 LM head. Formulas are in
 * ../shared/SPEC.md sections 1-3 and README.md "The policy trainer".
 *
 * Conventions: weight matrices are stored [out][in] row-major (PyTorch
 * Linear layout: y = W x), activations are [T][C] row-major, T counts the
 * tokens of every sequence of a packed (varlen) batch. */
#ifndef SWERVE_POLICY_H
#define SWERVE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "sandbox/error.h"

/* ---- config (policy/config.c) ------------------------------------------- */

#define POLICY_MAX_LAYERS 256

struct policy_config {
	int vocab_size;       /* tokens, special ones included */
	int dim;              /* model width */
	int n_layers;         /* transformer blocks */
	int n_heads;          /* query heads (both attention kinds) */
	int head_dim;         /* per head */
	int n_kv_heads;       /* softmax layers' key/value heads (GQA); divides n_heads */
	int rotary_dim;       /* rotary on the first rotary_dim dims of each head (even) */
	int softmax_every;    /* layer l is softmax iff (l + 1) % softmax_every == 0 */
	int n_experts;        /* MoE experts per layer */
	int top_k;            /* experts per token */
	int expert_hidden;    /* SwiGLU hidden size of one expert */
	int max_seq_len;      /* longest sequence the model accepts */
	double rope_theta;    /* 1e7 as in M1 */
	double norm_eps;      /* RMSNorm epsilon */
	double aux_loss_coef; /* MoE balance loss coefficient (0.001) */
	/* derived by policy_config_validate(): 1 where layer l is softmax */
	unsigned char softmax_layer[POLICY_MAX_LAYERS];
};

/* Fills a small default config (the CPU test size). Can't fail. */
void policy_config_default(struct policy_config *cfg);

/* Checks every field and fills softmax_layer. SWERVE_EINVAL naming the field. */
int policy_config_validate(struct policy_config *cfg);

/* Reads a JSON config (missing fields keep policy_config_default's values;
 * "softmax_layers": [..] overrides softmax_every). Validates. */
int policy_config_load(struct policy_config *out, const char *path);
int policy_config_parse(struct policy_config *out, const char *json, const char *what);

/* Writes the config as JSON (every field, softmax_layers explicit). */
int policy_config_save(const struct policy_config *cfg, const char *path);

/* Parameters per token that take part in a forward pass (embedding row,
 * attention, top_k experts of n_experts, router, norms, LM head). */
double policy_config_active_params(const struct policy_config *cfg);

/* Training FLOPs per token: 6 x active parameters + attention (12 x L x T x
 * H x d for softmax layers at sequence length seq, causal halved; lightning
 * layers counted in their linear form 12 x H x d x d). */
double policy_config_flops_per_token(const struct policy_config *cfg, int seq);

/* ---- parameter arena (policy/params.c) ---------------------------------- */

struct policy_tensor {
	char name[64]; /* safetensors name, e.g. "layers.3.moe.w1" */
	size_t offset; /* in elements, into the arena */
	size_t numel;
	int ndim;
	int shape[3];
	int decay; /* 1 for matrices (AdamW weight decay applies) */
};

/* Element offsets of one layer's tensors. Lightning layers use wq/wk/wv
 * (H*hd x dim), wgate (H*hd x dim), out_norm (H*hd), wo (dim x H*hd);
 * softmax layers use wq (H*hd x dim), wk/wv (KV*hd x dim), wo (dim x H*hd). */
struct policy_layer_params {
	int softmax;
	size_t attn_norm, wq, wk, wv, wgate, out_norm, wo;
	size_t ffn_norm, router, w1, w3, w2; /* w1,w3: E x F x dim; w2: E x dim x F */
};

struct policy_layout {
	int n;                   /* tensors */
	struct policy_tensor *t; /* n entries, in arena order */
	size_t total;            /* elements */
	size_t tok_emb, final_norm, lm_head;
	struct policy_layer_params *layers; /* n_layers entries */
};

/* Builds the layout of cfg's parameters (cfg validated). */
int policy_layout_init(struct policy_layout *out, const struct policy_config *cfg);
void policy_layout_dispose(struct policy_layout *layout);
/* The tensor named name, or NULL. */
const struct policy_tensor *policy_layout_find(const struct policy_layout *layout,
                                               const char *name);

/* Initialises an fp32 arena: norms 1, matrices N(0, 0.02) (output
 * projections scaled by 1/sqrt(2 L)), from a deterministic seed. */
void policy_params_init(float *params, const struct policy_layout *layout, uint64_t seed);

/* ---- tokenizers (policy/tokenizer.c) ------------------------------------ */

/* Byte-level tokenizer: ids 0..255 are bytes, then these specials. */
enum {
	POLICY_TOK_BOS = 256,
	POLICY_TOK_EOS = 257,
	POLICY_TOK_PAD = 258,
	POLICY_TOK_IM_START = 259,
	POLICY_TOK_IM_END = 260,
	POLICY_BYTE_VOCAB = 261,
};

struct policy_tokenizer;

/* The built-in byte-level tokenizer. */
int policy_tokenizer_new_bytes(struct policy_tokenizer **out);
/* A byte-level BPE tokenizer from a Hugging Face tokenizer.json (model.type
 * "BPE", GPT-2 byte-to-unicode alphabet, merges as "a b" or ["a","b"],
 * added_tokens). */
int policy_tokenizer_load(struct policy_tokenizer **out, const char *path);
void policy_tokenizer_free(struct policy_tokenizer *tok);

int policy_tokenizer_vocab_size(const struct policy_tokenizer *tok);
/* Id of a special/added token by content ("<|eos|>"), or -1. */
int policy_tokenizer_special(const struct policy_tokenizer *tok, const char *content);
int policy_tokenizer_eos(const struct policy_tokenizer *tok);

/* Encodes len bytes of text; *ids is malloc'd (caller frees). Added tokens
 * appearing literally in the text are matched first. */
int policy_tokenizer_encode(int **ids, int *n, const struct policy_tokenizer *tok, const char *text,
                            size_t len);
/* Decodes to a malloc'd NUL-terminated string; *len without the NUL. */
int policy_tokenizer_decode(char **text, size_t *len, const struct policy_tokenizer *tok,
                            const int *ids, int n);

/* ---- safetensors (policy/safetensors.c) --------------------------------- */

struct policy_st_entry {
	char name[128];
	char dtype[8]; /* "F32", "F64", "I64", ... */
	int ndim;
	int64_t shape[4];
	size_t begin, end; /* byte offsets into the data section */
};

struct policy_st_file {
	int n;
	struct policy_st_entry *e;
	char *metadata_json; /* the "__metadata__" object as JSON text, or NULL */
	unsigned char *data; /* data section */
	size_t data_len;
};

/* Reads a whole safetensors file and checks every entry's offsets. */
int policy_st_read(struct policy_st_file *out, const char *path);
void policy_st_dispose(struct policy_st_file *f);
const struct policy_st_entry *policy_st_find(const struct policy_st_file *f, const char *name);

/* Writes the tensors of layout from arena (F32), names prefixed by prefix
 * (may be ""), with string metadata pairs (meta: key, value, ..., NULL). */
int policy_st_write_arena(const char *path, const struct policy_layout *layout,
                          const float *const *arenas, const char *const *prefixes, int n_arenas,
                          const char *const *meta);
/* Loads an F32 arena written by policy_st_write_arena (names with prefix). */
int policy_st_load_arena(float *arena, const struct policy_st_file *f,
                         const struct policy_layout *layout, const char *prefix);

/* ---- CPU reference model (policy/ref.c) --------------------------------- */

/* A packed batch: n_tokens tokens of n_seqs sequences back to back;
 * cu_seqlens[0] = 0, cu_seqlens[n_seqs] = n_tokens. */
struct policy_batch {
	int n_tokens;
	const int *tokens;
	int n_seqs;
	const int *cu_seqlens;
};

struct policy_ref_tape;

/* Forward pass in double. *tape keeps the activations for backward.
 * params: the arena in double (policy_layout order). */
int policy_ref_forward(struct policy_ref_tape **tape, const struct policy_config *cfg,
                       const struct policy_layout *layout, const double *params,
                       const struct policy_batch *batch);
/* Logits (n_tokens x vocab), borrowed from the tape. */
const double *policy_ref_logits(const struct policy_ref_tape *tape);
/* Sum of the layers' MoE balance losses (already times aux_loss_coef). */
double policy_ref_aux_loss(const struct policy_ref_tape *tape);
/* Backward of (loss(logits) + aux_scale * aux): dlogits is dloss/dlogits;
 * grads (layout->total doubles) is accumulated into. */
int policy_ref_backward(struct policy_ref_tape *tape, const double *dlogits, double aux_scale,
                        double *grads);
void policy_ref_tape_free(struct policy_ref_tape *tape);

/* ---- losses (policy/loss.c) ---------------------------------------------- */

enum policy_loss_kind {
	POLICY_LOSS_CISPO = 0, /* w = min(r, 1+eps_high) (stop-grad) x A x logp */
	POLICY_LOSS_GRPO = 1,  /* PPO-clip, eps_low = eps_high = 0.2 by default */
	POLICY_LOSS_DAPO = 2,  /* PPO-clip with clip-higher (0.2 / 0.28) */
};

struct policy_loss_opts {
	enum policy_loss_kind kind;
	double eps_low;  /* CISPO: 0 means no lower bound (M1) */
	double eps_high; /* ratio cap 1 + eps_high */
};
#define POLICY_LOSS_OPTS_INIT                                                                      \
	{                                                                                          \
		POLICY_LOSS_CISPO, 0.0, 4.0                                                        \
	}

struct policy_loss_stats {
	double loss;        /* the objective minimised */
	double n_tokens;    /* tokens counted (mask) */
	double logp_sum;    /* sum of log pi(y_t) over counted tokens */
	double entropy_sum; /* sum of per-token entropies over counted tokens */
	double clipped;     /* tokens whose ratio hit a clip bound */
};

/* Mean cross-entropy over tokens with targets[t] >= 0 (others ignored).
 * dlogits (may be NULL) is overwritten with dloss/dlogits. */
int policy_loss_xent(struct policy_loss_stats *st, double *dlogits, const double *logits,
                     int n_tokens, int vocab, const int *targets);

/* Policy-gradient loss over tokens with targets[t] >= 0: logp_old[t] the
 * behaviour logprob, adv[t] the advantage; normalised by the counted tokens. */
int policy_loss_pg(struct policy_loss_stats *st, double *dlogits, const double *logits,
                   int n_tokens, int vocab, const int *targets, const double *logp_old,
                   const double *adv, const struct policy_loss_opts *opts);

/* Per-token log pi(targets[t]) (0 where targets[t] < 0). */
void policy_logprobs(double *out, const double *logits, int n_tokens, int vocab,
                     const int *targets);

/* Group advantages: A_i = (R_i - mean) / std (population std); returns 0
 * and sets every A_i = 0 when all rewards are equal (std < 1e-12). Returns
 * 1 when the group carries signal. */
int policy_group_advantages(double *adv, const double *rewards, int n);

/* ---- optimizer (policy/optim.c) ------------------------------------------ */

struct policy_adamw {
	double lr, beta1, beta2, eps, weight_decay, clip_norm;
	long step;
};
#define POLICY_ADAMW_INIT                                                                          \
	{                                                                                          \
		1e-3, 0.9, 0.95, 1e-15, 0.0, 1.0, 0                                                \
	}

/* Global L2 norm of n gradients. */
double policy_grad_norm(const float *grads, size_t n);
/* One AdamW step with global-norm clipping (clip_norm <= 0: none) over the
 * arena; m, v are the moment buffers (zeros at start). Weight decay applies
 * to tensors with decay set. Returns the pre-clip gradient norm. */
double policy_adamw_step(struct policy_adamw *opt, float *params, float *grads, float *m, float *v,
                         const struct policy_layout *layout);

/* ---- trainer state and checkpoints (policy/trainer.c) ------------------- */

/* Where the trainer's steps run: NULL ops is the CPU reference; the GPU
 * sets a table (policy_trainer_use_gpu). The device keeps its own copy of
 * the weights and moments; policy_trainer_sync_host() brings them back. */
struct policy_trainer_ops {
	/* forward (+ backward, gradients on the device) and loss: logp_old NULL
	 * means cross-entropy; out_logp (may be NULL) per token; backward as
	 * policy_gpu_step's (POLICY_GPU_BACKWARD_ACC adds to the gradients of
	 * the micro-batches since the last adamw, which steps on their mean) */
	int (*step)(void *dev, struct policy_loss_stats *st, double *aux, double *out_logp,
	            const struct policy_batch *batch, const int *targets, const double *logp_old,
	            const double *adv, const struct policy_loss_opts *opts, int backward);
	int (*adamw)(void *dev, double *grad_norm, struct policy_adamw *opt);
	int (*pull)(void *dev, float *params, float *m, float *v);
	void (*free)(void *dev);
};

struct policy_trainer {
	struct policy_config cfg;
	struct policy_layout layout;
	float *params; /* fp32 master weights */
	float *m, *v;  /* AdamW moments */
	struct policy_adamw opt;
	uint64_t rng; /* sampler/data state, saved with the checkpoint */
	/* CPU scratch */
	double *pd, *gd;
	const struct policy_trainer_ops *ops; /* NULL: CPU */
	void *dev;
};

/* Copies the device's weights and moments into params/m/v (no-op on the
 * CPU). Call before policy_checkpoint_save. */
int policy_trainer_sync_host(struct policy_trainer *tr);

/* A fresh trainer: params initialised from seed, moments zero. */
int policy_trainer_new(struct policy_trainer **out, const struct policy_config *cfg, uint64_t seed);
void policy_trainer_free(struct policy_trainer *tr);

/* Checkpoint directory: config.json, model.safetensors (params, F32),
 * optimizer.safetensors (m, v, step, rng, hyper-parameters): resuming
 * continues bit-exactly. */
int policy_checkpoint_save(const struct policy_trainer *tr, const char *dir);
int policy_checkpoint_load(struct policy_trainer **out, const char *dir);

/* One supervised step on a packed batch: targets are the next tokens (-1 to
 * ignore). Gradients of mean cross-entropy + aux; AdamW. */
struct policy_step_stats {
	double loss, aux, grad_norm, entropy, clipped_frac, n_tokens;
};
int policy_trainer_sft_step(struct policy_step_stats *st, struct policy_trainer *tr,
                            const struct policy_batch *batch, const int *targets);

/* Gradient accumulation: one optimizer step over n_micro micro-batches
 * (batches[i] with targets[i]): forward and backward of each in turn, then
 * one AdamW on the mean of their gradients (each micro-batch's loss is
 * normalised by its own tokens). Each micro-batch must fit the device
 * buffers by itself: K micro-batches train on K times the tokens per
 * optimizer step in the memory of one, and AdamW (which touches every
 * parameter, active or not) runs once per K. st: loss and aux are means over
 * the micro-batches, n_tokens the sum, entropy per token. n_micro 1 is
 * policy_trainer_sft_step. */
int policy_trainer_sft_step_accum(struct policy_step_stats *st, struct policy_trainer *tr,
                                  const struct policy_batch *batches, const int *const *targets,
                                  int n_micro);

/* Loss and logits of the current weights without updating (for
 * eval-logprobs and behaviour logprobs): out_logp[t] = log pi(targets[t]). */
int policy_trainer_logprobs(double *out_logp, struct policy_trainer *tr,
                            const struct policy_batch *batch, const int *targets);

/* One policy-gradient update on a packed batch: logp_old and adv per token. */
int policy_trainer_pg_step(struct policy_step_stats *st, struct policy_trainer *tr,
                           const struct policy_batch *batch, const int *targets,
                           const double *logp_old, const double *adv,
                           const struct policy_loss_opts *opts);

/* The same with accumulation over n_micro micro-batches (logp_old[i], adv[i]
 * per micro-batch), as policy_trainer_sft_step_accum. */
int policy_trainer_pg_step_accum(struct policy_step_stats *st, struct policy_trainer *tr,
                                 const struct policy_batch *batches, const int *const *targets,
                                 const double *const *logp_old, const double *const *adv,
                                 const struct policy_loss_opts *opts, int n_micro);

/* ---- sampling (policy/sample.c) ----------------------------------------- */

struct policy_sample_opts {
	double temperature; /* <= 0: greedy (argmax) */
	double top_p;       /* nucleus mass (1: off) */
	int max_new;        /* most tokens to generate */
	int stop_token;     /* e.g. the tokenizer's eos; -1: none */
	int guard_run;      /* repetition guard (M1): stop after this many consecutive */
	double guard_prob;  /* tokens each with probability > guard_prob; 0 run: off */
};
#define POLICY_SAMPLE_OPTS_INIT                                                                    \
	{                                                                                          \
		1.0, 1.0, 256, -1, 3000, 0.99                                                      \
	}

enum policy_stop { POLICY_STOP_LENGTH = 0, POLICY_STOP_TOKEN = 1, POLICY_STOP_GUARD = 2 };

struct policy_sample {
	int n;        /* generated tokens (the stop token included) */
	int *tokens;  /* malloc'd */
	double *logp; /* log pi(token) under the model at temperature 1 (behaviour logprobs) */
	enum policy_stop stop;
};

/* Generates one response to prompt with the CPU reference, decoding
 * incrementally (policy_decode: one token's forward per step; small models
 * only).
 * *rng is the sampler state (advanced). out is filled on success; free
 * with policy_sample_dispose. */
int policy_sample(struct policy_sample *out, struct policy_trainer *tr, const int *prompt,
                  int n_prompt, const struct policy_sample_opts *opts, uint64_t *rng);
void policy_sample_dispose(struct policy_sample *s);

/* The same sampler on the old path, one full policy_ref_forward over the
 * whole prefix per token (O(T^2)): kept for the tests and bench_sample that
 * compare the decoder against it. Same rng draws and results. */
int policy_sample_full_forward(struct policy_sample *out, struct policy_trainer *tr,
                               const int *prompt, int n_prompt,
                               const struct policy_sample_opts *opts, uint64_t *rng);

/* ---- incremental decoding (policy/decode.c) ------------------------------ */

/* One sequence's decoding state for the CPU reference model: per lightning
 * layer the recurrent state (n_heads x head_dim x head_dim doubles), per
 * softmax layer the rotated key and value cache (max_seq_len x n_kv_heads x
 * head_dim each). A push costs one token's forward; its logits equal the
 * last row of policy_ref_forward over the tokens pushed so far. */
struct policy_decode;

/* cfg is copied; layout and params (the arena in double) are borrowed and
 * must outlive the decoder. */
int policy_decode_new(struct policy_decode **out, const struct policy_config *cfg,
                      const struct policy_layout *layout, const double *params);
/* Feeds the next token; logits_out (vocab_size doubles) gets the next-token
 * logits, or NULL to skip the LM head (prompt tokens). SWERVE_EINVAL for a
 * token id outside the vocabulary, SWERVE_ELIMIT past max_seq_len; the
 * state is unchanged on error. */
int policy_decode_push(struct policy_decode *dec, int token, double *logits_out);
/* Tokens pushed so far. */
int policy_decode_pos(const struct policy_decode *dec);
/* Back to the empty sequence (keeps the buffers). */
void policy_decode_reset(struct policy_decode *dec);
void policy_decode_free(struct policy_decode *dec);

/* ---- the GPU model (policy/gpu.cu; only in libswerve_cuda.a) ------------ */

/* GEMM precision of the GPU path. The LM head, the router and the loss are
 * always fp32 (no TF32); the lightning kernel takes bf16 q/k/v (fp32 mode, or
 * POLICY_GPU_LIGHTNING=fp32, uses an fp32 kernel instead).
 *   POLICY_GPU_FP32  every other GEMM in fp32 (the comparison mode)
 *   POLICY_GPU_BF16  every other GEMM on bf16 operands stored in bf16 (a bf16
 *                    weight copy kept by AdamW), fp32 accumulate; master
 *                    weights, moments and gradients stay fp32 */
enum policy_gpu_precision { POLICY_GPU_FP32 = 0, POLICY_GPU_BF16 = 1 };

struct policy_gpu;

/* Device buffers for batches of up to max_tokens tokens in up to max_seqs
 * sequences (each at most cfg->max_seq_len). Lightning layers need head_dim
 * 64 or 128 (kernels/lightning.h). Fails with SWERVE_EUNSUPPORTED without a
 * CUDA device. */
int policy_gpu_new(struct policy_gpu **out, const struct policy_config *cfg,
                   const struct policy_layout *layout, int max_tokens, int max_seqs,
                   enum policy_gpu_precision precision);
void policy_gpu_free(struct policy_gpu *g);

/* Host <-> device copies of the fp32 arenas (layout->total floats).
 * policy_gpu_get_grads first runs the experts' weight gradients that
 * POLICY_GPU_MOE_DW_WIN still keeps for a window of micro-batches (round
 * 24), so it always gives the whole sum */
int policy_gpu_set_params(struct policy_gpu *g, const float *params);
int policy_gpu_get_params(struct policy_gpu *g, float *params);
int policy_gpu_get_grads(struct policy_gpu *g, float *grads);
/* AdamW's moments (fp32, total elements each), and the bf16 copy of the
 * weights the GEMMs read (bf16 mode with bf16 operands, else
 * SWERVE_EUNSUPPORTED); both after any update still running (round 20) */
int policy_gpu_get_moments(struct policy_gpu *g, float *m, float *v);
/* Overwrites the gradient arena (a test hook: AdamW on given gradients;
 * the micro-batch count AdamW divides by is left as it is; micro-batches
 * kept for a window of expert weight gradients are dropped, later ones add
 * to the given values) */
int policy_gpu_set_grads(struct policy_gpu *g, const float *grads);
int policy_gpu_get_bf16_params(struct policy_gpu *g, uint16_t *pb);

/* Forward, loss and (backward != 0) backward of one packed batch.
 * logp_old == NULL: mean cross-entropy over targets >= 0; else the
 * policy-gradient loss of opts with per-token logp_old and adv. Host inputs.
 * out_logp (may be NULL) receives log pi(targets[t]). backward:
 *   0                        forward and loss only
 *   POLICY_GPU_BACKWARD      the gradients of loss + aux are written (not
 *                            accumulated) to the device gradient arena
 *   POLICY_GPU_BACKWARD_ACC  gradient accumulation: they are added to the
 *                            gradients of the micro-batches run since the
 *                            last policy_gpu_adamw (the first one after it
 *                            writes), and policy_gpu_adamw then steps on
 *                            their mean (each micro-batch's loss keeps its
 *                            own normalisation). policy_gpu_get_grads gives
 *                            the sum. */
#define POLICY_GPU_BACKWARD     1
#define POLICY_GPU_BACKWARD_ACC 2
int policy_gpu_step(struct policy_loss_stats *st, double *aux, float *out_logp,
                    struct policy_gpu *g, const struct policy_batch *batch, const int *targets,
                    const float *logp_old, const float *adv, const struct policy_loss_opts *opts,
                    int backward);

/* Logits of the last policy_gpu_step (n_tokens x vocab, fp32) to the host. */
int policy_gpu_get_logits(struct policy_gpu *g, float *logits);

/* AdamW with global-norm clipping on the device arenas (as policy_adamw_step),
 * on the mean gradient of the micro-batches since the last call (the norm
 * reported and clipped is that mean's); it ends the accumulation window. */
int policy_gpu_adamw(double *grad_norm, struct policy_gpu *g, struct policy_adamw *opt);

/* Waits for the device; returns -1 with the CUDA error if a kernel failed. */
int policy_gpu_sync(struct policy_gpu *g);

/* With POLICY_GPU_PROFILE=1 in the environment (read by policy_gpu_new),
 * steps synchronise around each phase and add its time to a bucket. Fills
 * up to max names and seconds, resets the buckets, returns the count. */
int policy_gpu_profile(const char **names, double *seconds, int max, struct policy_gpu *g);

/* Expert GEMMs run through cuBLASLt so far, and how many of them fell back
 * to plain cuBLAS (the cached algorithm refused the shape). */
void policy_gpu_gemm_stats(const struct policy_gpu *g, long *lt_calls, long *lt_fallbacks);

/* MoE rows so far, summed over layers and steps: the token-expert
 * assignments (T top_k a layer), the rows the expert GEMMs ran (with the
 * padding of the common capacity, where it was used), and n_experts times
 * the busiest expert's rows (what the padded layout needs; it is used when
 * that is at most 1.5 T top_k, else a GEMM per compact segment). */
void policy_gpu_moe_stats(const struct policy_gpu *g, long *rows, long *gemm_rows, long *peak_rows);

/* POLICY_GPU_GRAPH=1 | 2 (round 14): whether g runs its micro-batches as
 * CUDA graphs (the switch's value; 0: it is off, or the step of g's mode
 * has a host round trip: fp32, POLICY_GPU_ACT=fp32, cuBLASLt experts,
 * POLICY_GPU_PROFILE), and the graphs captured and replayed so far. */
int policy_gpu_graph_stats(const struct policy_gpu *g, long *captures, long *replays);

/* Round 27 (benchmarks: tests/bench/graph_energy.c): with on = 1, each
 * micro-batch graph captured from now on is kept (besides its instance) (the first
 * POLICY_GPU_KEPT, process-wide); any call drops the graphs kept so far.
 * policy_gpu_kept_graph returns the i-th (a cudaGraph_t; NULL past
 * the last) with its part (0: the forward and the head, 1: the backward)
 * and whether its micro-batch ran a backward. A graph's kernels hold the
 * model's device pointers: use it while that model lives. */
#define POLICY_GPU_KEPT 16
void policy_gpu_keep_graphs(int on);
void *policy_gpu_kept_graph(int i, int *part, int *backward);

/* POLICY_GPU_ACT16 (rounds 16-19): what g stores in bf16, as the level
 * took on g's path (a level falls back where its kernels do not run):
 * POLICY_GPU_BF16_SLOTS (the MoE's slot outputs yp / dxp),
 * POLICY_GPU_BF16_STREAM (the residual stream's value xin / hmid / xf),
 * POLICY_GPU_BF16_ROUTER (the router reads the experts' bf16 input),
 * POLICY_GPU_BF16_DRES (the residual stream's gradient); 0 under off.
 * Round 25 (POLICY_GPU_DN16): POLICY_GPU_BF16_DN_FFN (the gradient the ffn
 * norm's backward reads, as the route backward stores it; not under
 * POLICY_GPU_RT_NORM=fused, where it is not stored), POLICY_GPU_BF16_DN_ATTN
 * (the one a lightning layer's attention norm reads, its projection's dX). */
enum {
	POLICY_GPU_BF16_SLOTS = 1,
	POLICY_GPU_BF16_STREAM = 2,
	POLICY_GPU_BF16_ROUTER = 4,
	POLICY_GPU_BF16_DRES = 8,
	POLICY_GPU_BF16_DN_FFN = 16,
	POLICY_GPU_BF16_DN_ATTN = 32,
};
int policy_gpu_bf16_storage(const struct policy_gpu *g);

/* The current device's dense bf16 tensor-core peak in FLOP/s by its
 * datasheet (H100 SXM / H200 989e12, H100 PCIe 756e12, H100 NVL 835e12,
 * A100 312e12), for MFU; 0 where the device is unknown or absent. */
double policy_gpu_peak_flops(void);

/* Moves tr's steps to the GPU: uploads weights and moments; later sft, pg
 * and logprobs steps run there (batches up to max_tokens / max_seqs). */
int policy_trainer_use_gpu(struct policy_trainer *tr, int max_tokens, int max_seqs,
                           enum policy_gpu_precision precision);

/* ---- RL from the db's consumer API (policy/rl.c) ------------------------ */

struct swerve_db;
struct swerve_db_batch;

struct policy_rl_opts {
	struct policy_loss_opts loss;
	int passes;             /* K update passes over each batch (>= 1) */
	int recompute_logprobs; /* behaviour logprobs from the current policy, not the rollout */
	double peak_flops;      /* for MFU (FLOP/s of the device); 0: not reported */
	int micro_batches;      /* > 1: each pass accumulates over this many micro-batches of
	                         * whole sequences (policy_trainer_pg_step_accum; each
	                         * normalised by its own tokens), so a batch larger than the
	                         * device buffers trains in one optimizer step per pass */
};
#define POLICY_RL_OPTS_INIT                                                                        \
	{                                                                                          \
		POLICY_LOSS_OPTS_INIT, 1, 0, 0.0, 1                                                \
	}

struct policy_rl_stats {
	int groups, groups_skipped; /* used; skipped for equal rewards or no tokens */
	double samples, tokens;     /* response tokens trained on (per pass) */
	double reward_mean;         /* over every sample of every fetched group */
	double loss, clipped_frac, entropy, grad_norm; /* of the last pass */
	double seconds, tokens_per_s, mfu;
};

/* One RL step on fetched groups: group advantages (groups whose rewards are
 * all equal are skipped), prompt + response packed per sample with targets
 * on the response tokens only, behaviour logprobs from the rollout (or
 * recomputed before the first pass when absent or asked), then
 * opts->passes updates. A sample whose prompt + response exceeds
 * max_seq_len is truncated from the left of the prompt. */
int policy_rl_step_batch(struct policy_rl_stats *st, struct policy_trainer *tr,
                         const struct swerve_db_batch *batch, const struct policy_rl_opts *opts);

/* Fetches up to max_groups complete groups of run from db, runs
 * policy_rl_step_batch, marks the groups consumed only after the update
 * succeeded (one trainer per run; a failed step leaves them), and stores the metrics (loss,
 * reward_mean, clipped_frac, entropy, grad_norm, tokens_per_s, mfu, groups, groups_skipped) under
 * step. *st->groups + groups_skipped == 0 means the db had no complete group. */
int policy_rl_step_db(struct policy_rl_stats *st, struct policy_trainer *tr, struct swerve_db *db,
                      int64_t run, size_t max_groups, int64_t step,
                      const struct policy_rl_opts *opts);

#ifdef __cplusplus
}
#endif

#endif
