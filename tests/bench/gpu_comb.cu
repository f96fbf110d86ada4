/* gpu_comb.cu - round 10 (issue 10) kernel-level A/B of the MoE layer's
 * memory-bound passes on the policy's benchmark shape (T 8192 tokens, D
 * 768, 8 experts top-2, R 16384 slot rows): today's default kernels
 * (gpu_route.cu's v2 forward, sort and backward, gpu_moe.cu's
 * k_mg_combine_bwd, k_mg_scatter and k_mg_gather) against round 10's
 * (POLICY_GPU_ROUTE=v3: k_rt_fwd3, k_rt_sort3, k_rt_bwd3 with the slot sum
 * folded in; POLICY_GPU_MOE_COMB=new: gpu_comb.cu's token-major combine
 * backward and float4 slot sum). Each launch timed alone with CUDA events
 * after a 128 MiB memset has pushed the inputs out of L2 (as in a training
 * step, where the tensors were written long before; ncu flushes too), the
 * median of 25; the layer's chain (fwd, sort, combine bwd, scatter, route
 * bwd, dW) also timed back to back after one flush. The byte floor: the
 * bytes each pass must move at least, at 3.0 TB/s (this H100's measured
 * device-to-device copy rate). Prints one table. */
#include "policy/gpu_comb.h"
#include "policy/gpu_moe.h"
#include "policy/gpu_route.h"
#include "tests/bench/gpu_bench.cuh"

#include <string.h>

static void row(const char *what, double mb, double old_us, double new_us)
{
	printf("%-40s %7.1f %7.1f %8.1f %8.1f %6.2fx %7.0f %7.0f\n", what, mb, mb / 3.0e6 * 1e6,
	       old_us, new_us, new_us > 0 ? old_us / new_us : 0.0,
	       old_us > 0 ? mb / old_us * 1e3 : 0.0, new_us > 0 ? mb / new_us * 1e3 : 0.0);
}

