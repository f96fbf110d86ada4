/* gpu_ew.cu - round 8 (issue 10) kernel-level A/B on the policy's benchmark
 * shape (T 8192 tokens, D 768, top-2 MoE, bf16 activations, fp32 residual
 * stream): the residual / RMSNorm / embedding passes ("other" in the step
 * profile), round 7's kernels (copied here verbatim from policy/gpu.cu)
 * against round 8's (policy/gpu_ew.cu), each pass as policy_gpu_step
 * launches it, timed with CUDA events, median of 20. Also the gradient
 * arena's clear (one cudaMemsetAsync of the whole fp32 gradient arena per
 * optimizer step, 311,136,000 floats for gpu_train's config: reported, not
 * changed). Each row gives the old and new time, the new pass's bytes and
 * GB/s, and the worst |old - new| of its outputs (same inputs; the row sums'
 * order differs). Prints one table. */
#include "policy/gpu_ew.h"
#include "policy/gpu_rows.cuh"
#include "tests/bench/gpu_bench.cuh"

#include <algorithm>
#include <math.h>
#include <string.h>
#include <vector>

/* ---- round 7's kernels: policy/gpu_rows.cuh, the code POLICY_GPU_EW=old runs */

/* ---- harness --------------------------------------------------------------- */

#define GRID(n) (unsigned)(((n) + 255) / 256), 256

static float *falloc(size_t n, float scale, uint64_t seed)
{
	float *p;
	CK(cudaMalloc(&p, n * 4));
	fill_normal<<<1024, 256>>>(p, n, scale, seed);
	CK(cudaGetLastError());
	return p;
}

