/* test_policy_moe.cu - the policy's grouped MoE GEMMs (policy/gpu_moe.cu)
 * against a CPU reference in double, on unbalanced routings: random segment
 * sizes with empty experts, one expert taking every row, balanced, and the
 * benchmark's shape (D 768, F 1024, 8 experts, ~44% of the rows to one).
 * Each case runs on each kernel variant (mma.sync, wgmma 128 x 128, wgmma
 * 128 x 256; round 5's wgp: a k block's wgmma in flight across the
 * barrier; wgm: the same over mbarriers, loads two blocks ahead; ws2: two
 * producer warps and mbarriers; the cases' segments run from empty to 12 k
 * blocks, so the stage rings wrap; the weight gradients' split-K of wgp,
 * wgm and ws2 runs in the last case). Fresh random inputs each run; outputs poisoned
 * (NaN) before each launch (the weight gradients start from random values: they are accumulated).
 * Each stage's reference takes the GPU's bf16 inputs of that stage, so each
 * kernel is checked on its own; the worst element is printed. Round 7: each
 * case also gathers x into xg (row order, compared exactly) and runs up and
 * up dW (added and stored) from it (POLICY_GPU_MOE_GATHER=copy's path: A /
 * B contiguous, by TMA in wgt / wgtd) against the same references. Round
 * 8: "wgtd+tma" = wgtd with POLICY_GPU_MOE_EPI=tma (up's and down dX's
 * epilogues by stmatrix + TMA stores; the F % 64 == 0 cases take it, the
 * others run wg); a misspelt POLICY_GPU_MOE_EPI is refused. Round 9:
 * "wgtdp" (persistent CTAs, see variant_env), a misspelt
 * POLICY_GPU_MOE_CTAS refused.
 * argv: the variants to run, by name (every variant when none is named). */
extern "C" {
#include "sandbox/error.h"
}
#include "policy/gpu_moe.h"
#include "tests/gpu/gpu_check.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

static uint64_t rng;

static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}
static float nrand(void)
{
	return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()));
}
static uint16_t f2bf(float f)
{
	return gpu_f2bf(f);
}
static double bf(uint16_t h)
{
	return gpu_bf2f(h);
}
static double sigm(double x)
{
	return 1 / (1 + exp(-x));
}

#define CKC(x)                                                                                     \
	do {                                                                                       \
		cudaError_t e_ = (x);                                                              \
		CHECK(e_ == cudaSuccess, "%s", cudaGetErrorString(e_));                            \
	} while (0)
#define CKM(x) CHECK((x) == 0, "%s", swerve_error_last())

/* relative error of n values (norm of the difference over the norm of the
 * reference); NaN anywhere fails; prints the worst element */
static int compare(const char *what, const double *ref, const double *got, size_t n, double tol)
{
	double dn = 0, rn = 0, worst = 0;
	size_t wi = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs(got[i] - ref[i]);
		if (got[i] != got[i]) {
			printf("  %-6s element %zu not written (NaN)\n", what, i);
			return 1;
		}
		dn += d * d;
		rn += ref[i] * ref[i];
		if (d > worst) {
			worst = d;
			wi = i;
		}
	}
	double rel = sqrt(dn / (rn > 0 ? rn : 1));
	printf("  %-6s rel %.2e  worst |d| %.3e at %zu (ref %.5f got %.5f)\n", what, rel, worst, wi,
	       n ? ref[wi] : 0, n ? got[wi] : 0);
	return rel <= tol ? 0 : 1;
}

static void *dup_dev(const void *h, size_t bytes)
{
	void *d = NULL;
	if (cudaMalloc(&d, bytes + 16) != cudaSuccess)
		return NULL;
	cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
	return d;
}
static void *poisoned(size_t bytes)
{
	void *d = NULL;
	if (cudaMalloc(&d, bytes + 16) != cudaSuccess)
		return NULL;
	cudaMemset(d, 0xff, bytes);
	return d;
}

enum { ROUTE_RANDOM, ROUTE_ONE, ROUTE_BALANCED, ROUTE_SKEWED };

