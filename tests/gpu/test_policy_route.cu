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
 * in two runs (a deterministic reduction). Every case runs on both
 * variants: v1 (the default) and v2 (POLICY_GPU_ROUTE=v2). */
extern "C" {
#include "sandbox/error.h"
}
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

	/* backward, twice (dW bitwise equal) */
	for (int rep = 0; rep < 2; rep++) {
		CK(cudaMemcpy(d_dn, dn0, nx * 4, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(d_dw, dw0, nw * 4, cudaMemcpyHostToDevice));
		CK(cudaMemset(d_ws, 0xff, nws * 4));
		CHECK(!policy_route_bwd(d_dn, d_ws, d_x, d_w, d_prob, d_sel, d_gate, d_dgate,
		                        d_auxc, T, E, K, D, v2),
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
	       v2 ? "v2" : "v1", T, D, E, K, rc->skew ? " skewed" : "", worst_p, worst_g, worst_dn,
	       dmax, worst_dw, wmax);
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
		for (int v2 = 0; v2 < 2; v2++)
			if (run_case(&cs[i], v2))
				return 1;
	return 0;
}

static int test_bench_shape(void)
{
	struct rcase c = {8192, 768, 8, 2, 0};
	return !have_gpu() ? GPU_SKIP : run_case(&c, 0) || run_case(&c, 1);
}

static int test_skewed(void)
{
	struct rcase c = {4100, 768, 8, 2, 1};
	return !have_gpu() ? GPU_SKIP : run_case(&c, 0) || run_case(&c, 1);
}

static int test_unsupported(void)
{
	/* E past ROUTE_EMAX, K > E, D past the backward's columns: refused */
	CHECK(!policy_route_supported(ROUTE_EMAX + 1, 2, 64), "E %d accepted", ROUTE_EMAX + 1);
	CHECK(!policy_route_supported(4, 5, 64), "K > E accepted");
	CHECK(!policy_route_supported(8, 2, 4096), "D 4096 accepted");
	CHECK(policy_route_supported(8, 2, 768), "the benchmark's shape refused");
	CHECK(policy_route_v2_supported(8, 2, 768), "the benchmark's shape refused by v2");
	CHECK(!policy_route_v2_supported(8, 2, 766), "v2 took D 766 (not a multiple of 4)");
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
	};
	gpu_rng_seed();
	return gpu_run_tests(tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
