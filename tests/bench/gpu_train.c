/* gpu_train.c - training throughput (tokens/s) and MFU of the GPU policy
 * model: forward + backward + AdamW on packed batches of sequences of
 * length 2048, for a config of ~125M active parameters. A row with K > 1
 * accumulates K micro-batches (each 4 x 2048 tokens, or 8 or 16 x 2048 in
 * the rows whose tokens per optimizer step say so) per optimizer step
 * (POLICY_GPU_BACKWARD_ACC), so AdamW runs once per 8192 K tokens. FLOPs per token are
 * policy_config_flops_per_token (6 x active parameters + attention). MFU is
 * given against the datasheet bf16 dense peak (989 TFLOP/s, H100 SXM) and
 * against a cuBLAS bf16 GEMM measured in the same run (the ceiling this card
 * reaches), per METHOD.md. Prints a table last. */
#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/gemm_tune.h"
#include "policy/policy.h"
#include "tests/bench/gpu_bench.h"
#include "tests/bench/graph_energy.h"
#include "tests/bench/nvml_power.h"

/* round 26: the same GEMM back to back for ~1.5 s (the rate over the
 * last second, and the card's draw and SM clock over it): the ceiling
 * under the power cap that the training rows' back-to-back steps run at */
static struct gpu_power peak_pw;
static double peak_sust;

struct gemm_ctx {
	cublasHandle_t h;
	int n;
	void *a, *b, *c;
};

/* one bf16 n^3 GEMM on the default stream (gemm_peak's; graph_energy_edges's launch) */
static void gemm_once(void *p)
{
	struct gemm_ctx *g = p;
	const float one = 1, zero = 0;
	if (cublasGemmEx(g->h, CUBLAS_OP_N, CUBLAS_OP_N, g->n, g->n, g->n, &one, g->a, CUDA_R_16BF,
	                 g->n, g->b, CUDA_R_16BF, g->n, &zero, g->c, CUDA_R_16BF, g->n,
	                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT))
		DIE("cublasGemmEx failed");
}

/* measured bf16 GEMM ceiling: 8192^3 with fp32 accumulation, median of 10 */
static double gemm_peak(void)
{
	int n = 8192;
	void *a, *b, *c;
	cublasHandle_t h;
	float ms, best[10];
	cudaEvent_t e0, e1;
	uint16_t *init = malloc((size_t)n * n * 2);
	for (size_t i = 0; i < (size_t)n * n; i++)
		init[i] =
		        (uint16_t)(0x3c00 + (rand() & 0xff)); /* bf16 values in [0.0078, 0.0156) */
	if (cudaMalloc(&a, (size_t)n * n * 2) || cudaMalloc(&b, (size_t)n * n * 2) ||
	    cudaMalloc(&c, (size_t)n * n * 2))
		DIE("cudaMalloc failed");
	cudaMemcpy(a, init, (size_t)n * n * 2, cudaMemcpyHostToDevice);
	cudaMemcpy(b, init, (size_t)n * n * 2, cudaMemcpyHostToDevice);
	free(init);
	cublasCreate(&h);
	struct gemm_ctx gc = {h, n, a, b, c};
	cudaEventCreate(&e0);
	cudaEventCreate(&e1);
	for (int i = 0; i < 13; i++) {
		cudaEventRecord(e0, 0);
		gemm_once(&gc);
		cudaEventRecord(e1, 0);
		cudaEventSynchronize(e1);
		cudaEventElapsedTime(&ms, e0, e1);
		if (i >= 3)
			best[i - 3] = ms;
	}
	for (int i = 0; i < 10; i++) /* sort for the median */
		for (int j = i + 1; j < 10; j++)
			if (best[j] < best[i]) {
				float t = best[i];
				best[i] = best[j];
				best[j] = t;
			}
	{ /* round 26: sustained (see peak_sust) */
		int reps = 0, dev = 0, warm = 1;
		double t0 = now(), t1 = t0;
		do { /* 0.5 s to warm the card to the cap, then 1 s timed */
			for (int i = 0; i < 10; i++)
				gemm_once(&gc);
			cudaDeviceSynchronize();
			reps += 10;
			t1 = now();
			if (warm && t1 - t0 >= 0.5) {
				warm = 0;
				cudaGetDevice(&dev);
				gpu_power_start(dev);
				t0 = t1 = now();
				reps = 0;
			}
		} while (warm || t1 - t0 < 1.0);
		gpu_power_stop(&peak_pw);
		peak_sust = 2.0 * n * n * (double)n * reps / (t1 - t0);
		/* round 27: its draw from the energy counter's edges (graph_energy.h) */
		double ms, mhz;
		if (graph_energy_edges(gemm_once, &gc, 2.0 * n * n * (double)n / peak_sust * 1e3,
		                       1000, dev, &peak_pw.watts, &ms, &mhz))
			peak_pw.watts = NAN;
	}
	cublasDestroy(h);
	cudaFree(a);
	cudaFree(b);
	cudaFree(c);
	return 2.0 * n * n * (double)n / ((best[4] + best[5]) / 2 * 1e-3);
}

