/* gpu_flash.cu - benchmark of the policy's flash softmax attention
 * (policy/gpu_flash.cu): the FlashAttention-2 kernels (fa2: 128-row forward
 * query tiles, the default; fa2_64: 64-row forward tiles; the same backward)
 * against the first WMMA kernels
 * (wmma, the baseline), side by side in one run.
 *
 * Shapes: 4 x 2048 tokens packed (the trainer's benchmark micro-batch) and
 * 1 x 8192, H = 12 query heads, KV = 4, head_dim 64, causal; inputs fp32
 * (T, heads, 64) as policy/gpu.cu passes them, random normal.
 *   time     median of 20 timed calls (CUDA events) after 3 warm-ups; fwd and
 *            bwd timed separately, fwd+bwd as one region
 *   TFLOP/s  causal useful work: forward 4 d H sum L(L+1)/2 (two products),
 *            backward 2.5x that (five products), whatever a kernel recomputes
 * Round 19 (fa19): fa2_par (fa2's kernels, the backward's dQ kernel on a
 * second stream beside dK/dV) and the 32 x 2048 shape (the 65,536-token
 * micro-batch; wmma not run there), and the rotary embedding of q and k
 * (rd 32, theta 1e4, forward then inverse, as gpu.cu runs it each step):
 * elem = policy_flash_rope_elem (gpu.cu's k_rotary until round 19), a launch per tensor and
 * direction, against fused = policy_flash_rope, one launch per direction.
 * The last tables are the summary. */
#include <cuda_runtime.h>

#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "policy/gpu_flash.h"
#include "tests/bench/gpu_bench.cuh"

struct result {
	double fwd, bwd, both;
};

static double median(std::vector<float> v)
{
	std::sort(v.begin(), v.end());
	return v[v.size() / 2];
}

enum { WARM = 3, REPS = 20 };

static struct result run(enum policy_flash_impl impl, int n, int L, int H, int KV, float *const *t,
                         const int *cu)
{
	/* t: q, k, v, dout, Dsum, o, lse, dq, dk, dv */
	cudaEvent_t e0, e1;
	std::vector<float> f, b, fb;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	SW(policy_flash_select(impl));
	/* one timed region: CUDA events around fn, kept after the warm-ups */
	auto timed = [&](std::vector<float> &into, int r, auto &&fn) {
		float ms = 0;
		CK(cudaEventRecord(e0));
		fn();
		CK(cudaEventRecord(e1));
		CK(cudaEventSynchronize(e1));
		CK(cudaEventElapsedTime(&ms, e0, e1));
		if (r >= WARM)
			into.push_back(ms);
	};
	auto fwd = [&] { SW(policy_flash_fwd(t[5], t[6], t[0], t[1], t[2], cu, n, L, H, KV)); };
	auto bwd = [&] {
		SW(policy_flash_bwd(t[7], t[8], t[9], t[3], t[4], t[0], t[1], t[2], t[6], cu, n, L,
		                    H, KV));
	};
	for (int r = 0; r < WARM + REPS; r++) {
		timed(f, r, fwd);
		timed(b, r, bwd);
		timed(fb, r, [&] {
			fwd();
			bwd();
		});
	}
	CK(cudaEventDestroy(e0));
	CK(cudaEventDestroy(e1));
	struct result res = {median(f), median(b), median(fb)};
	return res;
}

/* median ms of the rotary of q and k, forward and inverse, elem or fused */
static double rope_ms(int fused, float *q, float *k, const int *pos, int T, int H, int KV)
{
	const int rd = 32, d = 64;
	const float theta = 1e4f;
	cudaEvent_t e0, e1;
	std::vector<float> v;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	for (int r = 0; r < WARM + REPS; r++) {
		float ms = 0;
		CK(cudaEventRecord(e0));
		for (int inv = 0; inv < 2; inv++)
			if (fused)
				SW(policy_flash_rope(q, k, pos, T, H, KV, d, rd, theta, inv));
			else
				SW(policy_flash_rope_elem(q, k, pos, T, H, KV, d, rd, theta, inv));
		CK(cudaEventRecord(e1));
		CK(cudaEventSynchronize(e1));
		CK(cudaEventElapsedTime(&ms, e0, e1));
		if (r >= WARM)
			v.push_back(ms);
	}
	CK(cudaGetLastError());
	CK(cudaEventDestroy(e0));
	CK(cudaEventDestroy(e1));
	return median(v);
}

