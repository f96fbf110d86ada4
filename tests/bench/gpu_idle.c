/* gpu_idle.c - where the GPU waits in a training step (issue 10, round 10).
 *
 * CUPTI activity records (kernels with concurrency allowed, copies,
 * memsets) of one optimizer step of gpu_train's config: K = 4 micro-batches
 * of 4 x 2048 tokens and AdamW, bf16, after two warm-up steps; one row for
 * this build's default and one per "label:VAR=VALUE ..." argument (as
 * gpu_train). Per row: the untraced step's host time (median of 3), the
 * traced step's host time (what tracing costs; since round 14 the second
 * traced step, so that CUPTI's start-up is not in it), the step's span on the GPU
 * (first start to last end), busy = the union of the activity intervals,
 * idle = span - busy split into short gaps (< 10 us: launch gaps, which a
 * CUDA graph of the step would shrink) and long ones (the host waiting on a
 * synchronous copy, then launching again), and sum - busy = time two
 * activities overlapped (a second stream). The longest gaps are listed with
 * the activities before and after them.
 *
 * Then launch gaps measured directly: 400 dependent cuBLAS SGEMMs (768^3,
 * about 20 us each) launched on a stream, and the same 400 captured once as
 * a CUDA graph and replayed; the difference per GEMM is what a graph saves
 * a launch when the host is ahead of the GPU. Prints tables last. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cupti.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/policy.h"
#include "tests/bench/gpu_bench.h"

#define CU(x)                                                                                      \
	do {                                                                                       \
		CUptiResult r_ = (x);                                                              \
		if (r_ != CUPTI_SUCCESS) {                                                         \
			const char *m_ = "";                                                       \
			cuptiGetResultString(r_, &m_);                                             \
			DIE("%s: %s", #x, m_);                                                     \
		}                                                                                  \
	} while (0)

/* ---- CUPTI activity buffer ---------------------------------------------------- */

struct act {
	unsigned long long s, e; /* ns */
	char name[48];
	unsigned stream;
};
static struct act *acts;
static size_t n_acts, cap_acts;

static void CUPTIAPI buf_req(uint8_t **buf, size_t *size, size_t *max_records)
{
	*size = (size_t)8 << 20;
	*buf = (uint8_t *)aligned_alloc(8, *size);
	*max_records = 0;
}

static void add(unsigned long long s, unsigned long long e, const char *name, unsigned stream)
{
	if (n_acts == cap_acts) {
		cap_acts = cap_acts ? 2 * cap_acts : 4096;
		acts = realloc(acts, cap_acts * sizeof(*acts));
		if (!acts)
			DIE("out of memory");
	}
	acts[n_acts].s = s;
	acts[n_acts].e = e;
	snprintf(acts[n_acts].name, sizeof(acts[n_acts].name), "%s", name ? name : "?");
	acts[n_acts].stream = stream;
	n_acts++;
}

static void CUPTIAPI buf_done(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
                              size_t valid)
{
	CUpti_Activity *r = NULL;
	(void)ctx;
	(void)stream;
	(void)size;
	while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
		if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL ||
		    r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
			CUpti_ActivityKernel10 *k = (CUpti_ActivityKernel10 *)r;
			add(k->start, k->end, k->name, k->streamId);
		} else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
			CUpti_ActivityMemcpy6 *m = (CUpti_ActivityMemcpy6 *)r;
			add(m->start, m->end,
			    m->copyKind == CUPTI_ACTIVITY_MEMCPY_KIND_HTOD   ? "[memcpy HtoD]"
			    : m->copyKind == CUPTI_ACTIVITY_MEMCPY_KIND_DTOH ? "[memcpy DtoH]"
			                                                     : "[memcpy]",
			    m->streamId);
		} else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
			CUpti_ActivityMemset4 *m = (CUpti_ActivityMemset4 *)r;
			add(m->start, m->end, "[memset]", m->streamId);
		}
	}
	free(buf);
}

