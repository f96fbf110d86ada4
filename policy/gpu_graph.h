/* gpu_graph.h - round 14 (issue 10): the training step's micro-batch as a
 * CUDA graph (internal to policy/; POLICY_GPU_GRAPH=1, opt-in).
 *
 * gpu.cu launches a micro-batch's forward, fused head and backward on one
 * stream of its own (policy_gpu_st, gpu_util.h) instead of the legacy
 * default stream, which cannot be captured, as two graphs: the forward
 * with the head, then (after the head's read-backs, as the default step
 * does them) the backward, which runs on while the caller prepares the
 * next micro-batch. The first micro-batch of a shape runs as launched and
 * is then captured (global capture mode; the capture runs nothing) and
 * instantiated; a later micro-batch with the same key replays each part
 * with one cudaGraphLaunch after its inputs were copied into the same
 * device buffers. The key is everything that changes the launch
 * sequence or a kernel's arguments: tokens, sequences and their bounds
 * (cu_seqlens; round 21: not with flash attention, whose kernels read them
 * on the device: cu NULL), the longest sequence (round 21: rounded up to
 * 256 tokens, gpu.cu's maxlen_bucket), backward or not, the first
 * micro-batch of an accumulation window (the arena cleared, the head's and
 * experts' dW stored, not added) and the loss (policy gradient or
 * cross-entropy, kind, clip bounds). A graph holds device pointers: every
 * reallocation of a buffer that a step may use (grown scratch) bumps
 * policy_gpu_alloc_gen and drops every graph. */
#ifndef SWERVE_POLICY_GPU_GRAPH_H
#define SWERVE_POLICY_GPU_GRAPH_H

#include <cuda_runtime.h>

#define POLICY_GRAPH_SLOTS 64 /* graphs kept (least recently used replaced; round 21: 8 -> 64) */
#define POLICY_GRAPH_STATS 5  /* host counters a replay adds (gpu.cu's graph_stats) */

struct policy_graph_key {
	int part; /* 0: the forward and the head, 1: the backward */
	int T, n_seqs, maxlen, backward, first, pg, kind;
	int slice; /* round 24: the micro-batch's slice of POLICY_GPU_MOE_DW_WIN's window */
	double eps_low, eps_high;
};

struct policy_graph_slot {
	int used;
	struct policy_graph_key key;
	int *cu;                 /* (n_seqs + 1) the key's cu_seqlens, or NULL */
	unsigned gen;            /* policy_gpu_alloc_gen at capture */
	unsigned long long last; /* use clock */
	cudaGraphExec_t exec;
	long stats[POLICY_GRAPH_STATS]; /* what the launched step added to the counters */
};

/* round 21 (POLICY_GPU_GRAPH=auto): a key launched once, not captured */
struct policy_graph_seen {
	int used;
	struct policy_graph_key key;
	int *cu;
	unsigned long long last;
};

struct policy_graphs {
	struct policy_graph_slot s[POLICY_GRAPH_SLOTS];
	struct policy_graph_seen seen[POLICY_GRAPH_SLOTS];
	unsigned long long clock;
	long captures, replays;
};

/* the graph of key (with cu_seqlens cu) or NULL; drops every graph first
 * when a buffer was reallocated since they were captured */
struct policy_graph_slot *policy_graph_find(struct policy_graphs *c,
                                            const struct policy_graph_key *k, const int *cu);
/* round 21: whether key k (with cu_seqlens cu) was seen before without a
 * graph: 1 (and forgotten: it is captured now), else 0 and remembered in
 * place of the least recently seen (ENOMEM: remembered as not seen) */
int policy_graph_seen(struct policy_graphs *c, const struct policy_graph_key *k, const int *cu);
/* stream capture of st from here (global mode) */
int policy_graph_capture_begin(cudaStream_t st);
/* ends st's capture; body_rc: the captured launches' result (nonzero: the
 * capture is discarded and body_rc returned). Instantiates the graph into
 * a slot for key k with the counters' increments stats. */
int policy_graph_capture_end(struct policy_graphs *c, const struct policy_graph_key *k,
                             const int *cu, cudaStream_t st, int body_rc, const long *stats);
/* drops every graph (the cache stays usable) */
void policy_graph_clear(struct policy_graphs *c);

#endif
