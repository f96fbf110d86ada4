/* test_gemm_tune.cu - kernels/gemm_tune (SWERVE_GEMM_TUNE): cuBLAS GEMMs
 * with the algorithm timed once per shape. For the policy's call forms
 * (projection forward TN with bf16 or fp32 output, weight gradient NT
 * accumulating into fp32, dX NN, fp32 operands with FAST_16BF, a strided
 * batch, an odd-sized shape, beta 0 and 1), with fresh random inputs:
 * the tuned call and cuBLAS's default both against a CPU reference in
 * double (so the tuner's timed runs, made on a scratch copy of C, must not
 * have touched the real C: with beta 1 that would add A B again); the
 * tuned shape's second call bit for bit its first (the choice is kept);
 * a shape first seen during a stream capture keeps the default (the graph's
 * replay bit for bit a default call, and so is a later uncaptured call);
 * a shape within 2x of a timed one takes its choice untimed; the switch's
 * values, and a misspelt one refused by the policy loss's context. Prints each shape's timing line
 * (SWERVE_GEMM_TUNE=log). */
extern "C" {
#include "sandbox/error.h"
}
#include "kernels/gemm_tune.h"
#include "kernels/policy_loss.h"
#include "tests/gpu/gpu_check.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static int have_gpu(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct form {
	const char *name;
	cublasOperation_t ta, tb;
	int m, n, k, batch;
	cudaDataType_t ab, ct;
	cublasComputeType_t cp;
	float beta;
	int sms; /* sm_target */
	int cin; /* round 23: C's input apart (Cin), C poisoned before each call */
};

/* a column-major element of op(X) (rows r of op, col c) for X stored with ld */
static double at(const float *X, cublasOperation_t t, int ld, int r, int c)
{
	return t == CUBLAS_OP_N ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c];
}

/* host values as the GPU holds them (bf16 rounded where the type is bf16) */
static void fill(float *f, void *raw, size_t n, cudaDataType_t t, double scale)
{
	for (size_t i = 0; i < n; i++) {
		float v = (float)(gpu_nrand() * scale);
		if (t == CUDA_R_16BF) {
			uint16_t h = gpu_f2bf(v);
			((uint16_t *)raw)[i] = h;
			f[i] = gpu_bf2f(h);
		} else {
			((float *)raw)[i] = v;
			f[i] = v;
		}
	}
}

static void to_float(const void *raw, float *f, size_t n, cudaDataType_t t)
{
	for (size_t i = 0; i < n; i++)
		f[i] = t == CUDA_R_16BF ? gpu_bf2f(((const uint16_t *)raw)[i])
		                        : ((const float *)raw)[i];
}

/* one form: default and tuned against the CPU, the tuned shape's second call
 * bit for bit its first */