static int check_case1(int T, int K, int E, int D, int F, int route)
{
	int R = T * K, fail = 0;
	size_t wsz = (size_t)F * D;
	int *cnt = (int *)calloc(E, sizeof(int)), *offs = (int *)malloc((E + 1) * sizeof(int));
	int *perm = (int *)malloc(R * sizeof(int));
	uint16_t *x = (uint16_t *)malloc((size_t)T * D * 2), *w1 = (uint16_t *)malloc(E * wsz * 2);
	uint16_t *w3 = (uint16_t *)malloc(E * wsz * 2), *w2 = (uint16_t *)malloc(E * wsz * 2);
	float *gate = (float *)malloc(R * 4), *dy = (float *)malloc((size_t)T * D * 4);
	float *dw0 = (float *)malloc(3 * E * wsz * 4);
	/* segment sizes */
	if (route == ROUTE_ONE) {
		cnt[E / 2] = R;
	} else if (route == ROUTE_BALANCED) {
		for (int e = 0; e < E; e++)
			cnt[e] = R / E + (e < R % E);
	} else {
		double wgt[64], s = 0;
		int left = R;
		for (int e = 0; e < E; e++) {
			wgt[e] = route == ROUTE_SKEWED ? (e == 0 ? 0.44 * E : 0.08 * E) : urand();
			if (route == ROUTE_RANDOM && (e == 1 || e == E - 1))
				wgt[e] = 0; /* empty experts */
			s += wgt[e];
		}
		for (int e = 0; e < E; e++) {
			cnt[e] = (int)(R * wgt[e] / s);
			left -= cnt[e];
		}
		cnt[0] += left;
	}
	offs[0] = 0;
	for (int e = 0; e < E; e++)
		offs[e + 1] = offs[e] + cnt[e];
	for (int i = 0; i < R; i++)
		perm[i] = i;
	for (int i = R - 1; i > 0; i--) {
		int j = (int)(urand() * (i + 1)), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < (size_t)T * D; i++) {
		x[i] = f2bf(nrand());
		dy[i] = nrand();
	}
	for (size_t i = 0; i < E * wsz; i++) {
		w1[i] = f2bf(nrand() / sqrtf((float)D));
		w3[i] = f2bf(nrand() / sqrtf((float)D));
		w2[i] = f2bf(nrand() / sqrtf((float)F));
	}
	for (int i = 0; i < R; i++)
		gate[i] = (float)urand();
	for (size_t i = 0; i < 3 * E * wsz; i++)
		dw0[i] = nrand();

	/* device */
	struct policy_moe_dims dm = {};
	int *d_offs = (int *)dup_dev(offs, (E + 1) * 4), *d_perm = (int *)dup_dev(perm, R * 4);
	uint16_t *d_x = (uint16_t *)dup_dev(x, (size_t)T * D * 2);
	uint16_t *d_w1 = (uint16_t *)dup_dev(w1, E * wsz * 2);
	uint16_t *d_w3 = (uint16_t *)dup_dev(w3, E * wsz * 2);
	uint16_t *d_w2 = (uint16_t *)dup_dev(w2, E * wsz * 2);
	float *d_gate = (float *)dup_dev(gate, R * 4),
	      *d_dy = (float *)dup_dev(dy, (size_t)T * D * 4);
	float *d_dw1 = (float *)dup_dev(dw0, E * wsz * 4);
	float *d_dw3 = (float *)dup_dev(dw0 + E * wsz, E * wsz * 4);
	float *d_dw2 = (float *)dup_dev(dw0 + 2 * E * wsz, E * wsz * 4);
	uint16_t *d_h1 = (uint16_t *)poisoned((size_t)R * F * 2);
	uint16_t *d_h3 = (uint16_t *)poisoned((size_t)R * F * 2);
	uint16_t *d_hh = (uint16_t *)poisoned((size_t)R * F * 2);
	uint16_t *d_dyp = (uint16_t *)poisoned((size_t)R * D * 2);
	uint16_t *d_dh13 = (uint16_t *)poisoned((size_t)R * 2 * F * 2);
	float *d_yp = (float *)poisoned((size_t)R * D * 4),
	      *d_y = (float *)poisoned((size_t)T * D * 4);
	float *d_dgate = (float *)poisoned(R * 4), *d_dxp = (float *)poisoned((size_t)R * D * 4);
	float *d_dx = (float *)poisoned((size_t)T * D * 4);
	/* the weight gradients stored (beta 0) into poisoned buffers: every
	 * element written, zeros for experts without rows */
	float *d_sw1 = (float *)poisoned(E * wsz * 4), *d_sw3 = (float *)poisoned(E * wsz * 4);
	float *d_sw2 = (float *)poisoned(E * wsz * 4);
	CHECK(d_dx && d_dxp && d_dh13 && d_sw2, "cudaMalloc failed");
	dm.T = T;
	dm.K = K;
	dm.E = E;
	dm.D = D;
	dm.F = F;
	dm.offs = d_offs;
	dm.perm = d_perm;
	dm.gathered = 0;
	CKM(policy_moe_up(&dm, d_h1, d_h3, d_hh, d_x, d_w1, d_w3));
	CKM(policy_moe_down(&dm, d_yp, d_hh, d_w2));
	CKM(policy_moe_combine(d_y, d_yp, d_gate, T, K, D));
	CKM(policy_moe_combine_bwd(&dm, d_dyp, d_dgate, d_dy, d_yp, d_gate));
	CKM(policy_moe_down_dx(&dm, d_dh13, d_dyp, d_w2, d_h1, d_h3));
	CKM(policy_moe_down_dw(&dm, d_dw2, d_dyp, d_hh, 1));
	CKM(policy_moe_down_dw(&dm, d_sw2, d_dyp, d_hh, 0));
	CKM(policy_moe_up_dx(&dm, d_dxp, d_dh13, d_w1, d_w3));
	CKM(policy_moe_up_dw(&dm, d_dw1, d_dw3, d_dh13, d_x, 1));
	CKM(policy_moe_up_dw(&dm, d_sw1, d_sw3, d_dh13, d_x, 0));
	CKM(policy_moe_scatter(d_dx, d_dxp, T, K, D, 0));
	CKC(cudaDeviceSynchronize());
	/* round 7 (POLICY_GPU_MOE_GATHER=copy): x gathered once into xg (R, D) in
	 * row order; up and up dW read its rows (contiguous: by TMA in wgt /
	 * wgtd) into fresh poisoned outputs, dW from the same random start */
	uint16_t *d_xg = (uint16_t *)poisoned((size_t)R * D * 2);
	uint16_t *d_h1g = (uint16_t *)poisoned((size_t)R * F * 2);
	uint16_t *d_h3g = (uint16_t *)poisoned((size_t)R * F * 2);
	uint16_t *d_hhg = (uint16_t *)poisoned((size_t)R * F * 2);
	float *d_dw1g = (float *)dup_dev(dw0, E * wsz * 4);
	float *d_dw3g = (float *)dup_dev(dw0 + E * wsz, E * wsz * 4);
	float *d_sw1g = (float *)poisoned(E * wsz * 4), *d_sw3g = (float *)poisoned(E * wsz * 4);
	CHECK(d_xg && d_hhg && d_dw3g && d_sw3g, "cudaMalloc failed");
	CKM(policy_moe_gather(&dm, d_xg, d_x));
	dm.gathered = 1;
	CKM(policy_moe_up(&dm, d_h1g, d_h3g, d_hhg, d_xg, d_w1, d_w3));
	CKM(policy_moe_up_dw(&dm, d_dw1g, d_dw3g, d_dh13, d_xg, 1));
	CKM(policy_moe_up_dw(&dm, d_sw1g, d_sw3g, d_dh13, d_xg, 0));
	CKC(cudaDeviceSynchronize());

	/* back to the host */
	size_t nRF = (size_t)R * F, nRD = (size_t)R * D;
	uint16_t *h1 = (uint16_t *)malloc(nRF * 2), *h3 = (uint16_t *)malloc(nRF * 2);
	uint16_t *hh = (uint16_t *)malloc(nRF * 2), *dyp = (uint16_t *)malloc(nRD * 2);
	uint16_t *dh13 = (uint16_t *)malloc(2 * nRF * 2);
	float *yp = (float *)malloc(nRD * 4), *y = (float *)malloc((size_t)T * D * 4);
	float *dgate = (float *)malloc(R * 4), *dxp = (float *)malloc(nRD * 4);
	float *dx = (float *)malloc((size_t)T * D * 4), *dw = (float *)malloc(3 * E * wsz * 4);
	float *sw = (float *)malloc(3 * E * wsz * 4);
	uint16_t *xg = (uint16_t *)malloc(nRD * 2), *h1g = (uint16_t *)malloc(nRF * 2);
	uint16_t *h3g = (uint16_t *)malloc(nRF * 2), *hhg = (uint16_t *)malloc(nRF * 2);
	float *dwg = (float *)malloc(2 * E * wsz * 4), *swg = (float *)malloc(2 * E * wsz * 4);
	CKC(cudaMemcpy(xg, d_xg, nRD * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(h1g, d_h1g, nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(h3g, d_h3g, nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(hhg, d_hhg, nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dwg, d_dw1g, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dwg + E * wsz, d_dw3g, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(swg, d_sw1g, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(swg + E * wsz, d_sw3g, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(h1, d_h1, nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(h3, d_h3, nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(hh, d_hh, nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dyp, d_dyp, nRD * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dh13, d_dh13, 2 * nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(yp, d_yp, nRD * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(y, d_y, (size_t)T * D * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dgate, d_dgate, R * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dxp, d_dxp, nRD * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dx, d_dx, (size_t)T * D * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dw, d_dw1, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dw + E * wsz, d_dw3, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(dw + 2 * E * wsz, d_dw2, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(sw, d_sw1, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(sw + E * wsz, d_sw3, E * wsz * 4, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(sw + 2 * E * wsz, d_sw2, E * wsz * 4, cudaMemcpyDeviceToHost));

	/* references (double), each from the GPU's inputs of its stage */
	size_t nmax = 3 * E * wsz > 2 * nRF ? 3 * E * wsz : 2 * nRF;
	double *ref = (double *)malloc(nmax * 8), *got = (double *)malloc(nmax * 8);
	double *ref2 = (double *)malloc(nmax * 8), *got2 = (double *)malloc(nmax * 8);
	printf(" T %d K %d E %d D %d F %d, rows per expert:", T, K, E, D, F);
	for (int e = 0; e < E; e++)
		printf(" %d", cnt[e]);
	printf("\n");
	/* up: h1, h3 (and hh from the GPU's h1, h3) */
	for (int e = 0; e < E; e++)
		for (int r = offs[e]; r < offs[e + 1]; r++) {
			const uint16_t *xr = x + (size_t)(perm[r] / K) * D;
			for (int f = 0; f < F; f++) {
				double s1 = 0, s3 = 0;
				const uint16_t *a = w1 + e * wsz + (size_t)f * D,
				               *b = w3 + e * wsz + (size_t)f * D;
				for (int k = 0; k < D; k++) {
					s1 += bf(xr[k]) * bf(a[k]);
					s3 += bf(xr[k]) * bf(b[k]);
				}
				size_t o = (size_t)r * F + f;
				ref[o] = s1;
				ref2[o] = s3;
				got[o] = bf(h1[o]);
				got2[o] = bf(h3[o]);
			}
		}
	fail |= compare("h1", ref, got, nRF, 1e-2);
	fail |= compare("h3", ref2, got2, nRF, 1e-2);
	{ /* the gathered copy: exact; up from it against the same reference */
		size_t bad = 0;
		for (int r = 0; r < R; r++)
			bad += memcmp(xg + (size_t)r * D, x + (size_t)(perm[r] / K) * D,
			              (size_t)D * 2) != 0;
		printf("  xg     %zu of %d rows differ from x[perm / K]\n", bad, R);
		fail |= bad != 0;
		for (size_t o = 0; o < nRF; o++) {
			got[o] = bf(h1g[o]);
			got2[o] = bf(h3g[o]);
		}
		fail |= compare("h1 xg", ref, got, nRF, 1e-2);
		fail |= compare("h3 xg", ref2, got2, nRF, 1e-2);
		for (size_t o = 0; o < nRF; o++) {
			double a = bf(h1g[o]);
			ref[o] = a * sigm(a) * bf(h3g[o]);
			got[o] = bf(hhg[o]);
		}
		fail |= compare("hh xg", ref, got, nRF, 1e-2);
		printf("  up from xg bit-identical to the gather in the loads: %s\n",
		       !memcmp(h1g, h1, nRF * 2) && !memcmp(h3g, h3, nRF * 2) &&
		                       !memcmp(hhg, hh, nRF * 2)
		               ? "yes"
		               : "no");
	}
	for (size_t o = 0; o < nRF; o++) {
		double a = bf(h1[o]);
		ref[o] = a * sigm(a) * bf(h3[o]);
		got[o] = bf(hh[o]);
	}
	fail |= compare("hh", ref, got, nRF, 1e-2);
	/* down: yp in slot order; combine */
	for (int e = 0; e < E; e++)
		for (int r = offs[e]; r < offs[e + 1]; r++)
			for (int n = 0; n < D; n++) {
				double s = 0;
				const uint16_t *w = w2 + e * wsz + (size_t)n * F;
				for (int f = 0; f < F; f++)
					s += bf(hh[(size_t)r * F + f]) * bf(w[f]);
				ref[(size_t)perm[r] * D + n] = s;
				got[(size_t)perm[r] * D + n] = yp[(size_t)perm[r] * D + n];
			}
	fail |= compare("yp", ref, got, nRD, 1e-4);
	for (int t = 0; t < T; t++)
		for (int n = 0; n < D; n++) {
			double s = 0;
			for (int j = 0; j < K; j++)
				s += (double)gate[t * K + j] * yp[((size_t)t * K + j) * D + n];
			ref[(size_t)t * D + n] = s;
			got[(size_t)t * D + n] = y[(size_t)t * D + n];
		}
	fail |= compare("y", ref, got, (size_t)T * D, 1e-5);
	/* combine backward */
	for (int r = 0; r < R; r++) {
		int tj = perm[r], t = tj / K;
		double s = 0;
		for (int n = 0; n < D; n++) {
			ref[(size_t)r * D + n] = (double)gate[tj] * dy[(size_t)t * D + n];
			got[(size_t)r * D + n] = bf(dyp[(size_t)r * D + n]);
			s += (double)dy[(size_t)t * D + n] * yp[(size_t)tj * D + n];
		}
		ref2[tj] = s;
		got2[tj] = dgate[tj];
	}
	fail |= compare("dyp", ref, got, nRD, 1e-2);
	fail |= compare("dgate", ref2, got2, R, 1e-5);
	/* down dx + SwiGLU backward */
	for (int e = 0; e < E; e++)
		for (int r = offs[e]; r < offs[e + 1]; r++)
			for (int f = 0; f < F; f++) {
				double g = 0, a = bf(h1[(size_t)r * F + f]),
				       b = bf(h3[(size_t)r * F + f]);
				for (int n = 0; n < D; n++)
					g += bf(dyp[(size_t)r * D + n]) *
					     bf(w2[e * wsz + (size_t)n * F + f]);
				double s = sigm(a);
				size_t o = (size_t)r * 2 * F + f;
				ref[o] = g * b * s * (1 + a * (1 - s));
				ref[o + F] = g * a * s;
				got[o] = bf(dh13[o]);
				got[o + F] = bf(dh13[o + F]);
			}
	fail |= compare("dh13", ref, got, 2 * nRF, 1e-2);
	/* up dx (slot order) and the scatter */
	for (int e = 0; e < E; e++)
		for (int r = offs[e]; r < offs[e + 1]; r++)
			for (int n = 0; n < D; n++) {
				double s = 0;
				for (int f = 0; f < F; f++)
					s += bf(dh13[(size_t)r * 2 * F + f]) *
					             bf(w1[e * wsz + (size_t)f * D + n]) +
					     bf(dh13[(size_t)r * 2 * F + F + f]) *
					             bf(w3[e * wsz + (size_t)f * D + n]);
				ref[(size_t)perm[r] * D + n] = s;
				got[(size_t)perm[r] * D + n] = dxp[(size_t)perm[r] * D + n];
			}
	fail |= compare("dxp", ref, got, nRD, 1e-4);
	for (int t = 0; t < T; t++)
		for (int n = 0; n < D; n++) {
			double s = 0;
			for (int j = 0; j < K; j++)
				s += dxp[((size_t)t * K + j) * D + n];
			ref[(size_t)t * D + n] = s;
			got[(size_t)t * D + n] = dx[(size_t)t * D + n];
		}
	fail |= compare("dx", ref, got, (size_t)T * D, 1e-5);
	/* weight gradients, added to the random start (dw0) */
	for (size_t i = 0; i < 3 * E * wsz; i++)
		ref[i] = dw0[i];
	for (int e = 0; e < E; e++)
		for (int r = offs[e]; r < offs[e + 1]; r++) {
			const uint16_t *xr = x + (size_t)(perm[r] / K) * D;
			for (int f = 0; f < F; f++) {
				double g1 = bf(dh13[(size_t)r * 2 * F + f]),
				       g3 = bf(dh13[(size_t)r * 2 * F + F + f]);
				double *o1 = ref + e * wsz + (size_t)f * D, *o3 = o1 + E * wsz;
				for (int k = 0; k < D; k++) {
					o1[k] += g1 * bf(xr[k]);
					o3[k] += g3 * bf(xr[k]);
				}
			}
			for (int n = 0; n < D; n++) {
				double g = bf(dyp[(size_t)r * D + n]);
				double *o2 = ref + 2 * E * wsz + e * wsz + (size_t)n * F;
				for (int f = 0; f < F; f++)
					o2[f] += g * bf(hh[(size_t)r * F + f]);
			}
		}
	for (size_t i = 0; i < 3 * E * wsz; i++) {
		got[i] = dw[i];
		ref[i] -= dw0[i]; /* compare the increments */
		got[i] -= dw0[i];
	}
	fail |= compare("dW13", ref, got, 2 * E * wsz, 1e-4);
	fail |= compare("dW2", ref + 2 * E * wsz, got + 2 * E * wsz, E * wsz, 1e-4);
	for (size_t i = 0; i < 3 * E * wsz; i++)
		got[i] = sw[i];
	fail |= compare("dW13 stored", ref, got, 2 * E * wsz, 1e-4);
	fail |= compare("dW2 stored", ref + 2 * E * wsz, got + 2 * E * wsz, E * wsz, 1e-4);
	for (size_t i = 0; i < 2 * E * wsz; i++)
		got[i] = dwg[i] - dw0[i];
	fail |= compare("dW13 xg", ref, got, 2 * E * wsz, 1e-4);
	for (size_t i = 0; i < 2 * E * wsz; i++)
		got[i] = swg[i];
	fail |= compare("dW13 xg stored", ref, got, 2 * E * wsz, 1e-4);

	cudaFree(d_offs), cudaFree(d_perm), cudaFree(d_x), cudaFree(d_w1), cudaFree(d_w3);
	cudaFree(d_w2), cudaFree(d_gate), cudaFree(d_dy), cudaFree(d_dw1), cudaFree(d_dw3);
	cudaFree(d_dw2), cudaFree(d_h1), cudaFree(d_h3), cudaFree(d_hh), cudaFree(d_dyp);
	cudaFree(d_dh13), cudaFree(d_yp), cudaFree(d_y), cudaFree(d_dgate), cudaFree(d_dxp);
	cudaFree(d_dx), cudaFree(d_sw1), cudaFree(d_sw3), cudaFree(d_sw2), free(sw);
	cudaFree(d_xg), cudaFree(d_h1g), cudaFree(d_h3g), cudaFree(d_hhg), cudaFree(d_dw1g);
	cudaFree(d_dw3g), cudaFree(d_sw1g), cudaFree(d_sw3g), free(xg), free(h1g), free(h3g);
	free(hhg), free(dwg), free(swg);
	free(cnt), free(offs), free(perm), free(x), free(w1), free(w3), free(w2), free(gate);
	free(dy), free(dw0), free(h1), free(h3), free(hh), free(dyp), free(dh13), free(yp);
	free(y), free(dgate), free(dxp), free(dx), free(dw), free(ref), free(got), free(ref2);
	free(got2);
	return fail;
}

/* round 9: "wgtdp" (persistent CTAs for up from xg and down dX, with the
 * TMA epilogues) on the device's grid, and "wgtdp/c3" with at most 3 CTAs
 * (POLICY_GPU_MOE_CTAS=3), so every CTA walks many tiles: the stage
 * sequence and the mbarrier phases across tiles (the cases' k blocks a
 * tile, 1, 2, 4 and 12, give every rotation of the 3 stages); naming
 * "wgtdp" runs both. Round 10: "wsb" (policy/gpu_moe_ws.cu: up from xg in
 * a warp-specialised persistent 128 x 256-tile kernel, the rest wgtd+tma)
 * and "wsb/c3" (3 CTAs: each walks many tiles, the 4-stage ring and its
 * mbarrier phases across tiles); "wsb2" / "wsb2/c3": wsb with down and up dX
 * in that kernel too (fp32 slot-order epilogues; up dX where F % 64 == 0).
 * Round 11: "wsb3" / "wsb3/c3": wsb2 with down dX (the SwiGLU backward
 * epilogue), down dW and up dW from xg (added and stored; an expert's
 * partial last k block zeroed in shared memory) in that kernel too;
 * "wsb3/k1": the weight gradients' K split forced to one k block a piece
 * (POLICY_GPU_MOE_WSB_KCH=1: every piece added in split order).
 * Round 12: "wsb4" / "wsb4/c3": up from xg, down, up dX and down dX with
 * ping-pong consumers (64 x 256 tiles, each warpgroup its own; /c3: each
 * consumer walks many tiles, every other one of its CTA, the 5-stage ring's
 * phases continuing across both consumers' tiles); "wsb4/s4": the same with
 * 4 stages (POLICY_GPU_MOE_WSB_ST=4); "wsb4d": wsb2 with only down in the
 * ping-pong kernel. Round 13: "wsb5" / "wsb5/c3": wsb2 with down dX in
 * k_ws, the tile's h1 / h3 fetched by TMA into 3 ring slots after its k
 * blocks (/c3: each CTA walks many tiles, the ring's phases continuing
 * through the h1 / h3 slots); "wsb5/s3": a 3-stage ring, where the h1 /
 * h3 slots take every stage until the epilogue frees them. Round 14:
 * "wsb6" / "wsb6/c3" / "wsb6/s3": wsb2 with up (xg), down and up dX's
 * epilogues deferred under the next tile's main loop (/c3: many tiles a
 * CTA, so the chunks run between the next tile's k blocks, or after them in
 * the cases with fewer than 8; on the full grid mostly the last tile's flush
 * after the loop); "wsb6u": only up's; "wsb6r" (/c3, /s3): wsb6 with each
 * chunk after the previous k block's stage is released. Round 15:
 * "wsb2:fast" (/c3, /s3) = wsb2 with POLICY_GPU_MOE_WSB_SILU=fast (up's
 * epilogue with fewer MUFU ops and stmatrix instead of the quad
 * transposes), "wsb2:stsm" (stmatrix, wsb2's math: bit for bit wsb2's),
 * "wsb2:fastshfl" (the fast math, wsb2's shuffles), "wsb2:ftz" (wsb2's
 * epilogue with e^-x by ex2.approx.ftz: bit for bit; not yet run on a GPU);
 * with them the case "SiLU epilogue vs wsb2's" compares h1 / h3 (bit for
 * bit) and hh (at most 1 bf16 ulp; stsm, ftz: bit for bit) with the exact
 * epilogue's at the benchmark's shape. Round 16: "wsb3w" = wsb3's weight
 * gradients with wgtd's down dX (the default in rounds 16-26; 12 / 12 on an
 * H100, 2026-11-27). Also round 16: "wsb7" / "wsb7/c3" / "wsb7/s3":
 * wsb2 with up (xg) and down in the ping-pong kernel run by 2-CTA
 * clusters, the two CTAs on the 64-row halves of one 128-row tile sharing
 * its B block by TMA multicast (/c3: one cluster walks every tile, the
 * ring's phases and the cluster-scope releases across many tiles, and the
 * halves past an expert's end; /s3: a 3-stage ring); "wsb7d": only down
 * there, "wsb7u": only up; "wsb7dx": wsb7 with up dX there too (fails its
 * up dX checks on an H100: kept for the next attempt). Their up / down
 * passed every case on an H100 on 2026-11-27 (up dX in the clusters did
 * not); run only when named (2.2-2.4x slower than wsb2). With
 * POLICY_GPU_MOE_WSB7_ARRIVE=cluster in the environment they run round
 * 16's release form (cta, the plain remote arrive, is the default since
 * round 25: 19 of 19 with wsb7, /c3, /s3, d and u on an H100,
 * 2026-11-27). Round 19: "wsb8" /
 * "wsb8/c3" / "wsb8/s3": wsb3w with down dX as wsb5's (k_ws, h1 / h3 by TMA
 * into the ring) plus the tile's h1 / h3 prefetched into L2 before its k
 * blocks; "wsb8@next" the same one tile ahead ("NAME@P" sets
 * POLICY_GPU_MOE_WSB8_PF=P); "wsb8g": wsb3w with wgtd's down dX prefetching
 * its h1 / h3 tile into L2 at the first k block; "wsb8r" (/c3): wsb3w with
 * round 11's k_ws down dX (h1 / h3 into registers) plus the L2 prefetch;
 * "wsb8h": wsb3w with wgtd's down dX under L2 eviction priorities (W2
 * evict_last, h1 / h3 loads and dh13 stores evict_first); "wsb8k" (/c3):
 * wsb5's k_ws down dX under the same priorities. All of them passed every
 * case on an H100 (2026-11-27); run only when named (opt-in, none faster
 * than wsb3w's down dX by more than ~2%). Round 19b: "wsb9a" / "wsb9b" /
 * "wsb9p" / "wsb9c": wsb3w with down dX in k_mgx (wgtd's tile and stages, a
 * producer warp, stages released by mbarriers instead of a CTA barrier a k
 * block; a: one block's wgmma in flight, b: each block waited for, p: a
 * with dyp prefetched into L2 one ring ahead, c: a with dh13 packed by
 * cvt.rn.bf16x2), "wsb9d" (b with c's packing), "wsb9e" (d with the
 * row-tile walk's offs loaded at once); with them the cases "down dX bit
 * for bit vs wsb3w's" and "a misspelt POLICY_GPU_MOE_KERNEL is refused".
 * wsb9a / b / p / c: 15 / 15 each on an H100 (2026-11-27), dh13 bit for bit;
 * wsb9d / e not yet run on a GPU; all named-only (opt-in). Round 20:
 * "wsb10" / "wsb10b" (/c3: 3 persistent CTAs walk every tile): wsb3w with
 * down dX in k_mgy (persistent, a producer warp and two consumer
 * warpgroups taking tiles in turn, a tile's epilogue under the next tile's
 * k blocks; 10: one block's wgmma in flight, 10b: each waited for), with
 * the bit-for-bit case (plus F 192: a half column tile) and "wsb10x"
 * refused; named-only (opt-in). wsb10 / wsb10b: 16 / 16 each with /c3 on an
 * H100 (2026-11-27), dh13 bit for bit. "wsb10c" / "wsb10d": wsb10b /
 * wsb10 with a 5-stage ring and one h1 / h3 buffer shared by the two
 * consumers (not yet run on a GPU) */
#define NVARIANTS 71
static const char *const variant_env[NVARIANTS] = {
        "mma",           "wg",           "wg256",     "wgp",          "wgm",          "ws2",
        "wgt",           "wgtd",         "wgtd+tma",  "wgtdp",        "wgtdp/c3",     "wsb",
        "wsb/c3",        "wsb2",         "wsb2/c3",   "wsb3",         "wsb3/c3",      "wsb3/k1",
        "wsb4",          "wsb4/c3",      "wsb4/s4",   "wsb4d",        "wsb5",         "wsb5/c3",
        "wsb5/s3",       "wsb6",         "wsb6/c3",   "wsb6/s3",      "wsb6u",        "wsb6r",
        "wsb6r/c3",      "wsb6r/s3",     "wsb2:fast", "wsb2/c3:fast", "wsb2/s3:fast", "wsb2:stsm",
        "wsb2:fastshfl", "wsb2/c3:stsm", "wsb2:ftz",  "wsb3w",        "wsb7",         "wsb7/c3",
        "wsb7/s3",       "wsb7d",        "wsb7u",     "wsb7dx",       "wsb8",         "wsb8/c3",
        "wsb8/s3",       "wsb8@next",    "wsb8g",     "wsb8r",        "wsb8r/c3",     "wsb8h",
        "wsb8k",         "wsb8k/c3",     "wsb9a",     "wsb9b",        "wsb9p",        "wsb9c",
        "wsb9d",         "wsb9e",        "wsb10",     "wsb10/c3",     "wsb10b",       "wsb10b/c3",
        "wsb10c",        "wsb10c/c3",    "wsb10d",    "wsb10d/c3",    "wsb3w!red"};
/* POLICY_GPU_MOE_WSB_KCH as the run started ("NAME/kN" sets it for NAME) */
static const char *kch_env;
/* POLICY_GPU_MOE_WSB_ST as the run started ("NAME/sN" sets it for NAME) */
static const char *st_env;
static int variant; /* the POLICY_GPU_MOE_KERNEL of the tests below */

/* the variant's environment: "NAME+tma" = NAME with POLICY_GPU_MOE_EPI=tma
 * (the default since round 8), NAME alone with POLICY_GPU_MOE_EPI=smem */
static void variant_setenv(void)
{
	char k[32];
	snprintf(k, sizeof(k), "%s", variant_env[variant]);
	char *silu = strchr(k, ':');
	if (silu) { /* "NAME:S": POLICY_GPU_MOE_WSB_SILU=S (round 15) */
		*silu = 0;
		setenv("POLICY_GPU_MOE_WSB_SILU", silu + 1, 1);
	} else {
		unsetenv("POLICY_GPU_MOE_WSB_SILU");
	}
	char *add = strchr(k, '!');
	if (add) { /* "NAME!A": POLICY_GPU_MOE_DW_ADD=A (round 23) */
		*add = 0;
		setenv("POLICY_GPU_MOE_DW_ADD", add + 1, 1);
	} else {
		unsetenv("POLICY_GPU_MOE_DW_ADD");
	}
	char *pf = strchr(k, '@');
	if (pf) { /* "NAME@P": POLICY_GPU_MOE_WSB8_PF=P (round 19) */
		*pf = 0;
		setenv("POLICY_GPU_MOE_WSB8_PF", pf + 1, 1);
	} else {
		unsetenv("POLICY_GPU_MOE_WSB8_PF");
	}
	char *plus = strchr(k, '+'), *cap = strstr(k, "/c"), *kch = strstr(k, "/k"),
	     *st = strstr(k, "/s");
	unsetenv("POLICY_GPU_MOE_CTAS");
	if (st) { /* "NAME/sN": N stages in the ring */
		*st = 0;
		setenv("POLICY_GPU_MOE_WSB_ST", st + 2, 1);
	} else if (st_env) {
		setenv("POLICY_GPU_MOE_WSB_ST", st_env, 1);
	} else {
		unsetenv("POLICY_GPU_MOE_WSB_ST");
	}
	if (kch) { /* "NAME/kN": the weight gradients' K split, N k blocks a piece */
		*kch = 0;
		setenv("POLICY_GPU_MOE_WSB_KCH", kch + 2, 1);
	} else if (kch_env) {
		setenv("POLICY_GPU_MOE_WSB_KCH", kch_env, 1);
	} else {
		unsetenv("POLICY_GPU_MOE_WSB_KCH");
	}
	if (cap) { /* "NAME/cN": at most N persistent CTAs */
		*cap = 0;
		setenv("POLICY_GPU_MOE_CTAS", cap + 2, 1);
	}
	if (plus) {
		*plus = 0;
		setenv("POLICY_GPU_MOE_EPI", plus + 1, 1);
	} else {
		/* wgtdp: persistent only with the TMA epilogues (the default);
		 * wsb*: their other products as wgtd + tma */
		setenv("POLICY_GPU_MOE_EPI",
		       strcmp(k, "wgtdp") && strncmp(k, "wsb", 3) ? "smem" : "tma", 1);
	}
	setenv("POLICY_GPU_MOE_KERNEL", k, 1);
}

static int have_gpu(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static int check_case(int T, int K, int E, int D, int F, int route)
{
	if (!have_gpu())
		return GPU_SKIP;
	variant_setenv();
	return check_case1(T, K, E, D, F, route);
}

static int test_random_empty(void)
{
	return check_case(300, 2, 8, 128, 96, ROUTE_RANDOM);
}
static int test_one_expert_odd_dims(void)
{
	return check_case(257, 2, 4, 72, 40, ROUTE_ONE);
}
static int test_balanced(void)
{
	return check_case(512, 2, 8, 256, 192, ROUTE_BALANCED);
}
static int test_bench_shape_skewed(void)
{
	return check_case(384, 2, 8, 768, 1024, ROUTE_SKEWED);
}
static int test_top1_one_expert_of_many(void)
{
	return check_case(200, 1, 16, 64, 136, ROUTE_ONE);
}
/* experts of ~2600 rows: the ws variants' weight gradients run in 3 splits
 * of 1024 rows (the last partial), added in split order */
static int test_split_k(void)
{
	return check_case(2600, 2, 4, 136, 72, ROUTE_RANDOM);
}

/* F % 64 == 0: wgt's TMA path (other F run wgt as wg); empty experts,
 * partial row tiles (A rows past an expert's end: the next expert's) */
static int test_tma_random_empty(void)
{
	return check_case(300, 2, 8, 128, 128, ROUTE_RANDOM);
}
/* D 72: k past D and n past D in the zero-filled boxes */
static int test_tma_odd_width(void)
{
	return check_case(257, 2, 4, 72, 64, ROUTE_ONE);
}

/* D 64: one k block (down dX's h1 and h3 fetched at block 0 into the two
 * stages no block uses) */
static int test_tma_one_kblock(void)
{
	return check_case(200, 2, 4, 64, 128, ROUTE_RANDOM);
}

/* a misspelt POLICY_GPU_MOE_EPI: every product refuses, naming it */
static int test_epi_misspelt(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	struct policy_moe_dims d = {1, 1, 1, 64, 64, NULL, NULL, 0, 0, 0, 0, NULL};
	setenv("POLICY_GPU_MOE_EPI", "tmaa", 1);
	int rc = policy_moe_up(&d, NULL, NULL, NULL, NULL, NULL, NULL);
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", swerve_error_last());
	variant_setenv();
	if (rc != SWERVE_EINVAL || !strstr(msg, "POLICY_GPU_MOE_EPI=tmaa")) {
		printf("    rc %d, message \"%s\"\n", rc, msg);
		return 1;
	}
	return 0;
}

/* round 19, wsb8: a misspelt POLICY_GPU_MOE_WSB8_PF is refused, naming it
 * (other variants ignore it) */
static int test_pf_misspelt(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (strcmp(variant_env[variant], "wsb8"))
		return 0;
	struct policy_moe_dims d = {1, 1, 1, 64, 64, NULL, NULL, 0, 0, 0, 0, NULL};
	setenv("POLICY_GPU_MOE_WSB8_PF", "tiles", 1);
	int rc = policy_moe_down_dx(&d, NULL, NULL, NULL, NULL, NULL);
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", swerve_error_last());
	variant_setenv();
	if (rc != SWERVE_EINVAL || !strstr(msg, "POLICY_GPU_MOE_WSB8_PF=tiles")) {
		printf("    rc %d, message \"%s\"\n", rc, msg);
		return 1;
	}
	return 0;
}

/* wgtdp, wsb: a misspelt POLICY_GPU_MOE_CTAS is refused, naming it (other
 * variants ignore it) */
static int test_ctas_misspelt(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (strncmp(variant_env[variant], "wgtdp", 5) && strncmp(variant_env[variant], "wsb", 3))
		return 0;
	struct policy_moe_dims d = {1, 1, 1, 64, 64, NULL, NULL, 0, 0, 0, 0, NULL};
	setenv("POLICY_GPU_MOE_CTAS", "3x", 1);
	int rc = policy_moe_down_dx(&d, NULL, NULL, NULL, NULL, NULL);
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", swerve_error_last());
	variant_setenv();
	if (rc != SWERVE_EINVAL || !strstr(msg, "POLICY_GPU_MOE_CTAS=3x")) {
		printf("    rc %d, message \"%s\"\n", rc, msg);
		return 1;
	}
	return 0;
}

/* round 15: with "NAME:S" (POLICY_GPU_MOE_WSB_SILU=S), up from xg at the
 * benchmark's shape (T 8192, top-2 of 8 balanced, D 768, F 1024; x scaled
 * by xs, so h1 reaches ~4 xs) against the exact epilogue (the variable
 * unset) on the same inputs: h1 / h3 bit for bit, hh within 1 bf16 ulp
 * (stsm: bit for bit); prints the largest difference and how many differ */
static int32_t bf_ord(uint16_t h)
{
	return (h & 0x8000) ? -(int32_t)(h & 0x7fff) : (int32_t)h;
}
static int silu_case(float xs)
{
	const int T = 8192, K = 2, E = 8, D = 768, F = 1024, R = T * K;
	const char *sv = getenv("POLICY_GPU_MOE_WSB_SILU");
	const size_t nRD = (size_t)R * D, nRF = (size_t)R * F, wsz = (size_t)E * F * D;
	int fail = 0, offs[E + 1];
	for (int e = 0; e <= E; e++)
		offs[e] = e * (R / E);
	int *perm = (int *)malloc(R * sizeof(int));
	uint16_t *x = (uint16_t *)malloc(nRD * 2), *w = (uint16_t *)malloc(2 * wsz * 2);
	for (int i = 0; i < R; i++)
		perm[i] = i;
	for (size_t i = 0; i < nRD; i++)
		x[i] = f2bf(xs * nrand());
	for (size_t i = 0; i < 2 * wsz; i++)
		w[i] = f2bf(nrand() / sqrtf((float)D));
	int *d_offs = (int *)dup_dev(offs, (E + 1) * 4), *d_perm = (int *)dup_dev(perm, R * 4);
	uint16_t *d_x = (uint16_t *)dup_dev(x, nRD * 2), *d_w = (uint16_t *)dup_dev(w, 2 * wsz * 2);
	uint16_t *o[2][3];
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < 3; i++)
			o[v][i] = (uint16_t *)poisoned(nRF * 2);
	CHECK(d_offs && d_perm && d_x && d_w && o[1][2], "cudaMalloc failed");
	struct policy_moe_dims dm = {T, K, E, D, F, d_offs, d_perm, 1, 0, 0, 0, NULL};
	char keep[32];
	snprintf(keep, sizeof(keep), "%s", sv ? sv : "");
	unsetenv("POLICY_GPU_MOE_WSB_SILU");
	CKM(policy_moe_up(&dm, o[0][0], o[0][1], o[0][2], d_x, d_w, d_w + wsz));
	setenv("POLICY_GPU_MOE_WSB_SILU", keep, 1);
	CKM(policy_moe_up(&dm, o[1][0], o[1][1], o[1][2], d_x, d_w, d_w + wsz));
	CKC(cudaDeviceSynchronize());
	uint16_t *hv[2][3];
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < 3; i++) {
			hv[v][i] = (uint16_t *)malloc(nRF * 2);
			CKC(cudaMemcpy(hv[v][i], o[v][i], nRF * 2, cudaMemcpyDeviceToHost));
		}
	const int exact = !strcmp(keep, "stsm") || !strcmp(keep, "ftz");
	static const char *const nm[3] = {"h1", "h3", "hh"};
	for (int i = 0; i < 3; i++) {
		size_t ndiff = 0, wi = 0;
		int32_t worst = 0;
		for (size_t j = 0; j < nRF; j++) {
			int32_t d = bf_ord(hv[1][i][j]) - bf_ord(hv[0][i][j]);
			d = d < 0 ? -d : d;
			if (hv[1][i][j] == 0xffff) /* poison: not written */
				d = 1 << 20;
			ndiff += d != 0;
			if (d > worst) {
				worst = d;
				wi = j;
			}
		}
		const int32_t lim = i < 2 || exact ? 0 : 1;
		printf("  %s (x scale %g, SILU=%s) vs exact: %zu of %zu differ, max %d ulp at %zu "
		       "(exact %.6g, got %.6g)%s\n",
		       nm[i], xs, keep, ndiff, nRF, worst, wi, bf(hv[0][i][wi]), bf(hv[1][i][wi]),
		       worst > lim ? "  FAIL" : "");
		fail |= worst > lim;
	}
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < 3; i++) {
			cudaFree(o[v][i]);
			free(hv[v][i]);
		}
	cudaFree(d_offs);
	cudaFree(d_perm);
	cudaFree(d_x);
	cudaFree(d_w);
	free(perm);
	free(x);
	free(w);
	return fail;
}
static int test_silu_vs_exact(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (!strchr(variant_env[variant], ':'))
		return 0; /* the variant's epilogue is the exact one */
	return silu_case(1.0f) | silu_case(8.0f);
}

/* the bitwise cases' expert segments of R rows (malloc'd, E + 1 bounds):
 * skew: ~44% to expert 0 and 8% to each other; else random weights with
 * expert 1 empty; seg_perm: rows in order (xg's rows are their own) */
static int *seg_offs(int E, int R, int skew)
{
	int *offs = (int *)malloc((E + 1) * sizeof(int));
	double s = 0, *wgt = (double *)malloc(E * sizeof(double));
	for (int e = 0; e < E; e++) {
		wgt[e] = skew ? (e == 0 ? 0.44 * E : 0.08 * E) : (e == 1 ? 0 : urand());
		s += wgt[e];
	}
	offs[0] = 0;
	for (int e = 0; e < E; e++)
		offs[e + 1] = e == E - 1 ? R : offs[e] + (int)(R * wgt[e] / s);
	free(wgt);
	return offs;
}
static int *seg_perm(int R)
{
	int *perm = (int *)malloc(R * sizeof(int));
	for (int i = 0; i < R; i++)
		perm[i] = i;
	return perm;
}

/* round 19b, wsb9*: down dX (k_mgx: wgtd's with a producer warp and no CTA
 * barrier a k block) bit for bit against wsb3w's (wgtd's k_mg) on the same
 * inputs: the same wgmma instructions in the same order and the same
 * epilogue (wsb9c: its cvt packing rounds as mg_f2bf). Shapes: the
 * benchmark's (T 4096, top-2 of 8, ~44% to one expert, D 768, F 1024:
 * 12 k blocks, partial row tiles at each expert's end) and random segments
 * with empty experts at D 128 / F 128 (2 k blocks: the h1 / h3 slots in
 * the stages of blocks 0 and 1) and D 64 (1 k block); prints how many
 * elements differ (poison: not written) */
static int bits_case(int T, int E, int D, int F, int skew)
{
	const int K = 2, R = T * K;
	const size_t nRD = (size_t)R * D, nRF = (size_t)R * F, wsz = (size_t)E * F * D;
	int fail = 0, *offs = seg_offs(E, R, skew), *perm = seg_perm(R);
	uint16_t *dyp = (uint16_t *)malloc(nRD * 2), *w2 = (uint16_t *)malloc(wsz * 2);
	uint16_t *h = (uint16_t *)malloc(2 * nRF * 2);
	for (size_t i = 0; i < nRD; i++)
		dyp[i] = f2bf(nrand());
	for (size_t i = 0; i < wsz; i++)
		w2[i] = f2bf(nrand() / sqrtf((float)F));
	for (size_t i = 0; i < 2 * nRF; i++)
		h[i] = f2bf(2 * nrand());
	int *d_offs = (int *)dup_dev(offs, (E + 1) * 4), *d_perm = (int *)dup_dev(perm, R * 4);
	uint16_t *d_dyp = (uint16_t *)dup_dev(dyp, nRD * 2),
	         *d_w2 = (uint16_t *)dup_dev(w2, wsz * 2);
	uint16_t *d_h = (uint16_t *)dup_dev(h, 2 * nRF * 2);
	uint16_t *o0 = (uint16_t *)poisoned(2 * nRF * 2), *o1 = (uint16_t *)poisoned(2 * nRF * 2);
	CHECK(d_offs && d_perm && d_dyp && d_w2 && d_h && o0 && o1, "cudaMalloc failed");
	struct policy_moe_dims dm = {T, K, E, D, F, d_offs, d_perm, 1, 0, 0, 0, NULL};
	setenv("POLICY_GPU_MOE_KERNEL", "wsb3w", 1);
	CKM(policy_moe_down_dx(&dm, o0, d_dyp, d_w2, d_h, d_h + nRF));
	variant_setenv();
	CKM(policy_moe_down_dx(&dm, o1, d_dyp, d_w2, d_h, d_h + nRF));
	CKC(cudaDeviceSynchronize());
	uint16_t *g0 = (uint16_t *)malloc(2 * nRF * 2), *g1 = (uint16_t *)malloc(2 * nRF * 2);
	CKC(cudaMemcpy(g0, o0, 2 * nRF * 2, cudaMemcpyDeviceToHost));
	CKC(cudaMemcpy(g1, o1, 2 * nRF * 2, cudaMemcpyDeviceToHost));
	size_t ndiff = 0, npois = 0, first = 0;
	for (size_t i = 0; i < 2 * nRF; i++) {
		npois += g1[i] == 0xffff || g0[i] == 0xffff;
		if (g0[i] != g1[i] && !ndiff++)
			first = i;
	}
	printf("  dh13 (T %d, D %d, F %d, %s) vs wsb3w: %zu of %zu differ, %zu poisoned%s", T, D, F,
	       skew ? "skewed" : "random", ndiff, 2 * nRF, npois, ndiff ? "" : "\n");
	if (ndiff)
		printf(", first at %zu (wsb3w %04x, got %04x)\n", first, g0[first], g1[first]);
	fail = ndiff != 0 || npois != 0;
	cudaFree(d_offs), cudaFree(d_perm), cudaFree(d_dyp), cudaFree(d_w2), cudaFree(d_h);
	cudaFree(o0), cudaFree(o1);
	free(offs), free(perm), free(dyp), free(w2), free(h), free(g0), free(g1);
	return fail;
}
/* round 23, "NAME!red" (POLICY_GPU_MOE_DW_ADD=red): down dW and up dW
 * (from xg) added to a random fp32 start bit for bit as the same kernel's
 * load + add + store (POLICY_GPU_MOE_DW_ADD=load): the same fp32 sum, done
 * in L2 by red.global.add. Shapes: the benchmark's (T 4096, ~44% to one
 * expert, D 768, F 1024) and random segments with an empty expert at D
 * 128 / F 192 (partial column tiles of dW2); a misspelt value refused by
 * both products, naming the variable */
static int dw_bits_case(int T, int E, int D, int F, int skew)
{
	const int K = 2, R = T * K;
	const size_t nRD = (size_t)R * D, nRF = (size_t)R * F, wsz = (size_t)E * F * D;
	int fail = 0, *offs = seg_offs(E, R, skew), *perm = seg_perm(R);
	uint16_t *rd = (uint16_t *)malloc(2 * nRD * 2), *rf = (uint16_t *)malloc(3 * nRF * 2);
	float *w0 = (float *)malloc(3 * wsz * 4);
	for (size_t i = 0; i < 2 * nRD; i++) /* dyp | xg */
		rd[i] = f2bf(nrand());
	for (size_t i = 0; i < 3 * nRF; i++) /* hh | dh13 */
		rf[i] = f2bf(nrand());
	for (size_t i = 0; i < 3 * wsz; i++) /* dW2 | dW1 | dW3 */
		w0[i] = nrand();
	int *d_offs = (int *)dup_dev(offs, (E + 1) * 4), *d_perm = (int *)dup_dev(perm, R * 4);
	uint16_t *d_rd = (uint16_t *)dup_dev(rd, 2 * nRD * 2);
	uint16_t *d_rf = (uint16_t *)dup_dev(rf, 3 * nRF * 2);
	float *d_w[2] = {(float *)dup_dev(w0, 3 * wsz * 4), (float *)dup_dev(w0, 3 * wsz * 4)};
	CHECK(d_offs && d_perm && d_rd && d_rf && d_w[0] && d_w[1], "cudaMalloc failed");
	struct policy_moe_dims dm = {T, K, E, D, F, d_offs, d_perm, 1, 0, 0, 0, NULL};
	for (int v = 0; v < 2; v++) {
		setenv("POLICY_GPU_MOE_DW_ADD", v ? "red" : "load", 1);
		CKM(policy_moe_down_dw(&dm, d_w[v], d_rd, d_rf, 1));
		CKM(policy_moe_up_dw(&dm, d_w[v] + wsz, d_w[v] + 2 * wsz, d_rf + nRF, d_rd + nRD,
		                     1));
	}
	CKC(cudaDeviceSynchronize());
	float *g[2] = {(float *)malloc(3 * wsz * 4), (float *)malloc(3 * wsz * 4)};
	for (int v = 0; v < 2; v++)
		CKC(cudaMemcpy(g[v], d_w[v], 3 * wsz * 4, cudaMemcpyDeviceToHost));
	static const char *const nm[3] = {"dW2", "dW1", "dW3"};
	for (int i = 0; i < 3; i++) {
		size_t ndiff = 0, nsame = 0, first = 0;
		for (size_t j = i * wsz; j < (i + 1) * wsz; j++) {
			nsame += memcmp(&g[0][j], &w0[j], 4) == 0;
			if (memcmp(&g[0][j], &g[1][j], 4) && !ndiff++)
				first = j;
		}
		printf("  %s (T %d, D %d, F %d, %s) red vs load: %zu of %zu differ, %zu unchanged",
		       nm[i], T, D, F, skew ? "skewed" : "random", ndiff, wsz, nsame);
		if (ndiff)
			printf(", first at %zu (load %.9g, red %.9g)", first, g[0][first],
			       g[1][first]);
		printf("\n");
		/* an empty expert's tiles stay as they were: at most its share */
		fail |= ndiff != 0 || nsame > wsz / 2;
	}
	setenv("POLICY_GPU_MOE_DW_ADD", "reduce", 1);
	int rc = policy_moe_down_dw(&dm, d_w[0], d_rd, d_rf, 1);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", swerve_error_last());
	int rc2 = policy_moe_up_dw(&dm, d_w[0] + wsz, d_w[0] + 2 * wsz, d_rf + nRF, d_rd + nRD, 1);
	if (rc != SWERVE_EINVAL || rc2 != SWERVE_EINVAL || !strstr(msg, "POLICY_GPU_MOE_DW_ADD") ||
	    !strstr(swerve_error_last(), "reduce")) {
		printf("    misspelt: rc %d / %d, message \"%s\"\n", rc, rc2, msg);
		fail = 1;
	}
	variant_setenv();
	cudaFree(d_offs), cudaFree(d_perm), cudaFree(d_rd), cudaFree(d_rf), cudaFree(d_w[0]);
	cudaFree(d_w[1]);
	free(offs), free(perm), free(rd), free(rf), free(w0), free(g[0]), free(g[1]);
	return fail;
}
/* round 23 (POLICY_GPU_MOE_DW_PAIR): two layers' down dW in one launch
 * (policy_moe_down_dw_pair) bit for bit the two launches, added (beta 1) to
 * random starts and stored (beta 0, poisoned buffers): layer A skewed (~44%
 * to one expert), layer B random with an empty expert, so the joint list's
 * largest-first order interleaves the two layers' experts */
static int dw_pair_case(int T, int E, int D, int F)
{
	const int K = 2, R = T * K;
	const size_t nRD = (size_t)R * D, nRF = (size_t)R * F, wsz = (size_t)E * F * D;
	int fail = 0, *offs[2] = {seg_offs(E, R, 1), seg_offs(E, R, 0)}, *perm = seg_perm(R);
	uint16_t *rd = (uint16_t *)malloc(2 * nRD * 2), *rf = (uint16_t *)malloc(2 * nRF * 2);
	float *w0 = (float *)malloc(2 * wsz * 4);
	for (size_t i = 0; i < 2 * nRD; i++) /* dyp of A | B */
		rd[i] = f2bf(nrand());
	for (size_t i = 0; i < 2 * nRF; i++) /* hh of A | B */
		rf[i] = f2bf(nrand());
	for (size_t i = 0; i < 2 * wsz; i++) /* dW2 of A | B */
		w0[i] = nrand();
	int *d_offs[2] = {(int *)dup_dev(offs[0], (E + 1) * 4),
	                  (int *)dup_dev(offs[1], (E + 1) * 4)};
	int *d_perm = (int *)dup_dev(perm, R * 4);
	uint16_t *d_rd = (uint16_t *)dup_dev(rd, 2 * nRD * 2);
	uint16_t *d_rf = (uint16_t *)dup_dev(rf, 2 * nRF * 2);
	/* [beta][single / pair]: dW2 of A | B */
	float *d_w[2][2];
	for (int b = 0; b < 2; b++)
		for (int v = 0; v < 2; v++)
			d_w[b][v] = b ? (float *)dup_dev(w0, 2 * wsz * 4)
			              : (float *)poisoned(2 * wsz * 4);
	CHECK(d_offs[0] && d_offs[1] && d_perm && d_rd && d_rf && d_w[1][1], "cudaMalloc failed");
	struct policy_moe_dims da = {T, K, E, D, F, d_offs[0], d_perm, 1, 0, 0, 0, NULL},
	                       db = {T, K, E, D, F, d_offs[1], d_perm, 1, 0, 0, 0, NULL};
	for (int b = 0; b < 2; b++) {
		CKM(policy_moe_down_dw(&da, d_w[b][0], d_rd, d_rf, b));
		CKM(policy_moe_down_dw(&db, d_w[b][0] + wsz, d_rd + nRD, d_rf + nRF, b));
		CKM(policy_moe_down_dw_pair(&da, d_w[b][1], d_rd, d_rf, &db, d_w[b][1] + wsz,
		                            d_rd + nRD, d_rf + nRF, b));
	}
	CKC(cudaDeviceSynchronize());
	float *g[2] = {(float *)malloc(2 * wsz * 4), (float *)malloc(2 * wsz * 4)};
	for (int b = 0; b < 2; b++) {
		for (int v = 0; v < 2; v++)
			CKC(cudaMemcpy(g[v], d_w[b][v], 2 * wsz * 4, cudaMemcpyDeviceToHost));
		for (int p = 0; p < 2; p++) {
			size_t ndiff = 0, npois = 0, first = 0;
			for (size_t j = p * wsz; j < (p + 1) * wsz; j++) {
				uint32_t u;
				memcpy(&u, &g[1][j], 4);
				npois += u == 0xffffffffu;
				if (memcmp(&g[0][j], &g[1][j], 4) && !ndiff++)
					first = j;
			}
			printf("  dW2 of layer %c (T %d, D %d, F %d, %s) pair vs single: %zu of "
			       "%zu "
			       "differ, %zu poisoned",
			       'A' + p, T, D, F, b ? "added" : "stored", ndiff, wsz, npois);
			if (ndiff)
				printf(", first at %zu (single %.9g, pair %.9g)", first,
				       g[0][first], g[1][first]);
			printf("\n");
			fail |= ndiff != 0 || npois != 0;
		}
	}
	cudaFree(d_offs[0]), cudaFree(d_offs[1]), cudaFree(d_perm), cudaFree(d_rd), cudaFree(d_rf);
	for (int b = 0; b < 2; b++)
		for (int v = 0; v < 2; v++)
			cudaFree(d_w[b][v]);
	free(offs[0]), free(offs[1]), free(perm), free(rd), free(rf), free(w0), free(g[0]);
	free(g[1]);
	return fail;
}
static int test_dw_pair_bits(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (strcmp(variant_env[variant], "wsb3w") && strcmp(variant_env[variant], "wsb3w!red"))
		return 0;
	return dw_pair_case(4096, 8, 768, 1024) | dw_pair_case(300, 8, 128, 192);
}

static int test_dw_red_bits(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (!strchr(variant_env[variant], '!'))
		return 0;
	return dw_bits_case(4096, 8, 768, 1024, 1) | dw_bits_case(300, 8, 128, 192, 0);
}

/* round 24 (POLICY_GPU_MOE_DW_WIN): the weight gradients of nseg
 * micro-batches in one launch (policy_moe_dims's nseg: segment s's rows at
 * s rstride.., its offsets at s ostride) against one launch a micro-batch
 * (the first stored, the others added) on the same inputs: down dW, up dW
 * from xg and the two-layer down dW, stored and added to a random start.
 * The segments' sums run as one K loop instead of nseg rounded fp32
 * partial sums, and the tensor cores' fp32 accumulation truncates, so the
 * two differ in their low bits: each element within 2e-4 of the tensor's
 * rms (a segment lost or added twice is ~rms / sqrt(nseg) off). Where
 * cheap (cpu_ref), both against a double-precision sum on the CPU: the one
 * launch's worst error at most nseg + 1 times the per-micro-batch
 * launches' (plus 1e-6 of the rms): the truncation error of the
 * accumulator grows with K, nseg times longer here (H100: 2.0-2.6 times,
 * ~7e-6 of the rms). Segments with an empty expert and of other sizes
 * (rstride is the largest; with 2, an expert without rows in either). With
 * sq set, each launch's tile sums of squares add up to its tensors' within
 * 1e-5 (the global norm's share of the experts) */
static int window_case(int T, int E, int D, int F, int nseg, int cpu_ref)
{
	const int K = 2, R = T * K, RS = R + 64, OS = E + 3; /* rows / offsets apart */
	const size_t nRD = (size_t)nseg * RS * D, nRF = (size_t)nseg * RS * F,
	             wsz = (size_t)E * F * D;
	int fail = 0, *offs = (int *)calloc((size_t)nseg * OS, sizeof(int)), *perm = seg_perm(RS);
	for (int s = 0; s < nseg;
	     s++) { /* segment s: R - 37 s rows (nseg 2: expert 1 empty in both) */
		int *o = seg_offs(E, R - 37 * s, nseg > 2 && (s & 1));
		memcpy(offs + s * OS, o, (E + 1) * sizeof(int));
		free(o);
	}
	uint16_t *rd = (uint16_t *)malloc(2 * nRD * 2), *rf = (uint16_t *)malloc(3 * nRF * 2);
	/* dW2 | dW1 | dW3 | the pair's dW2 of layers A and B (both the same
	 * rows as dW2's, the same start) */
	float *w0 = (float *)malloc(5 * wsz * 4);
	for (size_t i = 0; i < 2 * nRD; i++) /* dyp | xg */
		rd[i] = f2bf(nrand());
	for (size_t i = 0; i < 3 * nRF; i++) /* hh | dh13 (2F wide) */
		rf[i] = f2bf(nrand());
	for (size_t i = 0; i < 3 * wsz; i++)
		w0[i] = nrand();
	memcpy(w0 + 3 * wsz, w0, wsz * 4);
	memcpy(w0 + 4 * wsz, w0, wsz * 4);
	int *d_offs = (int *)dup_dev(offs, (size_t)nseg * OS * 4),
	    *d_perm = (int *)dup_dev(perm, RS * 4);
	uint16_t *d_rd = (uint16_t *)dup_dev(rd, 2 * nRD * 2),
	         *d_rf = (uint16_t *)dup_dev(rf, 3 * nRF * 2);
	float *d_w[2][2]; /* [one launch, a launch a segment][added, stored] */
	for (int v = 0; v < 2; v++) {
		d_w[v][0] = (float *)dup_dev(w0, 5 * wsz * 4);
		d_w[v][1] = (float *)poisoned(5 * wsz * 4);
	}
	CHECK(d_offs && d_perm && d_rd && d_rf && d_w[0][0] && d_w[0][1] && d_w[1][0] && d_w[1][1],
	      "cudaMalloc failed");
	const uint16_t *dyp = d_rd, *xg = d_rd + nRD, *hh = d_rf, *dh13 = d_rf + nRF;
	/* the tiles' sums of squares: down dW's, up dW's, the pair's */
	const int tdn = E * ((D + 127) / 128) * ((F + 255) / 256),
	          tup = E * ((2 * F + 127) / 128) * ((D + 255) / 256), nsq = 3 * tdn + tup;
	float *d_sq[2] = {(float *)poisoned(nsq * 4), (float *)poisoned(nsq * 4)};
	CHECK(d_sq[0] && d_sq[1], "cudaMalloc failed");
	for (int st = 0; st < 2; st++) {
		float *w = d_w[0][st];
		struct policy_moe_dims dw = {T,      K, E,    D,  F,  d_offs,
		                             d_perm, 1, nseg, RS, OS, d_sq[st]};
		CKM(policy_moe_down_dw(&dw, w, dyp, hh, !st));
		dw.sq = d_sq[st] + tdn;
		CKM(policy_moe_up_dw(&dw, w + wsz, w + 2 * wsz, dh13, xg, !st));
		dw.sq = d_sq[st] + tdn + tup;
		CKM(policy_moe_down_dw_pair(&dw, w + 3 * wsz, dyp, hh, &dw, w + 4 * wsz, dyp, hh,
		                            !st));
		w = d_w[1][st];
		for (int s = 0; s < nseg; s++) {
			struct policy_moe_dims d1 = {R - 37 * s, 1, E, D, F, d_offs + s * OS,
			                             d_perm,     1, 0, 0, 0, NULL};
			const int b = s > 0 || !st;
			CKM(policy_moe_down_dw(&d1, w, dyp + (size_t)s * RS * D,
			                       hh + (size_t)s * RS * F, b));
			CKM(policy_moe_up_dw(&d1, w + wsz, w + 2 * wsz,
			                     dh13 + (size_t)s * RS * 2 * F, xg + (size_t)s * RS * D,
			                     b));
		}
	}
	CKC(cudaDeviceSynchronize());
	float *g[2] = {(float *)malloc(5 * wsz * 4), (float *)malloc(5 * wsz * 4)};
	float *sq = (float *)malloc(nsq * 4);
	static const char *const nm[5] = {"dW2", "dW1", "dW3", "dW2 (A)", "dW2 (B)"};
	for (int st = 0; st < 2; st++) {
		for (int v = 0; v < 2; v++)
			CKC(cudaMemcpy(g[v], d_w[v][st], 5 * wsz * 4, cudaMemcpyDeviceToHost));
		/* each launch's tile sums of squares against its tensors' (double) */
		CKC(cudaMemcpy(sq, d_sq[st], nsq * 4, cudaMemcpyDeviceToHost));
		static const int t0[4] = {0, 1, 3, 5}; /* tensors of the three launches */
		for (int l = 0; l < 3; l++) {
			const int a0 = l == 0   ? 0
			               : l == 1 ? tdn
			                        : tdn + tup,
			          n = l == 1 ? tup
			              : l    ? 2 * tdn
			                     : tdn;
			double got = 0, want = 0;
			for (int i = 0; i < n; i++)
				got += sq[a0 + i];
			for (size_t j = t0[l] * wsz; j < t0[l + 1] * wsz; j++)
				want += (double)g[0][j] * g[0][j];
			printf("  sum of squares (%s, %s): tiles %.9g, tensors %.9g\n",
			       l == 0   ? "down dW"
			       : l == 1 ? "up dW"
			                : "pair",
			       st ? "stored" : "added", got, want);
			fail |= !(fabs(got - want) <= 1e-5 * want);
		}
		for (int k = 0; k < 5; k++) {
			const float *ref = g[1] + (k < 3 ? k : 0) * wsz, *got = g[0] + k * wsz;
			double ss = 0, worst = 0;
			size_t nnan = 0;
			for (size_t j = 0; j < wsz; j++)
				ss += (double)ref[j] * ref[j];
			const double rms = sqrt(ss / wsz);
			for (size_t j = 0; j < wsz; j++) {
				const double d = fabs((double)got[j] - ref[j]) / rms;
				worst = d > worst ? d : worst;
				nnan += isnan(got[j]) || isnan(ref[j]);
			}
			printf("  %-7s (T %d x %d, D %d, F %d, %s) one launch vs one a segment: "
			       "worst "
			       "%.2g of the rms (%.3g), %zu NaN\n",
			       nm[k], T, nseg, D, F, st ? "stored" : "added", worst, rms, nnan);
			fail |= !(worst <= 2e-4) || nnan != 0;
			if (!cpu_ref || k > 2)
				continue;
			/* the exact sum: dW2[e] (D x F) += dyp^T hh, [dW1; dW3][e] (2F x
			 * D) += dh13^T xg over expert e's rows of every segment */
			const int M = k == 0 ? D : F, N = k == 0 ? F : D;
			double e1 = 0, e2 = 0;
			for (int e = 0; e < E; e++)
				for (int m = 0; m < M; m++)
					for (int n = 0; n < N; n++) {
						const size_t j =
						        (size_t)e * M * N + (size_t)m * N + n;
						double acc = st ? 0.0 : w0[k * wsz + j];
						for (int sg = 0; sg < nseg; sg++)
							for (int r = offs[sg * OS + e];
							     r < offs[sg * OS + e + 1]; r++) {
								const size_t row =
								        (size_t)sg * RS + r;
								acc += k == 0 ? bf(rd[row * D +
								                      m]) *
								                        bf(rf[row * F +
								                              n])
								              : (double)bf(
								                        rf[nRF +
								                           row * 2 *
								                                   F +
								                           (k -
								                            1) * F +
								                           m]) *
								                        bf(rd[nRD +
								                              row * D +
								                              n]);
							}
						e1 = fmax(e1, fabs(got[j] - acc));
						e2 = fmax(e2, fabs(ref[j] - acc));
					}
			printf("          against the exact sum: one launch %.3g, one a segment "
			       "%.3g\n",
			       e1, e2);
			fail |= !(e1 <= (nseg + 1) * e2 + 1e-6 * rms);
		}
	}
	cudaFree(d_offs), cudaFree(d_perm), cudaFree(d_rd), cudaFree(d_rf);
	for (int v = 0; v < 2; v++)
		cudaFree(d_w[v][0]), cudaFree(d_w[v][1]), cudaFree(d_sq[v]);
	free(offs), free(perm), free(rd), free(rf), free(w0), free(g[0]), free(g[1]), free(sq);
	return fail;
}
static int test_dw_window(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (strcmp(variant_env[variant], "wsb3w"))
		return 0;
	return window_case(2048, 8, 768, 1024, 4, 0) | window_case(300, 8, 128, 192, 3, 1) |
	       window_case(500, 4, 64, 128, 2, 1);
}

/* round 19b: a misspelt wsb9 name ("wsb9x") is refused by down dX, naming
 * POLICY_GPU_MOE_KERNEL and the value; round 20: "wsb10x" for wsb10* */
static int misspelt_case(const char *bad)
{
	struct policy_moe_dims d = {1, 1, 1, 64, 64, NULL, NULL, 0, 0, 0, 0, NULL};
	setenv("POLICY_GPU_MOE_KERNEL", bad, 1);
	int rc = policy_moe_down_dx(&d, NULL, NULL, NULL, NULL, NULL);
	char msg[512], want[64];
	snprintf(msg, sizeof(msg), "%s", swerve_error_last());
	snprintf(want, sizeof(want), "POLICY_GPU_MOE_KERNEL=%s", bad);
	variant_setenv();
	if (rc != SWERVE_EINVAL || !strstr(msg, want)) {
		printf("    rc %d, message \"%s\"\n", rc, msg);
		return 1;
	}
	return 0;
}
static int test_wsb10_misspelt(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (strncmp(variant_env[variant], "wsb10", 5))
		return 0;
	return misspelt_case("wsb10x") | misspelt_case("wsb10c");
}
static int test_wsb9_misspelt(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (strncmp(variant_env[variant], "wsb9", 4))
		return 0;
	struct policy_moe_dims d = {1, 1, 1, 64, 64, NULL, NULL, 0, 0, 0, 0, NULL};
	setenv("POLICY_GPU_MOE_KERNEL", "wsb9x", 1);
	int rc = policy_moe_down_dx(&d, NULL, NULL, NULL, NULL, NULL);
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", swerve_error_last());
	variant_setenv();
	if (rc != SWERVE_EINVAL || !strstr(msg, "POLICY_GPU_MOE_KERNEL=wsb9x")) {
		printf("    rc %d, message \"%s\"\n", rc, msg);
		return 1;
	}
	return 0;
}
static int test_down_dx_bits(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	if (!strncmp(variant_env[variant], "wsb10", 5)) /* round 20: + a half column tile */
		return bits_case(4096, 8, 768, 1024, 1) | bits_case(300, 8, 128, 128, 0) |
		       bits_case(200, 4, 64, 128, 0) | bits_case(700, 4, 192, 192, 0);
	if (strncmp(variant_env[variant], "wsb9", 4))
		return 0;
	return bits_case(4096, 8, 768, 1024, 1) | bits_case(300, 8, 128, 128, 0) |
	       bits_case(200, 4, 64, 128, 0);
}

/* argv: the variants to run (all when none are named) */
int main(int argc, char **argv)
{
	const struct gpu_test tests[] = {
	        {"grouped MoE GEMMs: random segments with empty experts", test_random_empty},
	        {"grouped MoE GEMMs: one expert takes every row (D 72, F 40)",
	         test_one_expert_odd_dims},
	        {"grouped MoE GEMMs: balanced segments", test_balanced},
	        {"grouped MoE GEMMs: the benchmark's shape, 44% to one expert",
	         test_bench_shape_skewed},
	        {"grouped MoE GEMMs: top-1, 16 experts, all rows to one",
	         test_top1_one_expert_of_many},
	        {"grouped MoE GEMMs: 5200 rows on 2 of 4 experts (split-K of dW)", test_split_k},
	        {"grouped MoE GEMMs: random segments, empty experts, F 128", test_tma_random_empty},
	        {"grouped MoE GEMMs: one expert, D 72, F 64", test_tma_odd_width},
	        {"grouped MoE GEMMs: one k block, D 64, F 128", test_tma_one_kblock},
	        {"grouped MoE GEMMs: a misspelt POLICY_GPU_MOE_EPI is refused", test_epi_misspelt},
	        {"grouped MoE GEMMs: a misspelt POLICY_GPU_MOE_CTAS is refused (wgtdp, wsb)",
	         test_ctas_misspelt},
	        {"grouped MoE GEMMs: SiLU epilogue vs wsb2's (POLICY_GPU_MOE_WSB_SILU)",
	         test_silu_vs_exact},
	        {"grouped MoE GEMMs: a misspelt POLICY_GPU_MOE_WSB8_PF is refused (wsb8)",
	         test_pf_misspelt},
	        {"grouped MoE GEMMs: down dX bit for bit vs wsb3w's (wsb9, wsb10)",
	         test_down_dx_bits},
	        {"grouped MoE GEMMs: dW added in L2 bit for bit vs load + store (NAME!red)",
	         test_dw_red_bits},
	        {"grouped MoE GEMMs: two layers' down dW in one launch bit for bit (wsb3w)",
	         test_dw_pair_bits},
	        {"grouped MoE GEMMs: the weight gradients of a window of micro-batches (wsb3w)",
	         test_dw_window},
	        {"grouped MoE GEMMs: a misspelt POLICY_GPU_MOE_KERNEL is refused (wsb9x)",
	         test_wsb9_misspelt},
	        {"grouped MoE GEMMs: a misspelt POLICY_GPU_MOE_KERNEL is refused (wsb10x)",
	         test_wsb10_misspelt},
	};
	int n = (int)(sizeof(tests) / sizeof(tests[0])), rc = 0;
	rng = (uint64_t)time(NULL) * 2654435761u + (uint64_t)clock() + 1;
	kch_env = getenv("POLICY_GPU_MOE_WSB_KCH");
	st_env = getenv("POLICY_GPU_MOE_WSB_ST");
	if (kch_env)
		kch_env = strdup(kch_env);
	if (st_env)
		st_env = strdup(st_env);
	/* every case on each kernel variant, the tests named after it */
	for (variant = 0; variant < NVARIANTS; variant++) {
		/* variants written without a GPU run only when named, so that a
		 * hang in one cannot stop `make test-gpu`: those whose names start
		 * with an entry of unrun_prefix (empty: round 13's wsb5 passed its
		 * 33 cases on an H100 on 2026-11-27, round 14's wsb6 its 33 and
		 * wsb6u its 11 the same day; all run by default; wsb6r: not yet
		 * run on a GPU; round 15's wsb2:S forms passed their 12 each on
		 * an H100 on 2026-11-27 but stay named-only: opt-in, no faster,
		 * and their bench-shape ulp case adds seconds) */
		static const char *const unrun_prefix[] = {
		        "wsb6r", "wsb2:", "wsb2/c3:", "wsb2/s3:", "wsb7",
		        "wsb8",  "wsb9",  "wsb10",    NULL};
		int unrun = 0;
		for (int u = 0; unrun_prefix[u]; u++)
			unrun |= !strncmp(variant_env[variant], unrun_prefix[u],
			                  strlen(unrun_prefix[u]));
		/* round 27: wsb9d is the default: run with the others */
		unrun &= strcmp(variant_env[variant], "wsb9d") != 0;
		int named = argc < 2 && !unrun;
		if (argc < 2 && unrun)
			printf("== POLICY_GPU_MOE_KERNEL=%s: not run (not yet run on a GPU; name "
			       "it "
			       "to run it)\n",
			       variant_env[variant]);
		for (int i = 1; i < argc; i++) { /* "wgtdp" names "wgtdp/c3" too */
			size_t l = strlen(argv[i]);
			named |= !strcmp(argv[i], variant_env[variant]) ||
			         (!strncmp(argv[i], variant_env[variant], l) &&
			          variant_env[variant][l] == '/');
		}
		if (!named)
			continue;
		printf("== POLICY_GPU_MOE_KERNEL=%s\n", variant_env[variant]);
		rc |= gpu_run_tests(tests, n);
	}
	unsetenv("POLICY_GPU_MOE_KERNEL");
	unsetenv("POLICY_GPU_MOE_EPI");
	unsetenv("POLICY_GPU_MOE_CTAS");
	unsetenv("POLICY_GPU_MOE_WSB_SILU");
	unsetenv("POLICY_GPU_MOE_DW_ADD");
	return rc;
}