/* the initial weights (seed 42), made once: every row and profile starts
 * from the same ones, and the 310M normal draws are not repeated per row */
static float *init_params(const struct policy_layout *L)
{
	static float *p;
	if (!p) {
		p = malloc(L->total * 4);
		if (!p)
			DIE("out of memory for the weights");
		policy_params_init(p, L, 42);
	}
	return p;
}

struct result {
	const char *mode;
	int seqs, seq, K;
	double step_s, fwd_s, adam_s, tok_s, flops_tok, tflops;
	double b2b_s; /* round 20: an optimizer step's mean time back to back */
	/* round 26: the card's mean draw and SM clock over those back-to-back
	 * steps (NVML; NaN where it cannot be read) */
	double watts, mhz;
};

static double median(double *v, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (v[j] < v[i]) {
				double x = v[i];
				v[i] = v[j];
				v[j] = x;
			}
	return v[n / 2];
}

/* steps optimizer steps of K micro-batches each (the same batch), after 2
 * warm-up steps; step_s is an optimizer step's median time */
/* "one" mode: the profiler (ncu --profile-from-start off) sees one K = 1
 * training step and its AdamW, after two warm-up steps */
static int prof_one;

/* round 27, "energy" mode: after the back-to-back steps, every kernel of
 * the training micro-batch's two graphs alone (tests/bench/graph_energy.h)
 * for energy_ms each, and AdamW's call looped, against the step measured */
static double energy_ms;

/* Round 21: GPU_TRAIN_VARY=n (a row's environment) packs each micro-batch's
 * T tokens as sequences of random lengths (256 to seq, the last what is
 * left), as an RL batch's packed rollouts: n = 1 a new packing for every
 * micro-batch (no shape repeats: POLICY_GPU_GRAPH=auto captures nothing),
 * n > 1 n packings in turn (every shape repeats after n micro-batches);
 * unset or 0: seqs sequences of seq, every micro-batch alike. The FLOPs
 * a token stay those of sequences of seq (attention over shorter
 * sequences costs less: compare such rows by their ms, not their MFU). */
struct packs {
	int n, next, T, *cu, *ns, *tgt; /* n packings: cu (at most T / 256 + 1 each), tgt */
};

static void packs_make(struct packs *P, int n, const int *tok, int T, int seq)
{
	const int ms = T / 256 + 2;
	P->n = n;
	P->next = 0;
	P->T = T;
	P->cu = malloc((size_t)n * ms * 4);
	P->ns = malloc((size_t)n * 4);
	P->tgt = malloc((size_t)n * T * 4);
	if (!P->cu || !P->ns || !P->tgt)
		DIE("out of memory");
	for (int i = 0; i < n; i++) {
		int *cu = P->cu + (size_t)i * ms, *tgt = P->tgt + (size_t)i * T, s = 0;
		cu[0] = 0;
		while (cu[s] < T) {
			int left = T - cu[s], len = 256 + rand() % (seq - 255);
			if (left <= seq)
				len = left;
			else if (left - len < 256)
				len = left - 256;
			cu[s + 1] = cu[s] + len;
			s++;
		}
		P->ns[i] = s;
		for (int q = 0; q < s; q++)
			for (int t = cu[q]; t < cu[q + 1]; t++)
				tgt[t] = t + 1 < cu[q + 1] ? tok[t + 1] : -1;
	}
}

/* the next micro-batch's packing into b and *tgt (P->n 0: unchanged) */
static void packs_next(struct packs *P, struct policy_batch *b, int **tgt)
{
	if (!P->n)
		return;
	int i = P->next++ % P->n;
	b->n_seqs = P->ns[i];
	b->cu_seqlens = P->cu + (size_t)i * (P->T / 256 + 2);
	*tgt = P->tgt + (size_t)i * P->T;
}

/* an optimizer step (K micro-batches, AdamW) for graph_energy_edges */
struct energy_ctx {
	struct policy_gpu *g;
	struct policy_adamw *o;
	struct policy_batch *b;
	int **tgt, K;
	struct packs *P;
};

static void energy_adamw(void *p)
{
	struct energy_ctx *c = p;
	double gn;
	if (policy_gpu_adamw(&gn, c->g, c->o))
		DIE("adamw: %s", swerve_error_last());
}

