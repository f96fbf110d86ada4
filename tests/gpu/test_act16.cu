/* test_act16.cu - round 16 (issue 10): the bf16-storage variants of
 * POLICY_GPU_ACT16 against the default fp32 kernels on the same values.
 * Every input a variant reads in bf16 is drawn bf16-representable and given
 * to the fp32 kernel as the same floats, so the arithmetic inside is the
 * same and each output must match exactly: the bf16 outputs equal the fp32
 * kernel's rounded to nearest even, the fp32 outputs are the same bits
 * (sums the kernels add atomically, the RMSNorm weight gradient: within
 * 1e-5). Passes: the residual add + RMSNorm (after the attention, after the
 * MoE with its combine, the embedding's), the RMSNorm backward, the route
 * forward (v4) and backward with the slot sum, the combine backward, and
 * the two expert products whose epilogues store the slots (wsb2's down and
 * up dX). Fresh random inputs every run (the seed is printed); rows not a
 * multiple of a block. Prints "N passed, N failed, N skipped". */
#include "policy/gpu_comb.h"
#include "policy/gpu_ew.h"
#include "policy/gpu_moe.h"
#include "policy/gpu_moe_ws.h"
#include "policy/gpu_route.h"
#include "tests/gpu/gpu_check.h"

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "sandbox/error.h"
}

#define SW(x) CHECK((x) == 0, "%s", swerve_error_last())

static int have_gpu(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/* device buffers, freed at the end of a test */
static void *bufs[256];
static int nbufs;
static void *dalloc(size_t bytes)
{
	void *p = NULL;
	if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess)
		return NULL;
	cudaMemset(p, 0xff, bytes); /* poisoned: NaN in fp32 and bf16 */
	bufs[nbufs++] = p;
	return p;
}
static void dfree(void)
{
	while (nbufs)
		cudaFree(bufs[--nbufs]);
}
template <typename T> static T *up(const T *h, size_t n)
{
	T *d = (T *)dalloc(n * sizeof(T));
	if (d)
		cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice);
	return d;
}
template <typename T> static T *down(const T *d, size_t n)
{
	T *h = (T *)malloc(n * sizeof(T));
	cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost);
	return h;
}

/* n bf16-representable normals (scale s), as bf16 and as floats */
static void draw(uint16_t *h, float *f, size_t n, double s)
{
	for (size_t i = 0; i < n; i++) {
		h[i] = gpu_f2bf((float)(s * gpu_nrand()));
		f[i] = gpu_bf2f(h[i]);
	}
}
static void drawf(float *f, size_t n, double s)
{
	for (size_t i = 0; i < n; i++)
		f[i] = (float)(s * gpu_nrand());
}

/* a bf16 output against the fp32 kernel's rounded: mismatches, the worst */
static int cmp_b16(const char *what, const uint16_t *b, const float *f, size_t n)
{
	size_t bad = 0, at = 0;
	for (size_t i = 0; i < n; i++)
		if (b[i] != gpu_f2bf(f[i]) && !bad++)
			at = i;
	printf("  %-30s %zu of %zu elements differ from the fp32 kernel's, rounded%s", what, bad, n,
	       bad ? "" : "\n");
	if (bad)
		printf(" (first at %zu: 0x%04x vs %g)\n", at, b[at], f[at]);
	return bad != 0;
}
/* fp32 outputs: bit for bit (tol 0) or within tol relative to the largest */
static int cmp_f32(const char *what, const float *a, const float *b, size_t n, double tol)
{
	double worst = 0, big = 0;
	size_t at = 0, nd = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		big = fmax(big, fabs((double)b[i]));
		nd += memcmp(&a[i], &b[i], 4) != 0;
		if (d > worst || d != d) {
			worst = d;
			at = i;
		}
	}
	int bad = tol == 0 ? nd != 0 : !(worst <= tol * big);
	printf("  %-30s %zu of %zu differ, worst |d| %.3e at %zu (%g vs %g)%s\n", what, nd, n,
	       worst, at, n ? a[at] : 0.0, n ? b[at] : 0.0, bad ? "  <-- FAIL" : "");
	return bad;
}

static int T = 333; /* round 18: 301 too (a 45-token last block of 64) */
static const int E = 8, K = 2;
static const float EPS = 1e-6f;

/* the residual add + RMSNorm: after the attention (a + b, y fp32 + yb, or
 * y bf16 alone), after the MoE (a + the combine of bf16 slots), the
 * embedding's (rows of emb); bf16 stream (x16) or fp32 stream, bf16 slots */
