/* test_lightning.c - the CPU reference of lightning attention against a
 * brute-force quadratic form (and that form's gradients against finite
 * differences), decode against the forward, and input validation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "sandbox/error.h"

static double urand(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return ((*seed >> 8) & 0xffffff) / (double)0x1000000 * 2.0 - 1.0;
}

static float *rand_buf(size_t n, unsigned *seed)
{
	float *p = malloc(n * sizeof(float));
	cr_assert(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (float)urand(seed);
	return p;
}

/* max |a - b| / max(max |b|, 1e-30) */
static double rel_err(const float *a, const double *b, size_t n)
{
	double num = 0.0, den = 1e-30;
	for (size_t i = 0; i < n; i++) {
		num = fmax(num, fabs(a[i] - b[i]));
		den = fmax(den, fabs(b[i]));
	}
	return num / den;
}

struct problem {
	struct swerve_lightning_dims dims;
	int32_t cu[8];
	int N;
	float *q, *k, *v, *dout, *s0, *dsT, slopes[4];
};

static void problem_init(struct problem *p, unsigned seed, int with_states)
{
	static const int lens[] = {5, 0, 1, 37, 16};
	memset(p, 0, sizeof(*p));
	p->dims =
	        (struct swerve_lightning_dims){.batch = 5, .heads = 3, .dim = 6, .max_seqlen = 37};
	p->cu[0] = 0;
	for (int b = 0; b < p->dims.batch; b++)
		p->cu[b + 1] = p->cu[b] + lens[b];
	p->N = p->cu[p->dims.batch];
	size_t n = (size_t)p->N * p->dims.heads * p->dims.dim;
	size_t ns = (size_t)p->dims.batch * p->dims.heads * p->dims.dim * p->dims.dim;
	p->q = rand_buf(n, &seed);
	p->k = rand_buf(n, &seed);
	p->v = rand_buf(n, &seed);
	p->dout = rand_buf(n, &seed);
	p->s0 = with_states ? rand_buf(ns, &seed) : NULL;
	p->dsT = with_states ? rand_buf(ns, &seed) : NULL;
	/* a strong decay, a weak one and none at all */
	p->slopes[0] = 0.7f;
	p->slopes[1] = 0.05f;
	p->slopes[2] = 0.0f;
}

static void problem_free(struct problem *p)
{
	free(p->q);
	free(p->k);
	free(p->v);
	free(p->dout);
	free(p->s0);
	free(p->dsT);
}

#define IDX(t, h, i)     (((size_t)(t)*H + (h)) * D + (i))
#define SIDX(b, h, i, j) ((((size_t)(b)*H + (h)) * D + (i)) * D + (j))

/* o_t = sum_{s<=t} lambda^(t-s) (q_t . k_s) v_s + lambda^(t+1) q_t S0, and
 * S_T = lambda^T S0 + sum_s lambda^(T-1-s) k_s^T v_s, with t, s inside the sequence. */
static void brute_forward(double *o, double *sT, const struct problem *p)
{
	const int H = p->dims.heads, D = p->dims.dim;
	for (int b = 0; b < p->dims.batch; b++)
		for (int h = 0; h < H; h++) {
			double lam = exp(-(double)p->slopes[h]);
			int t0 = p->cu[b], T = p->cu[b + 1] - t0;
			for (int t = 0; t < T; t++)
				for (int e = 0; e < D; e++) {
					double acc = 0.0;
					for (int s = 0; s <= t; s++) {
						double qk = 0.0;
						for (int i = 0; i < D; i++)
							qk += (double)p->q[IDX(t0 + t, h, i)] *
							      p->k[IDX(t0 + s, h, i)];
						acc += pow(lam, t - s) * qk *
						       p->v[IDX(t0 + s, h, e)];
					}
					if (p->s0)
						for (int i = 0; i < D; i++)
							acc += pow(lam, t + 1) *
							       p->q[IDX(t0 + t, h, i)] *
							       p->s0[SIDX(b, h, i, e)];
					o[IDX(t0 + t, h, e)] = acc;
				}
			for (int i = 0; i < D; i++)
				for (int e = 0; e < D; e++) {
					double acc =
					        p->s0 ? pow(lam, T) * p->s0[SIDX(b, h, i, e)] : 0.0;
					for (int s = 0; s < T; s++)
						acc += pow(lam, T - 1 - s) *
						       p->k[IDX(t0 + s, h, i)] *
						       p->v[IDX(t0 + s, h, e)];
					sT[SIDX(b, h, i, e)] = acc;
				}
		}
}

