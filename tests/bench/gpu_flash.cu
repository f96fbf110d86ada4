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
 * The last table is the summary. */
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
	const struct {
		int n, L;
	} shapes[] = {{4, 2048}, {1, 8192}};
	const enum policy_flash_impl impls[] = {POLICY_FLASH_WMMA, POLICY_FLASH_FA2,
	                                        POLICY_FLASH_FA2_64};
	const char *names[] = {"fa2", "fa2_64", "wmma"};
	enum { NI = 3 };
	struct result res[2][NI];
	double gf[2];
	for (int si = 0; si < 2; si++) {
		int n = shapes[si].n, L = shapes[si].L, T = n * L;
		size_t nq = (size_t)T * H * 64, nk = (size_t)T * KV * 64, nr = (size_t)T * H;
		size_t sz[10] = {nq, nk, nk, nq, nr, nq, nr, nq, nk, nk};
		float *t[10];
		std::vector<int> hcu(n + 1);
		int *cu;
		for (int i = 0; i < 10; i++) {
			CK(cudaMalloc(&t[i], sz[i] * 4));
			fill_normal<<<1024, 256>>>(t[i], sz[i], i == 4 ? 0.1f : 1.0f, 1234 + i);
			CK(cudaGetLastError());
		}
		for (int s = 0; s <= n; s++)
			hcu[s] = s * L;
		CK(cudaMalloc(&cu, (n + 1) * sizeof(int)));
		CK(cudaMemcpy(cu, hcu.data(), (n + 1) * sizeof(int), cudaMemcpyHostToDevice));
		/* lse of these inputs, so that backward sees real probabilities */
		SW(policy_flash_select(POLICY_FLASH_FA2));
		SW(policy_flash_fwd(t[5], t[6], t[0], t[1], t[2], cu, n, L, H, KV));
		CK(cudaDeviceSynchronize());
		gf[si] = 4.0 * 64 * H * n * (double)L * (L + 1) / 2 / 1e9;
		for (int i = 0; i < NI; i++) {
			res[si][impls[i]] = run(impls[i], n, L, H, KV, t, cu);
			printf("%d x %d, %-7s fwd %.3f ms, bwd %.3f ms, fwd+bwd %.3f ms\n", n, L,
			       names[impls[i]], res[si][impls[i]].fwd, res[si][impls[i]].bwd,
			       res[si][impls[i]].both);
		}
		for (int i = 0; i < 10; i++)
			CK(cudaFree(t[i]));
		CK(cudaFree(cu));
	}
	printf("\n%s, H %d, KV %d, head_dim 64, causal; fwd %.1f / %.1f GFLOP (4 x 2048 / 1 x "
	       "8192), bwd 2.5x\n",
	       prop.name, H, KV, gf[0], gf[1]);
	printf("| shape | kernels | fwd ms | bwd ms | fwd+bwd ms | fwd TFLOP/s | bwd TFLOP/s | "
	       "fwd+bwd TFLOP/s | vs wmma |\n|---|---|---|---|---|---|---|---|---|\n");
	for (int si = 0; si < 2; si++)
		for (int i = 0; i < NI; i++) {
			const struct result *r = &res[si][impls[i]];
			printf("| %d x %d | %s | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f | %.2fx "
			       "|\n",
			       shapes[si].n, shapes[si].L, names[impls[i]], r->fwd, r->bwd, r->both,
			       gf[si] / r->fwd, 2.5 * gf[si] / r->bwd, 3.5 * gf[si] / r->both,
			       res[si][POLICY_FLASH_WMMA].both / r->both);
		}
	return 0;
}