static const CUpti_ActivityKind kinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                                           CUPTI_ACTIVITY_KIND_MEMCPY, CUPTI_ACTIVITY_KIND_MEMSET};

static void trace(int on)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		CU(on ? cuptiActivityEnable(kinds[i]) : cuptiActivityDisable(kinds[i]));
	if (!on)
		CU(cuptiActivityFlushAll(1));
}

static int by_start(const void *a, const void *b)
{
	const struct act *x = a, *y = b;
	return x->s < y->s ? -1 : x->s > y->s;
}

/* ---- the step ----------------------------------------------------------------- */

struct row {
	char label[32];
	const char *env;
	double host_ms, traced_ms, span_ms, busy_ms, sum_ms, idle_short_ms, idle_long_ms;
	double adam_ms, adam_ovl_ms; /* round 20: AdamW kernels, and their time beside others */
	int n_act, n_short, n_long, n_streams;
	struct {
		double us;
		char before[48], after[48];
	} top[4];
};

static int long_rows; /* GPU_IDLE_LONG */

static void opt_step(struct policy_gpu *g, struct policy_adamw *o, const struct policy_batch *b,
                     const int *tgt, int K)
{
	double gn;
	for (int k = 0; k < K; k++)
		if (policy_gpu_step(NULL, NULL, NULL, g, b, tgt, NULL, NULL, NULL,
		                    k ? POLICY_GPU_BACKWARD_ACC : POLICY_GPU_BACKWARD))
			DIE("step: %s", swerve_error_last());
	if (policy_gpu_adamw(&gn, g, o))
		DIE("adamw: %s", swerve_error_last());
}

/* round 20: the AdamW kernels' total time (names with "adamw") and how much
 * of it other activities (the next step's forward) ran beside: each AdamW
 * interval intersected with the union of the other intervals (acts sorted) */
static void adam_overlap(struct row *r)
{
	unsigned long long cs = 0, ce = 0;
	struct iv {
		unsigned long long s, e;
	} *u = malloc((n_acts + 1) * sizeof(*u));
	size_t nu = 0;
	if (!u)
		DIE("out of memory");
	for (size_t i = 0; i < n_acts; i++) { /* the union of the others */
		if (strstr(acts[i].name, "adamw"))
			continue;
		if (nu && acts[i].s <= ce) {
			if (acts[i].e > ce)
				ce = u[nu - 1].e = acts[i].e;
			continue;
		}
		cs = acts[i].s;
		ce = acts[i].e;
		u[nu].s = cs;
		u[nu++].e = ce;
	}
	r->adam_ms = r->adam_ovl_ms = 0;
	for (size_t i = 0; i < n_acts; i++) {
		if (!strstr(acts[i].name, "adamw"))
			continue;
		r->adam_ms += (acts[i].e - acts[i].s) * 1e-6;
		for (size_t k = 0; k < nu; k++) {
			unsigned long long a = u[k].s > acts[i].s ? u[k].s : acts[i].s;
			unsigned long long b = u[k].e < acts[i].e ? u[k].e : acts[i].e;
			if (b > a)
				r->adam_ovl_ms += (b - a) * 1e-6;
		}
	}
	free(u);
}

/* GPU_IDLE_STEPS=n (round 20; default 1, at most 8): the traced window holds n
 * optimizer steps back to back (no synchronisation between them), so that
 * an update overlapped with the next step's forward shows */
static int n_steps = 1;