/* The gradients of L = sum o . dout + sum S_T . dS_T, written out term by term. */
static void brute_backward(double *dq, double *dk, double *dv, double *ds0, const struct problem *p)
{
	const int H = p->dims.heads, D = p->dims.dim;
	for (int b = 0; b < p->dims.batch; b++)
		for (int h = 0; h < H; h++) {
			double lam = exp(-(double)p->slopes[h]);
			int t0 = p->cu[b], T = p->cu[b + 1] - t0;
			for (int t = 0; t < T; t++)
				for (int i = 0; i < D; i++) {
					double aq = 0.0, ak = 0.0, av = 0.0;
					for (int s = 0; s < T; s++) {
						double gv = 0.0, qk = 0.0;
						int lo = s <= t ? s : t, hi = s <= t ? t : s;
						for (int e = 0; e < D; e++) {
							gv += (double)p->dout[IDX(t0 + hi, h, e)] *
							      p->v[IDX(t0 + lo, h, e)];
							qk += (double)p->q[IDX(t0 + hi, h, e)] *
							      p->k[IDX(t0 + lo, h, e)];
						}
						double dec = pow(lam, hi - lo);
						if (s <= t) /* t is the query, s the key */
							aq += dec * gv * p->k[IDX(t0 + s, h, i)];
						if (s >= t) { /* t is the key, s the query */
							ak += dec * gv * p->q[IDX(t0 + s, h, i)];
							av += dec * qk * p->dout[IDX(t0 + s, h, i)];
						}
					}
					for (int e = 0; e < D; e++) {
						if (p->s0)
							aq += pow(lam, t + 1) *
							      p->dout[IDX(t0 + t, h, e)] *
							      p->s0[SIDX(b, h, i, e)];
						if (p->dsT) {
							double dec = pow(lam, T - 1 - t);
							ak += dec * p->v[IDX(t0 + t, h, e)] *
							      p->dsT[SIDX(b, h, i, e)];
							av += dec * p->k[IDX(t0 + t, h, e)] *
							      p->dsT[SIDX(b, h, e, i)];
						}
					}
					dq[IDX(t0 + t, h, i)] = aq;
					dk[IDX(t0 + t, h, i)] = ak;
					dv[IDX(t0 + t, h, i)] = av;
				}
			for (int i = 0; i < D; i++)
				for (int e = 0; e < D; e++) {
					double acc = p->dsT ? pow(lam, T) * p->dsT[SIDX(b, h, i, e)]
					                    : 0.0;
					for (int t = 0; t < T; t++)
						acc += pow(lam, t + 1) * p->q[IDX(t0 + t, h, i)] *
						       p->dout[IDX(t0 + t, h, e)];
					ds0[SIDX(b, h, i, e)] = acc;
				}
		}
}

static size_t ntok(const struct problem *p)
{
	return (size_t)p->N * p->dims.heads * p->dims.dim;
}

static size_t nstate(const struct problem *p)
{
	return (size_t)p->dims.batch * p->dims.heads * p->dims.dim * p->dims.dim;
}

static void check_forward(int with_states)
{
	struct problem p;
	problem_init(&p, 11u + with_states, with_states);
	size_t n = ntok(&p), ns = nstate(&p);
	float *o = malloc(n * sizeof(float)), *sT = malloc(ns * sizeof(float));
	double *ro = malloc(n * sizeof(double)), *rsT = malloc(ns * sizeof(double));
	cr_assert_eq(
	        swerve_lightning_ref_forward(o, sT, p.q, p.k, p.v, p.cu, p.slopes, p.s0, &p.dims),
	        0, "%s", swerve_error_last());
	brute_forward(ro, rsT, &p);
	double eo = rel_err(o, ro, n), es = rel_err(sT, rsT, ns);
	cr_expect_lt(eo, 1e-6, "o: relative error %g", eo);
	cr_expect_lt(es, 1e-6, "final state: relative error %g", es);
	free(o);
	free(sT);
	free(ro);
	free(rsT);
	problem_free(&p);
}

