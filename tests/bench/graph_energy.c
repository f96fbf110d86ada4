/* graph_energy.c - every kernel node of a CUDA graph alone, its time and
 * energy; see graph_energy.h. Kernel names come from the driver
 * (cuGraphKernelNodeGetParams, then cuFuncGetName / cuKernelGetName,
 * fetched through the runtime's cudaGetDriverEntryPointByVersion so that
 * nothing links libcuda), demangled by libstdc++'s __cxa_demangle. */
#include "tests/bench/graph_energy.h"
#include "tests/bench/gpu_bench.h"
#include "tests/bench/nvml_power.h"

#include <cuda.h>
#include <cuda_runtime.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);

#define CKG(call)                                                                                  \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess)                                                             \
			DIE("graph_energy: %s: %s", #call, cudaGetErrorString(e_));                \
	} while (0)

/* (class, pattern): the first match wins; ncu_util.py's CLASSES, kept the same */
static const char *const CLASSES[][2] = {
        {"experts (k_ws, k_mg, gather)", "^(void )?k_(ws|mg)"},
        {"cuBLAS (projections, head)", "nvjet|cublas|gemm|sm90_xmma"},
        {"AdamW + norm", "k_adamw|k_sumsq|k_clip|AdamW"},
        {"lightning core", "wg::|lightning|prefix_kernel"},
        {"norm / residual passes", "k_ew_"},
        {"routing + combine", "k_rt_|k_cb_|k_route"},
        {"head rows + loss", "pl_"},
        {"gate", "k_gt_"},
        {"softmax attention", "k_f2_|k_attn|k_flash|k_to_bf16"},
};
#define N_CLASSES (int)(sizeof(CLASSES) / sizeof(CLASSES[0]))

static const char *klass(const char *name)
{
	static regex_t re[N_CLASSES];
	static int made;
	if (!made) {
		for (int i = 0; i < N_CLASSES; i++)
			if (regcomp(&re[i], CLASSES[i][1], REG_EXTENDED | REG_NOSUB))
				DIE("graph_energy: bad class pattern %s", CLASSES[i][1]);
		made = 1;
	}
	for (int i = 0; i < N_CLASSES; i++)
		if (!regexec(&re[i], name, 0, NULL, 0))
			return CLASSES[i][0];
	return "other";
}

static void *driver_fn(const char *sym, unsigned version)
{
	void *fn = NULL;
	enum cudaDriverEntryPointQueryResult q;
	if (cudaGetDriverEntryPointByVersion(sym, &fn, version, cudaEnableDefault, &q) !=
	            cudaSuccess ||
	    q != cudaDriverEntryPointSuccess)
		return NULL;
	return fn;
}

/* the driver's entry points used here, looked up once (the graph ones
 * must exist; the two name lookups may be missing: names read "?") */
static struct {
	CUresult (*get)(CUgraphNode, CUDA_KERNEL_NODE_PARAMS_v2 *);
	CUresult (*add)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t,
	                const CUDA_KERNEL_NODE_PARAMS_v2 *);
	CUresult (*copy)(CUgraphNode, CUgraphNode);
	CUresult (*fname)(const char **, CUfunction);
	CUresult (*kname)(const char **, CUkernel);
	int looked;
} drv;

static void driver_load(void)
{
	if (drv.looked)
		return;
	drv.get = driver_fn("cuGraphKernelNodeGetParams", 12000);
	drv.add = driver_fn("cuGraphAddKernelNode", 12000);
	drv.copy = driver_fn("cuGraphKernelNodeCopyAttributes", 11000);
	drv.fname = driver_fn("cuFuncGetName", 12030);
	drv.kname = driver_fn("cuKernelGetName", 12030);
	drv.looked = 1;
	if (!drv.get || !drv.add || !drv.copy)
		DIE("graph_energy: the driver lacks the graph entry points");
}