static int ew_case(int D, int mode, int x16)
{
	size_t n = (size_t)T * D, nr = n * K;
	uint16_t *ah = (uint16_t *)malloc(n * 2), *yph = (uint16_t *)malloc(nr * 2);
	float *af = (float *)malloc(n * 4), *bf = (float *)malloc(n * 4);
	float *ypf = (float *)malloc(nr * 4), *gf = (float *)malloc(nr * 4);
	float *wf = (float *)malloc(D * 4), *embf = (float *)malloc((size_t)50 * D * 4);
	uint16_t *embh = (uint16_t *)malloc((size_t)50 * D * 2);
	int *tok = (int *)malloc(T * 4), bad = 0;
	draw(ah, af, n, 3.0);
	drawf(bf, n, 1.0);
	draw(yph, ypf, nr, 1.0);
	for (size_t i = 0; i < nr; i++)
		gf[i] = (float)gpu_urand();
	drawf(wf, D, 1.0);
	draw(embh, embf, (size_t)50 * D, 2.0);
	for (int t = 0; t < T; t++)
		tok[t] = (int)(gpu_urand() * 50);
	float *a32 = up(af, n), *b32 = up(bf, n), *yp32 = up(ypf, nr), *g = up(gf, nr);
	float *w = up(wf, (size_t)D), *emb = up(embf, (size_t)50 * D);
	uint16_t *a16 = up(ah, n), *yp16 = up(yph, nr);
	int *tk = up(tok, (size_t)T);
	float *o32 = (float *)dalloc(n * 4), *y32 = (float *)dalloc(n * 4);
	float *r32 = (float *)dalloc(T * 4), *r16 = (float *)dalloc(T * 4);
	uint16_t *yb32 = (uint16_t *)dalloc(n * 2), *o16 = (uint16_t *)dalloc(n * 2);
	uint16_t *y16 = (uint16_t *)dalloc(n * 2), *yb16 = (uint16_t *)dalloc(n * 2);
	float *y16f = (float *)dalloc(n * 4);
	CHECK(a32 && o32 && y16f, "cudaMalloc");
	const float *A32 = mode == 2 ? NULL : a32;
	const void *A16 = mode == 2 ? NULL : (x16 ? (const void *)a16 : (const void *)a32);
	const float *B = mode == 0 ? b32 : NULL;
	const char *name = mode == 0 ? "after attention" : mode == 1 ? "after MoE" : "embedding";
	/* the fp32 kernel on the same values: y fp32 + yb bf16 */
	SW(policy_ew_add_rms(o32, y32, 0, yb32, r32, A32, emb, tk, B, mode == 1 ? yp32 : NULL,
	                     mode == 1 ? g : NULL, K, w, T, D, EPS));
	/* the variant: y bf16 (as resid's attention add writes xp), y fp32 + yb */
	SW(policy_ew_add_rms16(x16 ? (void *)o16 : (void *)y16f, x16, y16, 1, NULL, r16, A16, emb,
	                       tk, B, mode == 1 ? (const void *)yp16 : NULL, 1,
	                       mode == 1 ? g : NULL, K, w, T, D, EPS));
	CK(cudaDeviceSynchronize());
	float *ho32 = down(o32, n), *hy32 = down(y32, n), *hr32 = down(r32, (size_t)T);
	float *hr16 = down(r16, (size_t)T), *hf16 = down(y16f, n);
	uint16_t *ho16 = down(o16, n), *hy16 = down(y16, n), *hyb32 = down(yb32, n);
	printf(" %s, D %d, %s stream:\n", name, D, x16 ? "bf16" : "fp32");
	if (x16) {
		/* the stream's value: the fp32 sum rounded; the norm then sees the
		 * rounded value (rstd, y from it: compared with the host's) */
		bad |= cmp_b16("x (the stream's value)", ho16, ho32, n);
		double worst = 0, wr = 0;
		for (int t = 0; t < T; t++) {
			double ss = 0;
			for (int c = 0; c < D; c++) {
				double v = gpu_bf2f(ho16[(size_t)t * D + c]);
				ss += v * v;
			}
			double r = 1 / sqrt(ss / D + EPS);
			wr = fmax(wr, fabs(hr16[t] - r) / r);
			for (int c = 0; c < D; c++) {
				double y = gpu_bf2f(ho16[(size_t)t * D + c]) * r * wf[c];
				double d = fabs(gpu_bf2f(hy16[(size_t)t * D + c]) - y);
				worst = fmax(worst, d / (fabs(y) + 1e-3));
			}
		}
		printf("  %-30s rstd rel %.2e, y rel %.2e (bf16: 3.9e-3) vs the host's\n",
		       "norm of the rounded value", wr, worst);
		bad |= !(wr < 1e-5 && worst < 8e-3);
	} else {
		bad |= cmp_f32("x (fp32 stream)", hf16, ho32, n, 0);
		bad |= cmp_f32("rstd", hr16, hr32, (size_t)T, 0);
		bad |= cmp_b16("y (bf16)", hy16, hy32, n);
		(void)hyb32;
	}
	free(ah), free(yph), free(af), free(bf), free(ypf), free(gf), free(wf), free(embf);
	free(embh), free(tok), free(ho32), free(hy32), free(hr32), free(hr16), free(hf16);
	free(ho16), free(hy16), free(hyb32);
	dfree();
	CHECK(!bad, "%s: the bf16 variant differs (see above)", name);
	return 0;
}

static int test_ew_attn_stream(void)
{
	return have_gpu() ? ew_case(128, 0, 1) || ew_case(768, 0, 1) : GPU_SKIP;
}
static int test_ew_moe_slots(void)
{
	return have_gpu() ? ew_case(128, 1, 0) || ew_case(768, 1, 0) : GPU_SKIP;
}
static int test_ew_moe_stream(void)
{
	return have_gpu() ? ew_case(128, 1, 1) || ew_case(768, 1, 1) : GPU_SKIP;
}
static int test_ew_embed_stream(void)
{
	return have_gpu() ? ew_case(128, 2, 1) || ew_case(768, 2, 1) : GPU_SKIP;
}

/* the RMSNorm backward with x in bf16 vs the fp32 kernel on the same x */
static int rms_bwd_case(int D)
{
	size_t n = (size_t)T * D;
	uint16_t *xh = (uint16_t *)malloc(n * 2);
	float *xf = (float *)malloc(n * 4), *dyf = (float *)malloc(n * 4);
	float *dxf = (float *)malloc(n * 4), *wf = (float *)malloc(D * 4);
	float *rf = (float *)malloc(T * 4);
	int bad = 0;
	draw(xh, xf, n, 2.0);
	drawf(dyf, n, 1.0);
	drawf(dxf, n, 1.0);
	drawf(wf, D, 1.0);
	for (int t = 0; t < T; t++)
		rf[t] = (float)(0.3 + gpu_urand());
	float *x32 = up(xf, n), *dy = up(dyf, n), *w = up(wf, (size_t)D), *r = up(rf, (size_t)T);
	float *dx0 = up(dxf, n), *dx1 = up(dxf, n);
	uint16_t *x16 = up(xh, n), *xb0 = (uint16_t *)dalloc(n * 2),
	         *xb1 = (uint16_t *)dalloc(n * 2);
	float *dw0 = (float *)dalloc(D * 4), *dw1 = (float *)dalloc(D * 4);
	CHECK(dx1 && dw1, "cudaMalloc");
	CK(cudaMemset(dw0, 0, D * 4));
	CK(cudaMemset(dw1, 0, D * 4));
	SW(policy_ew_rms_bwd(dx0, xb0, 1, dw0, dy, x32, w, r, T, D));
	SW(policy_ew_rms_bwd16(dx1, xb1, 1, dw1, dy, x16, w, r, T, D));
	CK(cudaDeviceSynchronize());
	float *h0 = down(dx0, n), *h1 = down(dx1, n), *w0 = down(dw0, (size_t)D),
	      *w1 = down(dw1, (size_t)D);
	uint16_t *b0 = down(xb0, n), *b1 = down(xb1, n);
	printf(" RMSNorm backward, D %d, x bf16:\n", D);
	bad |= cmp_f32("dx (+=)", h1, h0, n, 0);
	bad |= memcmp(b0, b1, n * 2) != 0;
	printf("  %-30s %s\n", "dx in bf16", memcmp(b0, b1, n * 2) ? "differs  <-- FAIL" : "same");
	bad |= cmp_f32("dw (atomics)", w1, w0, (size_t)D, 1e-5);
	free(xh), free(xf), free(dyf), free(dxf), free(wf), free(rf), free(h0), free(h1);
	free(w0), free(w1), free(b0), free(b1);
	dfree();
	CHECK(!bad, "rms bwd: the bf16 variant differs (see above)");
	return 0;
}
static int test_rms_bwd_stream(void)
{
	return have_gpu() ? rms_bwd_case(128) || rms_bwd_case(768) : GPU_SKIP;
}

/* grad16_case's and ew20_case's host inputs for rows x D (K slots a row):
 * x, the old dx and the slot rows yp in bf16 with their values in fp32
 * (xf, dxf, ypf), dy, w, the slots' gates and 1/rms in fp32, rowh for a
 * permutation of the slots (not filled) */
