/* test_bf16_sensitivity.c - issue 10: is the GPU model's occasional bf16
 * failure of layer 0's wq/wk gradients (tests/gpu/test_policy_model) bf16
 * rounding or a bug? The CPU reference copy of tests/support/policy_bf16.h
 * rounds to bf16 where policy/gpu.cu and kernels/lightning.cu do. Here:
 * that copy with no rounding is policy/ref.c; on the fixture of the failing
 * device run (route7 call 1, POLICY_GPU_MOE=lt, bf16 cross-entropy) the
 * rounded copy gives the GPU's logged gradients to 4 digits where the exact
 * reference is 11-13% away, so the GPU computed the bf16-rounded function
 * faithfully (no bug); and a survey of fixtures (SWERVE_BF16_SEEDS=n of
 * them, default 3) prints how far rounding alone moves each gradient. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/policy_bf16.h"

static double *grads_of(struct fixture *f, int flags, double *loss)
{
	struct policy_batch b = {f->T, f->tok, f->S, f->cu};
	double *lg = malloc((size_t)f->T * f->c.vocab_size * sizeof(double));
	double *g = calloc(f->L.total, sizeof(double));
	pb_model(lg, g, loss, NULL, &f->c, &f->L, f->pd, &b, f->tgt, NULL, NULL, NULL, flags);
	free(lg);
	return g;
}

static double tensor_rel(const struct fixture *f, const double *a, const double *r,
                         const char *name)
{
	const struct policy_tensor *t = policy_layout_find(&f->L, name);
	cr_assert(t, "no tensor %s", name);
	return pb_rel(a + t->offset, r + t->offset, t->numel);
}

Test(bf16_sensitivity, rounding_is_round_to_nearest_even)
{
	cr_expect_eq(pb_bf16(1.0), 1.0);
	cr_expect_eq(pb_bf16(1.0 + 0x1p-8), 1.0);                    /* tie: to even */
	cr_expect_eq(pb_bf16(1.0 + 3 * 0x1p-8), 1.0 + 0x1p-6);       /* tie: to even */
	cr_expect_eq(pb_bf16(1.0 + 0x1p-8 + 0x1p-12), 1.0 + 0x1p-7); /* above the tie */
	cr_expect_eq(pb_bf16(-3.14159), -3.140625);
	cr_expect(isinf(pb_bf16(INFINITY)));
}

Test(bf16_sensitivity, seed_back_inverts_the_generator)
{
	uint64_t s0 = 987654321;
	seed = s0;
	for (int i = 0; i < 1000; i++)
		urand();
	cr_assert_eq(pb_seed_back(seed, 1000), s0);
}

/* without rounding the copy computes policy/ref.c's model and loss */
Test(bf16_sensitivity, unrounded_copy_is_the_reference)
{
	struct fixture f;
	struct policy_ref_tape *tp;
	struct policy_loss_stats st;
	struct policy_batch b;
	double loss, *g, *gr, *dl;
	seed = 42;
	fixture_init(&f);
	b = (struct policy_batch){f.T, f.tok, f.S, f.cu};
	g = grads_of(&f, 0, &loss);
	gr = calloc(f.L.total, sizeof(double));
	dl = calloc((size_t)f.T * f.c.vocab_size, sizeof(double));
	cr_assert_eq(policy_ref_forward(&tp, &f.c, &f.L, f.pd, &b), 0);
	policy_loss_xent(&st, dl, policy_ref_logits(tp), f.T, f.c.vocab_size, f.tgt);
	policy_ref_backward(tp, dl, 1.0, gr);
	cr_expect(fabs(loss - st.loss) < 1e-12 * fabs(st.loss), "loss %.15g vs %.15g", loss,
	          st.loss);
	for (int i = 0; i < f.L.n; i++) {
		double r = pb_rel(g + f.L.t[i].offset, gr + f.L.t[i].offset, f.L.t[i].numel);
		cr_expect(r < 1e-12, "%s: %.3e from policy/ref.c", f.L.t[i].name, r);
	}
	/* and rounding does change it */
	free(g);
	g = grads_of(&f, PB_ALL, &loss);
	cr_expect(pb_rel(g, gr, f.L.total) > 1e-3, "PB_ALL left the gradients unchanged");
	policy_ref_tape_free(tp);
	free(g);
	free(gr);
	free(dl);
	fixture_dispose(&f);
}

/* The device log (/work/notes/route7_logs/call1_tests.log, bf16
 * cross-entropy under POLICY_GPU_MOE=lt) printed seed 7516681536006554714,
 * the generator's state after the fixture was drawn, and these worst
 * elements: (gpu, exact cpu). */