static int run_form(const struct form *F, cublasHandle_t h, void *ws, size_t wsb)
{
	const int m = F->m, n = F->n, k = F->k, B = F->batch;
	const int lda = F->ta == CUBLAS_OP_N ? m : k, ldb = F->tb == CUBLAS_OP_N ? k : n, ldc = m;
	const size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
	const size_t as = F->ab == CUDA_R_16BF ? 2 : 4, cs = F->ct == CUDA_R_16BF ? 2 : 4;
	float *A = (float *)malloc(na * B * 4), *Bm = (float *)malloc(nb * B * 4);
	float *C0 = (float *)malloc(nc * B * 4), *out = (float *)malloc(nc * B * 4);
	void *ra = malloc(na * B * as), *rb = malloc(nb * B * as), *rc = malloc(nc * B * cs);
	void *rout = malloc(nc * B * cs), *rfirst = malloc(nc * B * cs);
	void *dA, *dB, *dC, *dCin = NULL;
	int fail = 0;
	fill(A, ra, na * B, F->ab, 1.0);
	fill(Bm, rb, nb * B, F->ab, 1.0);
	fill(C0, rc, nc * B, F->ct, 4.0);
	CK(cudaMalloc(&dA, na * B * as));
	CK(cudaMalloc(&dB, nb * B * as));
	CK(cudaMalloc(&dC, nc * B * cs));
	CK(cudaMemcpy(dA, ra, na * B * as, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(dB, rb, nb * B * as, cudaMemcpyHostToDevice));
	struct swerve_gemm c = {
	        F->ta, F->tb,         m,     n,       k,  dA,    lda, (long long)na, dB,
	        ldb,   (long long)nb, F->ab, F->beta, dC, F->ct, ldc, (long long)nc, B,
	        F->cp, F->sms,        NULL};
	if (F->cin) { /* C = A B + beta Cin: Cin holds C0, C is poisoned */
		CK(cudaMalloc(&dCin, nc * B * cs));
		CK(cudaMemcpy(dCin, rc, nc * B * cs, cudaMemcpyHostToDevice));
		c.Cin = dCin;
	}
	/* the CPU reference in double, and each element's scale (sum of |terms|) */
	double *ref = (double *)malloc(nc * B * 8), *mag = (double *)malloc(nc * B * 8);
	for (int b = 0; b < B; b++)
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				const float *Ab = A + na * b, *Bb = Bm + nb * b;
				size_t e = nc * b + (size_t)j * ldc + i;
				double s = F->beta * C0[e], sa = fabs(F->beta * C0[e]);
				for (int q = 0; q < k; q++) {
					double p =
					        at(Ab, F->ta, lda, i, q) * at(Bb, F->tb, ldb, q, j);
					s += p;
					sa += fabs(p);
				}
				ref[e] = s;
				mag[e] = sa;
			}
	/* the bound: FAST_16BF rounds fp32 operands to bf16 (2^-8 a product),
	 * bf16 output rounds the result (2^-8); else fp32 accumulation of exact
	 * products */
	const double rel = (F->ab == CUDA_R_32F ? 8e-3 : 2e-5) + (F->ct == CUDA_R_16BF ? 8e-3 : 0);
	/* round 0: cuBLAS's default (with Cin: cuBLASLt's first choice); 1: tuned
	 * (first sighting); 2: tuned again */
	double worst[3] = {0, 0, 0};
	for (int round = 0; round < 3 && !fail; round++) {
		if (F->cin)
			CK(cudaMemset(dC, 0xff, nc * B * cs));
		else
			CK(cudaMemcpy(dC, rc, nc * B * cs, cudaMemcpyHostToDevice));
		int st = swerve_gemm_run(h, round ? 2 : 0, ws, wsb, &c);
		CHECK(st == 0, "%s: round %d: cuBLAS status %d", F->name, round, st);
		CK(cudaDeviceSynchronize());
		CK(cudaMemcpy(rout, dC, nc * B * cs, cudaMemcpyDeviceToHost));
		to_float(rout, out, nc * B, F->ct);
		for (size_t e = 0; e < nc * B; e++) {
			double err = fabs(out[e] - ref[e]) / (rel * mag[e] + 1e-30);
			if (err > worst[round])
				worst[round] = err;
		}
		if (F->cin) { /* Cin is only read */
			CK(cudaMemcpy(rout, dCin, nc * B * cs, cudaMemcpyDeviceToHost));
			CHECK(!memcmp(rout, rc, nc * B * cs), "%s: round %d wrote to Cin", F->name,
			      round);
			CK(cudaMemcpy(rout, dC, nc * B * cs, cudaMemcpyDeviceToHost));
		}
		if (round == 1)
			memcpy(rfirst, rout, nc * B * cs);
		if (round == 2)
			CHECK(!memcmp(rfirst, rout, nc * B * cs),
			      "%s: the tuned shape's second call differs from its first", F->name);
		CHECK(worst[round] <= 1.0, "%s: round %d: worst element %.3g of its bound", F->name,
		      round, worst[round]);
	}
	printf("  %s: worst element / bound: default %.3g, tuned %.3g, again %.3g\n", F->name,
	       worst[0], worst[1], worst[2]);
	cudaFree(dA);
	cudaFree(dB);
	cudaFree(dC);
	if (dCin)
		cudaFree(dCin);
	free(ref), free(mag);
	free(A), free(Bm), free(C0), free(out), free(ra), free(rb), free(rc), free(rout),
	        free(rfirst);
	return fail;
}