struct g16_in {
	uint16_t *xh, *dxh, *yph;
	float *xf, *dyf, *dxf, *wf, *ypf, *gf, *rf;
	int *rowh;
};
static int g16_in_make(struct g16_in *h, int rows, int D)
{
	size_t n = (size_t)rows * D, nr = n * K;
	h->xh = (uint16_t *)malloc(n * 2), h->dxh = (uint16_t *)malloc(n * 2);
	h->yph = (uint16_t *)malloc(nr * 2);
	h->xf = (float *)malloc(n * 4), h->dyf = (float *)malloc(n * 4);
	h->dxf = (float *)malloc(n * 4), h->wf = (float *)malloc(D * 4);
	h->ypf = (float *)malloc(nr * 4), h->gf = (float *)malloc(nr * 4);
	h->rf = (float *)malloc(rows * 4);
	h->rowh = (int *)malloc(nr / D * 4);
	if (!h->xh || !h->dxh || !h->yph || !h->xf || !h->dyf || !h->dxf || !h->wf || !h->ypf ||
	    !h->gf || !h->rf || !h->rowh)
		return 1;
	draw(h->xh, h->xf, n, 2.0);
	drawf(h->dyf, n, 1.0);
	draw(h->dxh, h->dxf, n, 1.0);
	draw(h->yph, h->ypf, nr, 1.0);
	drawf(h->wf, D, 1.0);
	drawf(h->gf, nr / D, 0.5);
	for (int t = 0; t < rows; t++)
		h->rf[t] = (float)(0.3 + gpu_urand());
	return 0;
}
static void g16_in_free(struct g16_in *h)
{
	free(h->xh), free(h->dxh), free(h->yph), free(h->xf), free(h->dyf), free(h->dxf);
	free(h->wf), free(h->ypf), free(h->gf), free(h->rf), free(h->rowh);
}

/* round 19 (POLICY_GPU_ACT16=all): the residual gradient in bf16. The
 * RMSNorm backward with dx bf16 (acc 0 and 1; x bf16) vs the x-bf16 kernel
 * with fp32 dx on the same values: dx the fp32 kernel's rounded, its fp32
 * copy the stored value, dw within atomics order; the combine backward with
 * dy bf16 vs dy fp32 (the same values; D 132: the unstaged form) and the
 * embedding's backward (distinct tokens: no atomics order) bit for bit */
static int grad16_case(int D)
{
	size_t n = (size_t)T * D, nr = n * K;
	struct g16_in in;
	int *tokh = (int *)malloc(T * 4), bad = 0;
	const int V = T + 17;
	CHECK(!g16_in_make(&in, T, D) && tokh, "out of memory");
	uint16_t *xh = in.xh, *dxh = in.dxh, *yph = in.yph;
	float *dyf = in.dyf, *dxf = in.dxf, *wf = in.wf, *gf = in.gf, *rf = in.rf;
	int *rowh = in.rowh;
	for (size_t i = 0; i < nr / D; i++) /* a permutation of the rows */
		rowh[i] = (int)(nr / D - 1 - i);
	for (int t = 0; t < T; t++) /* distinct tokens */
		tokh[t] = V - 1 - t;
	float *dy = up(dyf, n), *w = up(wf, (size_t)D), *r = up(rf, (size_t)T);
	uint16_t *x16 = up(xh, n);
	printf(" the residual gradient in bf16, D %d:\n", D);
	for (int acc = 0; acc < 2; acc++) {
		float *dx0 = up(dxf, n), *dx1 = (float *)dalloc(n * 4);
		uint16_t *dx16 = up(dxh, n);
		float *dw0 = (float *)dalloc(D * 4), *dw1 = (float *)dalloc(D * 4);
		CHECK(dw1, "cudaMalloc");
		CK(cudaMemset(dw0, 0, D * 4));
		CK(cudaMemset(dw1, 0, D * 4));
		SW(policy_ew_rms_bwd16(dx0, NULL, acc, dw0, dy, x16, w, r, T, D));
		SW(policy_ew_rms_bwd16g(dx16, dx1, acc, dw1, dy, x16, w, r, T, D));
		CK(cudaDeviceSynchronize());
		float *h0 = down(dx0, n), *h1 = down(dx1, n), *w0 = down(dw0, (size_t)D),
		      *w1 = down(dw1, (size_t)D);
		uint16_t *b1 = down(dx16, n);
		size_t nc = 0;
		bad |= cmp_b16(acc ? "rms bwd: dx bf16 (+=)" : "rms bwd: dx bf16 (=)", b1, h0, n);
		for (size_t i = 0; i < n; i++) {
			float v = gpu_bf2f(b1[i]);
			nc += memcmp(&h1[i], &v, 4) != 0;
		}
		printf("  %-30s %zu of %zu differ from the bf16 value%s\n", "rms bwd: dx fp32 copy",
		       nc, n, nc ? "  <-- FAIL" : "");
		bad |= nc != 0;
		bad |= cmp_f32("rms bwd: dw (atomics)", w1, w0, (size_t)D, 1e-5);
		free(h0), free(h1), free(w0), free(w1), free(b1);
	}
	{ /* the final norm's form: no fp32 copy, no dw */
		uint16_t *dx16 = up(dxh, n);
		float *dx0 = up(dxf, n);
		SW(policy_ew_rms_bwd16(dx0, NULL, 1, NULL, dy, x16, w, r, T, D));
		SW(policy_ew_rms_bwd16g(dx16, NULL, 1, NULL, dy, x16, w, r, T, D));
		CK(cudaDeviceSynchronize());
		float *h0 = down(dx0, n);
		uint16_t *b1 = down(dx16, n);
		bad |= cmp_b16("rms bwd: dx bf16, no copy/dw", b1, h0, n);
		free(h0), free(b1);
	}
	{ /* round 25 (POLICY_GPU_DN16): dy in bf16 vs fp32 dy of the same values
	   * (dx's, bf16-exact): dx and its fp32 copy bit for bit, dw within
	   * the atomics' order; both accumulation forms */
		float *dyv = up(dxf, n);
		uint16_t *dy16 = up(dxh, n);
		for (int acc = 0; acc < 2; acc++) {
			uint16_t *o0 = up(xh, n), *o1 = up(xh, n);
			float *c0 = (float *)dalloc(n * 4), *c1 = (float *)dalloc(n * 4);
			float *dw0 = (float *)dalloc(D * 4), *dw1 = (float *)dalloc(D * 4);
			CHECK(dw1, "cudaMalloc");
			CK(cudaMemset(dw0, 0, D * 4));
			CK(cudaMemset(dw1, 0, D * 4));
			SW(policy_ew_rms_bwd16g(o0, c0, acc, dw0, dyv, x16, w, r, T, D));
			SW(policy_ew_rms_bwd16gy(o1, c1, acc, dw1, dy16, 1, x16, w, r, T, D));
			CK(cudaDeviceSynchronize());
			uint16_t *a0 = down(o0, n), *a1 = down(o1, n);
			float *f0 = down(c0, n), *f1 = down(c1, n), *w0 = down(dw0, (size_t)D),
			      *w1 = down(dw1, (size_t)D);
			int dd = memcmp(a0, a1, n * 2) != 0 || memcmp(f0, f1, n * 4) != 0;
			printf("  %-30s %s\n",
			       acc ? "rms bwd, dy bf16: dx (+=)" : "rms bwd, dy bf16: dx (=)",
			       dd ? "differs  <-- FAIL" : "same");
			bad |= dd;
			bad |= cmp_f32("rms bwd, dy bf16: dw", w1, w0, (size_t)D, 1e-5);
			free(a0), free(a1), free(f0), free(f1), free(w0), free(w1);
		}
	}
	{ /* the combine backward: dy bf16 vs fp32 (dy = dx's values) */
		float *dyv = up(dxf, n), *gate = up(gf, nr / D);
		uint16_t *dy16 = up(dxh, n), *yp = up(yph, nr);
		int *rowof = up(rowh, nr / D);
		uint16_t *dyp0 = (uint16_t *)dalloc(nr * 2), *dyp1 = (uint16_t *)dalloc(nr * 2);
		float *dg0 = (float *)dalloc(nr / D * 4), *dg1 = (float *)dalloc(nr / D * 4);
		CHECK(dg1, "cudaMalloc");
		SW(policy_moe_combine_bwd2_b16(dyp0, dg0, dyv, yp, gate, rowof, T, K, D));
		SW(policy_moe_combine_bwd2_b16g(dyp1, dg1, dy16, yp, gate, rowof, T, K, D));
		CK(cudaDeviceSynchronize());
		uint16_t *y0 = down(dyp0, nr), *y1 = down(dyp1, nr);
		float *a0 = down(dg0, nr / D), *a1 = down(dg1, nr / D);
		int yd = memcmp(y0, y1, nr * 2) != 0;
		printf("  %-30s %s\n", "combine bwd, dy bf16: dyp",
		       yd ? "differs  <-- FAIL" : "same");
		bad |= yd;
		bad |= cmp_f32("combine bwd, dy bf16: dgate", a1, a0, nr / D, 0);
		/* K = 1: the first T rows of yp and gate, rows of T */
		for (int t = 0; t < T; t++)
			rowh[t] = T - 1 - t;
		int *rowof1 = up(rowh, (size_t)T);
		SW(policy_moe_combine_bwd2_b16(dyp0, dg0, dyv, yp, gate, rowof1, T, 1, D));
		SW(policy_moe_combine_bwd2_b16g(dyp1, dg1, dy16, yp, gate, rowof1, T, 1, D));
		CK(cudaDeviceSynchronize());
		uint16_t *z0 = down(dyp0, n), *z1 = down(dyp1, n);
		float *c0 = down(dg0, (size_t)T), *c1 = down(dg1, (size_t)T);
		yd = memcmp(z0, z1, n * 2) != 0;
		printf("  %-30s %s\n", "combine bwd K 1: dyp", yd ? "differs  <-- FAIL" : "same");
		bad |= yd;
		bad |= cmp_f32("combine bwd K 1: dgate", c1, c0, (size_t)T, 0);
		free(y0), free(y1), free(a0), free(a1), free(z0), free(z1), free(c0), free(c1);
	}
	{ /* the embedding's backward */
		float *dx0 = up(dxf, n);
		uint16_t *dx16 = up(dxh, n);
		int *tok = up(tokh, (size_t)T);
		float *e0 = (float *)dalloc((size_t)V * D * 4),
		      *e1 = (float *)dalloc((size_t)V * D * 4);
		CHECK(e1, "cudaMalloc");
		CK(cudaMemset(e0, 0, (size_t)V * D * 4));
		CK(cudaMemset(e1, 0, (size_t)V * D * 4));
		SW(policy_ew_embed_bwd(e0, dx0, tok, T, D));
		SW(policy_ew_embed_bwd16(e1, dx16, tok, T, D));
		CK(cudaDeviceSynchronize());
		float *h0 = down(e0, (size_t)V * D), *h1 = down(e1, (size_t)V * D);
		bad |= cmp_f32("embed bwd, dx bf16", h1, h0, (size_t)V * D, 0);
		free(h0), free(h1);
	}
	g16_in_free(&in);
	free(tokh);
	dfree();
	CHECK(!bad, "the bf16 residual gradient's passes differ (see above)");
	return 0;
}
static int test_grad16(void)
{
	return have_gpu() ? grad16_case(128) || grad16_case(132) || grad16_case(768) : GPU_SKIP;
}