/* the kernel's demangled name without its parameter list, into out */
static void node_name(cudaGraphNode_t node, char *out, size_t size)
{
	CUDA_KERNEL_NODE_PARAMS_v2 p;
	const char *mangled = NULL;
	driver_load();
	snprintf(out, size, "?");
	memset(&p, 0, sizeof(p));
	if (drv.get((CUgraphNode)node, &p) != CUDA_SUCCESS)
		return;
	if (p.func && drv.fname)
		drv.fname(&mangled, p.func);
	else if (p.kern && drv.kname)
		drv.kname(&mangled, p.kern);
	if (!mangled)
		return;
	int status = -1;
	char *d = __cxa_demangle(mangled, NULL, NULL, &status);
	const char *s = status == 0 && d ? d : mangled;
	char buf[512];
	const char *an = "(anonymous namespace)::", *q;
	if ((q = strstr(s, an)) && (size_t)(q - s) < sizeof(buf)) { /* dropped: the name's '(' */
		snprintf(buf, sizeof(buf), "%.*s%s", (int)(q - s), s, q + strlen(an));
		s = buf;
	}
	size_t n = strcspn(s, "(");
	if (n >= size)
		n = size - 1;
	memcpy(out, s, n);
	out[n] = 0;
	free(d);
}

/* kernels that rewrite their own input in place (the routing sort turns
 * rowof's ranks into rows: run twice, its rows run past the buffers),
 * so never run alone; listed as skipped */
static int unsafe_alone(const char *name)
{
	return strstr(name, "k_rt_sort") != NULL;
}

static struct ge_kernel *row_of(struct ge_table *t, const char *name)
{
	for (int i = 0; i < t->n; i++)
		if (!strcmp(t->k[i].name, name))
			return &t->k[i];
	if (t->n == GE_MAX_KERNELS)
		DIE("graph_energy: more than %d kernel names", GE_MAX_KERNELS);
	struct ge_kernel *k = &t->k[t->n++];
	memset(k, 0, sizeof(*k));
	snprintf(k->name, sizeof(k->name), "%s", name);
	k->cls = klass(name);
	return k;
}

void graph_energy_row(struct ge_table *t, const char *name, const char *cls, int calls, double ms,
                      double j, double mhz)
{
	struct ge_kernel *k = row_of(t, name);
	if (cls)
		k->cls = cls;
	k->calls += calls;
	k->ms += ms;
	k->j += j;
	k->mhz_ms += mhz * ms;
}

static void nothing(void *ctx)
{
	(void)ctx;
}

void graph_energy_idle(struct ge_table *t, int dev)
{
	double ms, mhz;
	CKG(cudaDeviceSynchronize());
	if (graph_energy_edges(nothing, NULL, 1.0, 500, dev, &t->idle_w, &ms, &mhz))
		t->idle_w = NAN;
}

/* waits for st, stopping the benchmark if it runs on past 10 s */
static void wait_stream(cudaStream_t st, const char *name)
{
	double t0 = now();
	cudaError_t e;
	while ((e = cudaStreamQuery(st)) == cudaErrorNotReady) {
		if (now() - t0 > 10.0)
			DIE("graph_energy: kernel %s still running 10 s after its launches (it "
			    "waits on a flag that another kernel of the step sets?)",
			    name);
		const struct timespec d = {0, 200000L};
		nanosleep(&d, NULL);
	}
	if (e != cudaSuccess)
		DIE("graph_energy: kernel %s alone: %s", name, cudaGetErrorString(e));
}

/* node alone: a graph of one kernel node with node's parameters and
 * launch attributes (through the driver: cuBLAS's kernels are driver
 * functions; a captured graph with programmatic edges cannot be cloned) */