int main(void)
{
	int ndev = 0;
	const int T = 8192, D = 768, E = 8, K = 2, R = T * K, F = 1024;
	const size_t nx = (size_t)T * D, nr = (size_t)R * D;
	cudaDeviceProp prop;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_comb: skipped: no CUDA device\n");
		return 0;
	}
	CK(cudaGetDeviceProperties(&prop, 0));

	float *x, *wr, *prob, *gate, *dgate, *dn, *dwr, *auxc, *ws, *dy, *yp, *dxp;
	int *sel, *rowof, *perm, *offs;
	uint16_t *dyp, *xb, *xg;
	double *aux;
	CK(cudaMalloc(&x, nx * 4));
	CK(cudaMalloc(&wr, (size_t)E * D * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)R * 4));
	CK(cudaMalloc(&dgate, (size_t)R * 4));
	CK(cudaMalloc(&dn, nx * 4));
	CK(cudaMalloc(&dwr, (size_t)E * D * 4));
	CK(cudaMalloc(&auxc, E * 4));
	CK(cudaMalloc(&ws, policy_route_scratch_floats(T, E, D) * 4));
	CK(cudaMalloc(&dy, nx * 4));
	CK(cudaMalloc(&yp, nr * 4));
	CK(cudaMalloc(&dxp, nr * 4));
	CK(cudaMalloc(&sel, (size_t)R * 4));
	CK(cudaMalloc(&rowof, (size_t)R * 4));
	CK(cudaMalloc(&perm, (size_t)R * 4));
	CK(cudaMalloc(&offs, (E + 2) * 4));
	CK(cudaMalloc(&dyp, nr * 2));
	CK(cudaMalloc(&xb, nx * 2));
	CK(cudaMalloc(&xg, nr * 2));
	CK(cudaMalloc(&aux, 8));
	fill_normal<<<512, 256>>>(x, nx, 1.0f, 1);
	fill_normal<<<64, 256>>>(wr, (size_t)E * D, 0.05f, 2);
	fill_normal<<<64, 256>>>(dgate, (size_t)R, 1.0f, 3);
	fill_normal<<<512, 256>>>(dy, nx, 1.0f, 4);
	fill_normal<<<512, 256>>>(yp, nr, 1.0f, 5);
	fill_normal<<<512, 256>>>(dxp, nr, 1.0f, 6);
	CK(cudaMemset(dwr, 0, (size_t)E * D * 4));
	CK(cudaMemset(xb, 0x3f, nx * 2));
	CK(cudaDeviceSynchronize());

	struct policy_moe_dims dm = {};
	memset(&dm, 0, sizeof(dm));
	dm.T = T, dm.K = K, dm.E = E, dm.D = D, dm.F = F, dm.offs = offs, dm.perm = perm;
	dm.gathered = 1;

	auto nop = [] {};
	auto fwd = [&](int v) {
		SW(policy_route_fwd(prob, sel, gate, rowof, ws, x, wr, T, E, K, D, v));
	};
	auto sort = [&](int v) {
		SW(policy_route_sort(perm, rowof, offs, auxc, aux, ws, sel, T, E, K, R, 1, 1, 0.01,
		                     v));
	};
	auto cb_old = [&] { SW(policy_moe_combine_bwd(&dm, dyp, dgate, dy, yp, gate)); };
	auto cb_new = [&] {
		SW(policy_moe_combine_bwd2(dyp, dgate, dy, yp, gate, rowof, T, K, D));
	};
	auto sc_old = [&] { SW(policy_moe_scatter(dn, dxp, T, K, D, 0)); };
	auto sc_new = [&] { SW(policy_moe_scatter2(dn, dxp, T, K, D, 0)); };
	auto bwd2 = [&] {
		SW(policy_route_bwd(dn, ws, x, wr, prob, sel, gate, dgate, auxc, T, E, K, D, 1));
	};
	auto bwd3 = [&] {
		SW(policy_route_bwd_slots(dn, ws, dxp, x, wr, prob, sel, gate, dgate, auxc, T, E, K,
		                          D));
	};
	auto dw = [&] { SW(policy_route_dw(dwr, ws, T, E, D)); };
	auto gather = [&] { SW(policy_moe_gather(&dm, xg, xb)); };

	/* the forward and the sort (each variant's sort after its own forward) */
	double f2 = bench_cold_us(nop, [&] { fwd(1); }), f3 = bench_cold_us(nop, [&] { fwd(2); });
	double s2 = bench_cold_us([&] { fwd(1); }, [&] { sort(1); });
	double s3 = bench_cold_us([&] { fwd(2); }, [&] { sort(2); });
	double f4 = bench_cold_us(nop, [&] { fwd(3); }); /* v4's forward (the sort is v3's) */

	/* the backward passes on v3's routing (the same rows as v2's) */
	double c0 = bench_cold_us(nop, cb_old), c1 = bench_cold_us(nop, cb_new);
	double g0 = bench_cold_us(nop, gather);
	double sc0 = bench_cold_us(nop, sc_old), sc1 = bench_cold_us(nop, sc_new);
	double b2 = bench_cold_us(nop, bwd2), b3 = bench_cold_us(nop, bwd3);
	double scb0 = bench_cold_us(nop, [&] {
		sc_old();
		bwd2();
	});
	double dw0 = bench_cold_us(nop, dw);
	double chain0 = bench_cold_us(nop, [&] {
		fwd(1);
		sort(1);
		gather();
		cb_old();
		sc_old();
		bwd2();
		dw();
	});
	double chain1 = bench_cold_us(nop, [&] {
		fwd(2);
		sort(2);
		gather();
		cb_new();
		bwd3();
		dw();
	});

	const double MB = 1e6;
	double b_fwd = (nx * 4 + (size_t)T * E * 4 + (size_t)R * 12) / MB;
	double b_sort = ((size_t)R * 16) / MB;
	double b_cb = (nx * 4 + nr * 4 + nr * 2 + (size_t)R * 12) / MB;
	double b_sc = (nr * 4 + nx * 4) / MB;
	double b_b2 = (3 * nx * 4) / MB, b_b3 = (nr * 4 + 2 * nx * 4) / MB;
	double b_g = (nx * 2 + nr * 2) / MB;
	printf("gpu_comb: %s, T %d D %d E %d K %d (R %d rows), L2 flushed before each launch, "
	       "median of 25\n",
	       prop.name, T, D, E, K, R);
	printf("%-40s %7s %7s %8s %8s %7s %7s %7s\n", "pass (old -> new)", "MB", "floor", "old us",
	       "new us", "speedup", "old GB/s", "new GB/s");
	row("route fwd (k_rt_fwd2 -> k_rt_fwd3)", b_fwd, f2, f3);
	row("route sort (k_rt_sort2 -> k_rt_sort3)", b_sort, s2, s3);
	row("route fwd, v4 (k_rt_fwd2 -> k_rt_fwd4)", b_fwd, f2, f4);
	row("combine bwd (k_mg_combine_bwd -> k_cb_bwd)", b_cb, c0, c1);
	row("scatter (k_mg_scatter -> k_cb_scatter)", b_sc, sc0, sc1);
	row("route bwd (k_rt_bwd2, dn read)", b_b2, b2, b2);
	row("scatter + route bwd -> k_rt_bwd3 (slots)", b_b3, scb0, b3);
	row("router dW part sum (k_rt_dw, unchanged)", (double)((T + 31) / 32) * E * D * 4 / MB,
	    dw0, dw0);
	row("gather (k_mg_gather, unchanged)", b_g, g0, g0);
	row("sum of the passes above (default -> v3+new)", b_fwd + b_sort + b_g + b_cb + b_b3,
	    f2 + s2 + g0 + c0 + scb0 + dw0, f3 + s3 + g0 + c1 + b3 + dw0);
	row("the chain back to back, one flush", b_fwd + b_sort + b_g + b_cb + b_b3, chain0,
	    chain1);
	return 0;
}