/* round 20 (POLICY_GPU_EW20): the pipelined RMSNorm backward (rms) and the
 * warp-per-token combine backward (comb) against round 19's kernels (off)
 * on the same inputs, Tn rows (large enough that a warp takes several rows
 * through its stages, wrapping around them): dx bf16, its fp32 copy, dyp
 * and dgate bit for bit, dw within 1e-5 (its sums' order differs) */
static int ew20_case(int Tn, int D)
{
	size_t n = (size_t)Tn * D, nr = n * K;
	struct g16_in in;
	int bad = 0;
	CHECK(!g16_in_make(&in, Tn, D), "out of memory");
	uint16_t *xh = in.xh, *dxh = in.dxh, *yph = in.yph;
	float *dyf = in.dyf, *wf = in.wf, *gf = in.gf, *rf = in.rf;
	int *rowh = in.rowh;
	float *dy = up(dyf, n), *w = up(wf, (size_t)D), *r = up(rf, (size_t)Tn);
	uint16_t *x16 = up(xh, n);
	printf(" POLICY_GPU_EW20 off -> rms / comb, T %d, D %d:\n", Tn, D);
	/* acc 1 with the fp32 copy and dw (the softmax layer's ffn norm), acc 1
	 * with dw (the other norms), acc 0 with dw (the final norm), acc 1
	 * with neither */
	static const int forms[4][3] = {{1, 1, 1}, {1, 0, 1}, {0, 0, 1}, {1, 0, 0}};
	for (int f = 0; f < 4; f++) {
		int acc = forms[f][0], cp = forms[f][1], hw = forms[f][2];
		uint16_t *d0 = up(dxh, n), *d1 = up(dxh, n);
		float *c0 = cp ? (float *)dalloc(n * 4) : NULL,
		      *c1 = cp ? (float *)dalloc(n * 4) : NULL;
		float *dw0 = (float *)dalloc(D * 4), *dw1 = (float *)dalloc(D * 4);
		char what[64];
		CHECK(dw1, "cudaMalloc");
		CK(cudaMemset(dw0, 0, D * 4));
		CK(cudaMemset(dw1, 0, D * 4));
		setenv("POLICY_GPU_EW20", "off", 1);
		SW(policy_ew_rms_bwd16g(d0, c0, acc, hw ? dw0 : NULL, dy, x16, w, r, Tn, D));
		setenv("POLICY_GPU_EW20", f & 1 ? "rms" : "all", 1);
		SW(policy_ew_rms_bwd16g(d1, c1, acc, hw ? dw1 : NULL, dy, x16, w, r, Tn, D));
		unsetenv("POLICY_GPU_EW20");
		CK(cudaDeviceSynchronize());
		uint16_t *b0 = down(d0, n), *b1 = down(d1, n);
		size_t nd = 0, at = 0;
		for (size_t i = 0; i < n; i++)
			if (b0[i] != b1[i] && !nd++)
				at = i;
		snprintf(what, sizeof(what), "rms bwd acc %d%s%s: dx", acc, cp ? " +copy" : "",
		         hw ? " +dw" : "");
		printf("  %-30s %zu of %zu differ%s", what, nd, n, nd ? "" : "\n");
		if (nd)
			printf(" (first at %zu: 0x%04x vs 0x%04x)  <-- FAIL\n", at, b1[at], b0[at]);
		bad |= nd != 0;
		if (cp) {
			float *h0 = down(c0, n), *h1 = down(c1, n);
			bad |= cmp_f32("rms bwd: the fp32 copy", h1, h0, n, 0);
			free(h0), free(h1);
		}
		if (hw) {
			float *w0 = down(dw0, (size_t)D), *w1 = down(dw1, (size_t)D);
			bad |= cmp_f32("rms bwd: dw (order)", w1, w0, (size_t)D, 1e-5);
			free(w0), free(w1);
		}
		free(b0), free(b1);
	}
	for (int k = 1; k <= K; k++) { /* the combine backward, K 1 and 2 */
		size_t nk = n * k;
		float *gate = up(gf, nr / D);
		uint16_t *dy16 = up(dxh, n), *yp = up(yph, nr);
		int *rowof;
		for (size_t i = 0; i < nk / D; i++) /* a shuffled permutation of T K rows */
			rowh[i] = (int)i;
		for (size_t i = nk / D - 1; i > 0; i--) {
			size_t j = (size_t)(gpu_urand() * (double)(i + 1));
			int v = rowh[i];
			j = j > i ? i : j;
			rowh[i] = rowh[j], rowh[j] = v;
		}
		rowof = up(rowh, nk / D);
		uint16_t *dyp0 = (uint16_t *)dalloc(nk * 2), *dyp1 = (uint16_t *)dalloc(nk * 2);
		float *dg0 = (float *)dalloc(nk / D * 4), *dg1 = (float *)dalloc(nk / D * 4);
		CHECK(dg1, "cudaMalloc");
		setenv("POLICY_GPU_EW20", "off", 1);
		SW(policy_moe_combine_bwd2_b16g(dyp0, dg0, dy16, yp, gate, rowof, Tn, k, D));
		setenv("POLICY_GPU_EW20", k == 2 ? "comb" : "all", 1);
		SW(policy_moe_combine_bwd2_b16g(dyp1, dg1, dy16, yp, gate, rowof, Tn, k, D));
		unsetenv("POLICY_GPU_EW20");
		CK(cudaDeviceSynchronize());
		uint16_t *y0 = down(dyp0, nk), *y1 = down(dyp1, nk);
		float *a0 = down(dg0, nk / D), *a1 = down(dg1, nk / D);
		size_t nd = 0;
		for (size_t i = 0; i < nk; i++)
			nd += y0[i] != y1[i];
		printf("  combine bwd K %d: dyp %9s %zu of %zu differ%s\n", k, "", nd, nk,
		       nd ? "  <-- FAIL" : "");
		bad |= nd != 0;
		bad |= cmp_f32(k == 2 ? "combine bwd K 2: dgate" : "combine bwd K 1: dgate", a1, a0,
		               nk / D, 0);
		free(y0), free(y1), free(a0), free(a1);
	}
	/* the forward's add + norm: a bf16 + b fp32 (y bf16 and fp32), a bf16 +
	 * the combine of K 2 and 1 bf16 slots (y bf16) */
	for (int f = 0; f < 4; f++) {
		int kf = f < 2 ? 0 : f == 2 ? 2 : 1, yb16 = f != 1;
		uint16_t *a = up(xh, n), *yp = up(yph, nr), *o0 = (uint16_t *)dalloc(n * 2),
		         *o1 = (uint16_t *)dalloc(n * 2);
		float *bb = up(dyf, n), *gate = up(gf, nr / D);
		void *y0 = dalloc(n * 4), *y1 = dalloc(n * 4);
		float *r0 = (float *)dalloc(Tn * 4), *r1 = (float *)dalloc(Tn * 4);
		char what[64];
		CHECK(r1, "cudaMalloc");
		setenv("POLICY_GPU_EW20", "off", 1);
		SW(policy_ew_add_rms16(o0, 1, y0, yb16, NULL, r0, a, NULL, NULL, kf ? NULL : bb,
		                       kf ? yp : NULL, 1, kf ? gate : NULL, kf, w, Tn, D, EPS));
		setenv("POLICY_GPU_EW20", f & 1 ? "fwd" : "all", 1);
		SW(policy_ew_add_rms16(o1, 1, y1, yb16, NULL, r1, a, NULL, NULL, kf ? NULL : bb,
		                       kf ? yp : NULL, 1, kf ? gate : NULL, kf, w, Tn, D, EPS));
		unsetenv("POLICY_GPU_EW20");
		CK(cudaDeviceSynchronize());
		size_t ny = n * (yb16 ? 2 : 4);
		unsigned char *h0 = down((unsigned char *)o0, n * 2),
		              *h1 = down((unsigned char *)o1, n * 2);
		unsigned char *z0 = down((unsigned char *)y0, ny),
		              *z1 = down((unsigned char *)y1, ny);
		float *q0 = down(r0, (size_t)Tn), *q1 = down(r1, (size_t)Tn);
		int d = memcmp(h0, h1, n * 2) != 0 || memcmp(z0, z1, ny) != 0;
		snprintf(what, sizeof(what), "add+norm %s%s: out, y",
		         kf ? (kf == 2 ? "+ 2 slots" : "+ 1 slot") : "+ b",
		         yb16 ? "" : " (y fp32)");
		printf("  %-30s %s\n", what, d ? "differ  <-- FAIL" : "same");
		bad |= d;
		bad |= cmp_f32("add+norm: rstd", q1, q0, (size_t)Tn, 0);
		free(h0), free(h1), free(z0), free(z1), free(q0), free(q1);
	}
	g16_in_free(&in);
	dfree();
	CHECK(!bad, "POLICY_GPU_EW20's passes differ from round 19's (see above)");
	return 0;
}
static int test_ew20(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	return ew20_case(333, 768) || ew20_case(8192, 768) || ew20_case(5003, 128) ||
	       ew20_case(3001, 132) || ew20_case(2999, 1024);
}
/* a misspelt POLICY_GPU_EW20 is refused by each function it steers */
static int test_ew20_bad_switch(void)
{
	int a, b, c;
	setenv("POLICY_GPU_EW20", "v9", 1);
	a = policy_ew_rms_bwd16g(NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, 128);
	b = policy_moe_combine_bwd2_b16g(NULL, NULL, NULL, NULL, NULL, NULL, 0, K, 128);
	c = policy_ew_add_rms16(NULL, 1, NULL, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, NULL,
	                        K, NULL, 0, 128, EPS);
	unsetenv("POLICY_GPU_EW20");
	printf("  ew20=v9: %d %d %d (%s)\n", a, b, c, swerve_error_last());
	CHECK(a == SWERVE_EINVAL && b == SWERVE_EINVAL && c == SWERVE_EINVAL,
	      "POLICY_GPU_EW20=v9 accepted");
	CHECK(strstr(swerve_error_last(), "POLICY_GPU_EW20=v9") != NULL, "message: %s",
	      swerve_error_last());
	return 0;
}