/* worst |a - b| of n device values (fp32, or bf16 where bf16) */
static double maxdiff(const void *a, const void *b, size_t n, int bf16)
{
	std::vector<uint8_t> ha(n * 4), hb(n * 4);
	double m = 0;
	CK(cudaMemcpy(ha.data(), a, n * (bf16 ? 2 : 4), cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(hb.data(), b, n * (bf16 ? 2 : 4), cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < n; i++) {
		float x, y;
		if (bf16) {
			uint32_t ux = (uint32_t)((uint16_t *)ha.data())[i] << 16,
			         uy = (uint32_t)((uint16_t *)hb.data())[i] << 16;
			memcpy(&x, &ux, 4);
			memcpy(&y, &uy, 4);
		} else {
			x = ((float *)ha.data())[i];
			y = ((float *)hb.data())[i];
		}
		double d = fabs((double)x - y);
		if (!(d <= m)) /* NaN counts as worst */
			m = d != d ? INFINITY : d;
	}
	return m;
}

struct row_t {
	const char *what;
	int per_mb; /* launches per micro-batch */
	double old_ms, new_ms, mb, err;
};
static std::vector<row_t> rows;

static void add_row(const char *what, int per_mb, double old_ms, double new_ms, double mb,
                    double err)
{
	rows.push_back({what, per_mb, old_ms, new_ms, mb, err});
}

int main(void)
{
	const int T = 8192, D = 768, K = 2, V = 32000;
	const size_t TD = (size_t)T * D, ARENA = 311136000; /* gpu_train's L.total */
	const float eps = 1e-5f;
	struct cudaDeviceProp prop;
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_ew: skipped: no CUDA device\n");
		return 0;
	}
	CK(cudaGetDeviceProperties(&prop, 0));
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* inputs */
	float *emb = falloc((size_t)V * D, 0.02f, 1), *w = falloc(D, 0.2f, 2);
	float *a = falloc(TD, 1.0f, 3), *bb = falloc(TD, 1.0f, 4);
	float *yp = falloc(TD * K, 1.0f, 5), *gate = falloc((size_t)T * K, 0.5f, 6);
	float *dy = falloc(TD, 1.0f, 7), *rs = falloc(T, 0.1f, 8), *dx0 = falloc(TD, 1.0f, 9);
	float *w1;
	int *tok;
	/* outputs, old and new */
	float *out[2], *yf[2], *rstd[2], *dx[2], *dw[2], *demb[2];
	uint16_t *yh[2], *yb[2];
	{
		std::vector<int> ht(T);
		uint64_t s = 12345;
		for (int t = 0; t < T; t++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			ht[t] = (int)((s >> 33) % V);
		}
		CK(cudaMalloc(&tok, T * 4));
		CK(cudaMemcpy(tok, ht.data(), T * 4, cudaMemcpyHostToDevice));
	}
	w1 = falloc(D, 0.2f, 10);
	{ /* the norm weights near 1, rstd positive */
		std::vector<float> h(D), hr(T);
		CK(cudaMemcpy(h.data(), w1, D * 4, cudaMemcpyDeviceToHost));
		for (int i = 0; i < D; i++)
			h[i] += 1.0f;
		CK(cudaMemcpy(w, h.data(), D * 4, cudaMemcpyHostToDevice));
		for (int t = 0; t < T; t++)
			hr[t] = 0.8f + 0.001f * (t % 400);
		CK(cudaMemcpy(rs, hr.data(), T * 4, cudaMemcpyHostToDevice));
	}
	for (int i = 0; i < 2; i++) {
		CK(cudaMalloc(&out[i], TD * 4));
		CK(cudaMalloc(&yf[i], TD * 4));
		CK(cudaMalloc(&rstd[i], T * 4));
		CK(cudaMalloc(&dx[i], TD * 4));
		CK(cudaMalloc(&dw[i], D * 4));
		CK(cudaMalloc(&demb[i], (size_t)V * D * 4));
		CK(cudaMalloc(&yh[i], TD * 2));
		CK(cudaMalloc(&yb[i], TD * 2));
	}
	CK(cudaDeviceSynchronize());
	const double MB = 1e-6;

	{ /* embedding + the first norm (bf16 n1): old k_embed + k_rms_fwd */
		double to = bench_median_ms([&] {
			k_embed<<<GRID(TD)>>>(out[0], emb, tok, T, D);
			k_rms_fwd<uint16_t><<<T, 256>>>(yh[0], rstd[0], out[0], w, D, eps);
		});
		double tn = bench_median_ms([&] {
			SW(policy_ew_add_rms(out[1], yh[1], 1, NULL, rstd[1], NULL, emb, tok, NULL,
			                     NULL, NULL, 0, w, T, D, eps));
		});
		add_row("embed + first norm", 1, to, tn, TD * (4 + 4 + 2) * MB,
		        fmax(maxdiff(out[0], out[1], TD, 0), maxdiff(yh[0], yh[1], TD, 1)));
	}
	{ /* the embedding alone (the unfused path) */
		double to = bench_median_ms([&] { k_embed<<<GRID(TD)>>>(out[0], emb, tok, T, D); });
		double tn = bench_median_ms([&] { SW(policy_ew_embed(out[1], emb, tok, T, D)); });
		add_row("embed alone (unfused)", 0, to, tn, TD * 8 * MB,
		        maxdiff(out[0], out[1], TD, 0));
	}
	{ /* attention's add + ffn norm: n2 fp32 and the experts' bf16 copy */
		double to = bench_median_ms([&] {
			k_add_rms_moe<float><<<T, 256>>>(out[0], yf[0], yb[0], rstd[0], a, bb, NULL,
			                                 NULL, 0, w, D, eps);
		});
		double tn = bench_median_ms([&] {
			SW(policy_ew_add_rms(out[1], yf[1], 0, yb[1], rstd[1], a, NULL, NULL, bb,
			                     NULL, NULL, 0, w, T, D, eps));
		});
		add_row("add + ffn norm (fp32 + bf16)", 12, to, tn, TD * 18 * MB,
		        fmax(fmax(maxdiff(out[0], out[1], TD, 0), maxdiff(yf[0], yf[1], TD, 0)),
		             maxdiff(yb[0], yb[1], TD, 1)));
	}
	{ /* the MoE combine + add + next norm (bf16) */
		double to = bench_median_ms([&] {
			k_add_rms_moe<uint16_t><<<T, 256>>>(out[0], yh[0], NULL, rstd[0], a, NULL,
			                                    yp, gate, K, w, D, eps);
		});
		double tn = bench_median_ms([&] {
			SW(policy_ew_add_rms(out[1], yh[1], 1, NULL, rstd[1], a, NULL, NULL, NULL,
			                     yp, gate, K, w, T, D, eps));
		});
		add_row("combine + add + next norm", 12, to, tn, TD * (4 + 4 * K + 4 + 2) * MB,
		        fmax(fmax(maxdiff(out[0], out[1], TD, 0), maxdiff(yh[0], yh[1], TD, 1)),
		             maxdiff(rstd[0], rstd[1], T, 0)));
	}
	/* the RMSNorm backward + dw: ffn (acc, bf16 copy), attn (acc), final (=) */
	for (int kind = 0; kind < 3; kind++) {
		static const char *names[3] = {"norm bwd ffn (acc, bf16 dx)", "norm bwd attn (acc)",
		                               "norm bwd final"};
		int acc = kind < 2, per = kind < 2 ? 12 : 1;
		uint16_t *xb0 = kind == 0 ? yb[0] : NULL, *xb1 = kind == 0 ? yb[1] : NULL;
		/* each timed launch adds into dx: reset it first (outside the timing
		 * for the error check, inside both timings alike otherwise) */
		double to = bench_median_ms([&] {
			k_rms_bwd_dw<<<(unsigned)((T + RMS_BWD_ROWS - 1) / RMS_BWD_ROWS), 256>>>(
			        dx[0], xb0, acc, dw[0], dy, a, w, rs, T, D);
		});
		double tn = bench_median_ms(
		        [&] { SW(policy_ew_rms_bwd(dx[1], xb1, acc, dw[1], dy, a, w, rs, T, D)); });
		double err;
		for (int i = 0; i < 2; i++) {
			CK(cudaMemcpy(dx[i], dx0, TD * 4, cudaMemcpyDeviceToDevice));
			CK(cudaMemset(dw[i], 0, D * 4));
		}
		k_rms_bwd_dw<<<(unsigned)((T + RMS_BWD_ROWS - 1) / RMS_BWD_ROWS), 256>>>(
		        dx[0], xb0, acc, dw[0], dy, a, w, rs, T, D);
		SW(policy_ew_rms_bwd(dx[1], xb1, acc, dw[1], dy, a, w, rs, T, D));
		CK(cudaDeviceSynchronize());
		err = fmax(maxdiff(dx[0], dx[1], TD, 0), maxdiff(dw[0], dw[1], D, 0));
		if (xb0)
			err = fmax(err, maxdiff(xb0, xb1, TD, 1));
		add_row(names[kind], per, to, tn,
		        TD * (acc ? 16 : 12) * MB + (xb0 ? TD * 2 * MB : 0), err);
	}
	{ /* the embedding's backward (atomics into the (V, D) gradient) */
		double to =
		        bench_median_ms([&] { k_embed_bwd<<<GRID(TD)>>>(demb[0], dy, tok, T, D); });
		double tn =
		        bench_median_ms([&] { SW(policy_ew_embed_bwd(demb[1], dy, tok, T, D)); });
		for (int i = 0; i < 2; i++)
			CK(cudaMemset(demb[i], 0, (size_t)V * D * 4));
		k_embed_bwd<<<GRID(TD)>>>(demb[0], dy, tok, T, D);
		SW(policy_ew_embed_bwd(demb[1], dy, tok, T, D));
		CK(cudaDeviceSynchronize());
		add_row("embed bwd", 1, to, tn, TD * 12 * MB,
		        maxdiff(demb[0], demb[1], (size_t)V * D, 0));
	}

	printf("gpu_ew (round 8, issue 10): %s; T %d, D %d, top-%d, V %d; median of 20\n",
	       prop.name, T, D, K, V);
	printf("%-30s %5s %9s %9s %7s %8s %8s %10s\n", "pass", "x/mb", "old us", "new us",
	       "new/old", "MB", "new GB/s", "max|o-n|");
	double so = 0, sn = 0;
	for (const row_t &r : rows) {
		printf("%-30s %5d %9.1f %9.1f %7.2f %8.1f %8.0f %10.3g\n", r.what, r.per_mb,
		       r.old_ms * 1e3, r.new_ms * 1e3, r.new_ms / r.old_ms, r.mb, r.mb / r.new_ms,
		       r.err); /* MB / ms = GB/s */
		so += r.per_mb * r.old_ms;
		sn += r.per_mb * r.new_ms;
	}
	printf("%-30s %5s %9.1f %9.1f %7.2f  (sum x launches a micro-batch, fused path)\n",
	       "per micro-batch", "", so * 1e3, sn * 1e3, sn / so);
	{ /* the gradient arena's clear: report only */
		float *ga;
		size_t bytes = ARENA * 4;
		CK(cudaMalloc(&ga, bytes));
		double tm = bench_median_ms([&] { CK(cudaMemsetAsync(ga, 0, bytes)); }, 10);
		printf("grad arena clear (cudaMemsetAsync %.3f GB, once per optimizer step): %.3f "
		       "ms, "
		       "%.0f GB/s\n",
		       bytes / 1e9, tm, bytes / 1e6 / tm);
		CK(cudaFree(ga));
	}
	return 0;
}