/* the K micro-batches' forward and backward */
static void energy_mbs(struct energy_ctx *c)
{
	struct policy_loss_stats st;
	for (int k = 0; k < c->K; k++) {
		packs_next(c->P, c->b, c->tgt);
		if (policy_gpu_step(&st, NULL, NULL, c->g, c->b, *c->tgt, NULL, NULL, NULL,
		                    k ? POLICY_GPU_BACKWARD_ACC : POLICY_GPU_BACKWARD))
			DIE("step: %s", swerve_error_last());
	}
}

static void energy_step(void *p)
{
	energy_mbs(p);
	energy_adamw(p);
}

/* the micro-batches again without AdamW (graph_energy_add's restore:
 * every activation and gradient recomputed from the unchanged weights) */
static void energy_restore(void *p)
{
	energy_mbs(p);
	if (policy_gpu_sync(((struct energy_ctx *)p)->g))
		DIE("restore: %s", swerve_error_last());
}

static void energy_report(struct energy_ctx *ec, const struct result *r)
{
	static struct ge_table t;
	struct policy_gpu *g = ec->g;
	double w, ms, mhz, sw, sms, smhz;
	int dev = 0, n = 0, part, bwd;
	void *gr;
	cudaGetDevice(&dev);
	memset(&t, 0, sizeof(t));
	graph_energy_idle(&t, dev);
	/* the whole step first (the kernels' loops below leave other values) */
	if (policy_gpu_sync(g) || graph_energy_edges(energy_step, ec, r->b2b_s * 1e3,
	                                             fmax(energy_ms, 1000), dev, &sw, &sms, &smhz))
		DIE("gpu_train energy: no power readings (%s)", swerve_error_last());
	for (int i = 0; (gr = policy_gpu_kept_graph(i, &part, &bwd)); i++)
		if (bwd) { /* the training micro-batch's forward + head, then backward */
			fprintf(stderr, "  energy: graph %d (part %d)\n", i, part);
			graph_energy_add(&t, gr, energy_ms, dev, energy_restore, ec);
			n++;
		}
	if (n != 2)
		DIE("gpu_train energy: %d training graphs kept, expected 2 (POLICY_GPU_GRAPH off?)",
		    n);
	/* AdamW (outside the graphs), looped the same way */
	if (policy_gpu_sync(g) ||
	    graph_energy_edges(energy_adamw, ec, r->adam_s * 1e3, fmax(energy_ms, 500), dev, &w,
	                       &ms, &mhz) ||
	    policy_gpu_sync(g))
		DIE("gpu_train energy: no power readings (%s)", swerve_error_last());
	graph_energy_row(&t, "AdamW (policy_gpu_adamw, the call)", NULL, 1, ms, w * ms * 1e-3, mhz);
	graph_energy_print(&t, stdout, 40, sms, sw * sms * 1e-3);
	printf("the step looped (before the kernels): %.2f ms at %.0f W, %.0f MHz (%.1f J)\n", sms,
	       sw, smhz, sw * sms * 1e-3);
}