/* the routing: v4's forward on x bf16 vs fp32 on the same values, then the
 * backward with the slot sum (slots bf16; x bf16 or fp32) vs fp32; the
 * combine backward with yp bf16 vs fp32; the down / up dX products'
 * bf16 slot stores vs the fp32 ones, rounded */
static int route_case(int D, int F)
{
	size_t n = (size_t)T * D, nr = n * K, ns = policy_route_scratch_floats(T, E, D);
	uint16_t *xh = (uint16_t *)malloc(n * 2), *sh = (uint16_t *)malloc(nr * 2);
	float *xf = (float *)malloc(n * 4), *sf = (float *)malloc(nr * 4);
	float *wrf = (float *)malloc((size_t)E * D * 4), *dgf = (float *)malloc(nr * 4);
	float *dyf = (float *)malloc(n * 4);
	uint16_t *hhh = (uint16_t *)malloc((size_t)nr / D * F * 2 * 2);
	uint16_t *wh = (uint16_t *)malloc((size_t)E * F * D * 2 * 2);
	float *tmp = (float *)malloc((size_t)E * F * D * 2 * 4);
	int bad = 0, R = T * K;
	draw(xh, xf, n, 1.0);
	draw(sh, sf, nr, 1.0);
	drawf(wrf, (size_t)E * D, 0.1);
	drawf(dgf, nr, 1.0);
	drawf(dyf, n, 1.0);
	draw(hhh, tmp, (size_t)R * F * 2, 1.0);
	draw(wh, tmp, (size_t)E * F * D * 2, 0.05);
	float *x32 = up(xf, n), *s32 = up(sf, nr), *wr = up(wrf, (size_t)E * D);
	float *dg = up(dgf, nr), *dy = up(dyf, n);
	uint16_t *x16 = up(xh, n), *s16 = up(sh, nr), *hh = up(hhh, (size_t)R * F * 2);
	uint16_t *w1 = up(wh, (size_t)E * F * D),
	         *w3 = up(wh + (size_t)E * F * D, (size_t)E * F * D);
	float *prob[2], *gate[2], *ws[2], *dn[3], *auxc = (float *)dalloc(E * 4);
	int *sel[2], *rowof[2], *perm = (int *)dalloc(R * 4), *offs = (int *)dalloc((E + 2) * 4);
	double *aux = (double *)dalloc(8);
	for (int i = 0; i < 2; i++) {
		prob[i] = (float *)dalloc((size_t)T * E * 4);
		gate[i] = (float *)dalloc(nr / D * 4);
		ws[i] = (float *)dalloc(ns * 4);
		sel[i] = (int *)dalloc(R * 4);
		rowof[i] = (int *)dalloc(R * 4);
	}
	for (int i = 0; i < 3; i++)
		dn[i] = (float *)dalloc(n * 4);
	CHECK(dn[2] && hh && w3, "cudaMalloc");
	printf(" routing, D %d:\n", D);
	SW(policy_route_fwd(prob[0], sel[0], gate[0], rowof[0], ws[0], x32, wr, T, E, K, D, 3));
	SW(policy_route_fwd_b16(prob[1], sel[1], gate[1], rowof[1], ws[1], x16, wr, T, E, K, D));
	CK(cudaDeviceSynchronize());
	{
		float *p0 = down(prob[0], (size_t)T * E), *p1 = down(prob[1], (size_t)T * E);
		float *g0 = down(gate[0], (size_t)R), *g1 = down(gate[1], (size_t)R);
		int *s0 = down(sel[0], (size_t)R), *s1 = down(sel[1], (size_t)R);
		int *q0 = down(rowof[0], (size_t)R), *q1 = down(rowof[1], (size_t)R);
		bad |= cmp_f32("route fwd: prob", p1, p0, (size_t)T * E, 0);
		bad |= cmp_f32("route fwd: gate", g1, g0, (size_t)R, 0);
		int sd = memcmp(s0, s1, R * 4) || memcmp(q0, q1, R * 4);
		printf("  %-30s %s\n", "route fwd: sel, rowof", sd ? "differ  <-- FAIL" : "same");
		bad |= sd;
		free(p0), free(p1), free(g0), free(g1), free(s0), free(s1), free(q0), free(q1);
	}
	SW(policy_route_sort(perm, rowof[0], offs, auxc, aux, ws[0], sel[0], T, E, K, R, 1, 1, 0.01,
	                     3));
	/* the backward: fp32 slots and x; bf16 slots, fp32 x; bf16 both */
	float *part[3];
	for (int i = 0; i < 3; i++)
		part[i] = (float *)dalloc(ns * 4);
	SW(policy_route_bwd_slots(dn[0], part[0], s32, x32, wr, prob[0], sel[0], gate[0], dg, auxc,
	                          T, E, K, D));
	SW(policy_route_bwd_slots_b16(dn[1], part[1], s16, x32, 0, wr, prob[0], sel[0], gate[0], dg,
	                              auxc, T, E, K, D));
	SW(policy_route_bwd_slots_b16(dn[2], part[2], s16, x16, 1, wr, prob[0], sel[0], gate[0], dg,
	                              auxc, T, E, K, D));
	{ /* round 25 (POLICY_GPU_DN16): dn stored in bf16 = the fp32 kernel's dn
	   * rounded to nearest even, the router's dW parts bit for bit (bf16 x
	   * and fp32 x); where the staged kernel does not run, refused */
		const int staged = policy_route_bwd_norm_supported(E, K, D, s16, x16);
		uint16_t *dnb = (uint16_t *)dalloc(n * 2);
		float *pb = (float *)dalloc(ns * 4);
		CHECK(pb, "cudaMalloc");
		for (int xi = 0; xi < 2; xi++) {
			const void *xx = xi ? (const void *)x16 : (const void *)x32;
			int rc = policy_route_bwd_slots_b16o(dnb, 1, pb, s16, xx, xi, wr, prob[0],
			                                     sel[0], gate[0], dg, auxc, T, E, K, D);
			if (!staged) {
				CHECK(rc == SWERVE_EINVAL, "dn16 without the staged kernel: %d",
				      rc);
				printf("  %-30s refused (not staged here)\n", "route bwd, dn bf16");
				break;
			}
			SW(rc);
			CK(cudaDeviceSynchronize());
			float *d0 = down(dn[xi ? 2 : 1], n), *p0 = down(part[xi ? 2 : 1], ns),
			      *p1 = down(pb, ns);
			uint16_t *d1 = down(dnb, n);
			bad |= cmp_b16(xi ? "route bwd, dn bf16 (x bf16)"
			                  : "route bwd, dn bf16 (x fp32)",
			               d1, d0, n);
			int pd = memcmp(p0, p1, ns * 4) != 0;
			printf("  %-30s %s\n", "route bwd, dn bf16: dW parts",
			       pd ? "differ  <-- FAIL" : "same");
			bad |= pd;
			free(d0), free(p0), free(p1), free(d1);
		}
	}
	/* round 23 (POLICY_GPU_RT_NORM=fused): the route backward with the ffn
	 * norm's backward on each dn row in registers against the two passes
	 * (the bf16-x route backward above, then policy_ew_rms_bwd16g, acc 1):
	 * the router's dW parts bit for bit, the norm weight's gradient within
	 * 1e-5 of the largest (atomics, both), the bf16 residual gradient at most
	 * 1 ulp apart (the row sum is a block's there, a warp's here) */
	float *npart = (float *)dalloc(ns * 4), *dwn[2];
	uint16_t *dxn[2], *g0 = (uint16_t *)malloc(n * 2); /* the gradient's old value */
	int fused;
	{
		float *rs = (float *)malloc((size_t)T * 4), *wn = (float *)malloc((size_t)D * 4);
		float *gf = (float *)malloc(n * 4);
		for (int t = 0; t < T; t++)
			rs[t] = (float)(0.5 + gpu_urand());
		drawf(wn, D, 1.0);
		draw(g0, gf, n, 1.0);
		float *d_rs = up(rs, (size_t)T), *d_wn = up(wn, (size_t)D);
		for (int i = 0; i < 2; i++) {
			dxn[i] = up(g0, n);
			dwn[i] = (float *)dalloc((size_t)D * 4);
			CK(cudaMemset(dwn[i], 0, (size_t)D * 4));
		}
		/* it runs on the staged route backward (POLICY_GPU_RT16=new, the
		 * default, and rt18 / rt18_32); under RT16=old it is refused, and
		 * the callers run the two passes */
		const char *rt = getenv("POLICY_GPU_RT16");
		const int want = !(rt && !strcmp(rt, "old"));
		fused = policy_route_bwd_norm_supported(E, K, D, s16, x16);
		printf("  fused route + norm backward %s\n", fused ? "runs" : "not supported here");
		CHECK(fused == want, "policy_route_bwd_norm_supported: %d under POLICY_GPU_RT16=%s",
		      fused, rt ? rt : "(unset)");
		SW(policy_ew_rms_bwd16g(dxn[0], NULL, 1, dwn[0], dn[2], x16, d_wn, d_rs, T, D));
		const struct policy_route_nb nbv = {dxn[1], dwn[1], x16, d_wn, d_rs};
		if (fused)
			SW(policy_route_bwd_slots_b16n(npart, s16, x16, 1, wr, prob[0], sel[0],
			                               gate[0], dg, auxc, T, E, K, D, &nbv));
		else
			CHECK(policy_route_bwd_slots_b16n(npart, s16, x16, 1, wr, prob[0], sel[0],
			                                  gate[0], dg, auxc, T, E, K, D,
			                                  &nbv) == SWERVE_EINVAL,
			      "the fused backward ran where it is not supported");
		free(rs), free(wn), free(gf);
	}
	/* the combine backward */
	uint16_t *dyp0 = (uint16_t *)dalloc(nr * 2), *dyp1 = (uint16_t *)dalloc(nr * 2);
	float *dga0 = (float *)dalloc(nr / D * 4), *dga1 = (float *)dalloc(nr / D * 4);
	SW(policy_moe_combine_bwd2(dyp0, dga0, dy, s32, gate[0], rowof[0], T, K, D));
	SW(policy_moe_combine_bwd2_b16(dyp1, dga1, dy, s16, gate[0], rowof[0], T, K, D));
	CK(cudaDeviceSynchronize());
	{
		size_t np = (size_t)((T + 31) / 32) * E * D; /* the blocks' parts: at most */
		if (np > ns)
			np = ns;
		float *d0 = down(dn[0], n), *d1 = down(dn[1], n), *d2 = down(dn[2], n);
		float *q0 = down(part[0], np), *q1 = down(part[1], np), *q2 = down(part[2], np);
		bad |= cmp_f32("route bwd, slots bf16: dn", d1, d0, n, 0);
		bad |= cmp_f32("route bwd, slots bf16: dW parts", q1, q0, np, 0);
		bad |= cmp_f32("route bwd, x bf16 too: dn", d2, d0, n, 0);
		bad |= cmp_f32("route bwd, x bf16 too: dW parts", q2, q0, np, 0);
		if (fused) { /* round 23: fused route + norm backward against the two passes */
			float *q3 = down(npart, np), *w0 = down(dwn[0], (size_t)D),
			      *w1 = down(dwn[1], (size_t)D);
			uint16_t *x0 = down(dxn[0], n), *x1 = down(dxn[1], n);
			bad |= cmp_f32("route+norm bwd: dW parts", q3, q2, np, 0);
			bad |= cmp_f32("route+norm bwd: norm dw", w1, w0, (size_t)D, 1e-5);
			/* within one bf16 ulp of the larger of the result and the
			 * old value it adds to (where the norm term nearly cancels
			 * the old value, the row sum's order moves the small sum by
			 * more than its own ulp) */
			size_t nd = 0, nf = 0, at = 0;
			for (size_t i = 0; i < n; i++) {
				const double a = gpu_bf2f(x1[i]), b = gpu_bf2f(x0[i]),
				             m = fmax(fabs(b), fabs((double)gpu_bf2f(g0[i])));
				nd += x1[i] != x0[i];
				if (fabs(a - b) > m * 0x1p-7 && !nf++)
					at = i;
			}
			printf("  %-30s %zu of %zu differ, %zu by more than 1 ulp of the larger of "
			       "the result and the old value%s\n",
			       "route+norm bwd: dx bf16", nd, n, nf, nf ? "  <-- FAIL" : "");
			if (nf)
				printf("    first at %zu: 0x%04x vs 0x%04x (old 0x%04x)\n", at,
				       x1[at], x0[at], g0[at]);
			bad |= nf != 0;
			free(q3), free(w0), free(w1), free(x0), free(x1);
		}
		uint16_t *y0 = down(dyp0, nr), *y1 = down(dyp1, nr);
		float *a0 = down(dga0, (size_t)R), *a1 = down(dga1, (size_t)R);
		int yd = memcmp(y0, y1, nr * 2) != 0;
		printf("  %-30s %s\n", "combine bwd: dyp", yd ? "differs  <-- FAIL" : "same");
		bad |= yd;
		bad |= cmp_f32("combine bwd: dgate", a1, a0, (size_t)R, 0);
		free(d0), free(d1), free(d2), free(q0), free(q1), free(q2), free(y0), free(y1);
		free(a0), free(a1);
	}
	/* the products: wsb2's down and up dX, fp32 vs bf16 slot stores */
	if (policy_moe_supported(D, F) && F % 64 == 0) {
		struct policy_moe_dims d = {};
		memset(&d, 0, sizeof(d));
		d.T = T, d.K = K, d.E = E, d.D = D, d.F = F, d.offs = offs, d.perm = perm;
		d.gathered = 1;
		float *yp0 = (float *)dalloc(nr * 4), *dx0 = (float *)dalloc(nr * 4);
		uint16_t *yp1 = (uint16_t *)dalloc(nr * 2), *dx1 = (uint16_t *)dalloc(nr * 2);
		CHECK(dx1, "cudaMalloc");
		SW(policy_moe_ws_down(&d, yp0, hh, w1, 0, NULL));
		SW(policy_moe_ws_down_b16(&d, yp1, hh, w1, 0, NULL));
		SW(policy_moe_ws_up_dx(&d, dx0, hh, w1, w3, 0, NULL));
		SW(policy_moe_ws_up_dx_b16(&d, dx1, hh, w1, w3, 0, NULL));
		CK(cudaDeviceSynchronize());
		float *h0 = down(yp0, nr), *g0 = down(dx0, nr);
		uint16_t *h1 = down(yp1, nr), *g1 = down(dx1, nr);
		bad |= cmp_b16("down product: yp", h1, h0, nr);
		bad |= cmp_b16("up dX product: dxp", g1, g0, nr);
		free(h0), free(g0), free(h1), free(g1);
	}
	free(xh), free(sh), free(xf), free(sf), free(wrf), free(dgf), free(dyf), free(hhh);
	free(wh), free(tmp), free(g0);
	dfree();
	CHECK(!bad, "routing / combine / products: a bf16 variant differs (see above)");
	return 0;
}
static int test_route_comb_products(void)
{
	return have_gpu() ? route_case(128, 128) || route_case(768, 1024) : GPU_SKIP;
}

