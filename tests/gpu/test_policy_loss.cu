/* test_policy_loss.cu - the CUDA fused policy loss against the CPU reference
 * (double), on fresh random inputs each run (the seed is printed), with every
 * output poisoned (NaN) before the call. Prints the worst element of each
 * output. Tolerances (relative to the largest reference element; logp is
 * also checked per token relative to |logp|):
 *   FP32  logp 1e-5 per token, entropy/ratio/loss 5e-5, dX/dW 1e-4
 *   TF32  logp 1e-3 per token (10-bit mantissas), the rest 2e-3, dX/dW 5e-3
 *   BF16  logp 5e-3 per token (8-bit mantissas), the rest 1e-2, dX/dW 2e-2
 *   FP32_FWD  the forward's outputs (logp, entropy, ratio, loss, clip flags)
 *         at FP32's tolerances, dX/dW at BF16's (2e-2)
 * (measured on an H100, 2026-11-26, the errors sit 4-10x under these).
 * Cases with a row sub-chunk (rows > 0) run the forward GEMM and the row
 * kernel on sub-chunks smaller than the chunk (not dividing it). Where
 * V % 4 == 0 and V <= 32768 the row kernel holds the row in registers
 * unless reread (1: the two-pass kernel, which V odd always runs; 2: the
 * persistent kernel that prefetches the next row, the pf_* cases, not yet
 * run on a GPU when written). */
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vector>

#include "kernels/policy_loss.h"
#include "tests/gpu/gpu_check.h"

extern "C" {
#include "sandbox/error.h"
}

struct cfg {
	const char *name;
	int N, d, V, S, chunk;
	enum swerve_pl_variant variant;
	enum swerve_pl_precision prec;
	enum swerve_pl_norm norm;
	int adv_per_seq, use_mask, cispo_mask, lower_bound, logprob_only, accumulate;
	int rows;   /* swerve_pl_opts.row_tokens */
	int reread; /* swerve_pl_opts.row_reread */
};

/* max |a - b| / max |b| over n elements, and where */
static double worst(const float *a, const float *b, size_t n, size_t *at)
{
	double m = 0.0, e = 0.0;
	*at = 0;
	for (size_t i = 0; i < n; i++) {
		m = fmax(m, fabs((double)b[i]));
		double d = fabs((double)a[i] - (double)b[i]);
		if (!(d <= e)) { /* NaN counts as worst */
			e = isnan(d) ? INFINITY : d;
			*at = i;
		}
	}
	return m > 0 ? e / m : e;
}

template <typename T> static T *dev_copy(const std::vector<T> &h)
{
	T *d = NULL;
	if (cudaMalloc(&d, h.size() * sizeof(T) + 1) != cudaSuccess)
		return NULL;
	cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
	return d;
}

