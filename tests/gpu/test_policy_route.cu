/* test_policy_route.cu - the policy's fused MoE routing (policy/gpu_route.cu)
 * against a CPU reference in double: the router logits, softmax, top-k and
 * gates; the stable counting sort by expert (perm, rowof, offsets, compact
 * and padded to a capacity, padding rows -1) and the balance loss; the
 * route backward (dn += d logits Wr, the router's dW += d logits^T x).
 * Token counts that are not multiples of the kernels' blocks, E from 1 to
 * 8, K up to E, the benchmark's shape (T 8192, D 768, E 8, K 2) and a
 * routing skewed to one expert. Fresh random inputs each run; outputs
 * poisoned before each launch; the worst element is printed. The sort must
 * match exactly (it is the one-block k_route_sort's order: rows of an
 * expert in assignment order), the backward's dW must be bitwise the same
 * in two runs (a deterministic reduction). Every case runs on the three
 * variants: v1, v2 (rounds 7-9's default) and v3 (round 10, POLICY_GPU_ROUTE=v3), and v4
 * (v3 with k_rt_fwd4, POLICY_GPU_ROUTE=v4, the default since round 10).
 * Round 10 also: v3 and v4 against v2 bit for bit (aux within 1e-6: it
 * may be summed in another order), the route backward with the MoE's slot sum
 * folded in (policy_route_bwd_slots) against scatter + backward and the
 * CPU, and gpu_comb.cu's token-major combine backward and slot sum
 * (POLICY_GPU_MOE_COMB=new) against gpu_moe.cu's kernels bit for bit and
 * the CPU, on rows from a real routing sort. Round 26: the ffn norm fused
 * into the router's forward (policy_route_fwd_norm_b16) against the two
 * calls it replaces (policy_ew_add_rms16, policy_route_fwd_b16) bit for
 * bit, and its refusals. */
extern "C" {
#include "sandbox/error.h"
}
#include "policy/gpu_comb.h"
#include "policy/gpu_ew.h"
#include "policy/gpu_moe.h"
#include "policy/gpu_route.h"
#include "tests/gpu/gpu_check.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static int have_gpu(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct rcase {
	int T, D, E, K, skew;
};

/* one case: forward, both sorts (compact; padded to a multiple of 64 rows),
 * backward, each against the CPU */