/* round 17: the same cases on round 16's bf16 loads (POLICY_GPU_RT16=old;
 * the default, new, stages the rows by 16-byte cp.async); both must give
 * the fp32 kernels' bits */
static int test_route_comb_rt16_old(void)
{
	int r;
	if (!have_gpu())
		return GPU_SKIP;
	setenv("POLICY_GPU_RT16", "old", 1);
	printf(" POLICY_GPU_RT16=old\n");
	r = route_case(128, 128) || route_case(768, 1024);
	unsetenv("POLICY_GPU_RT16");
	return r;
}

/* round 18: the same cases on the opt-in round 18 kernels, rt18 (route fwd
 * 64 tokens a block, dyp stored by 16-byte pieces) and rt18_32 (32 tokens
 * a block), at T 333 and 301 (last blocks of 45 / 13 tokens: a part-filled
 * group after two full ones), and on the default (new) at T 301; all must
 * give the fp32 bits */
static int rt16_mode_case(const char *mode, int t)
{
	int r;
	if (!have_gpu())
		return GPU_SKIP;
	if (mode)
		setenv("POLICY_GPU_RT16", mode, 1);
	T = t;
	printf(" POLICY_GPU_RT16=%s, T %d\n", mode ? mode : "(default, new)", T);
	r = route_case(128, 128) || route_case(768, 1024);
	T = 333;
	unsetenv("POLICY_GPU_RT16");
	return r;
}
static int test_route_comb_rt18(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	return rt16_mode_case("rt18", 333) || rt16_mode_case("rt18", 301);
}
static int test_route_comb_rt18_32(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	return rt16_mode_case("rt18_32", 333) || rt16_mode_case("rt18_32", 301);
}
static int test_route_comb_new_t301(void)
{
	return rt16_mode_case(NULL, 301);
}