static void measure(struct row *r, const struct policy_config *cfg, const float *p, int K)
{
	struct policy_layout L;
	struct policy_gpu *g;
	struct policy_adamw o = POLICY_ADAMW_INIT;
	int seqs = 4, seq = 2048, T = seqs * seq, tok[8192], tgt[8192], cu[5];
	double t[3], t0, busy = 0, sum = 0;
	unsigned long long cs, ce, first, last;
	unsigned streams[16];
	int ns = 0;
	if (policy_layout_init(&L, cfg))
		DIE("%s", swerve_error_last());
	srand(7);
	for (int i = 0; i < T; i++)
		tok[i] = rand() % cfg->vocab_size;
	for (int s = 0; s <= seqs; s++)
		cu[s] = s * seq;
	for (int i = 0; i < T; i++)
		tgt[i] = (i + 1) % seq ? tok[i + 1] : -1;
	env_apply(r->env, 1);
	if (policy_gpu_new(&g, cfg, &L, T, seqs, POLICY_GPU_BF16) || policy_gpu_set_params(g, p))
		DIE("%s: %s", r->label, swerve_error_last());
	o.lr = 1e-4;
	struct policy_batch b = {T, tok, seqs, cu};
	for (int i = 0; i < 2 + 3; i++) {
		if (policy_gpu_sync(g))
			DIE("%s", swerve_error_last());
		t0 = now();
		opt_step(g, &o, &b, tgt, K);
		if (policy_gpu_sync(g))
			DIE("%s", swerve_error_last());
		if (i >= 2)
			t[i - 2] = now() - t0;
	}
	for (int i = 0; i < 3; i++) /* median of 3 */
		for (int j = i + 1; j < 3; j++)
			if (t[j] < t[i]) {
				double x = t[i];
				t[i] = t[j];
				t[j] = x;
			}
	r->host_ms = t[1] * 1e3;
	/* round 14: a traced step first, its records dropped: CUPTI's own
	 * start-up (a 4-14 ms gap inside the first traced step, longer with
	 * CUDA graphs) stays out of the figures */
	trace(1);
	opt_step(g, &o, &b, tgt, K);
	if (policy_gpu_sync(g))
		DIE("%s", swerve_error_last());
	trace(0);
	n_acts = 0;
	trace(1);
	t0 = now();
	for (int i = 0; i < n_steps; i++) /* round 20: back to back, no sync between */
		opt_step(g, &o, &b, tgt, K);
	if (policy_gpu_sync(g))
		DIE("%s", swerve_error_last());
	r->traced_ms = (now() - t0) * 1e3;
	trace(0);
	env_apply(r->env, 0);
	policy_gpu_free(g);
	policy_layout_dispose(&L);
	if (!n_acts)
		DIE("%s: no activity records", r->label);
	qsort(acts, n_acts, sizeof(*acts), by_start);
	memset(r->top, 0, sizeof(r->top));
	first = cs = acts[0].s;
	ce = last = acts[0].e;
	size_t last_i = 0; /* the activity ending last so far */
	for (size_t i = 0; i < n_acts; i++) {
		const struct act *a = &acts[i];
		int known = 0;
		sum += (a->e - a->s) * 1e-6;
		for (int k = 0; k < ns; k++)
			known |= streams[k] == a->stream;
		if (!known && ns < 16)
			streams[ns++] = a->stream;
		if (a->e > last)
			last = a->e;
		if (i && a->s > ce) { /* a gap */
			double us = (a->s - ce) * 1e-3;
			busy += (ce - cs) * 1e-6;
			if (us < 10) {
				r->n_short++;
				r->idle_short_ms += us * 1e-3;
			} else {
				r->n_long++;
				r->idle_long_ms += us * 1e-3;
				/* GPU_IDLE_LONG=n (round 20): every long gap of the first
				 * n rows, where it falls in the traced window */
				if (long_rows > 0)
					printf("  %s long gap at %8.3f ms: %7.1f us after %s, "
					       "before "
					       "%s\n",
					       r->label, (ce - acts[0].s) * 1e-6, us,
					       acts[last_i].name, a->name);
			}
			for (int k = 0; k < 4; k++)
				if (us > r->top[k].us) {
					memmove(&r->top[k + 1], &r->top[k],
					        (3 - k) * sizeof(r->top[0]));
					r->top[k].us = us;
					snprintf(r->top[k].before, 48, "%s", acts[last_i].name);
					snprintf(r->top[k].after, 48, "%s", a->name);
					break;
				}
			cs = a->s;
			ce = a->e;
			last_i = i;
		} else if (a->e > ce) {
			ce = a->e;
			last_i = i;
		}
	}
	busy += (ce - cs) * 1e-6;
	long_rows--;
	r->span_ms = (last - first) * 1e-6;
	r->busy_ms = busy;
	r->sum_ms = sum;
	r->n_act = (int)n_acts;
	r->n_streams = ns;
	adam_overlap(r);
}

