/* gemm_tune.cu - cuBLAS GEMMs with the algorithm timed once per shape (see
 * gemm_tune.h).
 *
 * Tuning a shape (outside graph capture, once a process):
 *   1. the device is synchronised (the inputs are ready, the GPU is quiet);
 *   2. C is copied to a scratch buffer, so the timed calls (beta != 0 reads
 *      C) leave the real output alone;
 *   3. candidates: cublasGemmEx's default, then cuBLASLt's heuristic list
 *      (up to CANDS, for the pointers' alignment and the workspace given);
 *      each runs once to warm up (a candidate that refuses is dropped), then
 *      ROUNDS rounds of REPS calls each, timed with events, candidates
 *      interleaved within a round so a clock change hits them all; a
 *      candidate's time is its best round's mean;
 *   4. the fastest is kept if it beats the default by 3% (else the default:
 *      noise does not move a shape off cuBLAS's own choice).
 * The choice and the cuBLASLt descriptors are kept in a process-wide list
 * (a mutex guards it); later calls of the shape look it up and run. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_tune.h"

extern "C" {
#include "sandbox/error.h"
}

enum { MAX_SHAPES = 1024, CANDS = 16, REPS = 5, ROUNDS = 3, MAX_DEV = 16 };

struct tkey { /* memset before filling: compared with memcmp */
	int dev, ta, tb, m, n, k, lda, ldb, ldc, batch, ab, ct, cp, beta0, sms;
	int cin, untimed; /* a separate C input; an entry of a call with tuning off */
	int align[3];     /* log2 of A's, B's, C's pointer alignment, at most 8 (C: of C and Cin) */
	long long sa, sb, sc;
	size_t ws;
};

