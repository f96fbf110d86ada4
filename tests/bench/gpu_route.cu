/* gpu_route.cu - round 7 (issue 10) kernel-level A/B on the policy's
 * benchmark shape (T 8192 tokens, D 768, 8 experts top-2, Hd 768, bf16
 * activations): the MoE routing and the lightning layer's elementwise
 * passes, today's kernels (copied here verbatim from policy/gpu.cu of
 * round 6, with the router's fp32 cuBLAS GEMMs as gpu.cu calls them)
 * against round 7's (policy/gpu_route.cu, policy/gpu_linew.cu; the routing
 * and the lightning norm kernels also as their variants v2,
 * POLICY_GPU_ROUTE=v2 and POLICY_GPU_LIN_EW=v2), timed with CUDA events, median
 * of 20 launches of each group. Prints one table. */
#include "policy/gpu_linew.h"
#include "policy/gpu_route.h"
#include "policy/gpu_route_r6.cuh"
#include "policy/gpu_rows.cuh"
#include "tests/bench/gpu_bench.cuh"

#include <algorithm>
#include <cublas_v2.h>
#include <math.h>
#include <string.h>
#include <vector>

/* ---- the baselines are the library's own kernels: round 6's routing
 * (policy/gpu_route_r6.cuh, what POLICY_GPU_ROUTE=old runs) and the
 * lightning layer's round-6 passes (policy/gpu_rows.cuh, POLICY_GPU_LIN_EW=old),
 * at bf16 activations ------------------------------------------------------ */

__global__ static void to_bf16(uint16_t *o, const float *x, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		o[i] = f2bf(x[i]);
}

/* ---- timing ----------------------------------------------------------------- */

static cublasHandle_t blas;

#define CKB(call)                                                                                  \
	do {                                                                                       \
		cublasStatus_t s_ = (call);                                                        \
		if (s_ != CUBLAS_STATUS_SUCCESS)                                                   \
			DIE("%s:%d: cuBLAS status %d", __FILE__, __LINE__, (int)s_);               \
	} while (0)

/* median ms of reps runs of f (after one warm-up) */
static void row(const char *what, double old_ms, double new_ms, double mb_new, double v2_ms)
{
	printf("%-44s %9.1f %9.1f %7.2fx %9.0f", what, old_ms * 1e3, new_ms * 1e3,
	       new_ms > 0 ? old_ms / new_ms : 0.0,
	       mb_new > 0 ? mb_new / (new_ms * 1e-3) / 1e9 : 0.0);
	if (v2_ms >= 0)
		printf(" %9.1f %7.2fx", v2_ms * 1e3, v2_ms > 0 ? old_ms / v2_ms : 0.0);
	printf("\n");
}