/* a misspelt POLICY_GPU_RT16 is refused by each function it steers */
static int test_rt16_bad_switch(void)
{
	int a, b, c;
	setenv("POLICY_GPU_RT16", "newer", 1);
	a = policy_route_fwd_b16(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, E, K, 128);
	b = policy_route_bwd_slots_b16(NULL, NULL, NULL, NULL, 1, NULL, NULL, NULL, NULL, NULL,
	                               NULL, 0, E, K, 128);
	c = policy_moe_combine_bwd2_b16(NULL, NULL, NULL, NULL, NULL, NULL, 0, K, 128);
	unsetenv("POLICY_GPU_RT16");
	printf("  rt16=newer: %d %d %d (%s)\n", a, b, c, swerve_error_last());
	CHECK(a == SWERVE_EINVAL && b == SWERVE_EINVAL && c == SWERVE_EINVAL,
	      "POLICY_GPU_RT16=newer accepted");
	CHECK(strstr(swerve_error_last(), "POLICY_GPU_RT16=newer") != NULL, "message: %s",
	      swerve_error_last());
	return 0;
}

int main(void)
{
	const struct gpu_test tests[] = {
	        {"act16: add + norm after the attention, bf16 stream", test_ew_attn_stream},
	        {"act16: add + norm + combine after the MoE, bf16 slots", test_ew_moe_slots},
	        {"act16: add + norm + combine after the MoE, bf16 stream and slots",
	         test_ew_moe_stream},
	        {"act16: embedding + first norm, bf16 stream", test_ew_embed_stream},
	        {"act16: RMSNorm backward, x bf16", test_rms_bwd_stream},
	        {"act16: route fwd / bwd, combine bwd, down / up dX stores in bf16",
	         test_route_comb_products},
	        {"rt17: the same on round 16's bf16 loads (POLICY_GPU_RT16=old)",
	         test_route_comb_rt16_old},
	        {"rt17: POLICY_GPU_RT16 misspelt is refused", test_rt16_bad_switch},
	        {"rt18: route fwd 64 tokens a block, dyp 16-byte stores (POLICY_GPU_RT16=rt18), "
	         "T 333 and 301",
	         test_route_comb_rt18},
	        {"rt18: route fwd 32 tokens a block (rt18_32), T 333 and 301",
	         test_route_comb_rt18_32},
	        {"rt18: the default (new) at T 301", test_route_comb_new_t301},
	        {"all19: RMSNorm bwd, combine bwd, embedding bwd with the residual gradient "
	         "in bf16, D 128, 132, 768",
	         test_grad16},
	        {"ew20: RMSNorm bwd pipelined, combine bwd a warp per token, add + norm fwd "
	         "pipelined (POLICY_GPU_EW20) vs round 19's, T 333 / 8192 / 5003 / 3001 / 2999, D "
	         "768 / 128 / 132 / 1024",
	         test_ew20},
	        {"ew20: POLICY_GPU_EW20 misspelt is refused", test_ew20_bad_switch},
	};
	gpu_rng_seed();
	return gpu_run_tests(tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