/* ---- launch gaps: a stream against a CUDA graph -------------------------------- */

#define NG 400
static void launch_gaps(double *stream_us, double *graph_us, double *kern_us)
{
	int n = 768;
	float *a, *b, *c, one = 1, zero = 0, ms;
	float *h = malloc((size_t)n * n * 4);
	cublasHandle_t hb;
	cudaStream_t st;
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	cudaEvent_t e0, e1;
	double best_s = 1e9, best_g = 1e9;
	for (size_t i = 0; i < (size_t)n * n; i++)
		h[i] = (float)((rand() % 2001) - 1000) * 1e-3f / n;
	if (cudaMalloc((void **)&a, (size_t)n * n * 4) ||
	    cudaMalloc((void **)&b, (size_t)n * n * 4) ||
	    cudaMalloc((void **)&c, (size_t)n * n * 4))
		DIE("cudaMalloc failed");
	cudaMemcpy(a, h, (size_t)n * n * 4, cudaMemcpyHostToDevice);
	cudaMemcpy(b, h, (size_t)n * n * 4, cudaMemcpyHostToDevice);
	free(h);
	cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
	cublasCreate(&hb);
	cublasSetStream(hb, st);
	cudaEventCreate(&e0);
	cudaEventCreate(&e1);
	/* c = a b, then b = c a, ...: each GEMM depends on the one before */
#define CHAIN()                                                                                    \
	for (int i = 0; i < NG; i++)                                                               \
		if (cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, i & 1 ? c : b,  \
		                n, &zero, i & 1 ? b : c, n))                                       \
			DIE("cublasSgemm failed");
	for (int rep = 0; rep < 5; rep++) {
		CHAIN(); /* warm */
		cudaStreamSynchronize(st);
		cudaEventRecord(e0, st);
		CHAIN();
		cudaEventRecord(e1, st);
		cudaEventSynchronize(e1);
		cudaEventElapsedTime(&ms, e0, e1);
		if (ms < best_s)
			best_s = ms;
	}
	if (cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal))
		DIE("cudaStreamBeginCapture failed");
	CHAIN();
	if (cudaStreamEndCapture(st, &graph) || cudaGraphInstantiate(&exec, graph, 0))
		DIE("graph capture failed: %s", cudaGetErrorString(cudaGetLastError()));
	for (int rep = 0; rep < 5; rep++) {
		cudaGraphLaunch(exec, st);
		cudaStreamSynchronize(st);
		cudaEventRecord(e0, st);
		cudaGraphLaunch(exec, st);
		cudaEventRecord(e1, st);
		cudaEventSynchronize(e1);
		cudaEventElapsedTime(&ms, e0, e1);
		if (ms < best_g)
			best_g = ms;
	}
	/* one GEMM's duration, from the activity records of a traced chain */
	n_acts = 0;
	trace(1);
	CHAIN();
	cudaStreamSynchronize(st);
	trace(0);
	{
		double s = 0;
		size_t k = 0;
		for (size_t i = 0; i < n_acts; i++, k++)
			s += (acts[i].e - acts[i].s) * 1e-3;
		*kern_us = k ? s / k : 0;
	}
	if (cudaGetLastError() != cudaSuccess)
		DIE("launch gaps: a CUDA call failed");
	*stream_us = best_s * 1e3 / NG;
	*graph_us = best_g * 1e3 / NG;
	cudaGraphExecDestroy(exec);
	cudaGraphDestroy(graph);
	cublasDestroy(hb);
	cudaStreamDestroy(st);
	cudaFree(a);
	cudaFree(b);
	cudaFree(c);
}