int main(void)
{
	int ndev = 0;
	const int T = 8192, D = 768, E = 8, K = 2, Hd = 768, R = T * K;
	const int Rp = R + R / 2 + 64 * E;
	const float one = 1.0f, zero = 0.0f;
	size_t n = (size_t)T * Hd;
	cudaDeviceProp prop;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_route: skipped: no CUDA device\n");
		return 0;
	}
	CK(cudaGetDeviceProperties(&prop, 0));
	CKB(cublasCreate(&blas));

	/* routing buffers */
	float *x, *wr, *logit, *prob, *gate, *dgate, *dn, *dlog, *dwr, *auxc, *ws;
	int *sel, *rowof, *perm, *offs;
	double *aux;
	CK(cudaMalloc(&x, (size_t)T * D * 4));
	CK(cudaMalloc(&wr, (size_t)E * D * 4));
	CK(cudaMalloc(&logit, (size_t)T * E * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)R * 4));
	CK(cudaMalloc(&dgate, (size_t)R * 4));
	CK(cudaMalloc(&dn, (size_t)T * D * 4));
	CK(cudaMalloc(&dlog, (size_t)T * E * 4));
	CK(cudaMalloc(&dwr, (size_t)E * D * 4));
	CK(cudaMalloc(&auxc, E * 4));
	CK(cudaMalloc(&ws, policy_route_scratch_floats(T, E, D) * 4));
	CK(cudaMalloc(&sel, (size_t)R * 4));
	CK(cudaMalloc(&rowof, (size_t)R * 4));
	CK(cudaMalloc(&perm, (size_t)Rp * 4));
	CK(cudaMalloc(&offs, (E + 2) * 4));
	CK(cudaMalloc(&aux, 8));
	fill_normal<<<512, 256>>>(x, (size_t)T * D, 1.0f, 1);
	fill_normal<<<64, 256>>>(wr, (size_t)E * D, 0.05f, 2);
	fill_normal<<<64, 256>>>(dgate, (size_t)R, 1.0f, 3);
	fill_normal<<<512, 256>>>(dn, (size_t)T * D, 1.0f, 4);
	CK(cudaMemset(dwr, 0, (size_t)E * D * 4));
	CK(cudaMemset(auxc, 0, E * 4));
	CK(cudaDeviceSynchronize());

	/* Y (T, E) = X W^T: gemm(OP_T, OP_N, E, T, D), fp32 (mm_fwd, f32) */
	auto old_fwd_gemm = [&] {
		CKB(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, E, T, D, &one, wr, CUDA_R_32F, D,
		                 x, CUDA_R_32F, D, &zero, logit, CUDA_R_32F, E, CUBLAS_COMPUTE_32F,
		                 CUBLAS_GEMM_DEFAULT));
	};
	auto old_route = [&] {
		k_route<<<(T + 255) / 256, 256>>>(prob, sel, gate, logit, T, E, K);
	};
	auto old_sort = [&] {
		k_route_sort<<<1, SORT_THREADS>>>(perm, rowof, offs, auxc, aux, sel, prob, T, E, K,
		                                  Rp, 1, 1, 0.01);
	};
	auto old_rbwd = [&] {
		k_route_bwd<<<(T + 255) / 256, 256>>>(dlog, prob, sel, gate, dgate, auxc, T, E, K);
	};
	/* dW (E, D) += dlog^T X: gemm(OP_N, OP_T, D, E, T) (mm_dw) */
	auto old_dw = [&] {
		CKB(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, D, E, T, &one, x, CUDA_R_32F, D,
		                 dlog, CUDA_R_32F, E, &one, dwr, CUDA_R_32F, D, CUBLAS_COMPUTE_32F,
		                 CUBLAS_GEMM_DEFAULT));
	};
	/* dX (T, D) += dlog W: gemm(OP_N, OP_N, D, T, E) (mm_dx, beta 1) */
	auto old_dx = [&] {
		CKB(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, D, T, E, &one, wr, CUDA_R_32F, D,
		                 dlog, CUDA_R_32F, E, &one, dn, CUDA_R_32F, D, CUBLAS_COMPUTE_32F,
		                 CUBLAS_GEMM_DEFAULT));
	};
	int v2 = 0; /* the variant the new_* calls run */
	auto new_fwd = [&] {
		SW(policy_route_fwd(prob, sel, gate, rowof, ws, x, wr, T, E, K, D, v2));
	};
	auto new_sort = [&] {
		SW(policy_route_sort(perm, rowof, offs, auxc, aux, ws, sel, T, E, K, Rp, 1, 1, 0.01,
		                     v2));
	};
	auto new_bwd = [&] {
		SW(policy_route_bwd(dn, ws, x, wr, prob, sel, gate, dgate, auxc, T, E, K, D, v2));
	};
	auto new_dw = [&] { SW(policy_route_dw(dwr, ws, T, E, D)); };

	double r_og = bench_median_ms(old_fwd_gemm), r_or = bench_median_ms(old_route);
	double r_os = bench_median_ms([&] {
		              old_route(); /* the sort reads sel; rowof is rewritten each time */
		              old_sort();
	              }) -
	              r_or;
	double r_ob = bench_median_ms(old_rbwd), r_odw = bench_median_ms(old_dw),
	       r_odx = bench_median_ms(old_dx);
	double r_nf = bench_median_ms(new_fwd);
	double r_ns = bench_median_ms([&] {
		              new_fwd();
		              new_sort();
	              }) -
	              r_nf;
	double r_nb = bench_median_ms(new_bwd), r_ndw = bench_median_ms(new_dw);
	/* variant v2 (POLICY_GPU_ROUTE=v2) */
	v2 = 1;
	double r_vf = bench_median_ms(new_fwd);
	double r_vs = bench_median_ms([&] {
		              new_fwd();
		              new_sort();
	              }) -
	              r_vf;
	double r_vb = bench_median_ms(new_bwd), r_vdw = bench_median_ms(new_dw);
	double r_vall = bench_median_ms([&] {
		new_fwd();
		new_sort();
		new_bwd();
		new_dw();
	});
	v2 = 0;
	double r_oall = bench_median_ms([&] {
		old_fwd_gemm();
		old_route();
		old_sort();
		old_rbwd();
		old_dw();
		old_dx();
	});
	double r_nall = bench_median_ms([&] {
		new_fwd();
		new_sort();
		new_bwd();
		new_dw();
	});

	/* lightning passes */
	uint16_t *pre, *qkv, *ob, *gn, *dpre, *dq, *dOb;
	float *of, *rstd, *w, *dgn, *dnn, *dw;
	CK(cudaMalloc(&pre, 4 * n * 2));
	CK(cudaMalloc(&qkv, 3 * n * 2));
	CK(cudaMalloc(&ob, n * 2));
	CK(cudaMalloc(&gn, n * 2));
	CK(cudaMalloc(&dpre, 4 * n * 2));
	CK(cudaMalloc(&dq, 3 * n * 2));
	CK(cudaMalloc(&dOb, n * 2));
	CK(cudaMalloc(&of, n * 4));
	CK(cudaMalloc(&rstd, T * 4));
	CK(cudaMalloc(&w, Hd * 4));
	CK(cudaMalloc(&dgn, n * 4));
	CK(cudaMalloc(&dnn, n * 4));
	CK(cudaMalloc(&dw, Hd * 4));
	{
		float *tmp;
		CK(cudaMalloc(&tmp, 4 * n * 4));
		fill_normal<<<1024, 256>>>(tmp, 4 * n, 1.0f, 5);
		to_bf16<<<1024, 256>>>(pre, tmp, 4 * n);
		fill_normal<<<1024, 256>>>(tmp, n, 1.0f, 6);
		to_bf16<<<1024, 256>>>(ob, tmp, n);
		fill_normal<<<1024, 256>>>(tmp, 3 * n, 1.0f, 7);
		to_bf16<<<1024, 256>>>(dq, tmp, 3 * n);
		CK(cudaDeviceSynchronize());
		CK(cudaFree(tmp));
	}
	fill_normal<<<1024, 256>>>(dgn, n, 1.0f, 8);
	fill_normal<<<4, 256>>>(w, Hd, 1.0f, 9);
	CK(cudaMemset(dw, 0, Hd * 4));
	CK(cudaDeviceSynchronize());

	auto o_silu = [&] {
		k_silu_bf16<uint16_t><<<(unsigned)((3 * n + 255) / 256), 256>>>(qkv, pre, n, Hd);
	};
	auto n_silu = [&] { SW(policy_lin_silu(qkv, 1, pre, 1, T, Hd)); };
	auto o_norm = [&] {
		k_to_f32<<<(unsigned)((n + 255) / 256), 256>>>(of, ob, n);
		k_rms_gate<uint16_t><<<T, 256>>>(gn, rstd, of, w, pre, Hd, 4 * Hd, 3 * Hd, 1e-5f);
	};
	int lv2 = 0; /* the lightning norm kernels' variant */
	auto n_norm = [&] {
		SW(policy_lin_rms_gate(gn, rstd, ob, 1, w, pre, 1, T, Hd, 1e-5f, lv2));
	};
	auto o_gbwd = [&] {
		k_gate_bwd<uint16_t>
		        <<<(unsigned)((n + 255) / 256), 256>>>(dnn, dpre, dgn, gn, pre, n, Hd);
		k_rms_bwd_dw<<<(T + RMS_BWD_ROWS - 1) / RMS_BWD_ROWS, 256>>>(NULL, dOb, 0, dw, dnn,
		                                                             of, w, rstd, T, Hd);
	};
	auto n_gbwd = [&] {
		SW(policy_lin_gate_rms_bwd(dOb, dw, dpre, 1, dgn, ob, 1, pre, w, rstd, T, Hd, lv2));
	};
	auto o_dsilu = [&] {
		k_dsilu<uint16_t, uint16_t>
		        <<<(unsigned)((3 * n + 255) / 256), 256>>>(dpre, dq, pre, n, Hd);
	};
	auto n_dsilu = [&] { SW(policy_lin_dsilu(dpre, 1, dq, 1, pre, T, Hd)); };
	double l_os = bench_median_ms(o_silu), l_ns = bench_median_ms(n_silu);
	double l_on = bench_median_ms(o_norm), l_nn = bench_median_ms(n_norm);
	double l_og = bench_median_ms(o_gbwd), l_ng = bench_median_ms(n_gbwd);
	lv2 = 1;
	double l_vn = bench_median_ms(n_norm), l_vg = bench_median_ms(n_gbwd);
	lv2 = 0;
	double l_od = bench_median_ms(o_dsilu), l_nd = bench_median_ms(n_dsilu);

	printf("gpu_route (round 7, issue 10): %s; T %d, D %d, E %d top-%d, Hd %d; median of 20\n",
	       prop.name, T, D, E, K, Hd);
	printf("%-44s %9s %9s %8s %9s %9s %8s\n", "pass (one layer)", "old us", "new us", "speedup",
	       "new GB/s", "v2 us", "speedup");
	row("route fwd: router GEMM (old) / fused (new)", r_og + r_or, r_nf, (double)T * D * 4,
	    r_vf);
	row("  of which old router GEMM / k_route", r_og, r_or, 0, -1);
	row("route sort: one block (old) / multi-block", r_os, r_ns, 0, r_vs);
	row("route bwd: k_route_bwd + dX GEMM / fused", r_ob + r_odx, r_nb, (double)T * D * 12,
	    r_vb);
	row("router dW: GEMM (old) / part sum (new)", r_odw, r_ndw, 0, r_vdw);
	row("routing, all of it (fwd + sort + bwd)", r_oall, r_nall, 0, r_vall);
	row("SiLU -> planar bf16 q, k, v", l_os, l_ns, 12.0 * n, -1);
	row("out norm + gate (old: + k_to_f32)", l_on, l_nn, 6.0 * n, l_vn);
	row("gate bwd + norm bwd (old: 2 passes)", l_og, l_ng, 12.0 * n, l_vg);
	row("SiLU bwd", l_od, l_nd, 18.0 * n, -1);
	row("lightning passes, sum", l_os + l_on + l_og + l_od, l_ns + l_nn + l_ng + l_nd, 0,
	    l_ns + l_vn + l_vg + l_nd);
	printf("(per micro-batch: routing x 12 layers, lightning passes x 11)\n");
	printf("routing per micro-batch: old %.2f ms, new %.2f ms, v2 %.2f ms; lightning passes: "
	       "old "
	       "%.2f ms, new %.2f ms\n",
	       12 * r_oall, 12 * r_nall, 12 * r_vall, 11 * (l_os + l_on + l_og + l_od),
	       11 * (l_ns + l_nn + l_ng + l_nd));
	return 0;
}
