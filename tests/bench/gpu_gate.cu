/* gpu_gate.cu - round 14 (issue 10) kernel-level A/B of the lightning
 * layer's output norm + gate and its backward on the policy's benchmark
 * shape (T 8192 tokens, Hd 768, bf16 activations and core output, dgn
 * fp32): v2 (gpu_linew.cu's k_lw_rms_gate2 / k_lw_gate_rms_bwd2, the
 * default) against v3 (policy/gpu_gate.cu, POLICY_GPU_LW_GATE=v3 | v3a |
 * v4 | v5 (v5 not yet run); the backward's time includes its
 * weight-gradient reduction kernel).
 * Also the residual stream's passes of gpu_ew.cu at the step's shapes (D
 * 768, top-2; unchanged this round) against their byte floors, and a
 * device-to-device copy for the achievable rate. Each launch timed alone
 * with CUDA events after a 128 MiB memset has pushed the inputs out of L2
 * (as ncu does), the median of 25; the table is printed twice (A/B/A/B) to
 * show the spread ("once": each gate kernel twice, untimed, for ncu). MB:
 * the bytes each pass must move (each input read once,
 * each output written once); floor: MB at 3.0 TB/s. */
#include "policy/gpu_ew.h"
#include "policy/gpu_gate.h"
#include "policy/gpu_linew.h"
#include "tests/bench/gpu_bench.cuh"

#include <string.h>

/* the median us of reps launches of f, each after an L2 flush */
template <typename F> static double time_us(F f, int reps = 25)
{
	return bench_cold_us([] {}, f, reps);
}

__global__ static void k_tobf(uint16_t *y, const float *x, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = (uint16_t)(__float_as_uint(x[i]) >> 16);
}

static void row(const char *what, double mb, double old_us, double new_us)
{
	printf("%-44s %7.1f %7.1f %8.1f %8.1f %6.2fx %7.0f %7.0f %5.2f\n", what, mb,
	       mb / 3.0e6 * 1e6, old_us, new_us, new_us > 0 && old_us > 0 ? old_us / new_us : 0.0,
	       old_us > 0 ? mb / old_us * 1e3 : 0.0, new_us > 0 ? mb / new_us * 1e3 : 0.0,
	       (new_us > 0 ? new_us : old_us) / (mb / 3.0e6 * 1e6));
}