static cudaGraphExec_t alone(cudaGraphNode_t node, const char *name, int *memsets)
{
	CUDA_KERNEL_NODE_PARAMS_v2 p;
	CUgraphNode n;
	cudaGraph_t c;
	cudaGraphExec_t ex;
	driver_load();
	memset(&p, 0, sizeof(p));
	CKG(cudaGraphCreate(&c, 0));
	/* the small memsets the kernel depends on directly come along (cuBLAS's
	 * tile counters in its workspace, zeroed before each launch: without
	 * them a persistent GEMM finds no tiles left) */
	cudaGraphNode_t deps[16], ms[16];
	cudaGraphEdgeData ed[16]; /* asked for: without it PDL's edges make the query fail */
	size_t nd = 0;
	int nm = 0;
	if (cudaGraphNodeGetDependencies(node, NULL, NULL, &nd) != cudaSuccess || nd > 16 ||
	    cudaGraphNodeGetDependencies(node, deps, ed, &nd) != cudaSuccess)
		nd = 0; /* none copied (errors cleared below) */
	for (size_t i = 0; i < nd && i < 16; i++) {
		enum cudaGraphNodeType ty;
		struct cudaMemsetParams mp;
		if (cudaGraphNodeGetType(deps[i], &ty) == cudaSuccess &&
		    ty == cudaGraphNodeTypeMemset &&
		    cudaGraphMemsetNodeGetParams(deps[i], &mp) == cudaSuccess &&
		    mp.width * mp.height * mp.elementSize <= (1u << 20) &&
		    cudaGraphAddMemsetNode(&ms[nm], c, NULL, 0, &mp) == cudaSuccess)
			nm++;
	}
	cudaGetLastError(); /* a failed query is not left for the step's own checks */
	*memsets = nm;
	CUresult r = drv.get((CUgraphNode)node, &p);
	if (r == CUDA_SUCCESS)
		r = drv.add(&n, (CUgraph)c, (const CUgraphNode *)ms, (size_t)nm, &p);
	if (r == CUDA_SUCCESS)
		r = drv.copy(n, (CUgraphNode)node);
	if (r != CUDA_SUCCESS || cudaGraphInstantiate(&ex, c, 0) != cudaSuccess) {
		fprintf(stderr,
		        "graph_energy: kernel %s skipped: its node could not be copied "
		        "(driver error %d)\n",
		        name, (int)r);
		cudaGetLastError();
		cudaGraphDestroy(c);
		return NULL;
	}
	CKG(cudaGraphDestroy(c));
	return ex;
}

static double secs_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static long ge_edges;    /* the counter's moves seen inside windows */
static double ge_edge_s; /* over this many seconds */

/* the poller: reads the counter every 0.5 ms on its own thread, so that a
 * move is timed to within that even while the launching thread blocks (a
 * training step's launches wait on its read-backs) */
#define EDGES_MAX 4096
static struct {
	pthread_t th;
	atomic_int run, n; /* edges recorded (published after their values) */
	int dev;
	struct timespec t0;
	double t[EDGES_MAX], mhz_sum[EDGES_MAX]; /* mhz_sum: clock reads summed up to the edge */
	unsigned long long e[EDGES_MAX];
	int mhz_n[EDGES_MAX];
	int failed;
} po;

static void *poller(void *arg)
{
	const struct timespec d = {0, 500000L};
	unsigned long long e, last = 0;
	double mhz_sum = 0;
	int mhz_n = 0, first = 1;
	unsigned m;
	(void)arg;
	while (atomic_load(&po.run)) {
		if (gpu_power_read(po.dev, &e, &m)) {
			po.failed = 1;
			break;
		}
		double t = secs_since(&po.t0);
		if (m) {
			mhz_sum += m;
			mhz_n++;
		}
		if (!first && e != last && t >= 0.03) {
			int n = atomic_load(&po.n);
			if (n < EDGES_MAX) {
				po.t[n] = t;
				po.e[n] = e;
				po.mhz_sum[n] = mhz_sum;
				po.mhz_n[n] = mhz_n;
				atomic_store(&po.n, n + 1);
			}
		}
		first = 0;
		last = e;
		nanosleep(&d, NULL);
	}
	return NULL;
}

