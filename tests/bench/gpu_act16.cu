/* gpu_act16.cu - round 16 (issue 10): kernel-level A/B of POLICY_GPU_ACT16
 * on the policy's benchmark shape (T 8192 tokens, D 768, 8 experts top-2, F
 * 1024, R 16384 slot rows): each memory-bound pass that moves the MoE's
 * slot tensors (yp, dxp) or the residual stream, in the default's fp32
 * storage against the level's bf16 (slots: yp / dxp; resid: also the
 * stream's value and the router's input), and the two expert products
 * whose epilogues store the slots (wsb2's down and up dX). Each launch timed
 * alone with CUDA events after a 128 MiB memset has pushed its inputs out
 * of L2 (as gpu_comb), the median of 25. The byte floor: the bytes a pass
 * must move at 3.0 TB/s. Prints one table. */
#include "policy/gpu_comb.h"
#include "policy/gpu_ew.h"
#include "policy/gpu_moe.h"
#include "policy/gpu_moe_ws.h"
#include "policy/gpu_route.h"
#include "tests/bench/gpu_bench.cuh"

#include <stdlib.h>
#include <string.h>

/* round 20: a 128 MiB read (the clean flush's second half): the memset's
 * dirty lines leave L2 here, before the timed launch */
__global__ static void k_evict(const uint4 *__restrict__ p, size_t n, unsigned *sink)
{
	unsigned acc = 0;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint4 v = p[i];
		acc ^= v.x ^ v.y ^ v.z ^ v.w;
	}
	if (acc == 0x9e3779b9u)
		*sink = acc;
}

/* round 20: the median us of reps launches of f, each after bench_cold_us's
 * 128 MiB memset (dirty: up to L2's size of the memset's lines are still
 * dirty in L2 when f starts, and f's misses write them back) or, clean,
 * the memset then a 128 MiB read of another buffer (L2 then holds clean
 * lines only, as after ncu's cache control); one untimed call first */
template <typename F> static double bench_flush2_us(int clean, F f, int reps = 25)
{
	static void *fl, *ev;
	static unsigned *sink;
	const size_t n = (size_t)128 << 20;
	if (!fl) {
		CK(cudaMalloc(&fl, n));
		CK(cudaMalloc(&ev, n));
		CK(cudaMalloc(&sink, 4));
		CK(cudaMemset(ev, 1, n));
	}
	int i = 0;
	auto flush = [&] { /* the memset flush, then (clean) a read that evicts its dirty lines */
		           CK(cudaMemsetAsync(fl, i++ & 0xff, n));
		           if (clean)
			           k_evict<<<132 * 8, 256>>>((const uint4 *)ev, n / 16, sink);
	};
	return bench_median_each(flush, NULL, 0, f, reps, 1) * 1e3;
}

/* round 19: the same row with the floor at 3.35 TB/s (H100 SXM's HBM3) and
 * each time as a multiple of its floor */
static void row19(const char *what, double mb0, double mb1, double us0, double us1)
{
	double f0 = mb0 / 3.35e6 * 1e6, f1 = mb1 / 3.35e6 * 1e6;
	printf("%-44s %7.1f %7.1f %7.1f %7.1f %8.1f %8.1f %6.2fx %6.2f %6.2f\n", what, mb0, mb1, f0,
	       f1, us0, us1, us1 > 0 ? us0 / us1 : 0.0, us0 / f0, us1 / f1);
}

static void row(const char *what, double mb0, double mb1, double us0, double us1)
{
	printf("%-44s %7.1f %7.1f %7.1f %7.1f %8.1f %8.1f %6.2fx %6.0f %6.0f\n", what, mb0, mb1,
	       mb0 / 3.0e6 * 1e6, mb1 / 3.0e6 * 1e6, us0, us1, us1 > 0 ? us0 / us1 : 0.0,
	       us0 > 0 ? mb0 / us0 * 1e3 : 0.0, us1 > 0 ? mb1 / us1 * 1e3 : 0.0);
}

