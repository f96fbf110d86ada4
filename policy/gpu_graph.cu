/* gpu_graph.cu - round 14: the cache of captured micro-batch graphs (see
 * gpu_graph.h). */
#include "policy/gpu_graph.h"
#include "policy/gpu_util.h"
#include "policy/policy.h"

unsigned policy_gpu_alloc_gen;

/* round 27: the graphs captured while keeping is on (see
 * policy.h's policy_gpu_keep_graphs), for a benchmark to take apart */
static struct {
	cudaGraph_t g;
	int part, backward;
} kept[POLICY_GPU_KEPT];
static int n_kept, keeping;

void policy_gpu_keep_graphs(int on)
{
	for (int i = 0; i < n_kept; i++)
		cudaGraphDestroy(kept[i].g);
	n_kept = 0;
	keeping = on;
}

void *policy_gpu_kept_graph(int i, int *part, int *backward)
{
	if (i < 0 || i >= n_kept)
		return NULL;
	*part = kept[i].part;
	*backward = kept[i].backward;
	return (void *)kept[i].g;
}

static void slot_drop(struct policy_graph_slot *s)
{
	if (s->exec)
		cudaGraphExecDestroy(s->exec);
	free(s->cu);
	memset(s, 0, sizeof(*s));
}

void policy_graph_clear(struct policy_graphs *c)
{
	for (int i = 0; i < POLICY_GRAPH_SLOTS; i++) {
		if (c->s[i].used)
			slot_drop(&c->s[i]);
		free(c->seen[i].cu);
		memset(&c->seen[i], 0, sizeof(c->seen[i]));
	}
}

/* cu NULL: a key without sequence bounds (round 21) */
static int key_is(const struct policy_graph_key *a, const int *acu,
                  const struct policy_graph_key *k, const int *cu)
{
	if (memcmp(a, k, sizeof(*k)) || !acu != !cu)
		return 0;
	return !cu || !memcmp(acu, cu, (size_t)(k->n_seqs + 1) * sizeof(int));
}

/* a copy of cu (NULL for NULL); 0, or -1 out of memory */
static int cu_copy(int **out, const struct policy_graph_key *k, const int *cu)
{
	*out = NULL;
	if (!cu)
		return 0;
	*out = (int *)malloc((size_t)(k->n_seqs + 1) * sizeof(int));
	if (!*out)
		return -1;
	memcpy(*out, cu, (size_t)(k->n_seqs + 1) * sizeof(int));
	return 0;
}

int policy_graph_seen(struct policy_graphs *c, const struct policy_graph_key *k, const int *cu)
{
	struct policy_graph_seen *o = NULL;
	int *cuc;
	for (int i = 0; i < POLICY_GRAPH_SLOTS; i++) {
		struct policy_graph_seen *s = &c->seen[i];
		if (s->used && key_is(&s->key, s->cu, k, cu)) {
			free(s->cu);
			memset(s, 0, sizeof(*s));
			return 1;
		}
		if (!o || (o->used && (!s->used || s->last < o->last)))
			o = s;
	}
	if (cu_copy(&cuc, k, cu))
		return 0;
	free(o->cu);
	o->used = 1;
	o->key = *k;
	o->cu = cuc;
	o->last = ++c->clock;
	return 0;
}

struct policy_graph_slot *policy_graph_find(struct policy_graphs *c,
                                            const struct policy_graph_key *k, const int *cu)
{
	for (int i = 0; i < POLICY_GRAPH_SLOTS; i++) {
		struct policy_graph_slot *s = &c->s[i];
		if (s->used && s->gen != policy_gpu_alloc_gen) { /* stale pointers: all of them */
			policy_graph_clear(c);
			return NULL;
		}
	}
	for (int i = 0; i < POLICY_GRAPH_SLOTS; i++) {
		struct policy_graph_slot *s = &c->s[i];
		if (s->used && key_is(&s->key, s->cu, k, cu)) {
			s->last = ++c->clock;
			c->replays++;
			return s;
		}
	}
	return NULL;
}

int policy_graph_capture_begin(cudaStream_t st)
{
	CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
	return 0;
}

int policy_graph_capture_end(struct policy_graphs *c, const struct policy_graph_key *k,
                             const int *cu, cudaStream_t st, int body_rc, const long *stats)
{
	cudaGraph_t graph = NULL;
	cudaGraphExec_t exec = NULL;
	cudaError_t e = cudaStreamEndCapture(st, &graph);
	struct policy_graph_slot *s = NULL;
	int *cuc;
	if (body_rc) { /* the launches' own message stands */
		if (graph)
			cudaGraphDestroy(graph);
		cudaGetLastError();
		return body_rc;
	}
	if (e != cudaSuccess)
		return swerve_error_set(SWERVE_ERROR,
		                        "gpu: POLICY_GPU_GRAPH=1: capturing the step failed: %s",
		                        cudaGetErrorString(e));
	/* round 21: each kernel at the priority of the stream it was captured
	 * from (POLICY_GPU_PRIO), not the launch stream's */
	e = cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagUseNodePriority);
	if (e == cudaSuccess && keeping && n_kept < POLICY_GPU_KEPT) { /* kept, not destroyed */
		kept[n_kept].g = graph;
		kept[n_kept].part = k->part;
		kept[n_kept++].backward = k->backward;
	} else {
		cudaGraphDestroy(graph);
	}
	if (e != cudaSuccess)
		return swerve_error_set(
		        SWERVE_ERROR, "gpu: POLICY_GPU_GRAPH=1: instantiating the step failed: %s",
		        cudaGetErrorString(e));
	if (cu_copy(&cuc, k, cu)) {
		cudaGraphExecDestroy(exec);
		return swerve_error_set(SWERVE_ENOMEM, "gpu: out of memory");
	}
	for (int i = 0; i < POLICY_GRAPH_SLOTS; i++) /* a free slot, else the oldest */
		if (!c->s[i].used) {
			s = &c->s[i];
			break;
		} else if (!s || c->s[i].last < s->last) {
			s = &c->s[i];
		}
	if (s->used)
		slot_drop(s);
	s->used = 1;
	s->key = *k;
	s->cu = cuc;
	s->gen = policy_gpu_alloc_gen;
	s->last = ++c->clock;
	s->exec = exec;
	memcpy(s->stats, stats, sizeof(s->stats));
	c->captures++;
	return 0;
}