int graph_energy_edges(void (*launch)(void *), void *ctx, double est_ms, double window_ms, int dev,
                       double *w, double *call_ms, double *mhz)
{
	unsigned long long e;
	long reps = 0;
	int n = 0, a;
	if (gpu_power_read(dev, &e, NULL))
		return -1;
	po.dev = dev;
	po.failed = 0;
	atomic_store(&po.n, 0);
	atomic_store(&po.run, 1);
	clock_gettime(CLOCK_MONOTONIC, &po.t0);
	if (pthread_create(&po.th, NULL, poller, NULL))
		DIE("graph_energy: no poller thread");
	for (;;) {
		/* launches kept 20 ms of work ahead of the clock */
		double t = secs_since(&po.t0);
		long want = (long)ceil((t * 1e3 + 20) / fmax(est_ms, 1e-4));
		for (; reps < want; reps++)
			launch(ctx);
		n = atomic_load(&po.n);
		if (n >= 2 && po.t[n - 1] - po.t[0] >= window_ms * 1e-3)
			break; /* two moves window_ms apart */
		if (po.failed || t > 20.0)
			break;
	}
	atomic_store(&po.run, 0);
	pthread_join(po.th, NULL);
	CKG(cudaDeviceSynchronize());
	if (n < 2 || po.failed)
		return -1;
	a = n - 1;
	*w = (double)(po.e[a] - po.e[0]) * 1e-3 / (po.t[a] - po.t[0]);
	*call_ms = secs_since(&po.t0) * 1e3 / reps;
	*mhz = po.mhz_n[a] > po.mhz_n[0]
	               ? (po.mhz_sum[a] - po.mhz_sum[0]) / (po.mhz_n[a] - po.mhz_n[0])
	               : NAN;
	ge_edges += a;
	ge_edge_s += po.t[a] - po.t[0];
	return 0;
}

struct launch_graph {
	cudaGraphExec_t ex;
	cudaStream_t st;
};

static void launch_graph(void *p)
{
	struct launch_graph *l = p;
	CKG(cudaGraphLaunch(l->ex, l->st));
}