int main(int argc, char **argv)
{
	struct policy_config c;
	struct policy_layout L;
	struct cudaDeviceProp prop;
	enum { MAXR = 6 };
	struct row rows[MAXR];
	int nr = 0, ndev = 0, K = 4;
	float *p;
	double s_us, g_us, k_us;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("GPU_IDLE_LONG"))
		long_rows = atoi(getenv("GPU_IDLE_LONG"));
	if (getenv("GPU_IDLE_STEPS")) {
		n_steps = atoi(getenv("GPU_IDLE_STEPS"));
		if (n_steps < 1 || n_steps > 8)
			DIE("gpu_idle: GPU_IDLE_STEPS=%s: expected 1..8", getenv("GPU_IDLE_STEPS"));
	}
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_idle: skipped: no CUDA device\n");
		return 0;
	}
	cudaGetDeviceProperties(&prop, 0);
	memset(rows, 0, sizeof(rows));
	snprintf(rows[nr].label, sizeof(rows[nr].label), "default");
	rows[nr++].env = "";
	for (int i = 1; i < argc; i++) {
		const char *colon = strchr(argv[i], ':');
		if (!colon || colon == argv[i] || colon - argv[i] >= 32 || nr == MAXR)
			DIE("gpu_idle: %s: expected label:VAR=VALUE ... (at most %d)", argv[i],
			    MAXR - 1);
		snprintf(rows[nr].label, sizeof(rows[nr].label), "%.*s", (int)(colon - argv[i]),
		         argv[i]);
		rows[nr++].env = colon + 1;
	}
	CU(cuptiActivityRegisterCallbacks(buf_req, buf_done));
	bench_config(&c);
	if (policy_config_validate(&c) || policy_layout_init(&L, &c))
		DIE("%s", swerve_error_last());
	p = malloc(L.total * 4);
	if (!p)
		DIE("out of memory");
	policy_params_init(p, &L, 42);
	policy_layout_dispose(&L);
	for (int i = 0; i < nr; i++)
		measure(&rows[i], &c, p, K);
	launch_gaps(&s_us, &g_us, &k_us);
	printf("\ncard: %s; %d optimizer step(s) back to back of K = %d micro-batches (4 x 2048 "
	       "tokens) + AdamW, bf16\n",
	       prop.name, n_steps, K);
	printf("host: untraced step (median of 3); traced: the CUPTI-traced step; span: first "
	       "start to last end on the GPU;\nbusy: union of kernel/copy/memset intervals; "
	       "short/long: idle gaps < / >= 10 us; overlap: sum of durations - busy;\n"
	       "adam: AdamW kernels' time; adam||: of it, beside other activities (round 20)\n");
	printf("%-10s %8s %8s %8s %8s %13s %13s %8s %6s %3s %7s %7s\n", "mode", "host ms", "traced",
	       "span ms", "busy ms", "short ms (n)", "long ms (n)", "overlap", "acts", "str",
	       "adam", "adam||");
	for (int i = 0; i < nr; i++) {
		struct row *r = &rows[i];
		printf("%-10s %8.2f %8.2f %8.2f %8.2f %7.3f %5d %7.3f %5d %8.2f %6d %3d %7.2f "
		       "%7.2f\n",
		       r->label, r->host_ms, r->traced_ms, r->span_ms, r->busy_ms, r->idle_short_ms,
		       r->n_short, r->idle_long_ms, r->n_long, r->sum_ms - r->busy_ms, r->n_act,
		       r->n_streams, r->adam_ms, r->adam_ovl_ms);
	}
	for (int i = 0; i < nr; i++)
		for (int k = 0; k < 4 && rows[i].top[k].us > 0; k++)
			printf("  %s gap %d: %7.1f us after %s, before %s\n", rows[i].label, k + 1,
			       rows[i].top[k].us, rows[i].top[k].before, rows[i].top[k].after);
	printf("launch gaps: %d dependent SGEMMs 768^3 (%.1f us each on the GPU): %.2f us a GEMM "
	       "launched on a stream, %.2f us replayed as a CUDA graph: %.2f us a launch saved\n",
	       NG, k_us, s_us, g_us, s_us - g_us);
	free(p);
	return 0;
}