static struct result run(const struct policy_config *cfg, enum policy_gpu_precision prec, int seqs,
                         int seq, int steps, const char *label, int K)
{
	const char *vary_env = getenv("GPU_TRAIN_VARY");
	const int vary = vary_env ? atoi(vary_env) : 0;
	struct packs P = {0, 0, 0, NULL, NULL, NULL};
	struct policy_layout L;
	struct policy_gpu *g;
	struct policy_adamw o = POLICY_ADAMW_INIT;
	struct result r;
	int T = seqs * seq, *tok = malloc((size_t)T * 4), *tgt = malloc((size_t)T * 4);
	int *cu = malloc((size_t)(seqs + 1) * 4);
	float *p;
	double t0 = 0, times[64], fwd[64], adam[64];
	if (policy_layout_init(&L, cfg))
		DIE("%s", swerve_error_last());
	p = init_params(&L);
	for (int t = 0; t < T; t++)
		tok[t] = rand() % cfg->vocab_size;
	for (int s = 0; s <= seqs; s++)
		cu[s] = s * seq;
	for (int t = 0; t < T; t++)
		tgt[t] = (t + 1) % seq ? tok[t + 1] : -1;
	if (vary > 0)
		packs_make(&P, vary == 1 ? 256 : vary, tok, T, seq);
	if (energy_ms > 0)
		policy_gpu_keep_graphs(1);
	if (policy_gpu_new(&g, cfg, &L, T, vary > 0 ? T / 256 + 1 : seqs, prec) ||
	    policy_gpu_set_params(g, p))
		DIE("%s", swerve_error_last());
	o.lr = 1e-4;
	struct policy_batch b = {T, tok, seqs, cu};
	int *tgt0 = tgt;
	for (int i = 0; i < steps + 2; i++) {
		struct policy_loss_stats st;
		double gn;
		if (policy_gpu_sync(g))
			DIE("%s", swerve_error_last());
		if (prof_one && i == 2)
			cudaProfilerStart();
		t0 = now();
		for (int k = 0; k < K; k++) {
			packs_next(&P, &b, &tgt);
			if (policy_gpu_step(&st, NULL, NULL, g, &b, tgt, NULL, NULL, NULL,
			                    k ? POLICY_GPU_BACKWARD_ACC : POLICY_GPU_BACKWARD))
				DIE("step %d.%d: %s", i, k, swerve_error_last());
		}
		if (policy_gpu_adamw(&gn, g, &o) || policy_gpu_sync(g))
			DIE("step %d: %s", i, swerve_error_last());
		if (prof_one && i == 2)
			cudaProfilerStop();
		if (i >= 2) {
			times[i - 2] = now() - t0;
			/* the parts: forward only, and AdamW alone */
			packs_next(&P, &b, &tgt);
			t0 = now();
			if (policy_gpu_step(NULL, NULL, NULL, g, &b, tgt, NULL, NULL, NULL, 0) ||
			    policy_gpu_sync(g))
				DIE("forward %d: %s", i, swerve_error_last());
			fwd[i - 2] = now() - t0;
			t0 = now();
			if (policy_gpu_adamw(&gn, g, &o) || policy_gpu_sync(g))
				DIE("adamw %d: %s", i, swerve_error_last());
			adam[i - 2] = now() - t0;
		}
		if (i == 0 || i == steps + 1)
			fprintf(stderr, "  %s step %d: loss %.4f grad_norm %.3f\n", label, i,
			        st.loss, gn);
	}
	/* round 20: the same steps back to back, no synchronisation between
	 * them (as a trainer runs them), so that an update overlapped with the
	 * next step's forward (POLICY_GPU_ADAMW=overlap*) shows; the mean over
	 * steps, from a synchronised start to a synchronised end */
	if (!prof_one) {
		struct gpu_power pw;
		int dev = 0;
		if (policy_gpu_sync(g))
			DIE("%s", swerve_error_last());
		cudaGetDevice(&dev);
		gpu_power_start(dev);
		t0 = now();
		for (int i = 0; i < steps; i++) {
			struct policy_loss_stats st;
			double gn;
			for (int k = 0; k < K; k++) {
				packs_next(&P, &b, &tgt);
				if (policy_gpu_step(&st, NULL, NULL, g, &b, tgt, NULL, NULL, NULL,
				                    k ? POLICY_GPU_BACKWARD_ACC
				                      : POLICY_GPU_BACKWARD))
					DIE("b2b step %d.%d: %s", i, k, swerve_error_last());
			}
			if (policy_gpu_adamw(&gn, g, &o))
				DIE("b2b step %d: %s", i, swerve_error_last());
		}
		if (policy_gpu_sync(g))
			DIE("%s", swerve_error_last());
		r.b2b_s = (now() - t0) / steps;
		gpu_power_stop(&pw);
		r.mhz = pw.mhz;
		{ /* round 27: the draw from the energy counter's edges over >= 1 s of
		   * the same steps looped (the counter moves every ~100 ms on an
		   * H100: the back-to-back stretch's own reading was that coarse) */
			struct energy_ctx ec = {g, &o, &b, &tgt, K, &P};
			double ms, mhz;
			if (graph_energy_edges(energy_step, &ec, r.b2b_s * 1e3, 1000, dev, &r.watts,
			                       &ms, &mhz))
				r.watts = NAN;
		}
	} else {
		r.b2b_s = 0;
		r.watts = r.mhz = NAN;
	}
	r.mode = label;
	r.seqs = seqs;
	r.seq = seq;
	r.K = K;
	r.step_s = median(times, steps);
	r.fwd_s = median(fwd, steps);
	r.adam_s = median(adam, steps);
	r.tok_s = (double)K * T / r.step_s;
	r.flops_tok = policy_config_flops_per_token(cfg, seq);
	r.tflops = r.tok_s * r.flops_tok / 1e12;
	if (energy_ms > 0 && !prof_one) {
		struct energy_ctx ec = {g, &o, &b, &tgt, K, &P};
		energy_report(&ec, &r);
		policy_gpu_keep_graphs(0);
	}
	policy_gpu_free(g);
	policy_layout_dispose(&L);
	free(tok);
	free(tgt0);
	free(cu);
	free(P.cu);
	free(P.ns);
	free(P.tgt);
	return r;
}