Test(lightning_ref, forward_matches_quadratic_form)
{
	check_forward(0);
}

Test(lightning_ref, forward_with_initial_state_matches_quadratic_form)
{
	check_forward(1);
}

static void check_backward(int with_states)
{
	struct problem p;
	problem_init(&p, 23u + with_states, with_states);
	size_t n = ntok(&p), ns = nstate(&p);
	float *g[3], *ds0 = malloc(ns * sizeof(float));
	double *r[3], *rds0 = malloc(ns * sizeof(double));
	for (int i = 0; i < 3; i++) {
		g[i] = malloc(n * sizeof(float));
		r[i] = malloc(n * sizeof(double));
	}
	cr_assert_eq(swerve_lightning_ref_backward(g[0], g[1], g[2], ds0, p.q, p.k, p.v, p.dout,
	                                           p.dsT, p.cu, p.slopes, p.s0, &p.dims),
	             0, "%s", swerve_error_last());
	brute_backward(r[0], r[1], r[2], rds0, &p);
	static const char *names[] = {"dq", "dk", "dv"};
	for (int i = 0; i < 3; i++) {
		double e = rel_err(g[i], r[i], n);
		cr_expect_lt(e, 1e-6, "%s: relative error %g", names[i], e);
	}
	double e = rel_err(ds0, rds0, ns);
	cr_expect_lt(e, 1e-6, "dS0: relative error %g", e);
	for (int i = 0; i < 3; i++) {
		free(g[i]);
		free(r[i]);
	}
	free(ds0);
	free(rds0);
	problem_free(&p);
}

Test(lightning_ref, backward_matches_quadratic_form)
{
	check_backward(0);
}

Test(lightning_ref, backward_with_states_matches_quadratic_form)
{
	check_backward(1);
}

/* L = sum o . dout + sum S_T . dS_T is linear in each of q, k, v and S0 alone,
 * so a unit step gives the exact derivative: an independent check of the
 * hand-written gradients above. */
static double loss(const struct problem *p)
{
	size_t n = ntok(p), ns = nstate(p);
	double *o = malloc(n * sizeof(double)), *sT = malloc(ns * sizeof(double)), L = 0.0;
	brute_forward(o, sT, p);
	for (size_t i = 0; i < n; i++)
		L += o[i] * p->dout[i];
	for (size_t i = 0; i < ns; i++)
		L += sT[i] * p->dsT[i];
	free(o);
	free(sT);
	return L;
}

Test(lightning_ref, gradients_match_finite_differences)
{
	struct problem p;
	problem_init(&p, 5u, 1);
	size_t n = ntok(&p), ns = nstate(&p);
	double *r[3], *rds0 = malloc(ns * sizeof(double));
	for (int i = 0; i < 3; i++)
		r[i] = malloc(n * sizeof(double));
	brute_backward(r[0], r[1], r[2], rds0, &p);
	float *x[4] = {p.q, p.k, p.v, p.s0};
	double *gx[4] = {r[0], r[1], r[2], rds0};
	unsigned seed = 99;
	double L0 = loss(&p);
	for (int which = 0; which < 4; which++)
		for (int trial = 0; trial < 6; trial++) {
			size_t lim = which == 3 ? ns : n;
			size_t at = (size_t)((urand(&seed) + 1.0) / 2.0 * lim) % lim;
			float keep = x[which][at];
			x[which][at] = keep + 1.0f;
			double fd = loss(&p) - L0;
			x[which][at] = keep;
			cr_expect(fabs(fd - gx[which][at]) <= 1e-9 * (1.0 + fabs(fd)),
			          "input %d element %zu: finite difference %.12g, gradient %.12g",
			          which, at, fd, gx[which][at]);
		}
	for (int i = 0; i < 3; i++)
		free(r[i]);
	free(rds0);
	problem_free(&p);
}