int main(int argc, char **argv)
{
	const int once = argc > 1 && !strcmp(argv[1], "once");
	int ndev = 0;
	const int T = 8192, Hd = 768, D = 768, K = 2;
	const size_t n = (size_t)T * Hd, nd = (size_t)T * D;
	const float eps = 1e-6f;
	cudaDeviceProp prop;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_gate: skipped: no CUDA device\n");
		return 0;
	}
	CK(cudaGetDeviceProperties(&prop, 0));

	/* the gate passes */
	float *dgn, *rstd, *w, *dw, *f32;
	uint16_t *o, *pre, *gn, *dO, *dpre, *dgn16;
	CK(cudaMalloc(&dgn, n * 4));
	CK(cudaMalloc(&rstd, T * 4));
	CK(cudaMalloc(&w, (Hd + 1) * 4));
	CK(cudaMalloc(&dw, Hd * 4));
	CK(cudaMalloc(&f32, n * 4 * 4));
	CK(cudaMalloc(&o, n * 2));
	CK(cudaMalloc(&pre, n * 4 * 2));
	CK(cudaMalloc(&gn, n * 2));
	CK(cudaMalloc(&dO, n * 2));
	CK(cudaMalloc(&dpre, n * 4 * 2));
	CK(cudaMalloc(&dgn16, n * 2));
	/* bf16 inputs: the upper halves of fp32 normals */
	fill_normal<<<512, 256>>>(f32, n * 4, 1.0f, 1);
	k_tobf<<<512, 256>>>(o, f32, n);
	k_tobf<<<512, 256>>>(pre, f32, n * 4);
	fill_normal<<<512, 256>>>(f32, n, 1.0f, 10);
	k_tobf<<<512, 256>>>(dgn16, f32, n);
	fill_normal<<<512, 256>>>(dgn, n, 1.0f, 2);
	fill_normal<<<8, 256>>>(w, Hd + 1, 0.2f, 3);
	CK(cudaMemset(dw, 0, Hd * 4));
	CK(cudaDeviceSynchronize());
	const float *wa = w + 1; /* the arena's alignment */
	SW(policy_gate_reserve(Hd));

	/* the residual passes (gpu_ew.cu) */
	float *xa, *xb2, *xo, *yf, *yp, *gate, *rs, *ew_w, *ew_dw, *dx;
	uint16_t *yb;
	CK(cudaMalloc(&xa, nd * 4));
	CK(cudaMalloc(&xb2, nd * 4));
	CK(cudaMalloc(&xo, nd * 4));
	CK(cudaMalloc(&yf, nd * 4));
	CK(cudaMalloc(&yp, nd * K * 4));
	CK(cudaMalloc(&gate, (size_t)T * K * 4));
	CK(cudaMalloc(&rs, T * 4));
	CK(cudaMalloc(&ew_w, D * 4));
	CK(cudaMalloc(&ew_dw, D * 4));
	CK(cudaMalloc(&dx, nd * 4));
	CK(cudaMalloc(&yb, nd * 2));
	fill_normal<<<512, 256>>>(xa, nd, 1.0f, 4);
	fill_normal<<<512, 256>>>(xb2, nd, 1.0f, 5);
	fill_normal<<<512, 256>>>(yp, nd * K, 1.0f, 6);
	fill_normal<<<64, 256>>>(gate, (size_t)T * K, 0.5f, 7);
	fill_normal<<<8, 256>>>(ew_w, D, 0.2f, 8);
	fill_normal<<<512, 256>>>(dx, nd, 1.0f, 9);
	CK(cudaMemset(ew_dw, 0, D * 4));
	CK(cudaDeviceSynchronize());
	SW(policy_ew_add_rms(NULL, yf, 0, NULL, rs, xa, NULL, NULL, NULL, NULL, NULL, 0, ew_w, T, D,
	                     eps));

	auto fwd2 = [&] { SW(policy_lin_rms_gate(gn, rstd, o, 1, wa, pre, 1, T, Hd, eps, 1)); };
	auto fwd3 = [&](int var) {
		SW(policy_gate_fwd(gn, rstd, o, 1, wa, pre, 1, T, Hd, eps, var));
	};
	auto bwd2 = [&] {
		SW(policy_lin_gate_rms_bwd(dO, dw, dpre, 1, dgn, o, 1, pre, wa, rstd, T, Hd, 1));
	};
	auto bwd3 = [&] {
		SW(policy_gate_bwd(dO, dw, dpre, 1, dgn, 0, o, 1, pre, wa, rstd, T, Hd, 0));
	};
	/* v4: dgn in bf16 (the dX GEMM writes it so) */
	auto bwd4 = [&] {
		SW(policy_gate_bwd(dO, dw, dpre, 1, dgn16, 1, o, 1, pre, wa, rstd, T, Hd, 0));
	};
	/* v5 (not yet run): v3 with the fast sigmoid */
	auto bwd5 = [&] {
		SW(policy_gate_bwd(dO, dw, dpre, 1, dgn, 0, o, 1, pre, wa, rstd, T, Hd, 1));
	};
	/* attention's add + the ffn norm: out, fp32 n2, the experts' bf16 copy */
	auto add_ffn = [&] {
		SW(policy_ew_add_rms(xo, yf, 0, yb, rs, xa, NULL, NULL, xb2, NULL, NULL, 0, ew_w, T,
		                     D, eps));
	};
	/* the MoE combine (K 2) + add + the next layer's bf16 norm */
	auto add_comb = [&] {
		SW(policy_ew_add_rms(xo, yb, 1, NULL, rs, xa, NULL, NULL, NULL, yp, gate, K, ew_w,
		                     T, D, eps));
	};
	auto bwd_ffn = [&] { SW(policy_ew_rms_bwd(dx, yb, 1, ew_dw, xb2, xa, ew_w, rs, T, D)); };
	auto bwd_attn = [&] { SW(policy_ew_rms_bwd(dx, NULL, 1, ew_dw, xb2, xa, ew_w, rs, T, D)); };
	auto copy = [&] { CK(cudaMemcpyAsync(xo, xa, nd * 4, cudaMemcpyDeviceToDevice)); };

	const double mb_f = 3.0 * n * 2 / 1e6, mb_b = (n * 4 + 4.0 * n * 2) / 1e6;
	const double mb_b4 = 5.0 * n * 2 / 1e6;
	if (once) { /* for ncu: each gate kernel once, after a warm-up call */
		fwd2(), fwd3(1), fwd3(2), fwd3(4), bwd2(), bwd3(), bwd4(), bwd5();
		CK(cudaDeviceSynchronize());
		fwd2(), fwd3(1), fwd3(2), fwd3(4), bwd2(), bwd3(), bwd4(), bwd5();
		CK(cudaDeviceSynchronize());
		return 0;
	}
	const double mb_add = (4.0 * nd * 4 + nd * 2) / 1e6, mb_bf = (4.0 * nd * 4 + nd * 2) / 1e6;
	const double mb_ba = 4.0 * nd * 4 / 1e6, mb_cp = 2.0 * nd * 4 / 1e6;
	printf("gpu_gate: %s, T %d, Hd %d (D %d, top-%d), L2 flushed before each launch, median "
	       "of 25 (us)\n",
	       prop.name, T, Hd, D, K);
	for (int pass = 0; pass < 2; pass++) {
		double f2 = time_us(fwd2), f3 = time_us([&] { fwd3(1); });
		double f3a = time_us([&] { fwd3(2); }), f5 = time_us([&] { fwd3(4); });
		double b2 = time_us(bwd2), b3 = time_us(bwd3), b4 = time_us(bwd4);
		double b5 = time_us(bwd5);
		double a1 = time_us(add_ffn), a2 = time_us(add_comb), r1 = time_us(bwd_ffn);
		double r2 = time_us(bwd_attn), cp = time_us(copy);
		printf("\nrun %d\n%-44s %7s %7s %8s %8s %7s %7s %7s %5s\n", pass + 1, "pass", "MB",
		       "floor", "v2/old", "v3/new", "speed", "GB/s o", "GB/s n", "xflr");
		row("lightning norm + gate fwd (v2 | v3)", mb_f, f2, f3);
		row("lightning norm + gate fwd (v2 | v3a)", mb_f, f2, f3a);
		row("lightning gate + norm bwd (v2 | v3)", mb_b, b2, b3);
		row("lightning gate + norm bwd, bf16 dgn (v2 | v4)", mb_b4, b2, b4);
		row("lightning norm + gate fwd (v2 | v5, unrun)", mb_f, f2, f5);
		row("lightning gate + norm bwd (v2 | v5, unrun)", mb_b, b2, b5);
		row("ew add + ffn norm (fp32 n2, bf16 copy)", mb_add, a1, 0);
		row("ew combine K2 + add + next norm (bf16)", mb_add, a2, 0);
		row("ew norm bwd ffn (acc, bf16 copy, dw)", mb_bf, r1, 0);
		row("ew norm bwd attn (acc, dw)", mb_ba, r2, 0);
		row("device-to-device copy (read + write)", mb_cp, cp, 0);
		printf("per micro-batch (11 lightning layers): fwd %.0f -> %.0f us, bwd %.0f -> "
		       "%.0f "
		       "us (v3), saved %.0f us\n",
		       11 * f2, 11 * f3, 11 * b2, 11 * b3, 11 * (f2 - f3 + b2 - b3));
	}
	return 0;
}