static int test_forms(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	const cublasOperation_t N = CUBLAS_OP_N, T = CUBLAS_OP_T;
	const struct form forms[] = {
	        {"projection forward TN, bf16 -> bf16, beta 0", T, N, 768, 1024, 768, 1,
	         CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 0.f, 0, 0},
	        {"projection forward TN, bf16 -> fp32, beta 1", T, N, 512, 512, 768, 1, CUDA_R_16BF,
	         CUDA_R_32F, CUBLAS_COMPUTE_32F, 1.f, 0, 0},
	        {"weight gradient NT, bf16 -> fp32, beta 1 (K 2048)", N, T, 384, 256, 2048, 1,
	         CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 1.f, 0, 0},
	        {"dX NN, bf16 -> bf16, beta 0", N, N, 768, 640, 512, 1, CUDA_R_16BF, CUDA_R_16BF,
	         CUBLAS_COMPUTE_32F, 0.f, 0, 0},
	        {"fp32 operands, FAST_16BF, beta 1", T, N, 256, 384, 512, 1, CUDA_R_32F, CUDA_R_32F,
	         CUBLAS_COMPUTE_32F_FAST_16BF, 1.f, 0, 0},
	        {"strided batch of 3, TN, bf16 -> fp32, beta 0", T, N, 256, 192, 320, 3,
	         CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 0.f, 0, 0},
	        {"odd shape 200 x 77 x 96, NN, bf16 -> fp32, beta 0.5", N, N, 200, 77, 96, 1,
	         CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 0.5f, 0, 0},
	        {"the first form with 1.5x the tokens (takes its choice, not timed)", T, N, 768,
	         1536, 768, 1, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 0.f, 0, 0},
	        {"weight gradient NT sized for 66 SMs (the fastest cuBLASLt candidate)", N, T, 768,
	         768, 4096, 1, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, 1.f, 66, 0},
	        {"output projection + residual: TN bf16, C = A B + Cin in bf16 (C apart)", T, N,
	         768, 1024, 768, 1, CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F, 1.f, 0, 1},
	};
	cublasHandle_t h;
	void *ws;
	const size_t wsb = (size_t)32 << 20;
	int seen0, timed0, changed0, seen1, timed1, changed1, fail = 0;
	const int nf = (int)(sizeof(forms) / sizeof(forms[0]));
	CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
	CK(cudaMalloc(&ws, wsb));
	CHECK(cublasSetWorkspace(h, ws, wsb) == CUBLAS_STATUS_SUCCESS, "workspace");
	swerve_gemm_tune_counts(&seen0, &timed0, &changed0);
	for (int i = 0; i < nf && !fail; i++)
		fail = run_form(&forms[i], h, ws, wsb);
	swerve_gemm_tune_counts(&seen1, &timed1, &changed1);
	printf("  %d shapes, %d timed, %d off cuBLAS's default\n", seen1 - seen0, timed1 - timed0,
	       changed1 - changed0);
	cublasDestroy(h);
	cudaFree(ws);
	if (fail)
		return 1;
	/* a Cin form's untuned call (round 0) is an entry of its own, not timed */
	CHECK(seen1 - seen0 == nf + 1 && timed1 - timed0 == nf - 1,
	      "%d shapes seen, %d timed: want %d and %d (one form a sibling, one Cin form)",
	      seen1 - seen0, timed1 - timed0, nf + 1, nf - 1);
	return 0;
}