Test(bf16_sensitivity, failing_device_fixture_is_bf16_rounding)
{
	static const struct {
		const char *name;
		size_t at;
		double gpu, cpu;
	} logged[] = {
	        {"tok_emb", 28373, 1.9123, 1.70534},
	        {"layers.0.attn_norm", 5, -0.102848, -0.0889866},
	        {"layers.0.attn.wq", 12303, -0.761642, -0.676856},
	        {"layers.0.attn.wk", 8335, -0.312001, -0.276524},
	};
	struct fixture f;
	double loss0, loss1, *g0, *g1;
	seed = 7516681536006554714ULL;
	fixture_init(&f); /* only to count the fixture's draws */
	seed = pb_seed_back(7516681536006554714ULL, fixture_draws(&f));
	fixture_dispose(&f);
	cr_assert_eq(seed, 10265740975168544730ULL);
	fixture_init(&f);
	f.c.top_k = f.c.n_experts; /* as test_policy_model's bf16 cases */
	g0 = grads_of(&f, 0, &loss0);
	g1 = grads_of(&f, PB_ALL, &loss1);
	for (size_t i = 0; i < sizeof(logged) / sizeof(logged[0]); i++) {
		const struct policy_tensor *t = policy_layout_find(&f.L, logged[i].name);
		double e = g0[t->offset + logged[i].at], r = g1[t->offset + logged[i].at];
		printf("%-20s [%5zu] exact %.6g (log %.6g)  bf16-rounded %.6g (gpu %.6g)\n",
		       logged[i].name, logged[i].at, e, logged[i].cpu, r, logged[i].gpu);
		cr_expect(fabs(e - logged[i].cpu) < 1e-5 * fabs(logged[i].cpu),
		          "%s: exact %.8g, the log's cpu %.8g", logged[i].name, e, logged[i].cpu);
		cr_expect(fabs(r - logged[i].gpu) < 2e-3 * fabs(logged[i].gpu),
		          "%s: rounded %.8g, the gpu's %.8g", logged[i].name, r, logged[i].gpu);
	}
	/* bf16 rounding alone: past the GPU test's 8e-2 on wq and wk only */
	cr_expect(tensor_rel(&f, g1, g0, "layers.0.attn.wq") > 0.1);
	cr_expect(tensor_rel(&f, g1, g0, "layers.0.attn.wk") > 0.1);
	cr_expect(tensor_rel(&f, g1, g0, "layers.0.attn.wv") < 3e-2);
	cr_expect(tensor_rel(&f, g1, g0, "layers.1.attn.wq") < 3e-2);
	/* the q/k/v rounding alone does it */
	free(g1);
	g1 = grads_of(&f, PB_QKV, &loss1);
	cr_expect(tensor_rel(&f, g1, g0, "layers.0.attn.wq") > 0.1);
	free(g0);
	free(g1);
	fixture_dispose(&f);
}

/* how far rounding moves each gradient over fixtures (SWERVE_BF16_SEEDS=n);
 * the well-conditioned wv stays at the bf16 noise level */
Test(bf16_sensitivity, survey, .timeout = 600)
{
	const char *e = getenv("SWERVE_BF16_SEEDS");
	int n = e ? atoi(e) : 3, over = 0;
	double worst_wv = 0;
	printf("fixture seed          wq        wk        wv        tok_emb\n");
	for (int k = 0; k < n; k++) {
		struct fixture f;
		double l0, l1, *g0, *g1, q, kk, v, te;
		uint64_t s = 12345 + (uint64_t)k * 7919;
		seed = s;
		fixture_init(&f);
		f.c.top_k = f.c.n_experts;
		g0 = grads_of(&f, 0, &l0);
		g1 = grads_of(&f, PB_ALL, &l1);
		q = tensor_rel(&f, g1, g0, "layers.0.attn.wq");
		kk = tensor_rel(&f, g1, g0, "layers.0.attn.wk");
		v = tensor_rel(&f, g1, g0, "layers.0.attn.wv");
		te = tensor_rel(&f, g1, g0, "tok_emb");
		printf("%-20llu  %.2e  %.2e  %.2e  %.2e%s\n", (unsigned long long)s, q, kk, v, te,
		       q > 8e-2 || kk > 8e-2 ? "  (past 8e-2)" : "");
		over += q > 8e-2 || kk > 8e-2;
		if (v > worst_wv)
			worst_wv = v;
		free(g0);
		free(g1);
		fixture_dispose(&f);
	}
	printf("%d of %d fixtures past 8e-2 on wq or wk from bf16 rounding alone; worst wv %.2e\n",
	       over, n, worst_wv);
	cr_expect(worst_wv < 5e-2, "wv moved %.3e by rounding", worst_wv);
}