struct tshape {
	struct tkey key;
	int timed; /* its choice was timed (else the default, or a timed sibling's) */
	int lt;    /* 1: run algo through cuBLASLt; 0: cublasGemmEx's default */
	cublasLtMatmulAlgo_t algo;
	struct swerve_lt_desc d;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct tshape *shapes;
static int n_shapes, n_timed, n_changed, last_hit = -1;
static cublasLtHandle_t lt_handle[MAX_DEV];

int swerve_gemm_tune_setting(int *mode)
{
	const char *e = getenv("SWERVE_GEMM_TUNE");
	if (e && (!strcmp(e, "off") || !strcmp(e, "0")))
		*mode = 0;
	else if (!e || !*e || !strcmp(e, "on") || !strcmp(e, "1"))
		*mode = 1;
	else if (!strcmp(e, "log"))
		*mode = 2;
	else {
		*mode = 0;
		return swerve_error_set(SWERVE_EINVAL,
		                        "SWERVE_GEMM_TUNE=%s: must be off, on or log", e);
	}
	return 0;
}

void swerve_gemm_tune_counts(int *shapes_seen, int *timed, int *changed)
{
	pthread_mutex_lock(&mu);
	*shapes_seen = n_shapes;
	*timed = n_timed;
	*changed = n_changed;
	pthread_mutex_unlock(&mu);
}

static int log2_align(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	int l = 0;
	while (l < 8 && !(a & ((uintptr_t)1 << l)))
		l++;
	return l;
}

static size_t type_size(cudaDataType_t t) /* C's: fp32 or bf16 */
{
	return t == CUDA_R_32F ? 4 : 2;
}

static cublasStatus_t default_gemm(cublasHandle_t h, const struct swerve_gemm *c, void *C)
{
	const float one = 1.0f;
	if (c->batch == 1)
		return cublasGemmEx(h, c->ta, c->tb, c->m, c->n, c->k, &one, c->A, c->ab, c->lda,
		                    c->B, c->ab, c->ldb, &c->beta, C, c->ct, c->ldc, c->cp,
		                    CUBLAS_GEMM_DEFAULT);
	return cublasGemmStridedBatchedEx(h, c->ta, c->tb, c->m, c->n, c->k, &one, c->A, c->ab,
	                                  c->lda, c->sa, c->B, c->ab, c->ldb, c->sb, &c->beta, C,
	                                  c->ct, c->ldc, c->sc, c->batch, c->cp,
	                                  CUBLAS_GEMM_DEFAULT);
}

static cublasStatus_t lt_gemm(cublasLtHandle_t lt, const struct tshape *s,
                              const cublasLtMatmulAlgo_t *algo, const struct swerve_gemm *c,
                              void *C, void *ws, size_t ws_bytes, cudaStream_t st)
{
	const float one = 1.0f;
	return cublasLtMatmul(lt, s->d.op, &one, c->A, s->d.la, c->B, s->d.lb, &c->beta,
	                      c->Cin ? c->Cin : C, s->d.lc, C, s->d.lc, algo, ws, ws_bytes, st);
}

void swerve_lt_desc_free(struct swerve_lt_desc *s)
{
	if (s->la)
		cublasLtMatrixLayoutDestroy(s->la);
	if (s->lb)
		cublasLtMatrixLayoutDestroy(s->lb);
	if (s->lc)
		cublasLtMatrixLayoutDestroy(s->lc);
	if (s->op)
		cublasLtMatmulDescDestroy(s->op);
	s->la = s->lb = s->lc = NULL;
	s->op = NULL;
}

int swerve_lt_desc_make(struct swerve_lt_desc *s, const struct swerve_gemm *c)
{
	int32_t ta = c->ta, tb = c->tb, bc = c->batch, sms = c->sm_target;
	memset(s, 0, sizeof(*s));
	int ok = cublasLtMatmulDescCreate(&s->op, c->cp, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
	         (sms <= 0 ||
	          cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &sms,
	                                         sizeof(sms)) == CUBLAS_STATUS_SUCCESS) &&
	         cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta,
	                                        sizeof(ta)) == CUBLAS_STATUS_SUCCESS &&
	         cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb,
	                                        sizeof(tb)) == CUBLAS_STATUS_SUCCESS &&
	         cublasLtMatrixLayoutCreate(&s->la, c->ab, c->ta == CUBLAS_OP_N ? c->m : c->k,
	                                    c->ta == CUBLAS_OP_N ? c->k : c->m,
	                                    c->lda) == CUBLAS_STATUS_SUCCESS &&
	         cublasLtMatrixLayoutCreate(&s->lb, c->ab, c->tb == CUBLAS_OP_N ? c->k : c->n,
	                                    c->tb == CUBLAS_OP_N ? c->n : c->k,
	                                    c->ldb) == CUBLAS_STATUS_SUCCESS &&
	         cublasLtMatrixLayoutCreate(&s->lc, c->ct, c->m, c->n, c->ldc) ==
	                 CUBLAS_STATUS_SUCCESS;
	if (ok && c->batch > 1) {
		cublasLtMatrixLayout_t ls[3] = {s->la, s->lb, s->lc};
		int64_t str[3] = {c->sa, c->sb, c->sc};
		for (int i = 0; i < 3 && ok; i++)
			ok = cublasLtMatrixLayoutSetAttribute(
			             ls[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof(bc)) ==
			             CUBLAS_STATUS_SUCCESS &&
			     cublasLtMatrixLayoutSetAttribute(
			             ls[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &str[i],
			             sizeof(str[i])) == CUBLAS_STATUS_SUCCESS;
	}
	if (!ok)
		swerve_lt_desc_free(s);
	return ok;
}

/* cuBLASLt's heuristic list for s (the key's alignment and workspace) */
static int lt_candidates(cublasLtHandle_t lt, const struct tshape *s,
                         cublasLtMatmulHeuristicResult_t *res)
{
	cublasLtMatmulPreference_t pref = NULL;
	uint64_t wsb = s->key.ws;
	uint32_t al[3];
	int n = 0;
	for (int i = 0; i < 3; i++)
		al[i] = 1u << s->key.align[i];
	if (cublasLtMatmulPreferenceCreate(&pref) != CUBLAS_STATUS_SUCCESS)
		return 0;
	int ok =
	        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
	                                             &wsb, sizeof(wsb)) == CUBLAS_STATUS_SUCCESS &&
	        cublasLtMatmulPreferenceSetAttribute(
	                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof(al[0])) ==
	                CUBLAS_STATUS_SUCCESS &&
	        cublasLtMatmulPreferenceSetAttribute(
	                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof(al[1])) ==
	                CUBLAS_STATUS_SUCCESS &&
	        cublasLtMatmulPreferenceSetAttribute(
	                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof(al[2])) ==
	                CUBLAS_STATUS_SUCCESS &&
	        cublasLtMatmulPreferenceSetAttribute(
	                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof(al[2])) ==
	                CUBLAS_STATUS_SUCCESS;
	if (!ok || cublasLtMatmulAlgoGetHeuristic(lt, s->d.op, s->d.la, s->d.lb, s->d.lc, s->d.lc,
	                                          pref, CANDS, res, &n) != CUBLAS_STATUS_SUCCESS)
		n = 0;
	cublasLtMatmulPreferenceDestroy(pref);
	return n;
}