/* one profiled bf16 step (POLICY_GPU_PROFILE: synchronising phase timers) */
static void profile(const struct policy_config *cfg, int seqs, int seq, const char *label)
{
	struct policy_layout L;
	struct policy_gpu *g;
	struct policy_adamw o = POLICY_ADAMW_INIT;
	int T = seqs * seq, *tok = malloc((size_t)T * 4), *tgt = malloc((size_t)T * 4);
	int *cu = malloc((size_t)(seqs + 1) * 4), n;
	const char *names[16];
	double sec[16], total = 0, gn;
	float *p;
	policy_layout_init(&L, cfg);
	p = init_params(&L);
	for (int t = 0; t < T; t++)
		tok[t] = rand() % cfg->vocab_size;
	for (int s = 0; s <= seqs; s++)
		cu[s] = s * seq;
	for (int t = 0; t < T; t++)
		tgt[t] = (t + 1) % seq ? tok[t + 1] : -1;
	setenv("POLICY_GPU_PROFILE", "1", 1);
	if (policy_gpu_new(&g, cfg, &L, T, seqs, POLICY_GPU_BF16) || policy_gpu_set_params(g, p))
		DIE("%s", swerve_error_last());
	unsetenv("POLICY_GPU_PROFILE");
	struct policy_batch b = {T, tok, seqs, cu};
	for (int i = 0; i < 3; i++) {
		if (i == 1)
			policy_gpu_profile(names, sec, 16, g); /* drop the warm-up step */
		if (policy_gpu_step(NULL, NULL, NULL, g, &b, tgt, NULL, NULL, NULL, 1) ||
		    policy_gpu_adamw(&gn, g, &o))
			DIE("%s", swerve_error_last());
	}
	n = policy_gpu_profile(names, sec, 16, g);
	printf("\n%s step by phase (synchronised; mean of 2 steps):\n", label);
	for (int i = 0; i < n; i++) /* "gemm host" overlaps the phases */
		total += strcmp(names[i], "gemm host") ? sec[i] / 2 : 0;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], "gemm host"))
			printf("  %-16s %8.2f ms  %5.1f%%\n", names[i], sec[i] / 2 * 1e3,
			       100 * sec[i] / 2 / total);
	printf("  %-16s %8.2f ms\n", "total", total * 1e3);
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], "gemm host"))
			printf("  (host time inside GEMM calls: %.2f ms of it)\n",
			       sec[i] / 2 * 1e3);
	{
		long calls, fb, rows, grows, peak;
		policy_gpu_gemm_stats(g, &calls, &fb);
		if (calls)
			printf("  (cuBLASLt expert GEMMs: %ld calls, %ld fell back to cuBLAS)\n",
			       calls, fb);
		policy_gpu_moe_stats(g, &rows, &grows, &peak);
		if (peak) /* the cuBLASLt path (the grouped one brings no counts back) */
			printf("  (MoE: %ld token-expert rows, %ld GEMM rows run: x%.2f; the "
			       "padded "
			       "layout would need x%.2f (E x the busiest expert); %ld cuBLASLt "
			       "calls "
			       "a step)\n",
			       rows, grows, rows ? (double)grows / rows : 0.0,
			       rows ? (double)peak / rows : 0.0, calls / 3);
		else
			printf("  (MoE: %ld token-expert rows, grouped kernels, no host round "
			       "trip)\n",
			       rows);
	}
	policy_gpu_free(g);
	policy_layout_dispose(&L);
	free(tok);
	free(tgt);
	free(cu);
}

/* argv[1] "one": only this build's default at K = 1 (GPU_TRAIN_ONE_SEQS
 * sequences of 2048 a micro-batch, default 4), 3 measured steps, the
 * first of them (and its AdamW) between cudaProfilerStart / Stop, for a
 * per-kernel listing by ncu; argv[1] "energy" (round 27): as "one" (5
 * measured steps), then every kernel of the micro-batch's graphs alone,
 * its time and energy (GPU_TRAIN_ENERGY_MS a kernel, default 100), by
 * kernel and by class against the step's; argv[1] "quick": the rows marked q only (a
 * short device call); argv[1] "x": only the default at K = 4 and the extra
 * rows, no profile (a variant against the default in the shortest call);
 * then any
 * number of "label:VAR=VALUE ..." arguments, each an extra row at K = 4 under
 * that environment (a variant measured beside the default in one run);
 * "label@KxS:..." runs that row at K micro-batches an optimizer step of S
 * sequences of 2048 each (e.g. "llmc@1x32:" for 65536-token micro-batches) */