int main(void)
{
	int ndev = 0;
	const int T = 8192, D = 768, E = 8, K = 2, R = T * K, F = 1024;
	const size_t nx = (size_t)T * D, nr = (size_t)R * D;
	cudaDeviceProp prop;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_act16: skipped: no CUDA device\n");
		return 0;
	}
	CK(cudaGetDeviceProperties(&prop, 0));

	float *x, *x2, *dn, *wr, *prob, *gate, *dgate, *auxc, *ws, *dy, *yp, *dxp, *w, *rstd, *dw;
	float *y32;
	int *sel, *rowof, *perm, *offs;
	uint16_t *xh, *xh2, *yph, *dxph, *dyp, *yb, *hh, *w2, *dh13, *w1, *w3;
	double *aux;
	CK(cudaMalloc(&x, nx * 4));
	CK(cudaMalloc(&x2, nx * 4));
	CK(cudaMalloc(&dn, nx * 4));
	CK(cudaMalloc(&y32, nx * 4));
	CK(cudaMalloc(&wr, (size_t)E * D * 4));
	CK(cudaMalloc(&prob, (size_t)T * E * 4));
	CK(cudaMalloc(&gate, (size_t)R * 4));
	CK(cudaMalloc(&dgate, (size_t)R * 4));
	CK(cudaMalloc(&auxc, E * 4));
	CK(cudaMalloc(&ws, policy_route_scratch_floats(T, E, D) * 4));
	CK(cudaMalloc(&dy, nx * 4));
	CK(cudaMalloc(&yp, nr * 4));
	CK(cudaMalloc(&dxp, nr * 4));
	CK(cudaMalloc(&w, D * 4));
	CK(cudaMalloc(&dw, D * 4));
	CK(cudaMalloc(&rstd, T * 4));
	CK(cudaMalloc(&sel, (size_t)R * 4));
	CK(cudaMalloc(&rowof, (size_t)R * 4));
	CK(cudaMalloc(&perm, (size_t)R * 4));
	CK(cudaMalloc(&offs, (E + 2) * 4));
	CK(cudaMalloc(&xh, nx * 2));
	CK(cudaMalloc(&xh2, nx * 2));
	CK(cudaMalloc(&yph, nr * 2));
	CK(cudaMalloc(&dxph, nr * 2));
	CK(cudaMalloc(&dyp, nr * 2));
	CK(cudaMalloc(&yb, nx * 2));
	CK(cudaMalloc(&hh, (size_t)R * F * 2));
	CK(cudaMalloc(&dh13, (size_t)R * 2 * F * 2));
	CK(cudaMalloc(&w1, (size_t)E * F * D * 2));
	CK(cudaMalloc(&w2, (size_t)E * F * D * 2));
	CK(cudaMalloc(&w3, (size_t)E * F * D * 2));
	CK(cudaMalloc(&aux, 8));
	fill_normal<<<512, 256>>>(x, nx, 1.0f, 1);
	fill_normal<<<512, 256>>>(x2, nx, 1.0f, 7);
	fill_normal<<<64, 256>>>(wr, (size_t)E * D, 0.05f, 2);
	fill_normal<<<64, 256>>>(dgate, (size_t)R, 1.0f, 3);
	fill_normal<<<512, 256>>>(dy, nx, 1.0f, 4);
	fill_normal<<<512, 256>>>(yp, nr, 1.0f, 5);
	fill_normal<<<512, 256>>>(dxp, nr, 1.0f, 6);
	fill_normal<<<4, 256>>>(w, D, 1.0f, 8);
	CK(cudaMemset(xh, 0x3f, nx * 2));
	CK(cudaMemset(xh2, 0x3e, nx * 2));
	CK(cudaMemset(yph, 0x3f, nr * 2));
	CK(cudaMemset(dxph, 0x3f, nr * 2));
	CK(cudaMemset(hh, 0x3c, (size_t)R * F * 2));
	CK(cudaMemset(dh13, 0x3c, (size_t)R * 2 * F * 2));
	CK(cudaMemset(w1, 0x3c, (size_t)E * F * D * 2));
	CK(cudaMemset(w2, 0x3c, (size_t)E * F * D * 2));
	CK(cudaMemset(w3, 0x3c, (size_t)E * F * D * 2));
	CK(cudaMemset(dw, 0, D * 4));
	CK(cudaDeviceSynchronize());

	/* a routing (v4 forward + sort, compact segments) for the products */
	SW(policy_route_fwd(prob, sel, gate, rowof, ws, x, wr, T, E, K, D, 3));
	SW(policy_route_sort(perm, rowof, offs, auxc, aux, ws, sel, T, E, K, R, 1, 1, 0.01, 3));
	CK(cudaDeviceSynchronize());
	struct policy_moe_dims dm = {};
	memset(&dm, 0, sizeof(dm));
	dm.T = T, dm.K = K, dm.E = E, dm.D = D, dm.F = F, dm.offs = offs, dm.perm = perm;
	dm.gathered = 1;

	auto nop = [] {};
	const float eps = 1e-6f;
	/* forward: the add after the attention (xin + dn -> hmid, n2 fp32 + xp
	 * bf16; resid: xin, hmid bf16, xp only), the add after the MoE with the
	 * combine (hmid + sum gate yp -> next xin, n1 bf16) */
	double a0 = bench_cold_us(nop, [&] {
		SW(policy_ew_add_rms(x2, y32, 0, yb, rstd, x, NULL, NULL, dn, NULL, NULL, 0, w, T,
		                     D, eps));
	});
	double a2 = bench_cold_us(nop, [&] {
		SW(policy_ew_add_rms16(xh2, 1, yb, 1, NULL, rstd, xh, NULL, NULL, dn, NULL, 0, NULL,
		                       0, w, T, D, eps));
	});
	double m0 = bench_cold_us(nop, [&] {
		SW(policy_ew_add_rms(x2, yb, 1, NULL, rstd, x, NULL, NULL, NULL, yp, gate, K, w, T,
		                     D, eps));
	});
	double m1 = bench_cold_us(nop, [&] {
		SW(policy_ew_add_rms16(x2, 0, yb, 1, NULL, rstd, x, NULL, NULL, NULL, yph, 1, gate,
		                       K, w, T, D, eps));
	});
	double m2 = bench_cold_us(nop, [&] {
		SW(policy_ew_add_rms16(xh2, 1, yb, 1, NULL, rstd, xh, NULL, NULL, NULL, yph, 1,
		                       gate, K, w, T, D, eps));
	});
	/* the router: v4 forward on n2 fp32 / xp bf16 */
	double r0 = bench_cold_us(nop, [&] {
		SW(policy_route_fwd(prob, sel, gate, rowof, ws, x, wr, T, E, K, D, 3));
	});
	double r2 = bench_cold_us(nop, [&] {
		SW(policy_route_fwd_b16(prob, sel, gate, rowof, ws, xh, wr, T, E, K, D));
	});
	/* keep the sorted routing the products use */
	SW(policy_route_fwd(prob, sel, gate, rowof, ws, x, wr, T, E, K, D, 3));
	SW(policy_route_sort(perm, rowof, offs, auxc, aux, ws, sel, T, E, K, R, 1, 1, 0.01, 3));
	/* the products that store the slots */
	double d0 = bench_cold_us(nop, [&] { SW(policy_moe_ws_down(&dm, yp, hh, w2, 0, NULL)); });
	double d1 =
	        bench_cold_us(nop, [&] { SW(policy_moe_ws_down_b16(&dm, yph, hh, w2, 0, NULL)); });
	double u0 = bench_cold_us(
	        nop, [&] { SW(policy_moe_ws_up_dx(&dm, dxp, dh13, w1, w3, 0, NULL)); });
	double u1 = bench_cold_us(
	        nop, [&] { SW(policy_moe_ws_up_dx_b16(&dm, dxph, dh13, w1, w3, 0, NULL)); });
	/* backward: the combine backward, the route backward with the slot sum,
	 * the RMSNorm backward (dx += ..., its weight gradient) */
	double c0 = bench_cold_us(nop, [&] {
		SW(policy_moe_combine_bwd2(dyp, dgate, dy, yp, gate, rowof, T, K, D));
	});
	double c1 = bench_cold_us(nop, [&] {
		SW(policy_moe_combine_bwd2_b16(dyp, dgate, dy, yph, gate, rowof, T, K, D));
	});
	double b0 = bench_cold_us(nop, [&] {
		SW(policy_route_bwd_slots(dn, ws, dxp, x, wr, prob, sel, gate, dgate, auxc, T, E, K,
		                          D));
	});
	double b1 = bench_cold_us(nop, [&] {
		SW(policy_route_bwd_slots_b16(dn, ws, dxph, x, 0, wr, prob, sel, gate, dgate, auxc,
		                              T, E, K, D));
	});
	double b2 = bench_cold_us(nop, [&] {
		SW(policy_route_bwd_slots_b16(dn, ws, dxph, xh, 1, wr, prob, sel, gate, dgate, auxc,
		                              T, E, K, D));
	});
	double n0 = bench_cold_us(
	        nop, [&] { SW(policy_ew_rms_bwd(dn, NULL, 1, dw, dy, x, w, rstd, T, D)); });
	double n2 = bench_cold_us(
	        nop, [&] { SW(policy_ew_rms_bwd16(dn, NULL, 1, dw, dy, xh, w, rstd, T, D)); });

	/* round 17: the bf16 passes again on round 16's loads (POLICY_GPU_RT16=
	 * old: 2 or 8 bytes a thread), once more on the default (new: round 17's
	 * staged rows), and on round 18's opt-in forms (rt18: route fwd 64 tokens
	 * a block, combine bwd's dyp rows staged for 16-byte stores; rt18_32: 32
	 * tokens a block), same process, same inputs */
	static const char *const modes[4] = {"old", NULL, "rt18", "rt18_32"};
	double o[4][4];
	for (int k = 0; k < 4; k++) {
		if (modes[k])
			setenv("POLICY_GPU_RT16", modes[k], 1);
		else
			unsetenv("POLICY_GPU_RT16");
		o[k][0] = bench_cold_us(nop, [&] {
			SW(policy_route_fwd_b16(prob, sel, gate, rowof, ws, xh, wr, T, E, K, D));
		});
		SW(policy_route_fwd(prob, sel, gate, rowof, ws, x, wr, T, E, K, D, 3));
		SW(policy_route_sort(perm, rowof, offs, auxc, aux, ws, sel, T, E, K, R, 1, 1, 0.01,
		                     3));
		o[k][1] = bench_cold_us(nop, [&] {
			SW(policy_moe_combine_bwd2_b16(dyp, dgate, dy, yph, gate, rowof, T, K, D));
		});
		o[k][2] = bench_cold_us(nop, [&] {
			SW(policy_route_bwd_slots_b16(dn, ws, dxph, x, 0, wr, prob, sel, gate,
			                              dgate, auxc, T, E, K, D));
		});
		o[k][3] = bench_cold_us(nop, [&] {
			SW(policy_route_bwd_slots_b16(dn, ws, dxph, xh, 1, wr, prob, sel, gate,
			                              dgate, auxc, T, E, K, D));
		});
	}
	unsetenv("POLICY_GPU_RT16");

	/* round 19 (POLICY_GPU_ACT16=all): the passes that move the residual
	 * gradient, resid's fp32 dx against all's bf16 dx (xh2 here) */
	const int V = 32768;
	int *tok;
	float *demb;
	CK(cudaMalloc(&tok, T * 4));
	CK(cudaMalloc(&demb, (size_t)V * D * 4));
	{
		int *h = (int *)malloc(T * 4);
		uint64_t z = 12345;
		for (int t = 0; t < T; t++) {
			z = z * 6364136223846793005ULL + 1442695040888963407ULL;
			h[t] = (int)((z >> 33) % V);
		}
		CK(cudaMemcpy(tok, h, T * 4, cudaMemcpyHostToDevice));
		free(h);
	}
	CK(cudaMemset(demb, 0, (size_t)V * D * 4));
	double g[2][6];
	for (int k = 0; k < 2; k++) { /* twice: the second pass's figures are printed */
		g[0][0] = bench_cold_us(
		        nop, [&] { /* ffn norm: dx += .., dxb copy */
			           SW(policy_ew_rms_bwd16(dn, yb, 1, dw, dy, xh, w, rstd, T, D));
		        });
		g[1][0] = bench_cold_us(nop, [&] {
			SW(policy_ew_rms_bwd16g(xh2, NULL, 1, dw, dy, xh, w, rstd, T, D));
		});
		g[0][1] = bench_cold_us(
		        nop, [&] { /* attention norm: dx += .. */
			           SW(policy_ew_rms_bwd16(dn, NULL, 1, dw, dy, xh, w, rstd, T, D));
		        });
		g[1][1] = bench_cold_us(nop, [&] { /* the same call as the ffn norm's */
			                           SW(policy_ew_rms_bwd16g(xh2, NULL, 1, dw, dy, xh,
			                                                   w, rstd, T, D));
		});
		g[1][5] = bench_cold_us(
		        nop, [&] { /* a softmax layer's ffn norm: + fp32 copy */
			           SW(policy_ew_rms_bwd16g(xh2, dn, 1, dw, dy, xh, w, rstd, T, D));
		        });
		g[0][2] = bench_cold_us(
		        nop, [&] { /* the final norm: dx = .. */
			           SW(policy_ew_rms_bwd16(dn, NULL, 0, dw, dy, xh, w, rstd, T, D));
		        });
		g[1][2] = bench_cold_us(nop, [&] {
			SW(policy_ew_rms_bwd16g(xh2, NULL, 0, dw, dy, xh, w, rstd, T, D));
		});
		g[0][3] = bench_cold_us(nop, [&] {
			SW(policy_moe_combine_bwd2_b16(dyp, dgate, dy, yph, gate, rowof, T, K, D));
		});
		g[1][3] = bench_cold_us(nop, [&] {
			SW(policy_moe_combine_bwd2_b16g(dyp, dgate, xh2, yph, gate, rowof, T, K,
			                                D));
		});
		g[0][4] = bench_cold_us(nop, [&] { SW(policy_ew_embed_bwd(demb, dy, tok, T, D)); });
		g[1][4] = bench_cold_us(nop,
		                        [&] { SW(policy_ew_embed_bwd16(demb, xh2, tok, T, D)); });
	}

	/* round 20 (POLICY_GPU_EW20): round 19's kernels (off) against the
	 * pipelined norm backward (rms) and the warp-per-token combine backward
	 * (comb), interleaved off, new, off, new; each pair's second run kept */
	double p20[2][8];
	for (int k = 0; k < 4; k++) {
		int m = k & 1;
		setenv("POLICY_GPU_EW20", m ? "all" : "off", 1);
		p20[m][0] = bench_cold_us(nop, [&] {
			SW(policy_ew_rms_bwd16g(xh2, NULL, 1, dw, dy, xh, w, rstd, T, D));
		});
		p20[m][1] = bench_cold_us(nop, [&] {
			SW(policy_ew_rms_bwd16g(xh2, dn, 1, dw, dy, xh, w, rstd, T, D));
		});
		p20[m][2] = bench_cold_us(nop, [&] {
			SW(policy_ew_rms_bwd16g(xh2, NULL, 0, dw, dy, xh, w, rstd, T, D));
		});
		p20[m][3] = bench_cold_us(nop, [&] {
			SW(policy_moe_combine_bwd2_b16g(dyp, dgate, xh2, yph, gate, rowof, T, K,
			                                D));
		});
		p20[m][4] = bench_cold_us(nop, [&] {
			SW(policy_ew_rms_bwd16g(xh2, NULL, 1, NULL, dy, xh, w, rstd, T, D));
		});
		/* the forward: after the attention (xin + dn -> hmid, xp), after
		 * the MoE (hmid + the combine of the bf16 slots -> xin, n1) */
		p20[m][5] = bench_cold_us(nop, [&] {
			SW(policy_ew_add_rms16(xh2, 1, yb, 1, NULL, rstd, xh, NULL, NULL, dn, NULL,
			                       0, NULL, 0, w, T, D, eps));
		});
		p20[m][6] = bench_cold_us(nop, [&] {
			SW(policy_ew_add_rms16(xh2, 1, yb, 1, NULL, rstd, xh, NULL, NULL, NULL, yph,
			                       1, gate, K, w, T, D, eps));
		});
	}
	unsetenv("POLICY_GPU_EW20");
	/* round 20: the same passes after a dirty flush (bench_cold_us's
	 * memset) and after a clean one, off and all, beside a device copy of
	 * the same bytes (a pass's bytes moved: read half, write half) */
	double q20[8][2][2], cp20[2][2];
	for (int k = 0; k < 4; k++) {
		int m = k & 1;
		setenv("POLICY_GPU_EW20", m ? "all" : "off", 1);
		for (int cl = 0; cl < 2; cl++) {
			q20[0][m][cl] = bench_flush2_us(cl, [&] {
				SW(policy_ew_rms_bwd16g(xh2, NULL, 1, dw, dy, xh, w, rstd, T, D));
			});
			q20[1][m][cl] = bench_flush2_us(cl, [&] {
				SW(policy_ew_rms_bwd16g(xh2, NULL, 0, dw, dy, xh, w, rstd, T, D));
			});
			q20[2][m][cl] = bench_flush2_us(cl, [&] {
				SW(policy_moe_combine_bwd2_b16g(dyp, dgate, xh2, yph, gate, rowof,
				                                T, K, D));
			});
			q20[3][m][cl] = bench_flush2_us(cl, [&] {
				SW(policy_ew_add_rms16(xh2, 1, yb, 1, NULL, rstd, xh, NULL, NULL,
				                       dn, NULL, 0, NULL, 0, w, T, D, eps));
			});
			q20[4][m][cl] = bench_flush2_us(cl, [&] {
				SW(policy_ew_add_rms16(xh2, 1, yb, 1, NULL, rstd, xh, NULL, NULL,
				                       NULL, yph, 1, gate, K, w, T, D, eps));
			});
			q20[5][m][cl] = bench_flush2_us(
			        cl, [&] { SW(policy_ew_embed_bwd16(demb, xh2, tok, T, D)); });
		}
	}
	unsetenv("POLICY_GPU_EW20");
	for (int cl = 0; cl < 2; cl++) {
		cp20[0][cl] = bench_flush2_us(cl, [&] {
			CK(cudaMemcpyAsync(dxp, yp, (size_t)nx * 5, cudaMemcpyDeviceToDevice));
		});
		cp20[1][cl] = bench_flush2_us(cl, [&] {
			CK(cudaMemcpyAsync(dxp, yp, (size_t)nx * 4, cudaMemcpyDeviceToDevice));
		});
	}

	const double MB = 1e6, X4 = nx * 4 / MB, X2 = nx * 2 / MB, R4 = nr * 4 / MB,
	             R2 = nr * 2 / MB;
	printf("gpu_act16: %s, T %d D %d E %d K %d F %d (R %d rows), L2 flushed before each "
	       "launch, median of 25\n",
	       prop.name, T, D, E, K, F, R);
	printf("%-44s %7s %7s %7s %7s %8s %8s %7s %6s %6s\n", "pass: fp32 (default) -> level", "MB",
	       "MB", "floor", "floor", "fp32 us", "bf16 us", "speedup", "GB/s", "GB/s");
	row("add+norm after attn -> resid", 4 * X4 + X2, 2 * X2 + X4 + X2, a0, a2);
	row("add+norm+combine after MoE -> slots", 2 * X4 + R4 + X2, 2 * X4 + R2 + X2, m0, m1);
	row("add+norm+combine after MoE -> resid", 2 * X4 + R4 + X2, 3 * X2 + R2, m0, m2);
	row("route fwd v4 (x) -> resid (xp bf16)", X4, X2, r0, r2);
	row("down product, yp store -> slots", R2 * F / D + R4, R2 * F / D + R2, d0, d1);
	row("up dX product, dxp store -> slots", 2 * R2 * F / D + R4, 2 * R2 * F / D + R2, u0, u1);
	row("combine bwd (dy, yp, dyp) -> slots", X4 + R4 + R2, X4 + R2 + R2, c0, c1);
	row("route bwd + slot sum -> slots", 2 * X4 + R4, 2 * X4 + R2, b0, b1);
	row("route bwd + slot sum -> resid (x bf16)", 2 * X4 + R4, X4 + X2 + R2, b0, b2);
	row("rms bwd (dy, x, dx rmw) -> resid", 4 * X4, 3 * X4 + X2, n0, n2);
	printf("\nround 17: bf16 passes, POLICY_GPU_RT16=old (round 16's loads) -> new (staged "
	       "by 16-byte cp.async; the default)\n");
	printf("%-44s %7s %7s %7s %7s %8s %8s %7s %6s %6s\n", "pass: old -> new (bf16 both)", "MB",
	       "MB", "floor", "floor", "old us", "new us", "speedup", "GB/s", "GB/s");
	row("route fwd v4, xp bf16", X2, X2, o[0][0], o[1][0]);
	row("combine bwd, yp bf16", X4 + R2 + R2, X4 + R2 + R2, o[0][1], o[1][1]);
	row("route bwd + slot sum, slots bf16", 2 * X4 + R2, 2 * X4 + R2, o[0][2], o[1][2]);
	row("route bwd + slot sum, x bf16 too", X4 + X2 + R2, X4 + X2 + R2, o[0][3], o[1][3]);
	printf("\nround 18: POLICY_GPU_RT16=new (the default: round 17's staged rows) -> rt18 "
	       "(route fwd 64 tokens a block, combine bwd dyp by 16-byte stores); rt18_32: route "
	       "fwd 32 tokens a block\n");
	printf("%-44s %7s %7s %7s %7s %8s %8s %7s %6s %6s\n", "pass: new -> rt18 (bf16 both)", "MB",
	       "MB", "floor", "floor", "new us", "rt18 us", "speedup", "GB/s", "GB/s");
	row("route fwd v4, xp bf16", X2, X2, o[1][0], o[2][0]);
	row("route fwd v4, xp bf16 (new -> rt18_32)", X2, X2, o[1][0], o[3][0]);
	row("combine bwd, yp bf16", X4 + R2 + R2, X4 + R2 + R2, o[1][1], o[2][1]);
	row("combine bwd, yp bf16 (new -> rt18_32)", X4 + R2 + R2, X4 + R2 + R2, o[1][1], o[3][1]);
	row("route bwd + slot sum, x bf16 (unchanged)", X4 + X2 + R2, X4 + X2 + R2, o[1][3],
	    o[2][3]);
	printf("(new in the first table, same process: fwd %.1f, combine %.1f, bwd %.1f / %.1f "
	       "us)\n",
	       r2, c1, b1, b2);
	printf("\nround 19: the residual gradient dx, POLICY_GPU_ACT16=resid (fp32) -> all (bf16); "
	       "floor at 3.35 TB/s, x/fl = time / floor\n");
	printf("%-44s %7s %7s %7s %7s %8s %8s %7s %6s %6s\n", "pass: resid -> all", "MB", "MB",
	       "fl us", "fl us", "us", "us", "speedup", "x/fl", "x/fl");
	row19("rms bwd ffn (dy, x, dx rmw, dxb store)", X4 + X2 + 2 * X4 + X2, X4 + X2 + 2 * X2,
	      g[0][0], g[1][0]);
	row19("rms bwd attn (dy, x, dx rmw)", X4 + X2 + 2 * X4, X4 + X2 + 2 * X2, g[0][1], g[1][1]);
	row19("rms bwd ffn, softmax layer (+ fp32 copy)", X4 + X2 + 2 * X4 + X2,
	      X4 + X2 + 2 * X2 + X4, g[0][0], g[1][5]);
	row19("rms bwd final (dy, x, dx store)", X4 + X2 + X4, X4 + X2 + X2, g[0][2], g[1][2]);
	row19("combine bwd (dy, yp, dyp)", X4 + R2 + R2, X2 + R2 + R2, g[0][3], g[1][3]);
	row19("embed bwd (dx; atomics not counted)", X4, X2, g[0][4], g[1][4]);
	{
		double l0 = g[0][0] + g[0][1] + g[0][3], l1 = g[1][0] + g[1][1] + g[1][3];
		double s0 = 12 * l0 + g[0][2] + g[0][4];
		/* all: the softmax layer's ffn norm writes the fp32 copy; the
		 * embedding's backward reads the bf16 gradient */
		double s1 = 12 * l1 + (g[1][5] - g[1][0]) + g[1][2] + g[1][4];
		printf("a layer (ffn + attn norms + combine): resid %.1f us, all %.1f us (%+.1f); "
		       "a "
		       "micro-batch's backward (12 layers, one softmax, final, embed): %.1f -> "
		       "%.1f "
		       "us (%+.1f)\n",
		       l0, l1, l1 - l0, s0, s1, s1 - s0);
	}
	printf("\nround 20: POLICY_GPU_EW20=off (round 19's kernels) -> all (the norm backward "
	       "and the forward's add + norm pipelined, the combine backward a warp per "
	       "token); floor at 3.35 TB/s\n");
	printf("%-44s %7s %7s %7s %7s %8s %8s %7s %6s %6s\n", "pass: off -> ew20", "MB", "MB",
	       "fl us", "fl us", "off us", "ew20 us", "speedup", "x/fl", "x/fl");
	row19("rms bwd ffn / attn (dy, x, dx rmw, dw)", X4 + X2 + 2 * X2, X4 + X2 + 2 * X2,
	      p20[0][0], p20[1][0]);
	row19("rms bwd, softmax layer (+ fp32 copy)", X4 + X2 + 2 * X2 + X4, X4 + X2 + 2 * X2 + X4,
	      p20[0][1], p20[1][1]);
	row19("rms bwd final (acc 0)", X4 + X2 + X2, X4 + X2 + X2, p20[0][2], p20[1][2]);
	row19("rms bwd, no dw", X4 + X2 + 2 * X2, X4 + X2 + 2 * X2, p20[0][4], p20[1][4]);
	row19("combine bwd (dy, yp, dyp)", X2 + R2 + R2, X2 + R2 + R2, p20[0][3], p20[1][3]);
	row19("fwd add+norm after attn (a, b fp32, out, y)", X2 + X4 + 2 * X2, X2 + X4 + 2 * X2,
	      p20[0][5], p20[1][5]);
	row19("fwd add+norm+combine after MoE", X2 + R2 + 2 * X2, X2 + R2 + 2 * X2, p20[0][6],
	      p20[1][6]);
	printf("\nround 20: the same passes after a dirty flush (a 128 MiB memset: its last "
	       "lines still dirty in L2, written back during the timed launch) and a clean one "
	       "(the memset, then a 128 MiB read), off -> all; copy: cudaMemcpy D2D moving the "
	       "same bytes (half read, half written) after the same flush\n");
	printf("%-44s %7s %8s %8s %8s %8s %8s %8s\n", "pass", "MB", "off dirty", "off clean",
	       "ew20 drt", "ew20 cln", "copy drt", "copy cln");
	{
		static const char *const nm[6] = {
		        "rms bwd ffn / attn (acc 1, dw)", "rms bwd final (acc 0, dw)",
		        "combine bwd (dy, yp, dyp)",      "fwd add+norm after attn",
		        "fwd add+norm+combine after MoE", "embed bwd16 (ew20: unchanged)"};
		const double mbs[6] = {X4 + X2 + 2 * X2, X4 + X2 + X2,     X2 + R2 + R2,
		                       X2 + X4 + 2 * X2, X2 + R2 + 2 * X2, X2};
		const int cpi[6] = {0, 1, 0, 0, 0, -1};
		for (int r = 0; r < 6; r++)
			printf("%-44s %7.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f\n", nm[r], mbs[r],
			       q20[r][0][0], q20[r][0][1], q20[r][1][0], q20[r][1][1],
			       cpi[r] < 0 ? 0.0 : cp20[cpi[r]][0],
			       cpi[r] < 0 ? 0.0 : cp20[cpi[r]][1]);
	}
	printf("the forward's 25 norms (12 layers x 2, less the embedding's): %.1f -> %.1f us "
	       "(%+.1f)\n",
	       12 * (p20[0][5] + p20[0][6]), 12 * (p20[1][5] + p20[1][6]),
	       12 * (p20[1][5] + p20[1][6] - p20[0][5] - p20[0][6]));
	{
		double l0 = 2 * p20[0][0] + p20[0][3], l1 = 2 * p20[1][0] + p20[1][3];
		double s0 = 12 * l0 + (p20[0][1] - p20[0][0]) + p20[0][2];
		double s1 = 12 * l1 + (p20[1][1] - p20[1][0]) + p20[1][2];
		printf("a layer (2 norms + combine): off %.1f us, ew20 %.1f us (%+.1f); a "
		       "micro-batch's (12 layers, one softmax, final): %.1f -> %.1f us (%+.1f)\n",
		       l0, l1, l1 - l0, s0, s1, s1 - s0);
	}
	return 0;
}