int main(void)
{
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_flash: skipped: no CUDA device\n");
		return 0;
	}
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	SW(policy_flash_setup());
	const int H = 12, KV = 4;
	enum { NS = 3, NI = 4 };
	const struct {
		int n, L;
	} shapes[NS] = {{4, 2048}, {1, 8192}, {32, 2048}};
	/* fa2 first and last: the default measured twice around the variants */
	const enum policy_flash_impl impls[NI] = {POLICY_FLASH_FA2, POLICY_FLASH_FA2_PAR,
	                                          POLICY_FLASH_FA2_64, POLICY_FLASH_WMMA};
	const char *names[] = {"fa2", "fa2_64", "wmma", "fa2_par"};
	struct result res[NS][NI + 1];
	double gf[NS], rope[NS][4];
	for (int si = 0; si < NS; si++) {
		int n = shapes[si].n, L = shapes[si].L, T = n * L;
		size_t nq = (size_t)T * H * 64, nk = (size_t)T * KV * 64, nr = (size_t)T * H;
		size_t sz[10] = {nq, nk, nk, nq, nr, nq, nr, nq, nk, nk};
		float *t[10];
		std::vector<int> hcu(n + 1), hpos(T);
		int *cu, *pos;
		for (int i = 0; i < 10; i++) {
			CK(cudaMalloc(&t[i], sz[i] * 4));
			fill_normal<<<1024, 256>>>(t[i], sz[i], i == 4 ? 0.1f : 1.0f, 1234 + i);
			CK(cudaGetLastError());
		}
		for (int s = 0; s <= n; s++)
			hcu[s] = s * L;
		for (int i = 0; i < T; i++)
			hpos[i] = i % L;
		CK(cudaMalloc(&cu, (n + 1) * sizeof(int)));
		CK(cudaMemcpy(cu, hcu.data(), (n + 1) * sizeof(int), cudaMemcpyHostToDevice));
		CK(cudaMalloc(&pos, T * sizeof(int)));
		CK(cudaMemcpy(pos, hpos.data(), T * sizeof(int), cudaMemcpyHostToDevice));
		/* lse of these inputs, so that backward sees real probabilities */
		SW(policy_flash_select(POLICY_FLASH_FA2));
		SW(policy_flash_fwd(t[5], t[6], t[0], t[1], t[2], cu, n, L, H, KV));
		CK(cudaDeviceSynchronize());
		gf[si] = 4.0 * 64 * H * n * (double)L * (L + 1) / 2 / 1e9;
		for (int i = 0; i <= NI; i++) {
			/* after the variants, the default again */
			enum policy_flash_impl im = i < NI ? impls[i] : POLICY_FLASH_FA2;
			if (im == POLICY_FLASH_WMMA && si == 2) {
				res[si][i].fwd = res[si][i].bwd = res[si][i].both = 0;
				continue; /* ~20 ms a call at 65,536 tokens: not run */
			}
			res[si][i] = run(im, n, L, H, KV, t, cu);
			printf("%d x %d, %-7s fwd %.3f ms, bwd %.3f ms, fwd+bwd %.3f ms\n", n, L,
			       names[im], res[si][i].fwd, res[si][i].bwd, res[si][i].both);
		}
		/* rotary on the q (t[0]) and k (t[1]) buffers: elem, fused, elem, fused */
		for (int r = 0; r < 4; r++)
			rope[si][r] = rope_ms(r & 1, t[0], t[1], pos, T, H, KV);
		printf("%d x %d, rope elem %.4f / %.4f ms, fused %.4f / %.4f ms\n", n, L,
		       rope[si][0], rope[si][2], rope[si][1], rope[si][3]);
		for (int i = 0; i < 10; i++)
			CK(cudaFree(t[i]));
		CK(cudaFree(cu));
		CK(cudaFree(pos));
	}
	printf("\n%s, H %d, KV %d, head_dim 64, causal; fwd %.1f / %.1f / %.1f GFLOP (4 x 2048 / "
	       "1 x 8192 / 32 x 2048), bwd 2.5x\n",
	       prop.name, H, KV, gf[0], gf[1], gf[2]);
	printf("| shape | kernels | fwd ms | bwd ms | fwd+bwd ms | fwd TFLOP/s | bwd TFLOP/s | "
	       "fwd+bwd TFLOP/s | vs fa2 (first row) |\n|---|---|---|---|---|---|---|---|---|\n");
	for (int si = 0; si < NS; si++)
		for (int i = 0; i <= NI; i++) {
			const struct result *r = &res[si][i];
			enum policy_flash_impl im = i == NI ? POLICY_FLASH_FA2 : impls[i];
			if (r->both <= 0)
				continue;
			printf("| %d x %d | %s%s | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f | %.3fx "
			       "|\n",
			       shapes[si].n, shapes[si].L, names[im], i == NI ? " (again)" : "",
			       r->fwd, r->bwd, r->both, gf[si] / r->fwd, 2.5 * gf[si] / r->bwd,
			       3.5 * gf[si] / r->both, res[si][0].both / r->both);
		}
	printf("\nrotary of q (H %d) and k (KV %d), rd 32, forward + inverse (median ms; "
	       "elem = policy_flash_rope_elem, 4 launches; fused = policy_flash_rope, 2)\n"
	       "| shape | elem | fused | elem again | fused again | elem / fused |\n"
	       "|---|---|---|---|---|---|\n",
	       H, KV);
	for (int si = 0; si < NS; si++)
		printf("| %d x %d | %.4f | %.4f | %.4f | %.4f | %.2fx |\n", shapes[si].n,
		       shapes[si].L, rope[si][0], rope[si][1], rope[si][2], rope[si][3],
		       (rope[si][0] + rope[si][2]) / (rope[si][1] + rope[si][3]));
	return 0;
}