void graph_energy_add(struct ge_table *t, void *graph_v, double window_ms, int dev,
                      void (*restore)(void *), void *rctx)
{
	cudaGraph_t graph = (cudaGraph_t)graph_v;
	cudaGraphNode_t *nodes;
	cudaStream_t st;
	cudaEvent_t e0, e1;
	size_t n = 0;
	CKG(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
	CKG(cudaEventCreate(&e0));
	CKG(cudaEventCreate(&e1));
	CKG(cudaGraphGetNodes(graph, NULL, &n));
	nodes = malloc(n * sizeof(*nodes));
	if (!nodes)
		DIE("out of memory");
	CKG(cudaGraphGetNodes(graph, nodes, &n));
	for (size_t i = 0; i < n; i++) {
		enum cudaGraphNodeType ty;
		char name[112];
		float ms;
		CKG(cudaGraphNodeGetType(nodes[i], &ty));
		if (ty != cudaGraphNodeTypeKernel)
			continue;
		node_name(nodes[i], name, sizeof(name));
		if (unsafe_alone(name)) {
			fprintf(stderr, "graph_energy: %s skipped (rewrites its input in place)\n",
			        name);
			t->skipped++;
			continue;
		}
		int nm = 0;
		cudaGraphExec_t ex = alone(nodes[i], name, &nm);
		if (!ex) {
			t->skipped++;
			continue;
		}
		if (getenv("GRAPH_ENERGY_VERBOSE")) /* which kernel runs, should one fail */
			fprintf(stderr, "graph_energy: node %zu: %s%s\n", i, name,
			        nm ? " (with the memsets before it)" : "");
		for (int w = 0; w < 2; w++) /* warm: modules loaded, caches as in a loop */
			CKG(cudaGraphLaunch(ex, st));
		wait_stream(st, name);
		CKG(cudaEventRecord(e0, st));
		for (int w = 0; w < 3; w++)
			CKG(cudaGraphLaunch(ex, st));
		CKG(cudaEventRecord(e1, st));
		wait_stream(st, name);
		CKG(cudaEventElapsedTime(&ms, e0, e1));
		double w = 0, call_ms = 0, mhz = 0;
		struct launch_graph lg = {ex, st};
		if (graph_energy_edges(launch_graph, &lg, ms / 3, window_ms, dev, &w, &call_ms,
		                       &mhz))
			DIE("graph_energy: kernel %s: no power reading", name);
		CKG(cudaGraphExecDestroy(ex));
		graph_energy_row(t, name, NULL, 1, call_ms, w * call_ms * 1e-3, mhz);
		if (restore) /* what the loop overwrote, recomputed before the next kernel */
			restore(rctx);
	}
	free(nodes);
	cudaEventDestroy(e0);
	cudaEventDestroy(e1);
	cudaStreamDestroy(st);
}

static int by_j(const void *a, const void *b)
{
	double x = ((const struct ge_kernel *)a)->j, y = ((const struct ge_kernel *)b)->j;
	return x < y ? 1 : x > y ? -1 : 0;
}

void graph_energy_print(const struct ge_table *t, FILE *f, int top, double step_ms, double step_j)
{
	struct ge_kernel *k = malloc(sizeof(struct ge_kernel) * (t->n + N_CLASSES + 1));
	double ms = 0, j = 0;
	int nc = 0;
	if (!k)
		DIE("out of memory");
	memcpy(k, t->k, sizeof(struct ge_kernel) * t->n);
	qsort(k, t->n, sizeof(*k), by_j);
	for (int i = 0; i < t->n; i++) {
		ms += k[i].ms;
		j += k[i].j;
	}
	fprintf(f,
	        "\nEnergy by kernel, each run alone back to back (idle draw %.0f W; "
	        "\"above idle\" = J - idle W x time):\n",
	        t->idle_w);
	if (ge_edges)
		fprintf(f,
		        "(NVML's energy counter moved every %.1f ms on average inside the "
		        "windows)\n",
		        ge_edge_s * 1e3 / ge_edges);
	fprintf(f, "%9s %9s %6s %6s %6s %6s %5s  %s\n", "ms", "J", "J %", "time %", "W", "MHz",
	        "calls", "kernel");
	for (int i = 0; i < t->n && i < top; i++)
		fprintf(f, "%9.3f %9.4f %5.1f%% %5.1f%% %6.0f %6.0f %5d  %.80s\n", k[i].ms, k[i].j,
		        100 * k[i].j / j, 100 * k[i].ms / ms, k[i].j / k[i].ms * 1e3,
		        k[i].mhz_ms / k[i].ms, k[i].calls, k[i].name);
	/* classes: rows k[t->n ..] */
	struct ge_kernel *c = k + t->n;
	for (int i = 0; i < t->n; i++) {
		int x = 0;
		while (x < nc && strcmp(c[x].name, k[i].cls))
			x++;
		if (x == nc) {
			memset(&c[nc], 0, sizeof(c[nc]));
			snprintf(c[nc].name, sizeof(c[nc].name), "%s", k[i].cls);
			nc++;
		}
		c[x].calls += k[i].calls;
		c[x].ms += k[i].ms;
		c[x].j += k[i].j;
		c[x].mhz_ms += k[i].mhz_ms;
	}
	qsort(c, nc, sizeof(*c), by_j);
	fprintf(f, "\nEnergy by class (kernels alone):\n");
	fprintf(f, "%-30s %9s %9s %6s %6s %6s %6s %12s\n", "class", "ms", "J", "J %", "time %", "W",
	        "MHz", "J above idle");
	for (int i = 0; i < nc; i++)
		fprintf(f, "%-30s %9.3f %9.4f %5.1f%% %5.1f%% %6.0f %6.0f %12.4f\n", c[i].name,
		        c[i].ms, c[i].j, 100 * c[i].j / j, 100 * c[i].ms / ms,
		        c[i].j / c[i].ms * 1e3, c[i].mhz_ms / c[i].ms,
		        c[i].j - t->idle_w * c[i].ms * 1e-3);
	fprintf(f, "%-30s %9.3f %9.4f %6s %6s %6.0f   (%d kernels not run alone)\n",
	        "all (alone, summed)", ms, j, "", "", j / ms * 1e3, t->skipped);
	if (step_ms > 0)
		fprintf(f, "%-30s %9.3f %9.4f %6s %6s %6.0f\n", "the step, looped", step_ms, step_j,
		        "", "", step_j / step_ms * 1e3);
	free(k);
}