Test(lightning_ref, decode_steps_equal_forward)
{
	struct problem p;
	problem_init(&p, 31u, 1);
	const int H = p.dims.heads, D = p.dims.dim, B = p.dims.batch;
	size_t n = ntok(&p), ns = nstate(&p);
	float *o = malloc(n * sizeof(float)), *sT = malloc(ns * sizeof(float));
	cr_assert_eq(
	        swerve_lightning_ref_forward(o, sT, p.q, p.k, p.v, p.cu, p.slopes, p.s0, &p.dims),
	        0);
	/* decode each sequence token by token from S0, one sequence per "batch" */
	float *state = malloc(ns * sizeof(float));
	memcpy(state, p.s0, ns * sizeof(float));
	float od[64];
	double worst = 0.0;
	for (int b = 0; b < B; b++)
		for (int t = p.cu[b]; t < p.cu[b + 1]; t++) {
			cr_assert_eq(
			        swerve_lightning_ref_decode(od, state + (size_t)b * H * D * D,
			                                    p.q + IDX(t, 0, 0), p.k + IDX(t, 0, 0),
			                                    p.v + IDX(t, 0, 0), p.slopes, 1, H, D),
			        0, "%s", swerve_error_last());
			for (int i = 0; i < H * D; i++)
				worst = fmax(worst, fabs(od[i] - o[IDX(t, 0, 0) + i]) /
				                            (1.0 + fabs(o[IDX(t, 0, 0) + i])));
		}
	cr_expect_lt(worst, 1e-5, "decode outputs differ from forward by %g", worst);
	double ws = 0.0;
	for (size_t i = 0; i < ns; i++)
		ws = fmax(ws, fabs(state[i] - sT[i]) / (1.0 + fabs(sT[i])));
	cr_expect_lt(ws, 1e-5, "decode state differs from forward final state by %g", ws);
	free(o);
	free(sT);
	free(state);
	problem_free(&p);
}

Test(lightning_ref, empty_sequence_keeps_initial_state)
{
	struct problem p;
	problem_init(&p, 3u, 1);
	size_t n = ntok(&p), ns = nstate(&p);
	float *o = malloc(n * sizeof(float)), *sT = malloc(ns * sizeof(float));
	cr_assert_eq(
	        swerve_lightning_ref_forward(o, sT, p.q, p.k, p.v, p.cu, p.slopes, p.s0, &p.dims),
	        0);
	/* sequence 1 has no tokens */
	size_t per = (size_t)p.dims.heads * p.dims.dim * p.dims.dim;
	cr_expect_eq(memcmp(sT + per, p.s0 + per, per * sizeof(float)), 0);
	free(o);
	free(sT);
	problem_free(&p);
}

Test(lightning_ref, rejects_bad_input_with_a_message)
{
	struct problem p;
	problem_init(&p, 7u, 0);
	size_t n = ntok(&p);
	float *o = malloc(n * sizeof(float));
	p.cu[2] = p.cu[1] - 1;
	cr_expect_eq(
	        swerve_lightning_ref_forward(o, NULL, p.q, p.k, p.v, p.cu, p.slopes, NULL, &p.dims),
	        SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "cu_seqlens[2]") != NULL, "message: %s",
	          swerve_error_last());
	p.cu[2] = p.cu[1] + 1; /* valid again */
	p.slopes[1] = -1.0f;
	cr_expect_eq(swerve_lightning_ref_backward(o, o, o, NULL, p.q, p.k, p.v, p.dout, NULL, p.cu,
	                                           p.slopes, NULL, &p.dims),
	             SWERVE_EINVAL);
	cr_expect(strstr(swerve_error_last(), "slopes[1]") != NULL, "message: %s",
	          swerve_error_last());
	cr_expect_eq(swerve_lightning_ref_decode(o, o, o, o, o, p.slopes, 0, 1, 1), SWERVE_EINVAL);
	free(o);
	problem_free(&p);
}

Test(lightning_ref, slopes_follow_the_spec)
{
	/* s_h = (2^(-8/H))^(h+1), scaled by (1 - l/(L-1) + 1e-5) */
	cr_expect_float_eq(swerve_lightning_slope(0, 16, 0, 32), powf(2.0f, -0.5f) * 1.00001f,
	                   1e-6);
	cr_expect_float_eq(swerve_lightning_slope(15, 16, 0, 32), powf(2.0f, -8.0f) * 1.00001f,
	                   1e-9);
	cr_expect_float_eq(swerve_lightning_slope(0, 8, 31, 32), 0.5f * 1e-5f, 1e-12);
	cr_expect_float_eq(swerve_lightning_slope(3, 8, 0, 1), powf(2.0f, -4.0f) * 1.00001f, 1e-9);
	cr_expect_eq(swerve_lightning_slope(16, 16, 0, 32), 0.0f);
}