static int run_case(const struct rcase *rc, int v2)
{
	int T = rc->T, D = rc->D, E = rc->E, K = rc->K, R = T * K;
	int Rp = R + R / 2 + 64 * E;
	size_t nx = (size_t)T * D, nw = (size_t)E * D;
	float *x = (float *)malloc(nx * 4), *w = (float *)malloc(nw * 4);
	float *prob = (float *)malloc((size_t)T * E * 4), *gate = (float *)malloc((size_t)R * 4);
	int *sel = (int *)malloc((size_t)R * 4), *rowof = (int *)malloc((size_t)R * 4);
	int *perm = (int *)malloc((size_t)Rp * 4), offs[ROUTE_EMAX + 2];
	float auxc[ROUTE_EMAX], *dgate = (float *)malloc((size_t)R * 4);
	float *dn0 = (float *)malloc(nx * 4), *dn = (float *)malloc(nx * 4);
	float *dw0 = (float *)malloc(nw * 4), *dw = (float *)malloc(nw * 4),
	      *dw2 = (float *)malloc(nw * 4);
	double aux, worst_p = 0, worst_g = 0, worst_dn = 0, worst_dw = 0, dmax = 0, wmax = 0;
	float *d_x, *d_w, *d_prob, *d_gate, *d_auxc, *d_dgate, *d_dn, *d_dw, *d_ws;
	int *d_sel, *d_rowof, *d_perm, *d_offs;
	double *d_aux;
	size_t nws = policy_route_scratch_floats(T, E, D);

	for (size_t i = 0; i < nx; i++)
		x[i] = (float)gpu_nrand();
	for (size_t i = 0; i < nw; i++)
		w[i] = (float)(gpu_nrand() * 0.05);
	if (rc->skew) /* expert 0 takes most tokens: its weights follow x's mean direction */
		for (int d = 0; d < D; d++)
			w[d] = 0.5f;
	if (rc->skew)
		for (int t = 0; t < T; t++)
			for (int d = 0; d < D; d++)
				x[(size_t)t * D + d] += 0.3f;
	for (int i = 0; i < R; i++)
		dgate[i] = (float)gpu_nrand();
	for (size_t i = 0; i < nx; i++)
		dn0[i] = (float)gpu_nrand();
	for (size_t i = 0; i < nw; i++)
		dw0[i] = (float)gpu_nrand();

	CK(cudaMalloc(&d_x, nx * 4));
	CK(cudaMalloc(&d_w, nw * 4));
	CK(cudaMalloc(&d_prob, (size_t)T * E * 4));
	CK(cudaMalloc(&d_gate, (size_t)R * 4));
	CK(cudaMalloc(&d_sel, (size_t)R * 4));
	CK(cudaMalloc(&d_rowof, (size_t)R * 4));
	CK(cudaMalloc(&d_perm, (size_t)Rp * 4));
	CK(cudaMalloc(&d_offs, (ROUTE_EMAX + 2) * 4));
	CK(cudaMalloc(&d_auxc, ROUTE_EMAX * 4));
	CK(cudaMalloc(&d_aux, 8));
	CK(cudaMalloc(&d_dgate, (size_t)R * 4));
	CK(cudaMalloc(&d_dn, nx * 4));
	CK(cudaMalloc(&d_dw, nw * 4));
	CK(cudaMalloc(&d_ws, nws * 4));
	CK(cudaMemcpy(d_x, x, nx * 4, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d_w, w, nw * 4, cudaMemcpyHostToDevice));
	CK(cudaMemcpy(d_dgate, dgate, (size_t)R * 4, cudaMemcpyHostToDevice));
	CK(cudaMemset(d_prob, 0xff, (size_t)T * E * 4)); /* NaN */
	CK(cudaMemset(d_gate, 0xff, (size_t)R * 4));
	CK(cudaMemset(d_sel, 0x7f, (size_t)R * 4));
	CK(cudaMemset(d_rowof, 0x7f, (size_t)R * 4));
	CK(cudaMemset(d_ws, 0xff, nws * 4));

	CHECK(!policy_route_fwd(d_prob, d_sel, d_gate, d_rowof, d_ws, d_x, d_w, T, E, K, D, v2),
	      "%s", swerve_error_last());
	/* keep the forward's counts: both sorts read them */
	float *h_ws = (float *)malloc(nws * 4);
	int *rowof_tmp = (int *)malloc((size_t)R * 4);
	CK(cudaMemcpy(h_ws, d_ws, nws * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(rowof_tmp, d_rowof, (size_t)R * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(prob, d_prob, (size_t)T * E * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(gate, d_gate, (size_t)R * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(sel, d_sel, (size_t)R * 4, cudaMemcpyDeviceToHost));

	/* forward vs double; the selection and gates from the GPU's own
	 * probabilities with k_route's rule (ties to the lower index) */
	for (int t = 0; t < T; t++) {
		double l[ROUTE_EMAX], mx = -INFINITY, z = 0, S = 0;
		int s2[ROUTE_EMAX];
		const float *p = prob + (size_t)t * E;
		for (int e = 0; e < E; e++) {
			l[e] = 0;
			for (int d = 0; d < D; d++)
				l[e] += (double)x[(size_t)t * D + d] * w[(size_t)e * D + d];
			mx = l[e] > mx ? l[e] : mx;
		}
		for (int e = 0; e < E; e++)
			z += exp(l[e] - mx);
		for (int e = 0; e < E; e++) {
			double err = fabs(p[e] - exp(l[e] - mx) / z);
			CHECK(err < 1e-5, "T %d D %d E %d K %d: prob[%d][%d] %g vs %g", T, D, E, K,
			      t, e, p[e], exp(l[e] - mx) / z);
			worst_p = err > worst_p ? err : worst_p;
		}
		for (int j = 0; j < K; j++) {
			int best = -1;
			for (int e = 0; e < E; e++) {
				int taken = 0;
				for (int i = 0; i < j; i++)
					taken |= s2[i] == e;
				if (!taken && (best < 0 || p[e] > p[best]))
					best = e;
			}
			s2[j] = best;
			S += p[best];
			CHECK(sel[(size_t)t * K + j] == best,
			      "T %d: token %d slot %d: expert %d vs %d", T, t, j,
			      sel[(size_t)t * K + j], best);
		}
		for (int j = 0; j < K; j++) {
			double err = fabs(gate[(size_t)t * K + j] - p[s2[j]] / S);
			CHECK(err < 1e-6, "T %d: gate[%d][%d] %g vs %g", T, t, j,
			      gate[(size_t)t * K + j], p[s2[j]] / S);
			worst_g = err > worst_g ? err : worst_g;
		}
	}

	/* both sorts vs the CPU's stable counting sort */
	for (int mode = 0; mode < 2; mode++) {
		int compact = mode == 0, rnd = compact ? 1 : 64, cnt[ROUTE_EMAX] = {0},
		    off[ROUTE_EMAX + 1];
		int mxc = 0, cap, *hperm = (int *)malloc((size_t)Rp * 4);
		int *hrow = (int *)malloc((size_t)R * 4), *seen = (int *)calloc(ROUTE_EMAX, 4);
		double pm[ROUTE_EMAX] = {0}, a = 0;
		CK(cudaMemcpy(d_ws, h_ws, nws * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(d_rowof, rowof_tmp, (size_t)R * 4, cudaMemcpyHostToDevice));
		CK(cudaMemset(d_perm, 0x7f, (size_t)Rp * 4));
		CK(cudaMemset(d_offs, 0x7f, (ROUTE_EMAX + 2) * 4));
		CK(cudaMemset(d_auxc, 0xff, ROUTE_EMAX * 4));
		CHECK(!policy_route_sort(d_perm, d_rowof, d_offs, d_auxc, d_aux, d_ws, d_sel, T, E,
		                         K, Rp, compact, rnd, 0.01, v2),
		      "%s", swerve_error_last());
		CK(cudaMemcpy(perm, d_perm, (size_t)Rp * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(rowof, d_rowof, (size_t)R * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(offs, d_offs, (E + 2) * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(auxc, d_auxc, E * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(&aux, d_aux, 8, cudaMemcpyDeviceToHost));
		for (int i = 0; i < R; i++)
			cnt[sel[i]]++;
		for (int e = 0; e < E; e++)
			mxc = cnt[e] > mxc ? cnt[e] : mxc;
		cap = (mxc + rnd - 1) / rnd * rnd;
		if (compact || (long long)cap * E > Rp)
			cap = 0;
		off[0] = 0;
		for (int e = 0; e < E; e++)
			off[e + 1] = off[e] + (cap ? cap : cnt[e]);
		for (int r = 0; r < off[E]; r++)
			hperm[r] = -1;
		for (int i = 0; i < R; i++) { /* stable: assignment order */
			int e = sel[i], r = off[e] + seen[e]++;
			hrow[i] = r;
			hperm[r] = i;
		}
		for (int e = 0; e <= E; e++)
			CHECK(offs[e] == off[e], "T %d E %d mode %d: offs[%d] %d vs %d", T, E, mode,
			      e, offs[e], off[e]);
		CHECK(offs[E + 1] == cap, "capacity %d vs %d", offs[E + 1], cap);
		for (int i = 0; i < R; i++)
			CHECK(rowof[i] == hrow[i], "T %d mode %d: rowof[%d] %d vs %d", T, mode, i,
			      rowof[i], hrow[i]);
		for (int r = 0; r < off[E]; r++)
			CHECK(perm[r] == hperm[r], "T %d mode %d: perm[%d] %d vs %d", T, mode, r,
			      perm[r], hperm[r]);
		for (int t = 0; t < T; t++)
			for (int e = 0; e < E; e++)
				pm[e] += prob[(size_t)t * E + e];
		for (int e = 0; e < E; e++) {
			double f = (double)cnt[e] / R;
			a += f * pm[e] / T;
			CHECK(fabs(auxc[e] - 0.01 * E * f / T) <= 1e-6 * fabs(0.01 * E * f / T),
			      "auxc[%d] %g vs %g", e, auxc[e], 0.01 * E * f / T);
		}
		a *= 0.01 * E;
		CHECK(fabs(aux - a) <= 1e-5 * fabs(a), "aux %.9g vs %.9g", aux, a);
		free(hperm);
		free(hrow);
		free(seen);
	}

	/* backward, twice (dW bitwise equal); v3 through policy_route_bwd_slots
	 * with slot 0 of each token = dn0's row and the other slots 0 (0 + dn0 +
	 * 0 ... = dn0: the same reference), dn poisoned (written, not added to) */
	float *d_slots = NULL;
	if (v2 >= 2) {
		CK(cudaMalloc(&d_slots, (size_t)R * D * 4));
		CK(cudaMemset(d_slots, 0, (size_t)R * D * 4));
		CK(cudaMemcpy2D(d_slots, (size_t)K * D * 4, dn0, (size_t)D * 4, (size_t)D * 4, T,
		                cudaMemcpyHostToDevice));
	}
	for (int rep = 0; rep < 2; rep++) {
		CK(cudaMemcpy(d_dn, dn0, nx * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(d_dw, dw0, nw * 4, cudaMemcpyHostToDevice));
		CK(cudaMemset(d_ws, 0xff, nws * 4));
		if (v2 >= 2) {
			CK(cudaMemset(d_dn, 0xff, nx * 4));
			CHECK(!policy_route_bwd_slots(d_dn, d_ws, d_slots, d_x, d_w, d_prob, d_sel,
			                              d_gate, d_dgate, d_auxc, T, E, K, D),
			      "%s", swerve_error_last());
		} else
			CHECK(!policy_route_bwd(d_dn, d_ws, d_x, d_w, d_prob, d_sel, d_gate,
			                        d_dgate, d_auxc, T, E, K, D, v2),
			      "%s", swerve_error_last());
		CHECK(!policy_route_dw(d_dw, d_ws, T, E, D), "%s", swerve_error_last());
		CK(cudaMemcpy(rep ? dw2 : dw, d_dw, nw * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(dn, d_dn, nx * 4, cudaMemcpyDeviceToHost));
	}
	CHECK(!memcmp(dw, dw2, nw * 4), "router dW differs between two runs");
	{
		double *rdw = (double *)calloc(nw, 8);
		for (int t = 0; t < T; t++) {
			const float *p = prob + (size_t)t * E;
			double Sd = 0, sdg = 0, sp = 0, dp[ROUTE_EMAX], dl[ROUTE_EMAX];
			for (int j = 0; j < K; j++) {
				Sd += p[sel[(size_t)t * K + j]];
				sdg += (double)dgate[(size_t)t * K + j] * gate[(size_t)t * K + j];
			}
			for (int e = 0; e < E; e++)
				dp[e] = auxc[e];
			for (int j = 0; j < K; j++)
				dp[sel[(size_t)t * K + j]] += (dgate[(size_t)t * K + j] - sdg) / Sd;
			for (int e = 0; e < E; e++)
				sp += p[e] * dp[e];
			for (int e = 0; e < E; e++)
				dl[e] = p[e] * (dp[e] - sp);
			for (int d = 0; d < D; d++) {
				double v = dn0[(size_t)t * D + d];
				for (int e = 0; e < E; e++) {
					v += dl[e] * w[(size_t)e * D + d];
					rdw[(size_t)e * D + d] += dl[e] * x[(size_t)t * D + d];
				}
				double err = fabs(dn[(size_t)t * D + d] - v);
				worst_dn = err > worst_dn ? err : worst_dn;
				dmax = fabs(v) > dmax ? fabs(v) : dmax;
			}
		}
		for (size_t i = 0; i < nw; i++) {
			double v = rdw[i] + dw0[i], err = fabs(dw[i] - v);
			worst_dw = err > worst_dw ? err : worst_dw;
			wmax = fabs(v) > wmax ? fabs(v) : wmax;
		}
		free(rdw);
	}
	printf("  %s T %d D %d E %d K %d%s: worst |prob| %.2e, |gate| %.2e, dn %.2e (max %.2f), dW "
	       "%.2e (max %.2f)\n",
	       v2 == 3   ? "v4"
	       : v2 == 2 ? "v3"
	       : v2      ? "v2"
	                 : "v1",
	       T, D, E, K, rc->skew ? " skewed" : "", worst_p, worst_g, worst_dn, dmax, worst_dw,
	       wmax);
	CHECK(worst_dn <= 1e-5 * (dmax > 1 ? dmax : 1), "dn worst %g", worst_dn);
	CHECK(worst_dw <= 1e-4 * (wmax > 1 ? wmax : 1), "dW worst %g", worst_dw);

	cudaFree(d_x);
	cudaFree(d_w);
	cudaFree(d_prob);
	cudaFree(d_gate);
	cudaFree(d_sel);
	cudaFree(d_rowof);
	cudaFree(d_perm);
	cudaFree(d_offs);
	cudaFree(d_auxc);
	cudaFree(d_aux);
	cudaFree(d_dgate);
	cudaFree(d_dn);
	cudaFree(d_dw);
	cudaFree(d_ws);
	cudaFree(d_slots);
	free(x), free(w), free(prob), free(gate), free(sel), free(rowof), free(perm);
	free(dgate), free(dn0), free(dn), free(dw0), free(dw), free(dw2), free(h_ws),
	        free(rowof_tmp);
	return 0;
}

static int test_small_shapes(void)
{
	static const struct rcase cs[] = {
	        {1, 64, 4, 2, 0},    {63, 64, 4, 2, 0},   {65, 96, 8, 2, 0},   {300, 40, 1, 1, 0},
	        {257, 128, 8, 8, 0}, {999, 200, 5, 3, 0}, {500, 1024, 8, 2, 0}};
	if (!have_gpu())
		return GPU_SKIP;
	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]); i++)
		for (int v2 = 0; v2 < 4; v2++)
			if (run_case(&cs[i], v2))
				return 1;
	return 0;
}

static int test_bench_shape(void)
{
	struct rcase c = {8192, 768, 8, 2, 0};
	return !have_gpu()
	               ? GPU_SKIP
	               : run_case(&c, 0) || run_case(&c, 1) || run_case(&c, 2) || run_case(&c, 3);
}

static int test_skewed(void)
{
	struct rcase c = {4100, 768, 8, 2, 1};
	return !have_gpu()
	               ? GPU_SKIP
	               : run_case(&c, 0) || run_case(&c, 1) || run_case(&c, 2) || run_case(&c, 3);
}

static int test_unsupported(void)
{
	/* E past ROUTE_EMAX, K > E, D past the backward's columns: refused */
	CHECK(!policy_route_supported(ROUTE_EMAX + 1, 2, 64), "E %d accepted", ROUTE_EMAX + 1);
	CHECK(!policy_route_supported(4, 5, 64), "K > E accepted");
	CHECK(!policy_route_supported(8, 2, 4096), "D 4096 accepted");
	CHECK(policy_route_supported(8, 2, 768), "the benchmark's shape refused");
	CHECK(policy_route_v2_supported(8, 2, 768), "the benchmark's shape refused by v2");
	CHECK(policy_route_v3_supported(8, 2, 768), "the benchmark's shape refused by v3 / v4");
	CHECK(!policy_route_v2_supported(8, 2, 766), "v2 took D 766 (not a multiple of 4)");
	return 0;
}

/* ---- round 10 ----------------------------------------------------------------- */

static float *dev_rand(size_t n, double scale, float *keep)
{
	float *h = keep ? keep : (float *)malloc(n * 4), *d = NULL;
	for (size_t i = 0; i < n; i++)
		h[i] = (float)(gpu_nrand() * scale);
	if (cudaMalloc(&d, n * 4) == cudaSuccess)
		cudaMemcpy(d, h, n * 4, cudaMemcpyHostToDevice);
	if (!keep)
		free(h);
	return d;
}

static int same(const char *what, const void *a, const void *b, size_t bytes, int T)
{
	const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
	for (size_t i = 0; i < bytes; i++)
		CHECK(x[i] == y[i], "T %d: %s differs at byte %zu (of %zu)", T, what, i, bytes);
	return 0;
}

/* v3 against v2 on the same inputs: prob, sel, gate, the sorts (compact and
 * padded: perm, rowof, offs, auxc), the backward's dn and dW, and the slot
 * backward against policy_moe_scatter + v2's backward, bit for bit; aux
 * within 1e-12 relative */
static int cmp_v3(int T, int D, int E, int K, int nv)
{
	int R = T * K, Rp = R + R / 2 + 64 * E;
	size_t nx = (size_t)T * D, nw = (size_t)E * D, nws = policy_route_scratch_floats(T, E, D);
	float *x = dev_rand(nx, 1.0, NULL), *w = dev_rand(nw, 0.05, NULL);
	float *dgate = dev_rand(R, 1.0, NULL), *dn0 = dev_rand(nx, 1.0, NULL);
	float *dw0 = dev_rand(nw, 1.0, NULL), *slots = dev_rand((size_t)R * D, 1.0, NULL);
	size_t szs[13] = {(size_t)T * E * 4,
	                  (size_t)R * 4,
	                  (size_t)R * 4,
	                  (size_t)Rp * 4,
	                  (size_t)R * 4,
	                  (ROUTE_EMAX + 2) * 4,
	                  ROUTE_EMAX * 4,
	                  (size_t)Rp * 4,
	                  (size_t)R * 4,
	                  (ROUTE_EMAX + 2) * 4,
	                  nx * 4,
	                  nw * 4,
	                  nx * 4};
	void *h[2][14];
	double aux[2][2];
	float *ws, *prob, *gate, *auxc, *dn, *dw;
	int *sel, *rowof, *perm, *offs;
	double *d_aux;
	CHECK(x && w && dgate && dn0 && dw0 && slots, "cudaMalloc failed");
	CK(cudaMalloc(&ws, nws * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)R * 4));
	CK(cudaMalloc(&auxc, ROUTE_EMAX * 4));
	CK(cudaMalloc(&dn, nx * 4));
	CK(cudaMalloc(&dw, nw * 4));
	CK(cudaMalloc(&sel, (size_t)R * 4));
	CK(cudaMalloc(&rowof, (size_t)R * 4));
	CK(cudaMalloc(&perm, (size_t)Rp * 4));
	CK(cudaMalloc(&offs, (ROUTE_EMAX + 2) * 4));
	CK(cudaMalloc(&d_aux, 8));
	for (int v = 0; v < 2; v++) {
		int var = v ? nv : 1; /* 1 = v2, nv: 2 = v3, 3 = v4 */
		for (int i = 0; i < 13; i++)
			h[v][i] = calloc(1, szs[i]);
		h[v][13] = calloc(1, nw * 4);
		for (int mode = 0; mode < 2; mode++) {
			CK(cudaMemset(prob, 0xff, (size_t)T * E * 4));
			CK(cudaMemset(gate, 0xff, (size_t)R * 4));
			CK(cudaMemset(perm, 0x7f, (size_t)Rp * 4));
			CK(cudaMemset(offs, 0x7f, (ROUTE_EMAX + 2) * 4));
			CK(cudaMemset(auxc, 0xff, ROUTE_EMAX * 4));
			CHECK(!policy_route_fwd(prob, sel, gate, rowof, ws, x, w, T, E, K, D, var),
			      "%s", swerve_error_last());
			if (mode == 0) {
				CK(cudaMemcpy(h[v][0], prob, szs[0], cudaMemcpyDeviceToHost));
				CK(cudaMemcpy(h[v][1], sel, szs[1], cudaMemcpyDeviceToHost));
				CK(cudaMemcpy(h[v][2], gate, szs[2], cudaMemcpyDeviceToHost));
			}
			CHECK(!policy_route_sort(perm, rowof, offs, auxc, d_aux, ws, sel, T, E, K,
			                         Rp, mode == 0, mode ? 64 : 1, 0.01, var),
			      "%s", swerve_error_last());
			CK(cudaMemcpy(h[v][3 + 4 * mode], perm, szs[3], cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(h[v][4 + 4 * mode], rowof, szs[4], cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(h[v][5 + 4 * mode], offs, szs[5], cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(h[v][6], auxc, szs[6], cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(&aux[v][mode], d_aux, 8, cudaMemcpyDeviceToHost));
		}
		/* the backward (v3 without slots is v2's), then with slots: v2 as
		 * gpu.cu runs it (policy_moe_scatter, then the backward), v3 fused */
		CK(cudaMemcpy(dn, dn0, nx * 4, cudaMemcpyDeviceToDevice));
		CK(cudaMemcpy(dw, dw0, nw * 4, cudaMemcpyDeviceToDevice));
		CHECK(!policy_route_bwd(dn, ws, x, w, prob, sel, gate, dgate, auxc, T, E, K, D,
		                        var),
		      "%s", swerve_error_last());
		CHECK(!policy_route_dw(dw, ws, T, E, D), "%s", swerve_error_last());
		CK(cudaMemcpy(h[v][10], dn, nx * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][11], dw, nw * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemset(dn, 0xff, nx * 4));
		CK(cudaMemcpy(dw, dw0, nw * 4, cudaMemcpyDeviceToDevice));
		if (var == 1) {
			CHECK(!policy_moe_scatter(dn, slots, T, K, D, 0), "%s",
			      swerve_error_last());
			CHECK(!policy_route_bwd(dn, ws, x, w, prob, sel, gate, dgate, auxc, T, E, K,
			                        D, var),
			      "%s", swerve_error_last());
		} else
			CHECK(!policy_route_bwd_slots(dn, ws, slots, x, w, prob, sel, gate, dgate,
			                              auxc, T, E, K, D),
			      "%s", swerve_error_last());
		CHECK(!policy_route_dw(dw, ws, T, E, D), "%s", swerve_error_last());
		CK(cudaMemcpy(h[v][12], dn, nx * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][13], dw, nw * 4, cudaMemcpyDeviceToHost));
	}
	{
		static const char *const names[14] = {"prob",
		                                      "sel",
		                                      "gate",
		                                      "perm (compact)",
		                                      "rowof (compact)",
		                                      "offs (compact)",
		                                      "auxc",
		                                      "perm (padded)",
		                                      "rowof (padded)",
		                                      "offs (padded)",
		                                      "dn",
		                                      "dW",
		                                      "dn (slots)",
		                                      "dW (slots)"};
		for (int i = 0; i < 14; i++)
			if (same(names[i], h[0][i], h[1][i], i == 13 ? nw * 4 : szs[i], T))
				return 1;
	}
	for (int mode = 0; mode < 2; mode++)
		CHECK(fabs(aux[1][mode] - aux[0][mode]) <= 1e-6 * fabs(aux[0][mode]),
		      "aux v%d %.17g vs v2 %.17g", nv + 1, aux[1][mode], aux[0][mode]);
	printf("  v%d = v2 bit for bit: T %d D %d E %d K %d (aux %.3e rel)\n", nv + 1, T, D, E, K,
	       fabs(aux[1][0] - aux[0][0]) / (fabs(aux[0][0]) + 1e-300));
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < 14; i++)
			free(h[v][i]);
	cudaFree(x), cudaFree(w), cudaFree(dgate), cudaFree(dn0), cudaFree(dw0), cudaFree(slots);
	cudaFree(ws), cudaFree(prob), cudaFree(gate), cudaFree(auxc), cudaFree(dn), cudaFree(dw);
	cudaFree(sel), cudaFree(rowof), cudaFree(perm), cudaFree(offs), cudaFree(d_aux);
	return 0;
}

static int test_v3_bitwise(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	for (int nv = 2; nv <= 3; nv++) /* v3, v4 */
		if (cmp_v3(8192, 768, 8, 2, nv) || cmp_v3(999, 200, 5, 3, nv) ||
		    cmp_v3(63, 64, 4, 1, nv) || cmp_v3(4100, 1024, 8, 8, nv) ||
		    cmp_v3(1, 64, 4, 2, nv) || cmp_v3(20000, 896, 7, 2, nv))
			return 1;
	return 0;
}

static uint16_t h_f2bf(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return 0x7fc0;
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* gpu_comb.cu against gpu_moe.cu's kernels (bit for bit) and the CPU, on
 * the rows of a real routing sort (compact) */
static int cmp_comb(int T, int D, int E, int K)
{
	int R = T * K, var = policy_route_v2_supported(E, K, D) ? 1 : 0;
	size_t nx = (size_t)T * D, nr = (size_t)R * D;
	float *h_dy = (float *)malloc(nx * 4), *h_yp = (float *)malloc(nr * 4);
	float *h_dxp = (float *)malloc(nr * 4), *h_dx0 = (float *)malloc(nx * 4);
	float *x = dev_rand(nx, 1.0, NULL), *w = dev_rand((size_t)E * D, 0.05, NULL);
	float *dy = dev_rand(nx, 1.0, h_dy), *yp = dev_rand(nr, 1.0, h_yp);
	float *dxp = dev_rand(nr, 1.0, h_dxp), *dx0 = dev_rand(nx, 1.0, h_dx0);
	float *ws, *prob, *gate, *auxc, *dg[2], *dx[2];
	int *sel, *rowof, *perm, *offs;
	uint16_t *dyp[2];
	double *d_aux, worst = 0;
	CHECK(x && w && dy && yp && dxp && dx0, "cudaMalloc failed");
	CK(cudaMalloc(&ws, policy_route_scratch_floats(T, E, D) * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)R * 4));
	CK(cudaMalloc(&auxc, ROUTE_EMAX * 4));
	CK(cudaMalloc(&sel, (size_t)R * 4));
	CK(cudaMalloc(&rowof, (size_t)R * 4));
	CK(cudaMalloc(&perm, (size_t)R * 4));
	CK(cudaMalloc(&offs, (ROUTE_EMAX + 2) * 4));
	CK(cudaMalloc(&d_aux, 8));
	for (int v = 0; v < 2; v++) {
		CK(cudaMalloc(&dg[v], (size_t)R * 4));
		CK(cudaMalloc(&dx[v], nx * 4));
		CK(cudaMalloc(&dyp[v], nr * 2));
		CK(cudaMemset(dg[v], 0xff, (size_t)R * 4));
		CK(cudaMemset(dyp[v], 0xff, nr * 2));
	}
	CHECK(!policy_route_fwd(prob, sel, gate, rowof, ws, x, w, T, E, K, D, var), "%s",
	      swerve_error_last());
	CHECK(!policy_route_sort(perm, rowof, offs, auxc, d_aux, ws, sel, T, E, K, R, 1, 1, 0.01,
	                         var),
	      "%s", swerve_error_last());
	{
		struct policy_moe_dims dm = {};
		memset(&dm, 0, sizeof(dm));
		dm.T = T, dm.K = K, dm.E = E, dm.D = D, dm.F = 64, dm.offs = offs, dm.perm = perm;
		CHECK(!policy_moe_combine_bwd(&dm, dyp[0], dg[0], dy, yp, gate), "%s",
		      swerve_error_last());
	}
	CHECK(!policy_moe_combine_bwd2(dyp[1], dg[1], dy, yp, gate, rowof, T, K, D), "%s",
	      swerve_error_last());
	{
		uint16_t *a = (uint16_t *)malloc(nr * 2), *b = (uint16_t *)malloc(nr * 2);
		float *ga = (float *)malloc((size_t)R * 4), *gb = (float *)malloc((size_t)R * 4);
		float *hg = (float *)malloc((size_t)R * 4);
		int *hrow = (int *)malloc((size_t)R * 4);
		CK(cudaMemcpy(a, dyp[0], nr * 2, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(b, dyp[1], nr * 2, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(ga, dg[0], (size_t)R * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(gb, dg[1], (size_t)R * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(hg, gate, (size_t)R * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(hrow, rowof, (size_t)R * 4, cudaMemcpyDeviceToHost));
		if (same("dyp (combine bwd2 vs k_mg_combine_bwd)", a, b, nr * 2, T) ||
		    same("dgate (combine bwd2 vs k_mg_combine_bwd)", ga, gb, (size_t)R * 4, T))
			return 1;
		for (int t = 0; t < T; t++)
			for (int j = 0; j < K; j++) {
				size_t tj = (size_t)t * K + j;
				double sd = 0, sa = 0;
				for (int c = 0; c < D; c++) {
					float dv = h_dy[(size_t)t * D + c];
					uint16_t want = h_f2bf(hg[tj] * dv);
					CHECK(b[(size_t)hrow[tj] * D + c] == want,
					      "T %d: dyp row %d col %d: %04x vs %04x", T, hrow[tj],
					      c, b[(size_t)hrow[tj] * D + c], want);
					sd += (double)dv * h_yp[tj * D + c];
					sa += fabs((double)dv * h_yp[tj * D + c]);
				}
				double err = fabs(gb[tj] - sd) / (sa > 1 ? sa : 1);
				CHECK(err < 1e-5, "T %d: dgate[%zu] %g vs %g", T, tj, gb[tj], sd);
				worst = err > worst ? err : worst;
			}
		free(a), free(b), free(ga), free(gb), free(hg), free(hrow);
	}
	for (int beta = 0; beta < 2; beta++) {
		float *a = (float *)malloc(nx * 4), *b = (float *)malloc(nx * 4);
		for (int v = 0; v < 2; v++)
			CK(cudaMemcpy(dx[v], dx0, nx * 4, cudaMemcpyDeviceToDevice));
		CHECK(!policy_moe_scatter(dx[0], dxp, T, K, D, beta), "%s", swerve_error_last());
		CHECK(!policy_moe_scatter2(dx[1], dxp, T, K, D, beta), "%s", swerve_error_last());
		CK(cudaMemcpy(a, dx[0], nx * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(b, dx[1], nx * 4, cudaMemcpyDeviceToHost));
		if (same("dx (scatter2 vs k_mg_scatter)", a, b, nx * 4, T))
			return 1;
		for (int t = 0; t < T; t++)
			for (int c = 0; c < D; c++) {
				volatile float s = beta ? h_dx0[(size_t)t * D + c] : 0.0f;
				for (int j = 0; j < K; j++)
					s = s + h_dxp[((size_t)t * K + j) * D + c];
				CHECK(b[(size_t)t * D + c] == s,
				      "T %d beta %d: dx[%d][%d] %.9g vs %.9g", T, beta, t, c,
				      b[(size_t)t * D + c], (float)s);
			}
		free(a), free(b);
	}
	printf("  comb T %d D %d E %d K %d: dyp, dgate, dx bit for bit with gpu_moe.cu's; "
	       "dgate vs double %.2e\n",
	       T, D, E, K, worst);
	free(h_dy), free(h_yp), free(h_dxp), free(h_dx0);
	cudaFree(x), cudaFree(w), cudaFree(dy), cudaFree(yp), cudaFree(dxp), cudaFree(dx0);
	cudaFree(ws), cudaFree(prob), cudaFree(gate), cudaFree(auxc), cudaFree(sel);
	cudaFree(rowof), cudaFree(perm), cudaFree(offs), cudaFree(d_aux);
	for (int v = 0; v < 2; v++)
		cudaFree(dg[v]), cudaFree(dx[v]), cudaFree(dyp[v]);
	return 0;
}

static int test_comb(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	return cmp_comb(8192, 768, 8, 2) || cmp_comb(999, 200, 5, 3) || cmp_comb(300, 40, 1, 1) ||
	       cmp_comb(65, 98, 8, 2) || cmp_comb(257, 1024, 8, 8);
}

static int test_comb_refused(void)
{
	CHECK(policy_moe_combine_bwd2(NULL, NULL, NULL, NULL, NULL, NULL, 4, 2, COMB_DMAX + 1) ==
	              SWERVE_EINVAL,
	      "combine bwd2 took D %d", COMB_DMAX + 1);
	setenv("POLICY_GPU_MOE_COMB", "neww", 1);
	CHECK(policy_moe_comb_mode() == SWERVE_EINVAL, "a misspelt POLICY_GPU_MOE_COMB accepted");
	setenv("POLICY_GPU_MOE_COMB", "old", 1);
	CHECK(policy_moe_comb_mode() == 0, "POLICY_GPU_MOE_COMB=old not 0");
	setenv("POLICY_GPU_MOE_COMB", "new", 1);
	CHECK(policy_moe_comb_mode() == 1, "POLICY_GPU_MOE_COMB=new not 1");
	unsetenv("POLICY_GPU_MOE_COMB");
	CHECK(policy_moe_comb_mode() == 1, "the default not new (round 10's default)");
	return 0;
}

/* ---- round 26 ------------------------------------------------------------------ */

/* policy_route_fwd_norm_b16 against policy_ew_add_rms16 (the bf16 stream
 * row a alone, y in bf16) + policy_route_fwd_b16 on y: y, rstd, prob, sel,
 * gate, rowof and the per-block counts and sums (the sort's input), every
 * byte; outputs poisoned before each launch */
static int cmp_norm_route(int T, int D, int E, int K)
{
	int R = T * K;
	size_t nx = (size_t)T * D, nws = policy_route_scratch_floats(T, E, D);
	size_t nb = ((size_t)T + 15) / 16, nsc = 2 * nb * E; /* hist, psum */
	uint16_t *ha = (uint16_t *)malloc(nx * 2), *a, *y;
	float *nw = NULL, *wr = dev_rand((size_t)E * D, 0.05, NULL);
	float *ws, *prob, *gate, *rstd;
	int *sel, *rowof;
	const size_t szs[7] = {nx * 2,        (size_t)T * 4, (size_t)T * E * 4,
	                       (size_t)R * 4, (size_t)R * 4, (size_t)R * 4,
	                       nsc * 4};
	void *h[2][7];
	CHECK(ha && wr, "allocation failed");
	for (size_t i = 0; i < nx; i++) /* a residual stream's scale, bf16 */
		ha[i] = h_f2bf((float)(gpu_nrand() * 3.0));
	CK(cudaMalloc(&a, nx * 2));
	CK(cudaMalloc(&y, nx * 2));
	CK(cudaMalloc(&ws, nws * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)R * 4));
	CK(cudaMalloc(&rstd, (size_t)T * 4));
	CK(cudaMalloc(&sel, (size_t)R * 4));
	CK(cudaMalloc(&rowof, (size_t)R * 4));
	CK(cudaMalloc(&nw, (size_t)D * 4));
	CK(cudaMemcpy(a, ha, nx * 2, cudaMemcpyHostToDevice));
	{ /* the norm's weight around 1, as trained ones are */
		float *hw = (float *)malloc((size_t)D * 4);
		for (int i = 0; i < D; i++)
			hw[i] = (float)(1.0 + 0.3 * gpu_nrand());
		CK(cudaMemcpy(nw, hw, (size_t)D * 4, cudaMemcpyHostToDevice));
		free(hw);
	}
	for (int v = 0; v < 2; v++) {
		for (int i = 0; i < 7; i++)
			h[v][i] = calloc(1, szs[i]);
		CK(cudaMemset(y, 0xff, nx * 2));
		CK(cudaMemset(rstd, 0xff, (size_t)T * 4));
		CK(cudaMemset(prob, 0xff, (size_t)T * E * 4));
		CK(cudaMemset(sel, 0xff, (size_t)R * 4));
		CK(cudaMemset(gate, 0xff, (size_t)R * 4));
		CK(cudaMemset(rowof, 0xff, (size_t)R * 4));
		CK(cudaMemset(ws, 0xff, nws * 4));
		if (v == 0) {
			CHECK(!policy_ew_add_rms16(NULL, 1, y, 1, NULL, rstd, a, NULL, NULL, NULL,
			                           NULL, 0, NULL, 0, nw, T, D, 1e-5f),
			      "%s", swerve_error_last());
			CHECK(!policy_route_fwd_b16(prob, sel, gate, rowof, ws, y, wr, T, E, K, D),
			      "%s", swerve_error_last());
		} else {
			CHECK(!policy_route_fwd_norm_b16(prob, sel, gate, rowof, ws, y, rstd, a, nw,
			                                 wr, T, E, K, D, 1e-5f),
			      "%s", swerve_error_last());
		}
		CK(cudaDeviceSynchronize());
		CK(cudaMemcpy(h[v][0], y, szs[0], cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][1], rstd, szs[1], cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][2], prob, szs[2], cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][3], sel, szs[3], cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][4], gate, szs[4], cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][5], rowof, szs[5], cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(h[v][6], ws, szs[6], cudaMemcpyDeviceToHost));
	}
	{
		static const char *const names[7] = {
		        "y", "rstd", "prob", "sel", "gate", "rowof", "block counts and sums"};
		for (int i = 0; i < 7; i++)
			if (same(names[i], h[0][i], h[1][i], szs[i], T))
				return 1;
	}
	{ /* not vacuous: the rows were normalised (rms of y ~ the weight's) */
		const uint16_t *hy = (const uint16_t *)h[1][0];
		double ss = 0;
		for (int i = 0; i < D; i++) {
			uint32_t u = (uint32_t)hy[i] << 16;
			float f;
			memcpy(&f, &u, 4);
			ss += (double)f * f;
		}
		CHECK(ss / D > 0.3 && ss / D < 3.0, "T %d: row 0 of y has mean square %.3g", T,
		      ss / D);
	}
	printf("  norm + route = the two calls bit for bit: T %d D %d E %d K %d\n", T, D, E, K);
	for (int v = 0; v < 2; v++)
		for (int i = 0; i < 7; i++)
			free(h[v][i]);
	free(ha);
	cudaFree(a), cudaFree(y), cudaFree(nw), cudaFree(wr), cudaFree(ws), cudaFree(prob);
	cudaFree(gate), cudaFree(rstd), cudaFree(sel), cudaFree(rowof);
	return 0;
}

static int test_norm_route(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	return cmp_norm_route(8192, 768, 8, 2) || cmp_norm_route(999, 200, 5, 3) ||
	       cmp_norm_route(63, 64, 4, 1) || cmp_norm_route(4100, 1024, 8, 8) ||
	       cmp_norm_route(1, 64, 4, 2) || cmp_norm_route(20000, 896, 7, 2) ||
	       cmp_norm_route(65536, 768, 8, 2);
}

/* shapes past the router's kernels and misaligned rows are refused with a
 * message (gpu.cu checks before it calls and runs the two calls instead) */
static int test_norm_route_refused(void)
{
	int T = 64, D = 768, E = 8, K = 2;
	uint16_t *a, *y;
	float *ws, *prob, *gate, *rstd, *nw, *wr;
	int *sel, *rowof;
	if (!have_gpu())
		return GPU_SKIP;
	CHECK(!policy_route_fwd_norm_supported(9, 2, 768), "E 9 taken");
	CHECK(!policy_route_fwd_norm_supported(8, 2, 1028), "D 1028 taken");
	CHECK(!policy_route_fwd_norm_supported(8, 2, 770), "D 770 taken");
	CHECK(policy_route_fwd_norm_supported(8, 2, 768), "the benchmark's shape refused");
	CK(cudaMalloc(&a, (size_t)T * D * 2 + 16));
	CK(cudaMalloc(&y, (size_t)T * D * 2 + 16));
	CK(cudaMalloc(&ws, policy_route_scratch_floats(T, E, D) * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)T * K * 4));
	CK(cudaMalloc(&rstd, (size_t)T * 4));
	CK(cudaMalloc(&nw, (size_t)D * 4));
	CK(cudaMalloc(&wr, (size_t)E * D * 4 + 16));
	CK(cudaMalloc(&sel, (size_t)T * K * 4));
	CK(cudaMalloc(&rowof, (size_t)T * K * 4));
	CHECK(policy_route_fwd_norm_b16(prob, sel, gate, rowof, ws, y, rstd, a + 4, nw, wr, T, E, K,
	                                D, 1e-5f) == SWERVE_EINVAL &&
	              strstr(swerve_error_last(), "16-byte"),
	      "a misaligned row taken: %s", swerve_error_last());
	CHECK(policy_route_fwd_norm_b16(prob, sel, gate, rowof, ws, y, rstd, a, nw, wr + 1, T, E, K,
	                                D, 1e-5f) == SWERVE_EINVAL,
	      "a misaligned router weight taken");
	CHECK(policy_route_fwd_norm_b16(prob, sel, gate, rowof, ws, y, rstd, a, nw, wr, T, 9, K, D,
	                                1e-5f) == SWERVE_EINVAL &&
	              strstr(swerve_error_last(), "E 9"),
	      "E 9 taken: %s", swerve_error_last());
	CHECK(!policy_route_fwd_norm_b16(prob, sel, gate, rowof, ws, y, rstd, a, nw, wr, 0, E, K, D,
	                                 1e-5f),
	      "T 0 refused: %s", swerve_error_last());
	cudaFree(a), cudaFree(y), cudaFree(ws), cudaFree(prob), cudaFree(gate), cudaFree(rstd);
	cudaFree(nw), cudaFree(wr), cudaFree(sel), cudaFree(rowof);
	return 0;
}

int main(void)
{
	const struct gpu_test tests[] = {
	        {"route: small shapes (T not a multiple of the blocks, E 1..8, K up to E)",
	         test_small_shapes},
	        {"route: the benchmark's shape (T 8192, D 768, E 8, K 2)", test_bench_shape},
	        {"route: a routing skewed to one expert (padded capacity past the buffers)",
	         test_skewed},
	        {"route: unsupported shapes refused (gpu.cu falls back)", test_unsupported},
	        {"route v3 and v4: bit for bit with v2, the slot sum folded in (6 shapes)",
	         test_v3_bitwise},
	        {"moe comb new: combine bwd2 and scatter2 bit for bit with the old kernels and "
	         "vs the CPU (5 shapes)",
	         test_comb},
	        {"moe comb: D past COMB_DMAX and a misspelt switch refused", test_comb_refused},
	        {"norm + route (round 26): bit for bit the norm and the router's forward (7 "
	         "shapes)",
	         test_norm_route},
	        {"norm + route: unsupported shapes and misaligned operands refused",
	         test_norm_route_refused},
	};
	gpu_rng_seed();
	return gpu_run_tests(tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