static unsigned algo_attr(const cublasLtMatmulAlgo_t *a, cublasLtMatmulAlgoConfigAttributes_t at)
{
	uint32_t v = 0;
	size_t w = 0;
	if (cublasLtMatmulAlgoConfigGetAttribute(a, at, &v, sizeof(v), &w) != CUBLAS_STATUS_SUCCESS)
		return 0;
	return v;
}

/* times the candidates for s (see the top of the file); s->lt / s->algo
 * set to the choice. A CUDA failure (scratch memory, events) keeps the
 * default and says so on stderr: tuning never fails a GEMM. */
static void tune(struct tshape *s, cublasHandle_t h, cublasLtHandle_t lt, cudaStream_t st,
                 const struct swerve_gemm *c, void *ws, size_t ws_bytes, int mode)
{
	cublasLtMatmulHeuristicResult_t res[CANDS];
	float best[CANDS + 1];
	int ok[CANDS + 1], nc = 0;
	void *scratch = NULL;
	cudaEvent_t e0 = NULL, e1 = NULL;
	const char *why = NULL;
	size_t elems = (size_t)c->ldc * (size_t)(c->n - 1) + (size_t)c->m;
	if (c->batch > 1)
		elems += (size_t)c->sc * (size_t)(c->batch - 1);
	size_t bytes = elems * type_size(c->ct);
	s->lt = 0;
	if (lt && swerve_lt_desc_make(&s->d, c))
		nc = lt_candidates(lt, s, res);
	const int sync_failed = cudaDeviceSynchronize() != cudaSuccess;
	if (sync_failed)
		why = "device synchronise";
	else if (cudaMalloc(&scratch, bytes) != cudaSuccess)
		why = "scratch memory";
	else if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess)
		why = "events";
	else if (cudaMemcpyAsync(scratch, c->C, bytes, cudaMemcpyDeviceToDevice, st) != cudaSuccess)
		why = "scratch copy";
	for (int i = 0; !why && i <= nc; i++) { /* 0: the default, i: Lt candidate i - 1 */
		best[i] = 1e30f;
		ok[i] = i ? lt_gemm(lt, s, &res[i - 1].algo, c, scratch, ws, ws_bytes, st) ==
		                        CUBLAS_STATUS_SUCCESS
		        : c->Cin ? 0 /* cuBLAS has no separate C input */
		                 : default_gemm(h, c, scratch) == CUBLAS_STATUS_SUCCESS;
	}
	if (!why && cudaStreamSynchronize(st) != cudaSuccess)
		why = "warm-up";
	for (int r = 0; !why && r < ROUNDS; r++)
		for (int i = 0; !why && i <= nc; i++) {
			float ms = 0;
			if (!ok[i])
				continue;
			cudaEventRecord(e0, st);
			for (int j = 0; j < REPS; j++)
				ok[i] = ok[i] &&
				        (i ? lt_gemm(lt, s, &res[i - 1].algo, c, scratch, ws,
				                     ws_bytes, st)
				           : default_gemm(h, c, scratch)) == CUBLAS_STATUS_SUCCESS;
			cudaEventRecord(e1, st);
			if (cudaEventSynchronize(e1) != cudaSuccess ||
			    cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
				why = "timing";
			else if (ok[i] && ms / REPS < best[i])
				best[i] = ms / REPS;
		}
	int pick = 0;
	if (!why && (c->sm_target > 0 || c->Cin)) { /* the default cannot be held to fewer
		                                     * SMs, nor read a separate C */
		for (int i = 1; i <= nc; i++)
			if (ok[i] && (!pick || best[i] < best[pick]))
				pick = i;
	} else if (!why && ok[0]) {
		for (int i = 1; i <= nc; i++)
			if (ok[i] && best[i] < best[pick])
				pick = i;
		if (best[pick] >= 0.97f * best[0])
			pick = 0;
	}
	if (pick) {
		s->lt = 1;
		s->algo = res[pick - 1].algo;
	} else if (c->Cin && nc > 0) { /* timing failed: the heuristic's first choice */
		s->lt = 1;
		s->algo = res[0].algo;
	}
	/* a failure of tuning's own (scratch, events, a refused candidate) is
	 * reported below, not left for the caller's next check; a failed
	 * synchronisation is the step's and stays for its caller */
	if (!sync_failed)
		cudaGetLastError();
	if (why || mode > 1) {
		char what[160];
		snprintf(what, sizeof(what), "%c%c %dx%dx%d batch %d (A/B %s, C %s, beta %g)",
		         c->ta == CUBLAS_OP_N ? 'N' : 'T', c->tb == CUBLAS_OP_N ? 'N' : 'T', c->m,
		         c->n, c->k, c->batch, c->ab == CUDA_R_16BF ? "bf16" : "fp32",
		         c->ct == CUDA_R_16BF ? "bf16" : "fp32", c->beta);
		if (c->Cin)
			snprintf(what + strlen(what), sizeof(what) - strlen(what), ", C in apart");
		if (why)
			fprintf(stderr,
			        "gemm tune: %s: not timed (%s failed): cuBLAS's default kept\n",
			        what, why);
		else if (pick && c->Cin)
			fprintf(stderr,
			        "gemm tune: %s: cuBLASLt candidate %d of %d %.1f us (tile %u, "
			        "stages %u, split-k %u, swizzle %u)\n",
			        what, pick - 1, nc, best[pick] * 1e3,
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_STAGES_ID),
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING));
		else if (pick)
			fprintf(stderr,
			        "gemm tune: %s: default %.1f us, cuBLASLt candidate %d of %d %.1f "
			        "us "
			        "(tile %u, stages %u, split-k %u, swizzle %u): %.1f%%\n",
			        what, best[0] * 1e3, pick - 1, nc, best[pick] * 1e3,
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_STAGES_ID),
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
			        algo_attr(&s->algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
			        100.0 * (best[pick] - best[0]) / best[0]);
		else {
			float b = 1e30f;
			for (int i = 1; i <= nc; i++)
				if (ok[i] && best[i] < b)
					b = best[i];
			fprintf(stderr,
			        "gemm tune: %s: default %.1f us kept (best of %d cuBLASLt "
			        "candidates "
			        "%.1f us)\n",
			        what, best[0] * 1e3, nc, nc ? b * 1e3 : 0.0f);
		}
	}
	if (e0)
		cudaEventDestroy(e0);
	if (e1)
		cudaEventDestroy(e1);
	if (scratch)
		cudaFree(scratch);
	if (!s->lt)
		swerve_lt_desc_free(&s->d);
}