int main(int argc, char **argv)
{
	struct policy_config c;
	struct cudaDeviceProp prop;
	int ndev = 0;
	const double datasheet = 989e12; /* H100 SXM bf16 dense */
	/* rows, all bf16, each with the environment it runs under: round 3's
	 * default (the experts through cuBLASLt, a GEMM per expert on 4 streams
	 * or one padded batched GEMM, one host round trip a layer;
	 * POLICY_GPU_MOE=lt); round 4's grouped MoE kernel (wgmma, 128 x 128
	 * tiles, a CTA barrier and a drained wgmma pipe per k block;
	 * POLICY_GPU_MOE_KERNEL=wg), the in-run baseline; this build's default;
	 * round 5's variants (wgm: a k block's wgmma in flight, stages handed
	 * over by mbarriers, every thread loading two blocks ahead; wgp: the
	 * same across a CTA barrier, one block ahead; ws2: warp-specialised,
	 * two producer warps), at K = 4
	 * micro-batches per optimizer step; wg and the default at K = 1 and the
	 * default at K = 8. Round 6: r5-wg = wg without round 6's fusions (the
	 * separate x -> bf16 and combine passes, dW always added), the in-run
	 * baseline, at K = 4 and K = 1 (where every micro-batch stores dW);
	 * wgt = wg with the non-gathered operands loaded by TMA; r6-wg = wg with
	 * round 6's fusions; wgtd = wgt and the weight gradients' contiguous
	 * operands by TMA (the default since round 6's call 2; its row here
	 * and the default's are then the same). Round 7: r6-default = every
	 * round-7 switch off (R6_ENV: the gather inside the up loads, the
	 * round-6 routing and lightning passes, AdamW a launch per tensor, the
	 * full-FP32 LM head, the fp32-tile MoE epilogues), the in-run baseline;
	 * r7-default = round 7's default (round 8's bf16 TMA-store epilogues of
	 * up and down dX and its warp-per-row residual/norm passes off); r7-v1 = round 7's first
	 * routing and lightning-pass kernels. Round 10: r9-default = every round-10
	 * switch off (R9_ENV), the in-run baseline of round 10. The older rows carry
	 * POLICY_GPU_MOE_GATHER=load so they still measure what they name. */
#define NROWS 19
#define GL    "POLICY_GPU_MOE_GATHER=load "
	/* round 9's default (the start of round 10): one stream, routing v2,
	 * gpu_moe.cu's combine passes, the wgtd expert kernels */
#define R9_ENV                                                                                     \
	"POLICY_GPU_STREAMS=1 POLICY_GPU_ROUTE=v2 POLICY_GPU_MOE_COMB=old "                        \
	"POLICY_GPU_MOE_KERNEL=wgtd"
#define R3_ENV "POLICY_GPU_MOE=lt"
#define R4_ENV GL "POLICY_GPU_MOE_KERNEL=wg"
#define R5_ENV GL "POLICY_GPU_MOE_KERNEL=wg POLICY_GPU_MOE_FUSE=0 POLICY_GPU_MOE_DWSTORE=0"
#define R6_ENV                                                                                     \
	GL "POLICY_GPU_ROUTE=old POLICY_GPU_LIN_EW=old POLICY_GPU_ADAMW=tensor "                   \
	   "POLICY_GPU_HEAD=fp32 POLICY_GPU_MOE_EPI=smem POLICY_GPU_EW=old POLICY_GPU_STREAMS=1 "  \
	   "POLICY_GPU_MOE_COMB=old POLICY_GPU_MOE_KERNEL=wgtd"
#define R7_ENV R9_ENV " POLICY_GPU_MOE_EPI=smem POLICY_GPU_EW=old"
#define V1_ENV "POLICY_GPU_ROUTE=v1 POLICY_GPU_LIN_EW=v1"
	static const struct {
		const char *label, *env;
		int K, q, seqs; /* seqs: sequences of 2048 a micro-batch */
	} rows[NROWS] = {{"r6-default", R6_ENV, 4, 1, 4},
	                 {"r9-default", R9_ENV, 4, 1, 4},
	                 {"default", "", 4, 1, 4},
	                 {"r7-default", R7_ENV, 4, 1, 4},
	                 {"r7-v1", V1_ENV " " R7_ENV, 4, 0, 4},
	                 {"r3-default", R3_ENV, 4, 0, 4},
	                 {"r6-default", R6_ENV, 1, 1, 4},
	                 {"default", "", 1, 1, 4},
	                 {"default", "", 8, 1, 4},
	                 {"default", "", 2, 1, 8},
	                 {"default", "", 4, 1, 8},
	                 {"default", "", 1, 1, 16},
	                 {"default", "", 2, 1, 16},
	                 {"r5-wg", R5_ENV, 4, 0, 4},
	                 {"r6-wg", R4_ENV, 4, 0, 4},
	                 {"wgm", GL "POLICY_GPU_MOE_KERNEL=wgm", 4, 0, 4},
	                 {"wgp", GL "POLICY_GPU_MOE_KERNEL=wgp", 4, 0, 4},
	                 {"ws2", GL "POLICY_GPU_MOE_KERNEL=ws2", 4, 0, 4},
	                 {"r4-wg", R4_ENV, 1, 0, 4}};
	const int xonly = argc > 1 && !strcmp(argv[1], "x");
	const int quick = xonly || (argc > 1 && !strcmp(argv[1], "quick"));
	setvbuf(stdout, NULL, _IOLBF, 0); /* a killed run keeps what it printed */
	enum { MAXX = 8 };
	struct result r[NROWS], rx[MAXX];
	char xlabel[MAXX][32];
	const char *xenv[MAXX];
	int nx = 0, xk[MAXX], xseqs[MAXX];
	for (int i = 2; i < argc; i++) {
		const char *colon = strchr(argv[i], ':');
		if (!colon || colon == argv[i] || colon - argv[i] >= 32 || nx == MAXX)
			DIE("gpu_train: %s: expected label[@KxS]:VAR=VALUE ... (at most %d, label "
			    "< "
			    "32 characters)",
			    argv[i], MAXX);
		snprintf(xlabel[nx], sizeof(xlabel[nx]), "%.*s", (int)(colon - argv[i]), argv[i]);
		/* label@KxS: K micro-batches an optimizer step of S sequences of 2048 */
		char *at = strchr(xlabel[nx], '@');
		xk[nx] = 4;
		xseqs[nx] = 4;
		if (at && (sscanf(at + 1, "%dx%d", &xk[nx], &xseqs[nx]) != 2 || xk[nx] < 1 ||
		           xk[nx] > 64 || xseqs[nx] < 1 || xseqs[nx] > 64))
			DIE("gpu_train: %s: expected @KxS with K and S in 1..64 (e.g. big@1x32)",
			    argv[i]);
		xenv[nx++] = colon + 1;
	}
	double peak;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_train: skipped: no CUDA device\n");
		return 0;
	}
	cudaGetDeviceProperties(&prop, 0);
	bench_config(&c);
	if (policy_config_validate(&c))
		DIE("%s", swerve_error_last());
	{
		struct policy_layout L;
		policy_layout_init(&L, &c);
		printf("config: %d layers (softmax at 7), dim 768, 12 heads x 64 (kv 4), 8 experts "
		       "top-2 x 1024, vocab 32000\n"
		       "params: %.1fM total, %.1fM active per token; %.3f GFLOP per token at seq "
		       "2048\n",
		       c.n_layers, L.total / 1e6, policy_config_active_params(&c) / 1e6,
		       policy_config_flops_per_token(&c, 2048) / 1e9);
		policy_layout_dispose(&L);
	}
	if (argc > 1 && !strcmp(argv[1], "one")) {
		struct result o1;
		const char *os = getenv("GPU_TRAIN_ONE_SEQS"); /* sequences of 2048 (default 4) */
		int one_seqs = os ? atoi(os) : 4;
		if (one_seqs < 1 || one_seqs > 64)
			DIE("gpu_train: GPU_TRAIN_ONE_SEQS=%s: expected 1..64 sequences", os);
		prof_one = 1;
		o1 = run(&c, POLICY_GPU_BF16, one_seqs, 2048, 3, "one", 1);
		printf("one: K = 1 step %.2f ms (forward %.2f, AdamW %.2f), %.0f tokens/s, %.1f "
		       "TFLOP/s\n",
		       o1.step_s * 1e3, o1.fwd_s * 1e3, o1.adam_s * 1e3, o1.tok_s, o1.tflops);
		return 0;
	}
	if (argc > 1 && !strcmp(argv[1], "energy")) {
		struct result e;
		const char *os = getenv("GPU_TRAIN_ONE_SEQS");
		const char *ems = getenv("GPU_TRAIN_ENERGY_MS"); /* window a kernel (default 100) */
		int seqs = os ? atoi(os) : 4;
		energy_ms = ems ? atof(ems) : 100;
		if (seqs < 1 || seqs > 64 || !(energy_ms >= 1 && energy_ms <= 10000))
			DIE("gpu_train energy: GPU_TRAIN_ONE_SEQS=%s (1..64) or "
			    "GPU_TRAIN_ENERGY_MS=%s (1..10000) out of range",
			    os ? os : "", ems ? ems : "");
		e = run(&c, POLICY_GPU_BF16, seqs, 2048, 5, "energy", 1);
		printf("energy: K = 1 step %.2f ms, back to back %.2f ms at %.0f W, %.0f MHz "
		       "(%.1f J a step), %d tokens a micro-batch\n",
		       e.step_s * 1e3, e.b2b_s * 1e3, e.watts, e.mhz, e.watts * e.b2b_s,
		       seqs * 2048);
		return 0;
	}
	peak = gemm_peak();
	if (!xonly) { /* quick too: the fusions are measured in the step profile */
		env_apply(R6_ENV, 1);
		profile(&c, 4, 2048, "bf16, round 6's default (" R6_ENV ")");
		env_apply(R6_ENV, 0);
		profile(&c, 4, 2048, "bf16, this build's default");
	}
	for (int i = 0; i < NROWS; i++) {
		if ((quick && !rows[i].q) ||
		    (xonly && (rows[i].env[0] || rows[i].K != 4 || rows[i].seqs != 4)))
			continue;
		env_apply(rows[i].env, 1);
		r[i] = run(&c, POLICY_GPU_BF16, rows[i].seqs, 2048, 7, rows[i].label, rows[i].K);
		env_apply(rows[i].env, 0);
		/* at once too: a later row that fails (e.g. out of memory) keeps it */
		printf("  %s: K %d x %d tokens, %.1f ms a micro-batch, %.0f tokens/s, MFU %.1f%%\n",
		       rows[i].label, r[i].K, r[i].seqs * r[i].seq, r[i].step_s / r[i].K * 1e3,
		       r[i].tok_s, 100 * r[i].tflops * 1e12 / datasheet);
	}
	for (int i = 0; i < nx; i++) {
		env_apply(xenv[i], 1);
		rx[i] = run(&c, POLICY_GPU_BF16, xseqs[i], 2048, 7, xlabel[i], xk[i]);
		env_apply(xenv[i], 0);
	}
	printf("\ncard: %s; cuBLAS bf16 GEMM 8192^3 measured %.0f TFLOP/s (datasheet %.0f); "
	       "back to back for 1 s (the power cap's ceiling): %.0f TFLOP/s at %.0f W, %.0f MHz\n",
	       prop.name, peak / 1e12, datasheet / 1e12, peak_sust / 1e12, peak_pw.watts,
	       peak_pw.mhz);
	{
		int seen, timed, changed;
		swerve_gemm_tune_counts(&seen, &timed, &changed);
		printf("SWERVE_GEMM_TUNE (kernels/gemm_tune.h): %d GEMM shapes seen, %d timed, %d "
		       "run "
		       "off cuBLAS's default choice\n",
		       seen, timed, changed);
	}
	printf("K = micro-batches per optimizer step, of 8192 tokens (16384 or 32768 where "
	       "tok/opt says so); step = one optimizer step;\n"
	       "per-mb = step / K; fwd = one forward pass (of a micro-batch); adam = one AdamW;\n"
	       "b2b/mb = per-mb with the steps back to back (no synchronisation between optimizer "
	       "steps; round 20);\n"
	       "W, MHz = the card's mean draw (NVML energy counter) and mean SM clock over those "
	       "back-to-back steps (round 26)\n");
	printf("%-12s %-82s %2s %7s %8s %7s %7s %7s %10s %8s %9s %10s %7s %5s %5s\n", "mode",
	       "environment", "K", "tok/opt", "step ms", "per-mb", "fwd ms", "adam ms", "tokens/s",
	       "TFLOP/s", "MFU(989)", "MFU(meas.)", "b2b/mb", "W", "MHz");
	for (int i = 0; i < NROWS; i++)
		if ((!quick || rows[i].q) &&
		    !(xonly && (rows[i].env[0] || rows[i].K != 4 || rows[i].seqs != 4)))
			printf("%-12s %-82s %2d %7d %8.1f %7.1f %7.1f %7.1f %10.0f %8.1f %8.1f%% "
			       "%9.1f%% %7.2f %5.0f %5.0f\n",
			       r[i].mode, rows[i].env[0] ? rows[i].env : "(default)", r[i].K,
			       r[i].K * r[i].seqs * r[i].seq, r[i].step_s * 1e3,
			       r[i].step_s / r[i].K * 1e3, r[i].fwd_s * 1e3, r[i].adam_s * 1e3,
			       r[i].tok_s, r[i].tflops, 100 * r[i].tflops * 1e12 / datasheet,
			       100 * r[i].tflops * 1e12 / peak, r[i].b2b_s / r[i].K * 1e3,
			       r[i].watts, r[i].mhz);
	for (int i = 0; i < nx; i++)
		printf("%-12s %-82s %2d %7d %8.1f %7.1f %7.1f %7.1f %10.0f %8.1f %8.1f%% %9.1f%% "
		       "%7.2f %5.0f %5.0f\n",
		       xlabel[i], xenv[i], rx[i].K, rx[i].K * rx[i].seqs * rx[i].seq,
		       rx[i].step_s * 1e3, rx[i].step_s / rx[i].K * 1e3, rx[i].fwd_s * 1e3,
		       rx[i].adam_s * 1e3, rx[i].tok_s, rx[i].tflops,
		       100 * rx[i].tflops * 1e12 / datasheet, 100 * rx[i].tflops * 1e12 / peak,
		       rx[i].b2b_s / rx[i].K * 1e3, rx[i].watts, rx[i].mhz);
	return 0;
}