/* c called once (tuning on) inside a capture of st, the graph instantiated
 * and replayed on st, the stream synchronised */
static int capture_replay(cublasHandle_t h, cudaStream_t st, void *ws, size_t wsb,
                          const struct swerve_gemm *c, cudaGraph_t *graph, cudaGraphExec_t *exec)
{
	CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
	int rc = swerve_gemm_run(h, 2, ws, wsb, c);
	CK(cudaStreamEndCapture(st, graph));
	CHECK(rc == 0, "captured call: status %d", rc);
	CK(cudaGraphInstantiate(exec, *graph, 0));
	CK(cudaGraphLaunch(*exec, st));
	CK(cudaStreamSynchronize(st));
	return 0;
}

/* the capture cases' fixture: a handle on a non-blocking stream with a 32
 * MiB workspace, random bf16 A (m x k, rows of k) and B (n x k) on the
 * device (ha / hb their host copies); cap_done frees it all */
struct cap_fix {
	cublasHandle_t h;
	cudaStream_t st;
	void *ws, *dA, *dB;
	size_t wsb;
	uint16_t *ha, *hb;
};
static int cap_make(struct cap_fix *f, int m, int n, int k)
{
	const size_t na = (size_t)m * k, nb = (size_t)k * n;
	f->wsb = (size_t)32 << 20;
	f->ha = (uint16_t *)malloc(na * 2);
	f->hb = (uint16_t *)malloc(nb * 2);
	for (size_t i = 0; i < na; i++)
		f->ha[i] = gpu_f2bf((float)gpu_nrand());
	for (size_t i = 0; i < nb; i++)
		f->hb[i] = gpu_f2bf((float)gpu_nrand());
	CHECK(cublasCreate(&f->h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
	CK(cudaStreamCreateWithFlags(&f->st, cudaStreamNonBlocking));
	CK(cudaMalloc(&f->ws, f->wsb));
	CK(cudaMalloc(&f->dA, na * 2));
	CK(cudaMalloc(&f->dB, nb * 2));
	CK(cudaMemcpy(f->dA, f->ha, na * 2, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(f->dB, f->hb, nb * 2, cudaMemcpyHostToDevice));
	CHECK(cublasSetWorkspace(f->h, f->ws, f->wsb) == CUBLAS_STATUS_SUCCESS, "workspace");
	CHECK(cublasSetStream(f->h, f->st) == CUBLAS_STATUS_SUCCESS, "stream");
	return 0;
}
static void cap_done(struct cap_fix *f)
{
	cublasDestroy(f->h);
	cudaStreamDestroy(f->st);
	cudaFree(f->ws), cudaFree(f->dA), cudaFree(f->dB);
	free(f->ha), free(f->hb);
}

/* a shape first seen in a capture keeps the default, bit for bit */
static int test_capture(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	const int m = 328, n = 136, k = 264; /* a shape no other case uses */
	struct cap_fix f;
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	void *dC;
	const size_t nc = (size_t)m * n;
	float *ref = (float *)malloc(nc * 4), *got = (float *)malloc(nc * 4);
	int seen0, timed0, changed0, seen1, timed1, changed1;
	if (cap_make(&f, m, n, k))
		return 1;
	cublasHandle_t h = f.h;
	cudaStream_t st = f.st;
	void *ws = f.ws, *dA = f.dA, *dB = f.dB;
	const size_t wsb = f.wsb;
	CK(cudaMalloc(&dC, nc * 4));
	struct swerve_gemm c = {CUBLAS_OP_T,
	                        CUBLAS_OP_N,
	                        m,
	                        n,
	                        k,
	                        dA,
	                        k,
	                        0,
	                        dB,
	                        k,
	                        0,
	                        CUDA_R_16BF,
	                        0.f,
	                        dC,
	                        CUDA_R_32F,
	                        m,
	                        0,
	                        1,
	                        CUBLAS_COMPUTE_32F,
	                        0,
	                        NULL};
	CHECK(swerve_gemm_run(h, 0, ws, wsb, &c) == 0, "default");
	CK(cudaStreamSynchronize(st));
	CK(cudaMemcpy(ref, dC, nc * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemset(dC, 0, nc * 4));
	swerve_gemm_tune_counts(&seen0, &timed0, &changed0);
	if (capture_replay(h, st, ws, wsb, &c, &graph, &exec))
		return 1;
	CK(cudaMemcpy(got, dC, nc * 4, cudaMemcpyDeviceToHost));
	swerve_gemm_tune_counts(&seen1, &timed1, &changed1);
	CHECK(seen1 == seen0 + 1 && timed1 == timed0 && changed1 == changed0,
	      "captured first sighting: seen %d -> %d, timed %d -> %d, changed %d -> %d", seen0,
	      seen1, timed0, timed1, changed0, changed1);
	CHECK(!memcmp(ref, got, nc * 4), "the graph's replay differs from the default call");
	CK(cudaMemset(dC, 0, nc * 4));
	CHECK(swerve_gemm_run(h, 2, ws, wsb, &c) == 0, "uncaptured call after");
	CK(cudaStreamSynchronize(st));
	CK(cudaMemcpy(got, dC, nc * 4, cudaMemcpyDeviceToHost));
	CHECK(!memcmp(ref, got, nc * 4), "a later uncaptured call differs from the default");
	swerve_gemm_tune_counts(&seen0, &timed0, &changed0);
	CHECK(seen0 == seen1 && timed0 == timed1, "the later call was tuned again");
	cudaGraphExecDestroy(exec);
	cudaGraphDestroy(graph);
	cudaFree(dC);
	cap_done(&f);
	free(ref), free(got);
	return 0;
}

/* round 23: a Cin call first seen in a capture runs cuBLASLt's first
 * choice (cuBLAS's default cannot take a separate C), untimed: the replay
 * bit for bit an uncaptured call with tuning off, Cin untouched */
static int test_capture_cin(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	const int m = 264, n = 200, k = 136; /* a shape no other case uses */
	const size_t nc = (size_t)m * n;
	struct cap_fix f;
	cudaGraph_t graph;
	cudaGraphExec_t exec;
	void *dC, *dCin;
	uint16_t *hc = (uint16_t *)malloc(nc * 2), *ref = (uint16_t *)malloc(nc * 2);
	uint16_t *got = (uint16_t *)malloc(nc * 2);
	int seen0, timed0, changed0, seen1, timed1, changed1;
	if (cap_make(&f, m, n, k))
		return 1;
	for (size_t i = 0; i < nc; i++)
		hc[i] = gpu_f2bf((float)(4 * gpu_nrand()));
	cublasHandle_t h = f.h;
	cudaStream_t st = f.st;
	void *ws = f.ws, *dA = f.dA, *dB = f.dB;
	const uint16_t *ha = f.ha, *hb = f.hb;
	const size_t wsb = f.wsb;
	CK(cudaMalloc(&dC, nc * 2));
	CK(cudaMalloc(&dCin, nc * 2));
	CK(cudaMemcpy(dCin, hc, nc * 2, cudaMemcpyHostToDevice));
	struct swerve_gemm c = {CUBLAS_OP_T,
	                        CUBLAS_OP_N,
	                        m,
	                        n,
	                        k,
	                        dA,
	                        k,
	                        0,
	                        dB,
	                        k,
	                        0,
	                        CUDA_R_16BF,
	                        1.f,
	                        dC,
	                        CUDA_R_16BF,
	                        m,
	                        0,
	                        1,
	                        CUBLAS_COMPUTE_32F,
	                        0,
	                        dCin};
	CK(cudaMemset(dC, 0xff, nc * 2));
	CHECK(swerve_gemm_run(h, 0, ws, wsb, &c) == 0, "tuning off");
	CK(cudaStreamSynchronize(st));
	CK(cudaMemcpy(ref, dC, nc * 2, cudaMemcpyDeviceToHost));
	/* the reference against the CPU: C = A B + Cin within bf16's rounding */
	double worst = 0;
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			double s = gpu_bf2f(hc[(size_t)j * m + i]), sa = fabs(s);
			for (int q = 0; q < k; q++) {
				double p = (double)gpu_bf2f(ha[(size_t)i * k + q]) *
				           gpu_bf2f(hb[(size_t)j * k + q]);
				s += p;
				sa += fabs(p);
			}
			double e = fabs(gpu_bf2f(ref[(size_t)j * m + i]) - s) / (8e-3 * sa + 1e-30);
			worst = e > worst ? e : worst;
		}
	CHECK(worst <= 1.0, "tuning off: worst element %.3g of its bound", worst);
	CK(cudaMemset(dC, 0xff, nc * 2));
	swerve_gemm_tune_counts(&seen0, &timed0, &changed0);
	if (capture_replay(h, st, ws, wsb, &c, &graph, &exec))
		return 1;
	CK(cudaMemcpy(got, dC, nc * 2, cudaMemcpyDeviceToHost));
	swerve_gemm_tune_counts(&seen1, &timed1, &changed1);
	CHECK(seen1 == seen0 + 1 && timed1 == timed0,
	      "captured first sighting: seen %d -> %d, timed %d -> %d", seen0, seen1, timed0,
	      timed1);
	CHECK(!memcmp(ref, got, nc * 2), "the graph's replay differs from the untuned call");
	CK(cudaMemcpy(got, dCin, nc * 2, cudaMemcpyDeviceToHost));
	CHECK(!memcmp(hc, got, nc * 2), "Cin was written");
	printf("  C = A B + Cin (%d x %d x %d, bf16): worst element %.3g of its bound; the "
	       "captured first sighting bit for bit\n",
	       m, n, k, worst);
	cudaGraphExecDestroy(exec);
	cudaGraphDestroy(graph);
	cudaFree(dC), cudaFree(dCin);
	cap_done(&f);
	free(hc), free(ref), free(got);
	return 0;
}

static int test_setting(void)
{
	const char *vals[] = {NULL, "", "off", "0", "on", "1", "log"};
	const int want[] = {1, 1, 0, 0, 1, 1, 2};
	for (int i = 0; i < 7; i++) {
		env_override e("SWERVE_GEMM_TUNE", vals[i]);
		int mode = -1;
		CHECK(swerve_gemm_tune_setting(&mode) == 0 && mode == want[i], "%s -> %d",
		      vals[i] ? vals[i] : "(unset)", mode);
	}
	env_override e("SWERVE_GEMM_TUNE", "fast");
	int mode = -1;
	CHECK(swerve_gemm_tune_setting(&mode) == SWERVE_EINVAL, "fast accepted");
	CHECK(strstr(swerve_error_last(), "SWERVE_GEMM_TUNE=fast"), "message: %s",
	      swerve_error_last());
	if (!have_gpu())
		return 0;
	struct swerve_pl_ctx *ctx = NULL;
	CHECK(swerve_pl_ctx_new(&ctx) == SWERVE_EINVAL && !ctx,
	      "the policy loss's context took a misspelt SWERVE_GEMM_TUNE");
	return 0;
}

int main(void)
{
	const struct gpu_test tests[] = {
	        {"gemm tune: 9 call forms + a sibling, default and tuned vs the CPU, the choice "
	         "kept",
	         test_forms},
	        {"gemm tune: a shape first seen in a capture keeps the default", test_capture},
	        {"gemm tune: C's input apart (Cin): untuned, and first seen in a capture",
	         test_capture_cin},
	        {"gemm tune: SWERVE_GEMM_TUNE values, a misspelt one refused", test_setting},
	};
	gpu_rng_seed();
	return gpu_run_tests(tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