/* a timed shape that k may take its choice from: the same call but for m,
 * n and k, each within a factor of 2 (the token count of a packed batch
 * changes every RL step; timing each would cost more than it saves) */
static int sibling_of(const struct tkey *k)
{
	for (int i = 0; i < n_shapes; i++) {
		const struct tkey *o = &shapes[i].key;
		int ok = shapes[i].timed && o->dev == k->dev && o->ta == k->ta && o->tb == k->tb &&
		         o->batch == k->batch && o->ab == k->ab && o->ct == k->ct &&
		         o->cp == k->cp && o->beta0 == k->beta0 && o->ws == k->ws &&
		         o->sms == k->sms && o->cin == k->cin && !o->untimed && !k->untimed &&
		         !memcmp(o->align, k->align, sizeof(o->align));
		const int a[3] = {o->m, o->n, o->k}, b[3] = {k->m, k->n, k->k};
		for (int d = 0; d < 3 && ok; d++)
			ok = a[d] <= 2 * b[d] && b[d] <= 2 * a[d];
		if (ok)
			return i;
	}
	return -1;
}

/* round 23: s (a call with Cin) untimed: cuBLASLt's heuristic's first
 * choice, where it offers one (else s->lt stays 0 and the call is refused).
 * Host work only: allowed during a capture. */
static void heuristic_first(struct tshape *s, cublasLtHandle_t lt, const struct swerve_gemm *c)
{
	cublasLtMatmulHeuristicResult_t res[CANDS];
	s->lt = 0;
	if (!lt || (!s->d.op && !swerve_lt_desc_make(&s->d, c)))
		return;
	if (lt_candidates(lt, s, res) > 0) {
		s->lt = 1;
		s->algo = res[0].algo;
	} else
		swerve_lt_desc_free(&s->d);
}

/* s takes the choice of timed shape sib, where cuBLASLt accepts that
 * algorithm for s's shape and workspace (cublasLtMatmulAlgoCheck); else
 * the default. Host work only: allowed during a capture. */
static void adopt(struct tshape *s, const struct tshape *sib, cublasLtHandle_t lt,
                  const struct swerve_gemm *c, int mode)
{
	cublasLtMatmulHeuristicResult_t r;
	s->lt = 0;
	if (sib->lt && lt && swerve_lt_desc_make(&s->d, c)) {
		memset(&r, 0, sizeof(r));
		if (cublasLtMatmulAlgoCheck(lt, s->d.op, s->d.la, s->d.lb, s->d.lc, s->d.lc,
		                            &sib->algo, &r) == CUBLAS_STATUS_SUCCESS &&
		    r.workspaceSize <= s->key.ws) {
			s->lt = 1;
			s->algo = sib->algo;
		} else
			swerve_lt_desc_free(&s->d);
	}
	if (!s->lt && c->Cin)
		heuristic_first(s, lt, c);
	if (mode > 1)
		fprintf(stderr, "gemm tune: %dx%dx%d: %s of timed %dx%dx%d, not timed\n", c->m,
		        c->n, c->k,
		        s->lt     ? "the cuBLASLt choice"
		        : sib->lt ? "the default (cuBLASLt refused the choice)"
		                  : "the default choice",
		        sib->key.m, sib->key.n, sib->key.k);
}