static int run_case(const struct cfg *c)
{
	const int N = c->N, d = c->d, V = c->V, S = c->S;
	std::vector<uint16_t> Xb((size_t)N * d);
	std::vector<float> Xf((size_t)N * d), W((size_t)V * d), old(N), adv(N > S ? N : S);
	std::vector<int32_t> y(N), seq(N);
	std::vector<uint8_t> mask(N, 1);
	const double wscale = 2.0 / sqrt((double)d);
	for (size_t i = 0; i < Xb.size(); i++) {
		Xb[i] = swerve_float_to_bf16((float)gpu_nrand());
		Xf[i] = swerve_bf16_to_float(Xb[i]);
	}
	for (auto &w : W)
		w = (float)(wscale * gpu_nrand());
	for (int t = 0; t < N; t++) {
		y[t] = (int32_t)(gpu_urand() * V);
		seq[t] = (int32_t)((long)t * S / N);
		if (c->use_mask)
			mask[t] = gpu_urand() < 0.8;
	}
	for (auto &a : adv)
		a = (float)gpu_nrand();

	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, c->variant);
	o.precision = c->prec;
	o.norm = c->norm;
	o.cispo_mask = c->cispo_mask;
	o.cispo_lower_bound = c->lower_bound;
	o.chunk_tokens = c->chunk;
	o.accumulate_dw = c->accumulate;
	o.row_tokens = c->rows;
	o.row_reread = c->reread;

	/* the reference, and logp_old placed away from the clip boundaries */
	std::vector<float> rlogp(N), rent(N), rratio(N), rdX((size_t)N * d),
	        rdW((size_t)V * d, 0.f);
	std::vector<uint8_t> rclip(N);
	float rloss = 0.f;
	struct swerve_pl_batch hb = {
	        N,          d,          V, y.data(),       old.data(),
	        adv.data(), seq.data(), S, c->adv_per_seq, c->use_mask ? mask.data() : NULL};
	struct swerve_pl_out hout = {rlogp.data(), rent.data(), rratio.data(), rclip.data(),
	                             &rloss,       rdX.data(),  rdW.data()};
	struct swerve_pl_opts lo = o;
	lo.logprob_only = 1;
	CHECK(swerve_policy_loss_cpu(&hout, &hb, Xf.data(), W.data(), &lo) == 0, "%s",
	      swerve_error_last());
	const double offs[] = {-2.0, -0.5, -0.1, 0.0, 0.05, 0.6};
	for (int t = 0; t < N; t++)
		old[t] = rlogp[t] + (float)offs[(int)(gpu_urand() * 6)];
	std::vector<float> dW0((size_t)V * d);
	for (auto &w : dW0)
		w = (float)gpu_nrand();
	if (c->accumulate)
		rdW = dW0;
	o.logprob_only = c->logprob_only;
	CHECK(swerve_policy_loss_cpu(&hout, &hb, Xf.data(), W.data(), &o) == 0, "%s",
	      swerve_error_last());

	/* the GPU */
	uint16_t *dX16 = dev_copy(Xb);
	float *dWt = dev_copy(W), *dold = dev_copy(old), *dadv = dev_copy(adv);
	int32_t *dy = dev_copy(y), *dseq = dev_copy(seq);
	uint8_t *dmask = dev_copy(mask);
	float *glogp, *gent, *gratio, *gloss, *gdX, *gdW;
	uint8_t *gclip;
	CHECK(dX16 && dWt && dold && dadv && dy && dseq && dmask, "cudaMalloc");
	CK(cudaMalloc(&glogp, N * 4));
	CK(cudaMalloc(&gent, N * 4));
	CK(cudaMalloc(&gratio, N * 4));
	CK(cudaMalloc(&gloss, 4));
	CK(cudaMalloc(&gclip, N));
	CK(cudaMalloc(&gdX, (size_t)N * d * 4));
	CK(cudaMalloc(&gdW, (size_t)V * d * 4));
	/* poison: 0xff bytes are NaN floats; dW holds dW0 when accumulating */
	CK(cudaMemset(glogp, 0xff, N * 4));
	CK(cudaMemset(gent, 0xff, N * 4));
	CK(cudaMemset(gratio, 0xff, N * 4));
	CK(cudaMemset(gloss, 0xff, 4));
	CK(cudaMemset(gclip, 0xff, N));
	CK(cudaMemset(gdX, 0xff, (size_t)N * d * 4));
	if (c->accumulate)
		CK(cudaMemcpy(gdW, dW0.data(), dW0.size() * 4, cudaMemcpyHostToDevice));
	else
		CK(cudaMemset(gdW, 0xff, (size_t)V * d * 4));

	struct swerve_pl_batch db = {
	        N, d, V, dy, dold, dadv, dseq, S, c->adv_per_seq, c->use_mask ? dmask : NULL};
	struct swerve_pl_out dout = {glogp, gent, gratio, gclip, gloss, gdX, gdW};
	size_t wsz = swerve_pl_workspace_size(&db, &o);
	void *ws = NULL;
	CK(cudaMalloc(&ws, wsz));
	struct swerve_pl_ctx *ctx = NULL;
	CHECK(swerve_pl_ctx_new(&ctx) == 0, "%s", swerve_error_last());
	CHECK(swerve_policy_loss_cuda(ctx, &dout, &db, dX16, dWt, &o, ws, wsz, NULL) == 0, "%s",
	      swerve_error_last());
	CK(cudaDeviceSynchronize());
	CK(cudaGetLastError());

	std::vector<float> glp(N), gen(N), grt(N), gdx((size_t)N * d), gdw((size_t)V * d);
	std::vector<uint8_t> gcl(N);
	float gl = 0.f;
	CK(cudaMemcpy(glp.data(), glogp, N * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(gen.data(), gent, N * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(grt.data(), gratio, N * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(gcl.data(), gclip, N, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(&gl, gloss, 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(gdx.data(), gdX, gdx.size() * 4, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(gdw.data(), gdW, gdw.size() * 4, cudaMemcpyDeviceToHost));

	const int fwd32 = c->prec == SWERVE_PL_FP32 || c->prec == SWERVE_PL_FP32_FWD;
	const double tl = fwd32 ? 1e-5 : c->prec == SWERVE_PL_TF32 ? 1e-3 : 5e-3;
	const double tv = fwd32 ? 5e-5 : c->prec == SWERVE_PL_TF32 ? 2e-3 : 1e-2;
	const double tg = c->prec == SWERVE_PL_FP32   ? 1e-4
	                  : c->prec == SWERVE_PL_TF32 ? 5e-3
	                                              : 2e-2;
	double lp_rel = 0.0;
	int lp_at = 0;
	for (int t = 0; t < N; t++) {
		double e = fabs((double)glp[t] - rlogp[t]) / fmax(fabs((double)rlogp[t]), 1e-3);
		if (!(e <= lp_rel)) {
			lp_rel = isnan(e) ? INFINITY : e;
			lp_at = t;
		}
	}
	size_t at;
	double e_ent = worst(gen.data(), rent.data(), N, &at);
	printf("  %-26s logp worst rel %.2e (token %d: %.7f vs %.7f)  entropy %.2e", c->name,
	       lp_rel, lp_at, glp[lp_at], rlogp[lp_at], e_ent);
	int fail = !(lp_rel <= tl) || !(e_ent <= tv);
	if (!c->logprob_only) {
		double e_rat = worst(grt.data(), rratio.data(), N, &at);
		double e_dx = worst(gdx.data(), rdX.data(), gdx.size(), &at);
		size_t atx = at;
		double e_dw = worst(gdw.data(), rdW.data(), gdw.size(), &at);
		/* the loss is a sum of per-token terms of both signs (advantages of
		 * either sign): its error is measured against the terms' scale,
		 * mean |A logp ratio| over the counted tokens, not against the net
		 * sum, which can be far smaller than its terms */
		double l1 = 0.0;
		int nl1 = 0;
		for (int t = 0; t < N; t++)
			if (!c->use_mask || mask[t]) {
				double a = adv[c->adv_per_seq ? seq[t] : t];
				l1 += fabs(a * rlogp[t] * rratio[t]);
				nl1++;
			}
		l1 = nl1 ? l1 / nl1 : 0.0;
		double e_loss =
		        fabs((double)gl - rloss) / fmax(fmax(fabs((double)rloss), l1), 1e-6);
		int clip_diff = 0, nclip = 0;
		for (int t = 0; t < N; t++) {
			clip_diff += gcl[t] != rclip[t];
			nclip += rclip[t];
		}
		printf("  ratio %.2e  loss %.2e (%.6g vs %.6g)  dX %.2e [%zu]  dW %.2e [%zu: %.4g "
		       "vs %.4g]  clipped %d/%d "
		       "differ\n",
		       e_rat, e_loss, gl, rloss, e_dx, atx, e_dw, at, gdw[at], rdW[at], clip_diff,
		       nclip);
		fail |= !(e_rat <= tv) || !(e_loss <= tv) || !(e_dx <= tg) || !(e_dw <= tg);
		if (fwd32)
			fail |= clip_diff != 0;
	} else {
		/* logprob-only: loss, dX and dW untouched (still poisoned) */
		uint32_t u;
		memcpy(&u, &gl, 4);
		printf("  (loss/dX/dW untouched: %s)\n", u == 0xffffffffu ? "yes" : "NO");
		fail |= u != 0xffffffffu;
		uint32_t w0;
		memcpy(&w0, &gdw[0], 4);
		fail |= w0 != 0xffffffffu;
	}
	swerve_pl_ctx_free(ctx);
	cudaFree(ws), cudaFree(dX16), cudaFree(dWt), cudaFree(dold), cudaFree(dadv), cudaFree(dy),
	        cudaFree(dseq);
	cudaFree(dmask), cudaFree(glogp), cudaFree(gent), cudaFree(gratio), cudaFree(gloss),
	        cudaFree(gclip);
	cudaFree(gdX), cudaFree(gdW);
	CHECK(!fail, "%s: outside tolerance (logp %.0e, values %.0e, gradients %.0e)", c->name, tl,
	      tv, tg);
	return 0;
}

static int have_gpu(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define CASE(fn, ...)                                                                              \
	static int fn(void)                                                                        \
	{                                                                                          \
		if (!have_gpu())                                                                   \
			return GPU_SKIP;                                                           \
		static const struct cfg c = __VA_ARGS__;                                           \
		return run_case(&c);                                                               \
	}

/* name, N, d, V, S, chunk, variant, precision, norm, adv_per_seq, mask, cispo_mask, lower, lp_only,
 * accumulate, rows, reread */
CASE(cispo_fp32_vec, {"cispo fp32 V%4=0", 300, 136, 2048, 5, 64, SWERVE_PL_CISPO, SWERVE_PL_FP32,
                      SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0})
CASE(cispo_fp32_odd, {"cispo fp32 V odd, 1 chunk", 97, 72, 1001, 3, 0, SWERVE_PL_CISPO,
                      SWERVE_PL_FP32, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 1, 0, 0, 0, 0})
CASE(grpo_fp32_seq, {"grpo fp32 per-seq", 256, 128, 4096, 8, 96, SWERVE_PL_GRPO, SWERVE_PL_FP32,
                     SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 0, 0})
CASE(dapo_fp32, {"dapo fp32", 200, 256, 3000, 4, 128, SWERVE_PL_DAPO, SWERVE_PL_FP32,
                 SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 0, 0})
CASE(grpo_fp32_long, {"grpo fp32 N2048 (dW over chunks)", 2048, 64, 2048, 16, 256, SWERVE_PL_GRPO,
                      SWERVE_PL_FP32, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 0, 0, 0})
CASE(logprob_only_fp32, {"logprob-only fp32", 150, 128, 5000, 1, 64, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 1, 0, 0, 0})
CASE(cispo_tf32, {"cispo tf32", 300, 136, 2048, 5, 64, SWERVE_PL_CISPO, SWERVE_PL_TF32,
                  SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0})
CASE(grpo_tf32_odd, {"grpo tf32 V odd", 97, 72, 1001, 3, 32, SWERVE_PL_GRPO, SWERVE_PL_TF32,
                     SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 0, 0})
CASE(cispo_bf16, {"cispo bf16", 300, 136, 2048, 5, 64, SWERVE_PL_CISPO, SWERVE_PL_BF16,
                  SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0})
CASE(cispo_fp32_big, {"cispo fp32 d1024 V8192", 128, 1024, 8192, 4, 0, SWERVE_PL_CISPO,
                      SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0})

CASE(cispo_fp32fwd_vec, {"cispo fp32fwd V%4=0", 300, 136, 2048, 5, 64, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0})
CASE(grpo_fp32fwd_rows, {"grpo fp32fwd N2048 R96 acc", 2048, 64, 2048, 16, 256, SWERVE_PL_GRPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 96, 0})
CASE(cispo_fp32fwd_odd, {"cispo fp32fwd V odd R40", 97, 72, 1001, 3, 0, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 1, 0, 0, 40, 0})
CASE(cispo_fp32fwd_policy, {"cispo fp32fwd d768 V32000 R16", 48, 768, 32000, 2, 0, SWERVE_PL_CISPO,
                            SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 0})
CASE(dapo_fp32_rows, {"dapo fp32 R48", 200, 256, 3000, 4, 128, SWERVE_PL_DAPO, SWERVE_PL_FP32,
                      SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 48, 0})
CASE(logprob_only_rows, {"logprob-only fp32fwd R40", 150, 128, 5000, 1, 64, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 1, 0, 40, 0})
CASE(cispo_bf16_rows, {"cispo bf16 R100", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO, SWERVE_PL_BF16,
                       SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 100, 0})
CASE(cispo_fp32_reread, {"cispo fp32 reread", 300, 136, 2048, 5, 64, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 1})
CASE(grpo_fp32fwd_reread, {"grpo fp32fwd R96 reread acc", 2048, 64, 2048, 16, 256, SWERVE_PL_GRPO,
                           SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 96, 1})
CASE(cispo_fp32fwd_v32768,
     {"cispo fp32fwd V32768 (reg limit)", 40, 64, 32768, 2, 0, SWERVE_PL_CISPO, SWERVE_PL_FP32_FWD,
      SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 0})
CASE(cispo_fp32fwd_v32772, {"cispo fp32fwd V32772 (2-pass)", 40, 64, 32772, 2, 0, SWERVE_PL_CISPO,
                            SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 0})

/* round 9: the persistent prefetching row kernel (row_reread = 2). Where V % 4
 * != 0 or V > 32768 it falls back to the two-pass kernel. Rows beyond the
 * SM count make each block walk several rows (the prefetch path). */
CASE(pf_fp32fwd_policy, {"pf fp32fwd d768 V32000 R16", 48, 768, 32000, 2, 0, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 2})
CASE(pf_fp32fwd_v32000_many,
     {"pf fp32fwd V32000 N400 (3+ rows/blk)", 400, 64, 32000, 4, 0, SWERVE_PL_CISPO,
      SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 0, 0, 0, 0, 2})
CASE(pf_fp32fwd_v1004, {"pf fp32fwd V1004 N600 R500", 600, 72, 1004, 6, 0, SWERVE_PL_GRPO,
                        SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 500, 2})
CASE(pf_bf16, {"pf bf16 R100", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO, SWERVE_PL_BF16,
               SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 100, 2})
CASE(pf_bf16_v32000_many, {"pf bf16 V32000 N400", 400, 64, 32000, 4, 0, SWERVE_PL_DAPO,
                           SWERVE_PL_BF16, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 0, 2})
CASE(pf_grpo_bf16_long, {"pf grpo bf16 N2048 C256 acc", 2048, 64, 2048, 16, 256, SWERVE_PL_GRPO,
                         SWERVE_PL_BF16, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 0, 2})
CASE(pf_dapo_fp32, {"pf dapo fp32 V3000 R48", 200, 256, 3000, 4, 128, SWERVE_PL_DAPO,
                    SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 48, 2})
CASE(pf_tf32, {"pf tf32 (dZ in place)", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO, SWERVE_PL_TF32,
               SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 2})
CASE(pf_logprob_only, {"pf logprob-only fp32fwd R40", 150, 128, 5000, 1, 64, SWERVE_PL_CISPO,
                       SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 1, 0, 40, 2})
CASE(pf_v32768, {"pf fp32fwd V32768 (smem limit)", 200, 64, 32768, 2, 0, SWERVE_PL_CISPO,
                 SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 2})
CASE(pf_v32772, {"pf fp32fwd V32772 (2-pass)", 40, 64, 32772, 2, 0, SWERVE_PL_CISPO,
                 SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 2})
CASE(pf_v_odd, {"pf fp32fwd V odd (2-pass)", 97, 72, 1001, 3, 0, SWERVE_PL_CISPO,
                SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 1, 0, 0, 40, 2})

/* round 19: the lean row kernels (row_reread 3 = LEAN, 4 = STREAM: the row
 * re-read from L2, two blocks an SM). The same shapes as the pf_* cases:
 * every precision (P 0 in place, 1, 2), masks, per-sequence advantages and
 * norms, logprob-only, V/4 < 512 threads, V 32768, and the fallbacks. */
CASE(ln_fp32fwd_policy, {"lean fp32fwd d768 V32000 R16", 48, 768, 32000, 2, 0, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 3})
CASE(ln_fp32fwd_v32000_many, {"lean fp32fwd V32000 N400 seq", 400, 64, 32000, 4, 0, SWERVE_PL_CISPO,
                              SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 0, 0, 0, 0, 3})
CASE(ln_dapo_fp32, {"lean dapo fp32 V3000 R48", 200, 256, 3000, 4, 128, SWERVE_PL_DAPO,
                    SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 48, 3})
CASE(ln_tf32, {"lean tf32 (dZ in place)", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO, SWERVE_PL_TF32,
               SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 3})
CASE(ln_logprob_only, {"lean logprob-only fp32fwd R40", 150, 128, 5000, 1, 64, SWERVE_PL_CISPO,
                       SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 1, 0, 40, 3})
CASE(ln_v32768, {"lean fp32fwd V32768", 200, 64, 32768, 2, 0, SWERVE_PL_CISPO, SWERVE_PL_FP32_FWD,
                 SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 3})
CASE(st_fp32fwd_policy, {"stream fp32fwd d768 V32000 R16", 48, 768, 32000, 2, 0, SWERVE_PL_CISPO,
                         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 4})
CASE(st_fp32fwd_v32000_many,
     {"stream fp32fwd V32000 N400 seq", 400, 64, 32000, 4, 0, SWERVE_PL_CISPO, SWERVE_PL_FP32_FWD,
      SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 0, 0, 0, 0, 4})
CASE(st_fp32fwd_v1004, {"stream fp32fwd V1004 N600 R500", 600, 72, 1004, 6, 0, SWERVE_PL_GRPO,
                        SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 500, 4})
CASE(st_bf16, {"stream bf16 R100", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO, SWERVE_PL_BF16,
               SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 100, 4})
CASE(st_grpo_bf16_long, {"stream grpo bf16 N2048 C256 acc", 2048, 64, 2048, 16, 256, SWERVE_PL_GRPO,
                         SWERVE_PL_BF16, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 0, 4})
CASE(st_dapo_fp32, {"stream dapo fp32 V3000 R48", 200, 256, 3000, 4, 128, SWERVE_PL_DAPO,
                    SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 48, 4})
CASE(st_tf32, {"stream tf32 (dZ in place)", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO, SWERVE_PL_TF32,
               SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 4})
CASE(st_logprob_only, {"stream logprob-only fp32fwd R40", 150, 128, 5000, 1, 64, SWERVE_PL_CISPO,
                       SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 1, 0, 40, 4})
CASE(st_v32768, {"stream fp32fwd V32768", 200, 64, 32768, 2, 0, SWERVE_PL_CISPO, SWERVE_PL_FP32_FWD,
                 SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 4})
CASE(st_v32772, {"stream fp32fwd V32772 (2-pass)", 40, 64, 32772, 2, 0, SWERVE_PL_CISPO,
                 SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 4})
CASE(st_v_odd, {"stream fp32fwd V odd (2-pass)", 97, 72, 1001, 3, 0, SWERVE_PL_CISPO,
                SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 1, 0, 0, 40, 4})

/* stream-plain (5, prepared, not yet run on a GPU): stream without the
 * evict-first hints; the same code otherwise, so a few shapes */
CASE(sp_fp32fwd_policy,
     {"stream-plain fp32fwd d768 V32000 R16", 48, 768, 32000, 2, 0, SWERVE_PL_CISPO,
      SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 5})
CASE(sp_tf32, {"stream-plain tf32 (dZ in place)", 300, 136, 2048, 5, 0, SWERVE_PL_CISPO,
               SWERVE_PL_TF32, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 5})
CASE(sp_dapo_fp32, {"stream-plain dapo fp32 V3000 R48", 200, 256, 3000, 4, 128, SWERVE_PL_DAPO,
                    SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 0, 0, 0, 0, 0, 48, 5})

/* The bitwise cases' inputs on the device: X bf16 [N, d], W [V, d] at
 * 2 / sqrt(d), targets, behaviour logprobs near uniform's, advantages; and
 * their outputs packed in one buffer of bytes bytes (bw_out) */
struct bw_inputs {
	int N, d, V;
	uint16_t *X;
	float *W, *old, *adv;
	int32_t *y;
	size_t nf, bytes; /* the packed outputs' floats, and bytes with the clip flags */
	struct swerve_pl_batch b;
};

static std::vector<float> bw_weights(int V, int d)
{
	std::vector<float> W((size_t)V * d);
	for (auto &w : W)
		w = (float)(2.0 / sqrt((double)d) * gpu_nrand());
	return W;
}

static int bw_make(struct bw_inputs *in, int N, int d, int V)
{
	std::vector<uint16_t> Xb((size_t)N * d);
	std::vector<float> old(N), adv(N);
	std::vector<int32_t> y(N);
	for (auto &x : Xb)
		x = swerve_float_to_bf16((float)gpu_nrand());
	std::vector<float> W = bw_weights(V, d);
	for (int t = 0; t < N; t++) {
		y[t] = (int32_t)(gpu_urand() * V);
		old[t] = (float)(-log((double)V) + gpu_nrand());
		adv[t] = (float)gpu_nrand();
	}
	in->N = N, in->d = d, in->V = V;
	in->X = dev_copy(Xb);
	in->W = dev_copy(W), in->old = dev_copy(old), in->adv = dev_copy(adv);
	in->y = dev_copy(y);
	in->nf = 3 * (size_t)N + 1 + (size_t)N * d + (size_t)V * d;
	in->bytes = in->nf * 4 + N;
	in->b = (struct swerve_pl_batch){N, d, V, in->y, in->old, in->adv, NULL, 1, 0, NULL};
	CHECK(in->X && in->W && in->old && in->adv && in->y, "cudaMalloc");
	return 0;
}

static void bw_free(struct bw_inputs *in)
{
	cudaFree(in->X), cudaFree(in->W), cudaFree(in->old), cudaFree(in->adv), cudaFree(in->y);
}

/* one buffer g for all outputs: logp, entropy, ratio (N each), loss, dX,
 * dW, then the clip flags */
static struct swerve_pl_out bw_out(const struct bw_inputs *in, float *g)
{
	const size_t N = (size_t)in->N;
	return (struct swerve_pl_out){g,
	                              g + N,
	                              g + 2 * N,
	                              (uint8_t *)(g + in->nf),
	                              g + 3 * N,
	                              g + 3 * N + 1,
	                              g + 3 * N + 1 + N * in->d};
}

/* The prefetching kernel runs the register kernel's math line for line: the
 * same inputs give the same bytes in every output (dX and dW too: the GEMMs
 * see the same dZ). One run of each on the same device buffers, outputs
 * poisoned before each. */
static int pf_bitwise_one(enum swerve_pl_precision prec, int N, int d, int V, int rows,
                          int mode = SWERVE_PL_ROWS_PREFETCH)
{
	struct bw_inputs in;
	if (bw_make(&in, N, d, V))
		return 1;
	const size_t bytes = in.bytes;
	std::vector<uint8_t> h[2];
	for (int k = 0; k < 2; k++) {
		struct swerve_pl_opts o;
		swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
		o.precision = prec;
		o.row_tokens = rows;
		o.row_reread = k ? mode : SWERVE_PL_ROWS_REG;
		float *g = NULL;
		CK(cudaMalloc(&g, bytes));
		CK(cudaMemset(g, 0xff, bytes));
		struct swerve_pl_out dout = bw_out(&in, g);
		size_t wsz = swerve_pl_workspace_size(&in.b, &o);
		void *ws = NULL;
		CK(cudaMalloc(&ws, wsz));
		struct swerve_pl_ctx *ctx = NULL;
		CHECK(swerve_pl_ctx_new(&ctx) == 0, "%s", swerve_error_last());
		CHECK(swerve_policy_loss_cuda(ctx, &dout, &in.b, in.X, in.W, &o, ws, wsz, NULL) ==
		              0,
		      "%s", swerve_error_last());
		CK(cudaDeviceSynchronize());
		h[k].resize(bytes);
		CK(cudaMemcpy(h[k].data(), g, bytes, cudaMemcpyDeviceToHost));
		swerve_pl_ctx_free(ctx);
		cudaFree(ws), cudaFree(g);
	}
	bw_free(&in);
	size_t ndiff = 0, first = 0;
	for (size_t i = 0; i < bytes; i++)
		if (h[0][i] != h[1][i] && !ndiff++)
			first = i;
	static const char *const kn[] = {"reg", "2-pass", "pf", "lean", "stream", "stream-plain"};
	static const char *const pn[] = {"fp32", "tf32", "bf16", "fp32fwd"};
	printf("  %s vs register, %s N%d d%d V%d R%d: %zu of %zu bytes differ (first at byte "
	       "%zu)\n",
	       kn[mode], pn[prec], N, d, V, rows, ndiff, bytes, first);
	CHECK(ndiff == 0, "the %s row kernel's outputs differ from the register kernel's",
	      kn[mode]);
	return 0;
}

static int pf_matches_register_bitwise(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	int rc = pf_bitwise_one(SWERVE_PL_FP32_FWD, 1000, 128, 32000, 0);
	if (!rc)
		rc = pf_bitwise_one(SWERVE_PL_BF16, 700, 64, 2052, 300);
	return rc;
}

/* round 19: LEAN, STREAM and STREAM_PLAIN against the register kernel, every output byte;
 * FP32 (dZ in 2 parts) and TF32 (dZ in place) too */
static int lean_stream_match_register_bitwise(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	int rc = 0;
	for (int mode = SWERVE_PL_ROWS_LEAN; mode <= SWERVE_PL_ROWS_STREAM_PLAIN && !rc; mode++) {
		rc = pf_bitwise_one(SWERVE_PL_FP32_FWD, 1000, 128, 32000, 0, mode);
		if (!rc)
			rc = pf_bitwise_one(SWERVE_PL_BF16, 700, 64, 2052, 300, mode);
		if (!rc)
			rc = pf_bitwise_one(SWERVE_PL_FP32, 300, 64, 3000, 48, mode);
		if (!rc)
			rc = pf_bitwise_one(SWERVE_PL_TF32, 300, 64, 2048, 0, mode);
	}
	return rc;
}

/* env var "name", read by swerve_policy_loss_cuda at each call: every value
 * of good[] (n of them, "" for unset) accepted on a tiny batch whose
 * workspace is sized for the largest of them, and bad refused with an
 * error naming the variable and the value */
static int env_switch_checked(const char *name, const char *const *good, int n, const char *bad)
{
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	const int nt = 4, d = 64, v = 64;
	std::vector<int32_t> hy(nt, 1);
	std::vector<float> hf((size_t)v * d, 0.01f);
	std::vector<uint16_t> hx((size_t)nt * d, 0x3f80); /* bf16 1.0 */
	int32_t *y = dev_copy(hy);
	float *f = dev_copy(hf);
	uint16_t *x = dev_copy(hx);
	CHECK(y && f && x, "cudaMalloc");
	struct swerve_pl_batch b = {nt, d, v, y, f, f, NULL, 0, 0, NULL};
	float *g = NULL;
	CK(cudaMalloc(&g, (3 * nt + 1 + (size_t)nt * d + (size_t)v * d) * 4));
	struct swerve_pl_out out = {
	        g, g + nt, g + 2 * nt, NULL, g + 3 * nt, g + 3 * nt + 1, g + 3 * nt + 1 + nt * d};
	size_t wsz = 0;
	for (int i = 0; i < n; i++) { /* e.g. SWERVE_PL_WPARTS=3 needs more than 2 */
		env_override e(name, good[i]);
		size_t z = swerve_pl_workspace_size(&b, &o);
		wsz = z > wsz ? z : wsz;
	}
	void *ws = NULL;
	CK(cudaMalloc(&ws, wsz));
	struct swerve_pl_ctx *ctx = NULL;
	CHECK(swerve_pl_ctx_new(&ctx) == 0, "%s", swerve_error_last());
	int rc_good = 0;
	for (int i = 0; i < n && !rc_good; i++) {
		env_override e(name, good[i]);
		rc_good = swerve_policy_loss_cuda(ctx, &out, &b, x, f, &o, ws, wsz, NULL);
		if (rc_good)
			printf("  %s=%s: rc %d: %s\n", name, good[i], rc_good, swerve_error_last());
	}
	int rc;
	{
		env_override e(name, bad);
		rc = swerve_policy_loss_cuda(ctx, &out, &b, x, f, &o, ws, wsz, NULL);
	}
	printf("  %s=%s: rc %d: %s\n", name, bad, rc, swerve_error_last());
	CK(cudaDeviceSynchronize());
	swerve_pl_ctx_free(ctx);
	cudaFree(ws), cudaFree(g), cudaFree(y), cudaFree(f), cudaFree(x);
	CHECK(rc_good == 0, "a valid %s was refused", name);
	char want[96];
	snprintf(want, sizeof(want), "%s=%s", name, bad);
	CHECK(rc == SWERVE_EINVAL && strstr(swerve_error_last(), want),
	      "%s was not refused by name (rc %d)", want, rc);
	return 0;
}

/* SWERVE_PL_ROWS overrides row_reread; a misspelt value is refused by name */
static int rows_env_is_checked(void)
{
	static const char *const good[] = {"reg",    "twopass",      "prefetch", "lean",
	                                   "stream", "stream-plain", ""};
	return have_gpu() ? env_switch_checked("SWERVE_PL_ROWS", good, 7, "v9") : GPU_SKIP;
}

/* SWERVE_PL_WPARTS=3 (W in three bf16 parts, rounds 9-19; two, the default
 * since round 20, run in every other FP32 / FP32_FWD case): FP32 / FP32_FWD
 * cases at the same tolerances (logp 1e-5 relative to the CPU's double), and
 * a misspelt value refused by name */
static int w3_cases(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	static const struct cfg cs[] = {
	        {"W3 cispo fp32 V%4=0", 300, 136, 2048, 5, 64, SWERVE_PL_CISPO, SWERVE_PL_FP32,
	         SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0},
	        {"W3 cispo fp32 d1024 V8192", 128, 1024, 8192, 4, 0, SWERVE_PL_CISPO,
	         SWERVE_PL_FP32, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 0, 0},
	        {"W3 grpo fp32fwd N2048 R96 acc", 2048, 64, 2048, 16, 256, SWERVE_PL_GRPO,
	         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 0, 0, 0, 1, 96, 0},
	        {"W3 cispo fp32fwd V odd R40", 97, 72, 1001, 3, 0, SWERVE_PL_CISPO,
	         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_SEQUENCE, 1, 1, 1, 1, 0, 0, 40, 0},
	        {"W3 cispo fp32fwd d768 V32000", 48, 768, 32000, 2, 0, SWERVE_PL_CISPO,
	         SWERVE_PL_FP32_FWD, SWERVE_PL_NORM_TOKENS, 0, 1, 0, 0, 0, 0, 16, 0},
	};
	env_override e("SWERVE_PL_WPARTS", "3");
	int rc = 0;
	for (size_t i = 0; i < sizeof(cs) / sizeof(cs[0]) && !rc; i++)
		rc = run_case(&cs[i]);
	return rc;
}

static int wparts_env_is_checked(void)
{
	static const char *const good[] = {"2", "3", ""};
	return have_gpu() ? env_switch_checked("SWERVE_PL_WPARTS", good, 3, "1") : GPU_SKIP;
}

static int bad_workspace_is_refused(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	int32_t y = 0;
	float f = 0.f, g = 0.f;
	struct swerve_pl_batch b = {1, 8, 8, &y, &f, &f, NULL, 0, 0, NULL};
	struct swerve_pl_out out = {&g, NULL, NULL, NULL, &g, &g, &g};
	struct swerve_pl_ctx *ctx = NULL;
	CHECK(swerve_pl_ctx_new(&ctx) == 0, "%s", swerve_error_last());
	uint16_t x = 0;
	int rc = swerve_policy_loss_cuda(ctx, &out, &b, &x, &f, &o, NULL, 0, NULL);
	swerve_pl_ctx_free(ctx);
	CHECK(rc == SWERVE_EINVAL, "rc %d", rc);
	CHECK(strstr(swerve_error_last(), "workspace") != NULL, "%s", swerve_error_last());
	return 0;
}

/* round 21: opts.w_split_ready. The split of W written by a context's
 * previous call is reused only where the parts, W's address, V, d and the
 * workspace are those of that call; every output byte is compared with a
 * fresh context's (the split run). Step 5 tells the caller's contract: W's
 * values changed behind a kept split give other results than a split of
 * them, so the split was in fact skipped. */
static int w_split_ready_guards(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	struct bw_inputs in;
	if (bw_make(&in, 300, 64, 2048))
		return 1;
	const int d = in.d, V = in.V;
	const size_t bytes = in.bytes;
	std::vector<float> Wa((size_t)V * d), Wb = bw_weights(V, d);
	CK(cudaMemcpy(Wa.data(), in.W, Wa.size() * 4, cudaMemcpyDeviceToHost));
	float *dWa = in.W, *dWb = dev_copy(Wb);
	CHECK(dWb, "cudaMalloc");
	float *g = NULL;
	CK(cudaMalloc(&g, bytes));
	struct swerve_pl_batch db = in.b;
	struct swerve_pl_out dout = bw_out(&in, g);
	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.precision = SWERVE_PL_FP32_FWD;
	const size_t wsz = swerve_pl_workspace_size(&db, &o);
	void *ws[2] = {NULL, NULL};
	CK(cudaMalloc(&ws[0], wsz));
	CK(cudaMalloc(&ws[1], wsz));
	struct swerve_pl_ctx *ctx = NULL;
	CHECK(swerve_pl_ctx_new(&ctx) == 0, "%s", swerve_error_last());
	/* one call: its outputs' bytes (ctx NULL: a fresh context) */
	auto call = [&](struct swerve_pl_ctx *c, const float *W, void *w,
	                enum swerve_pl_precision p, int ready, std::vector<uint8_t> &h) -> int {
		struct swerve_pl_ctx *fresh = NULL;
		if (!c && swerve_pl_ctx_new(&fresh))
			return 1;
		o.precision = p;
		o.w_split_ready = ready;
		CK(cudaMemset(g, 0xff, bytes));
		int rc = swerve_policy_loss_cuda(c ? c : fresh, &dout, &db, in.X, W, &o, w, wsz,
		                                 NULL);
		if (fresh)
			swerve_pl_ctx_free(fresh);
		CHECK(rc == 0, "%s", swerve_error_last());
		CK(cudaDeviceSynchronize());
		h.resize(bytes);
		CK(cudaMemcpy(h.data(), g, bytes, cudaMemcpyDeviceToHost));
		return 0;
	};
	std::vector<uint8_t> ref_a, ref_b, ref_b16, h;
	int bad = 0;
	auto ndiff = [&](const std::vector<uint8_t> &r) {
		size_t n = 0;
		for (size_t i = 0; i < bytes; i++)
			n += h[i] != r[i];
		return n;
	};
	auto same = [&](const char *what, const std::vector<uint8_t> &r) {
		size_t n = ndiff(r);
		printf("  %s: %zu of %zu bytes differ%s\n", what, n, bytes, n ? "  <-- FAIL" : "");
		bad |= n != 0;
	};
	if (call(NULL, dWa, ws[1], SWERVE_PL_FP32_FWD, 0, ref_a) ||
	    call(NULL, dWb, ws[1], SWERVE_PL_FP32_FWD, 0, ref_b) ||
	    call(NULL, dWb, ws[1], SWERVE_PL_BF16, 0, ref_b16))
		return 1;
	CHECK(memcmp(ref_a.data(), ref_b.data(), bytes) != 0, "W a and W b give the same bytes");
	/* a call on ctx, its bytes against ref's */
	auto step = [&](const char *what, const float *W, void *w, enum swerve_pl_precision p,
	                int ready, const std::vector<uint8_t> &ref) -> int {
		if (call(ctx, W, w, p, ready, h))
			return 1;
		same(what, ref);
		return 0;
	};
	const enum swerve_pl_precision F = SWERVE_PL_FP32_FWD;
	if (step("1. ready on a context with no split yet (W a)", dWa, ws[0], F, 1, ref_a) ||
	    step("2. ready, the same W a: split kept", dWa, ws[0], F, 1, ref_a) ||
	    step("3. ready, another W (b): split again", dWb, ws[0], F, 1, ref_b))
		return 1;
	CK(cudaMemcpy(dWb, Wa.data(), Wa.size() * 4, cudaMemcpyHostToDevice));
	if (step("4. not ready, W b's buffer now holding a's values: split again", dWb, ws[0], F, 0,
	         ref_a))
		return 1;
	CK(cudaMemcpy(dWb, Wb.data(), Wb.size() * 4, cudaMemcpyHostToDevice));
	if (call(ctx, dWb, ws[0], F, 1, h))
		return 1;
	{ /* the logits come from the kept split (a's), the target logit from W (b's) */
		size_t n = ndiff(ref_b);
		printf("  5. ready, W b's values restored behind the kept split: %zu of %zu bytes "
		       "differ from a split's (b's)%s\n",
		       n, bytes, n ? " (the split was skipped)" : "  <-- FAIL");
		bad |= n == 0;
	}
	if (step("6. ready, another workspace: split again", dWb, ws[1], F, 1, ref_b) ||
	    step("7. ready, bf16 (1 part) after 2 parts: split again", dWb, ws[1], SWERVE_PL_BF16,
	         1, ref_b16))
		return 1;
	swerve_pl_ctx_free(ctx);
	cudaFree(ws[0]), cudaFree(ws[1]), cudaFree(g), cudaFree(dWb);
	bw_free(&in);
	CHECK(!bad, "a kept split of W was used where it must not be, or not where it may");
	return 0;
}

int main(void)
{
	gpu_rng_seed();
	static const struct gpu_test tests[] = {
	        {"cispo_fp32_vec", cispo_fp32_vec},
	        {"cispo_fp32_odd", cispo_fp32_odd},
	        {"grpo_fp32_seq", grpo_fp32_seq},
	        {"dapo_fp32", dapo_fp32},
	        {"grpo_fp32_long", grpo_fp32_long},
	        {"logprob_only_fp32", logprob_only_fp32},
	        {"cispo_tf32", cispo_tf32},
	        {"grpo_tf32_odd", grpo_tf32_odd},
	        {"cispo_bf16", cispo_bf16},
	        {"cispo_fp32_big", cispo_fp32_big},
	        {"cispo_fp32fwd_vec", cispo_fp32fwd_vec},
	        {"grpo_fp32fwd_rows", grpo_fp32fwd_rows},
	        {"cispo_fp32fwd_odd", cispo_fp32fwd_odd},
	        {"cispo_fp32fwd_policy", cispo_fp32fwd_policy},
	        {"dapo_fp32_rows", dapo_fp32_rows},
	        {"logprob_only_rows", logprob_only_rows},
	        {"cispo_bf16_rows", cispo_bf16_rows},
	        {"cispo_fp32_reread", cispo_fp32_reread},
	        {"grpo_fp32fwd_reread", grpo_fp32fwd_reread},
	        {"cispo_fp32fwd_v32768", cispo_fp32fwd_v32768},
	        {"cispo_fp32fwd_v32772", cispo_fp32fwd_v32772},
	        {"pf_fp32fwd_policy", pf_fp32fwd_policy},
	        {"pf_fp32fwd_v32000_many", pf_fp32fwd_v32000_many},
	        {"pf_fp32fwd_v1004", pf_fp32fwd_v1004},
	        {"pf_bf16", pf_bf16},
	        {"pf_bf16_v32000_many", pf_bf16_v32000_many},
	        {"pf_grpo_bf16_long", pf_grpo_bf16_long},
	        {"pf_dapo_fp32", pf_dapo_fp32},
	        {"pf_tf32", pf_tf32},
	        {"pf_logprob_only", pf_logprob_only},
	        {"pf_v32768", pf_v32768},
	        {"pf_v32772", pf_v32772},
	        {"pf_v_odd", pf_v_odd},
	        {"pf_matches_register_bitwise", pf_matches_register_bitwise},
	        {"ln_fp32fwd_policy", ln_fp32fwd_policy},
	        {"ln_fp32fwd_v32000_many", ln_fp32fwd_v32000_many},
	        {"ln_dapo_fp32", ln_dapo_fp32},
	        {"ln_tf32", ln_tf32},
	        {"ln_logprob_only", ln_logprob_only},
	        {"ln_v32768", ln_v32768},
	        {"st_fp32fwd_policy", st_fp32fwd_policy},
	        {"st_fp32fwd_v32000_many", st_fp32fwd_v32000_many},
	        {"st_fp32fwd_v1004", st_fp32fwd_v1004},
	        {"st_bf16", st_bf16},
	        {"st_grpo_bf16_long", st_grpo_bf16_long},
	        {"st_dapo_fp32", st_dapo_fp32},
	        {"st_tf32", st_tf32},
	        {"st_logprob_only", st_logprob_only},
	        {"st_v32768", st_v32768},
	        {"st_v32772", st_v32772},
	        {"st_v_odd", st_v_odd},
	        {"lean_stream_match_register_bitwise", lean_stream_match_register_bitwise},
	        {"rows_env_is_checked", rows_env_is_checked},
	        {"sp_fp32fwd_policy", sp_fp32fwd_policy},
	        {"sp_tf32", sp_tf32},
	        {"sp_dapo_fp32", sp_dapo_fp32},
	        {"bad_workspace_is_refused", bad_workspace_is_refused},
	        {"w3_cases", w3_cases},
	        {"wparts_env_is_checked", wparts_env_is_checked},
	        {"w_split_ready_guards", w_split_ready_guards},
	};
	/* PL_TEST_ONLY=prefix,prefix,...: only the cases whose names start with
	 * one of them (a short device call for one kernel's cases) */
	const int n = (int)(sizeof(tests) / sizeof(tests[0]));
	const char *only = getenv("PL_TEST_ONLY");
	if (!only || !*only)
		return gpu_run_tests(tests, n);
	std::vector<struct gpu_test> pick;
	for (int i = 0; i < n; i++)
		for (const char *p = only; *p;) {
			size_t len = strcspn(p, ",");
			if (len && !strncmp(tests[i].name, p, len)) {
				pick.push_back(tests[i]);
				break;
			}
			p += len + (p[len] == ',');
		}
	printf("PL_TEST_ONLY=%s: %zu of %d cases\n", only, pick.size(), n);
	return gpu_run_tests(pick.data(), (int)pick.size());
}