int swerve_gemm_run(cublasHandle_t h, int mode, void *ws, size_t ws_bytes,
                    const struct swerve_gemm *c)
{
	struct tkey key;
	cudaStream_t st = NULL;
	cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
	struct tshape *s = NULL;
	if (mode <= 0 && !c->Cin)
		return default_gemm(h, c, c->C);
	memset(&key, 0, sizeof(key));
	if (cudaGetDevice(&key.dev) != cudaSuccess ||
	    cublasGetStream(h, &st) != CUBLAS_STATUS_SUCCESS)
		return CUBLAS_STATUS_EXECUTION_FAILED;
	key.ta = c->ta;
	key.tb = c->tb;
	key.m = c->m;
	key.n = c->n;
	key.k = c->k;
	key.lda = c->lda;
	key.ldb = c->ldb;
	key.ldc = c->ldc;
	key.batch = c->batch;
	key.ab = c->ab;
	key.ct = c->ct;
	key.cp = c->cp;
	key.beta0 = c->beta == 0.0f;
	key.sms = c->sm_target;
	key.align[0] = log2_align(c->A);
	key.align[1] = log2_align(c->B);
	key.align[2] = log2_align(c->C);
	if (c->Cin && log2_align(c->Cin) < key.align[2])
		key.align[2] = log2_align(c->Cin);
	key.cin = c->Cin != NULL;
	key.untimed = mode <= 0;
	if (c->batch > 1) {
		key.sa = c->sa;
		key.sb = c->sb;
		key.sc = c->sc;
	}
	key.ws = ws ? ws_bytes : 0;
	pthread_mutex_lock(&mu);
	if (last_hit >= 0 && !memcmp(&shapes[last_hit].key, &key, sizeof(key)))
		s = &shapes[last_hit];
	for (int i = 0; !s && i < n_shapes; i++)
		if (!memcmp(&shapes[i].key, &key, sizeof(key))) {
			s = &shapes[i];
			last_hit = i;
		}
	if (!s && (shapes || (shapes = (struct tshape *)calloc(MAX_SHAPES, sizeof(*shapes)))) &&
	    n_shapes < MAX_SHAPES && key.dev >= 0 && key.dev < MAX_DEV) {
		cublasLtHandle_t lt = lt_handle[key.dev];
		if (!lt && cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS)
			lt_handle[key.dev] = lt;
		s = &shapes[n_shapes];
		memset(s, 0, sizeof(*s));
		s->key = key;
		int sib = mode > 0 ? sibling_of(&key) : -1;
		if (cudaStreamIsCapturing(st, &cs) != cudaSuccess)
			cs = cudaStreamCaptureStatusInvalidated;
		if (sib >= 0) {
			adopt(s, &shapes[sib], lt_handle[key.dev], c, mode);
		} else if (mode > 0 && cs == cudaStreamCaptureStatusNone) {
			tune(s, h, lt_handle[key.dev], st, c, ws, key.ws, mode);
			s->timed = 1;
			n_timed++;
		} else if (c->Cin) { /* untimed (off, or in a capture): Lt's first choice */
			heuristic_first(s, lt_handle[key.dev], c);
		} /* else (in a capture): the default */
		n_changed += s->lt;
		last_hit = n_shapes++;
	}
	int use_lt = s && s->lt;
	cublasLtMatmulAlgo_t algo;
	struct tshape copy;
	if (use_lt) {
		algo = s->algo;
		copy = *s;
	}
	pthread_mutex_unlock(&mu);
	if (use_lt) {
		cublasStatus_t r =
		        lt_gemm(lt_handle[key.dev], &copy, &algo, c, c->C, ws, key.ws, st);
		if (r == CUBLAS_STATUS_SUCCESS || c->Cin)
			return r;
	}
	if (c->Cin) /* no cuBLASLt algorithm, and cuBLAS has no separate C input */
		return CUBLAS_STATUS_NOT_SUPPORTED;
	return default_gemm(h, c, c->C);
}
