/* gpu_lightning.cu - times swerve's lightning attention kernels (forward,
 * forward+backward, decode) at the issue's shapes; tests/bench/gpu_lightning.sh
 * runs it beside the PyTorch baselines (gpu_lightning.py) and prints one table.
 *
 * Rows: impl shape fwd_ms fb_ms fwd_TFLOPs fb_TFLOPs fwd_floor_x fb_floor_x
 *   TFLOP/s counts the chunk-64 algorithm's nominal work for every linear-
 *   attention row: fwd = N H (4 C D + 4 D^2) with C = 64, backward = 2 x fwd;
 *   floor_x = time / bytes-floor time, the floor being q, k, v read and o
 *   written once (fwd: 4 tensors; fwd+bwd: 9 tensors, the issue's count) at
 *   the device-to-device copy bandwidth measured in this run.
 * Decode row: B = 64 sequences, H = 16, D = 128: the state read + write over
 * the time of one step (20 steps timed back to back, as a decode loop runs),
 * against the measured copy bandwidth and a same-size copy timed the same way.
 * Inputs are random (never zeros); each time is the median of the repeats,
 * measured with CUDA events after warm-up. */
#include <algorithm>
#include <functional>
#include <cuda_bf16.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "kernels/kernels.h"
#include "policy/gpu_dev.cuh" /* sigm, f2bf: as policy/gpu_linew.cu's passes */

#include "tests/bench/gpu_bench.cuh"

/* lightning.cu, benchmarks only: resident CTAs per SM of main kernel kver (1, 2, 3);
 * the plan of a forward (nprob 1) or backward (3): kernel, segments, V3 stages */
extern "C" int swerve_lightning_occupancy_(int d, int kver);
extern "C" int swerve_lightning_plan_(const swerve_lightning_dims *d, int nprob, int *G,
                                      int *stages);
/* the state pass's sub-segments per segment (returned), their tokens, the window's bits */
extern "C" int swerve_lightning_state_plan_(const swerve_lightning_dims *d, int nprob, int *sub_len,
                                            int *bits);
/* the backward's overflow split (round 13, opt-in SWERVE_LIGHTNING_BWD_SPLIT):
 * overflow sequences (returned; 0: none), their segments and tokens a segment */
extern "C" int swerve_lightning_bwd_split_(const swerve_lightning_dims *d, int *G2, int *seg_len);

__global__ void fill_bf16(__nv_bfloat16 *p, size_t n, uint32_t seed, float scale)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint32_t x = (uint32_t)i * 2654435761u ^ seed;
		x ^= x >> 15;
		x *= 0x2c1b3c6du;
		x ^= x >> 12;
		p[i] = __float2bfloat16(((x & 0xffffff) / 16777216.0f * 2.0f - 1.0f) * scale);
	}
}

__global__ void fill_f32(float *p, size_t n, uint32_t seed)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint32_t x = (uint32_t)i * 2246822519u ^ seed;
		x ^= x >> 13;
		x *= 0x5bd1e995u;
		x ^= x >> 15;
		p[i] = (x & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
	}
}

/* the slopes of layer l of L for H heads, copied to dsl (H floats) */
static void put_slopes(float *dsl, int H, int l, int L)
{
	std::vector<float> slopes(H);
	for (int h = 0; h < H; h++)
		slopes[h] = swerve_lightning_slope(h, H, l, L);
	CK(cudaMemcpy(dsl, slopes.data(), H * 4, cudaMemcpyHostToDevice));
}

/* cu_seqlens of B packed sequences of T tokens each, in a new device buffer */
static int32_t *new_cu(int B, int T)
{
	std::vector<int32_t> cu(B + 1);
	for (int b = 0; b <= B; b++)
		cu[b] = b * T;
	int32_t *dcu;
	CK(cudaMalloc(&dcu, (B + 1) * 4));
	CK(cudaMemcpy(dcu, cu.data(), (B + 1) * 4, cudaMemcpyHostToDevice));
	return dcu;
}

static bool g_prof;

template <typename F> static double median_ms(F f, int reps)
{
	if (g_prof) {
		f();
		CK(cudaDeviceSynchronize());
		return 1.0;
	}
	return bench_median_ms(f, reps, 3);
}

/* `once B T H D`: one forward at that shape after one warm-up forward (the
 * kernel choice from the environment), for ncu with --launch-skip */
static int run_once(int B, int T, int H, int D)
{
	const size_t n = (size_t)B * T * H * D;
	__nv_bfloat16 *q, *k, *v, *o;
	CK(cudaMalloc(&q, n * 2));
	CK(cudaMalloc(&k, n * 2));
	CK(cudaMalloc(&v, n * 2));
	CK(cudaMalloc(&o, n * 2));
	fill_bf16<<<1024, 256>>>(q, n, 1, 0.5f);
	fill_bf16<<<1024, 256>>>(k, n, 2, 0.5f);
	fill_bf16<<<1024, 256>>>(v, n, 3, 1.0f);
	float *dsl;
	CK(cudaMalloc(&dsl, H * 4));
	put_slopes(dsl, H, 0, 32);
	int32_t *dcu = new_cu(B, T);
	swerve_lightning_dims dims = {B, H, D, T};
	const size_t wf = swerve_lightning_forward_workspace(&dims);
	void *ws;
	CK(cudaMalloc(&ws, wf + 16));
	int G, st;
	const int kv = swerve_lightning_plan_(&dims, 1, &G, &st);
	for (int i = 0; i < 2; i++)
		SW(swerve_lightning_forward(
		        reinterpret_cast<uint16_t *>(o), nullptr, reinterpret_cast<uint16_t *>(q),
		        reinterpret_cast<uint16_t *>(k), reinterpret_cast<uint16_t *>(v), dcu, dsl,
		        nullptr, &dims, ws, wf, 0));
	CK(cudaDeviceSynchronize());
	printf("# once B=%d T=%d H=%d D=%d: kernel %d, G=%d, stages %d\n", B, T, H, D, kv, G, st);
	return 0;
}

/* ---- round 14: `silu`: the layer's SiLU folded into the core (opt-in) ----
 * At the policy's shape (4 x 2048, 12 heads of 64, layer 3 of 12), from the
 * projection's interleaved output pre [T, 4 H D] (q | k | v | gate):
 *   unfused forward  = the SiLU pass (a copy of policy/gpu_linew.cu's
 *                      k_lw_silu, same launch) + swerve_lightning_forward
 *   fused forward    = swerve_lightning_forward_silu
 *   unfused backward = swerve_lightning_backward + the SiLU' pass (k_lw_dsilu)
 *   fused backward   = swerve_lightning_backward_silu
 * three interleaved pairs of medians each, the passes and the cores alone
 * too; then the same with round 13's backward split (SWERVE_LIGHTNING_BWD_SPLIT=1).
 * keep (POLICY_GPU_LW_SILU=keep): the fused forward also writes the activated
 * q, k, v (swerve_lightning_forward_silu's act_*), the backward reads them
 * and applies only SiLU' in its epilogue (swerve_lightning_backward_dsilu);
 * rows `... keep` against the passes, `fb keep/core` against core. */
__device__ static void b_ld8(float *v, const uint16_t *p)
{
	uint4 u = *(const uint4 *)p;
	uint32_t w[4] = {u.x, u.y, u.z, u.w};
	for (int k = 0; k < 4; k++) {
		v[2 * k] = __uint_as_float(w[k] << 16);
		v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
	}
}
__device__ static void b_st8(uint16_t *p, const float *v)
{
	uint4 u;
	u.x = f2bf(v[0]) | (uint32_t)f2bf(v[1]) << 16;
	u.y = f2bf(v[2]) | (uint32_t)f2bf(v[3]) << 16;
	u.z = f2bf(v[4]) | (uint32_t)f2bf(v[5]) << 16;
	u.w = f2bf(v[6]) | (uint32_t)f2bf(v[7]) << 16;
	*(uint4 *)p = u;
}
__device__ static void b_index(unsigned u, int T, int Hd, size_t *il, size_t *pl)
{
	unsigned h8 = (unsigned)Hd / 8, per = 3 * h8, t = u / per, rem = u % per;
	unsigned j = rem / h8, c = rem % h8 * 8;
	*il = (size_t)t * 4 * Hd + (size_t)rem * 8;
	*pl = (size_t)j * T * Hd + (size_t)t * Hd + c;
}
__global__ static void b_silu(uint16_t *out, const uint16_t *pre, int T, int Hd)
{
	unsigned u = blockIdx.x * blockDim.x + threadIdx.x;
	float v[8];
	size_t il, pl;
	if (u >= (unsigned)T * 3 * (Hd / 8))
		return;
	b_index(u, T, Hd, &il, &pl);
	b_ld8(v, pre + il);
	for (int k = 0; k < 8; k++)
		v[k] = v[k] * sigm(v[k]);
	b_st8(out + pl, v);
}
__global__ static void b_dsilu(uint16_t *dpre, const uint16_t *dpost, const uint16_t *pre, int T,
                               int Hd)
{
	unsigned u = blockIdx.x * blockDim.x + threadIdx.x;
	float a[8], d[8];
	size_t il, pl;
	if (u >= (unsigned)T * 3 * (Hd / 8))
		return;
	b_index(u, T, Hd, &il, &pl);
	b_ld8(a, pre + il);
	b_ld8(d, dpost + pl);
	for (int k = 0; k < 8; k++) {
		float s = sigm(a[k]);
		d[k] = d[k] * (s * (1.0f + a[k] * (1.0f - s)));
	}
	b_st8(dpre + il, d);
}

/* keep1 (round 19, for ncu --profile-from-start off): one keep forward and
 * backward after a warm-up pair, between cudaProfilerStart / Stop, under the
 * environment's switches; no timing */
static int run_silu(int mode)
{
	const bool keep1 = mode == 1;
	const int B = 4, T = 2048, H = 12, D = 64, HD = H * D, N = B * T;
	const size_t n = (size_t)N * HD, np = (size_t)N * 4 * HD;
	__nv_bfloat16 *pre, *dpre, *qkv, *dqkv, *o, *g;
	CK(cudaMalloc(&pre, np * 2));
	CK(cudaMalloc(&dpre, np * 2));
	CK(cudaMalloc(&qkv, 3 * n * 2));
	CK(cudaMalloc(&dqkv, 3 * n * 2));
	CK(cudaMalloc(&o, n * 2));
	CK(cudaMalloc(&g, n * 2));
	fill_bf16<<<1024, 256>>>(pre, np, 11, 2.5f);
	fill_bf16<<<1024, 256>>>(g, n, 12, 1.0f);
	float *dsl;
	CK(cudaMalloc(&dsl, H * 4));
	put_slopes(dsl, H, 3, 12);
	int32_t *dcu = new_cu(B, T);
	const swerve_lightning_dims dims = {B, H, D, T};
	size_t wmax = 0;
	/* keep1 runs under the environment's split switch: restored below */
	const char *bs_env = getenv("SWERVE_LIGHTNING_BWD_SPLIT");
	char bs0[32] = "";
	if (bs_env)
		snprintf(bs0, sizeof bs0, "%s", bs_env);
	for (int sp = 0; sp < 2; sp++) {
		if (sp)
			setenv("SWERVE_LIGHTNING_BWD_SPLIT", "1", 1);
		wmax = std::max({wmax, swerve_lightning_forward_workspace(&dims),
		                 swerve_lightning_backward_workspace(&dims),
		                 swerve_lightning_forward_silu_workspace(&dims),
		                 swerve_lightning_backward_silu_workspace(&dims)});
	}
	/* round 19's forced forward segment counts (up to 8 here) */
	for (int gf = 1; gf <= 8; gf++) {
		char v[8];
		snprintf(v, sizeof v, "%d", gf);
		setenv("SWERVE_LIGHTNING_FWD_SEGMENTS", v, 1);
		wmax = std::max(wmax, swerve_lightning_forward_silu_workspace(&dims));
	}
	unsetenv("SWERVE_LIGHTNING_FWD_SEGMENTS");
	unsetenv("SWERVE_LIGHTNING_BWD_SPLIT");
	if (keep1 && bs_env)
		setenv("SWERVE_LIGHTNING_BWD_SPLIT", bs0, 1);
	void *ws;
	CK(cudaMalloc(&ws, wmax + 16));
	auto U = [](__nv_bfloat16 *p) { return reinterpret_cast<uint16_t *>(p); };
	const unsigned grid = (unsigned)(((size_t)N * 3 * (HD / 8) + 255) / 256);
	auto silu_pass = [&] { b_silu<<<grid, 256>>>(U(qkv), U(pre), N, HD); };
	auto dsilu_pass = [&] { b_dsilu<<<grid, 256>>>(U(dpre), U(dqkv), U(pre), N, HD); };
	auto core_f = [&] {
		SW(swerve_lightning_forward(U(o), nullptr, U(qkv), U(qkv) + n, U(qkv) + 2 * n, dcu,
		                            dsl, nullptr, &dims, ws, wmax, 0));
	};
	auto core_b = [&] {
		SW(swerve_lightning_backward(U(dqkv), U(dqkv) + n, U(dqkv) + 2 * n, nullptr, U(qkv),
		                             U(qkv) + n, U(qkv) + 2 * n, U(g), nullptr, dcu, dsl,
		                             nullptr, &dims, ws, wmax, 0));
	};
	auto unf_f = [&] {
		silu_pass();
		core_f();
	};
	auto unf_b = [&] {
		core_b();
		dsilu_pass();
	};
	auto fu_f = [&] {
		SW(swerve_lightning_forward_silu(U(o), nullptr, nullptr, nullptr, nullptr, U(pre),
		                                 4 * HD, dcu, dsl, nullptr, &dims, ws, wmax, 0));
	};
	auto fu_b = [&] {
		SW(swerve_lightning_backward_silu(U(dpre), nullptr, U(pre), 4 * HD, U(g), nullptr,
		                                  dcu, dsl, nullptr, &dims, ws, wmax, 0));
	};
	/* keep: the forward writes the activated q, k, v (qkv), the backward reads
	 * them and applies SiLU' in its epilogue */
	auto kp_f = [&] {
		SW(swerve_lightning_forward_silu(U(o), nullptr, U(qkv), U(qkv) + n, U(qkv) + 2 * n,
		                                 U(pre), 4 * HD, dcu, dsl, nullptr, &dims, ws, wmax,
		                                 0));
	};
	auto kp_b = [&] {
		SW(swerve_lightning_backward_dsilu(U(dpre), nullptr, U(qkv), U(qkv) + n,
		                                   U(qkv) + 2 * n, U(pre), 4 * HD, U(g), nullptr,
		                                   dcu, dsl, nullptr, &dims, ws, wmax, 0));
	};
	auto kp_fb = [&] {
		kp_f();
		kp_b();
	};
	if (keep1) {
		kp_fb();
		CK(cudaDeviceSynchronize());
		CK(cudaProfilerStart());
		kp_fb();
		CK(cudaDeviceSynchronize());
		CK(cudaProfilerStop());
		int G2 = 0, seg2 = 0;
		const int oz = swerve_lightning_bwd_split_(&dims, &G2, &seg2);
		printf("# keep1: policy shape %d x %d, %d heads of %d: one keep forward + backward "
		       "profiled; backward split: %d overflow pair(s), %d segments of %d\n",
		       B, T, H, D, oz, G2, seg2);
		cudaFree(pre), cudaFree(dpre), cudaFree(qkv), cudaFree(dqkv), cudaFree(o);
		cudaFree(g), cudaFree(dsl), cudaFree(dcu), cudaFree(ws);
		return 0;
	}
	/* keep2 (not yet run on a GPU): SWERVE_LIGHTNING_SILU_STG=1 (the
	 * activations by each thread's stores) and SWERVE_LIGHTNING_SILU_EARLY=1
	 * (the backward's SiLU' factors one chunk ahead), each alone and both */
	auto with = [](const char *var, const std::function<void()> &f) {
		return [var, f] {
			setenv(var, "1", 1);
			f();
			unsetenv(var);
		};
	};
	auto k2_f = with("SWERVE_LIGHTNING_SILU_STG", kp_f);
	auto k2_b = with("SWERVE_LIGHTNING_SILU_EARLY", kp_b);
	auto k2_fb = [&] {
		k2_f();
		k2_b();
	};
	/* round 19: SWERVE_LIGHTNING_DACT=smem (the backward's SiLU' source
	 * through the cp.async stages) and SWERVE_LIGHTNING_FWD_SEGMENTS=<G> (the
	 * fused forward's segments; the plan's G is 5 at this shape) */
	auto withv = [](const char *var, const char *val, const std::function<void()> &f) {
		return [var, val, f] {
			setenv(var, val, 1);
			f();
			unsetenv(var);
		};
	};
	auto ds_b = withv("SWERVE_LIGHTNING_DACT", "smem", kp_b);
	auto ds_fb = [&] {
		kp_f();
		ds_b();
	};
	/* =l2 (not yet run on a GPU): the next chunk's rows prefetched into L2 */
	auto l2_b = withv("SWERVE_LIGHTNING_DACT", "l2", kp_b);
	auto l2_fb = [&] {
		kp_f();
		l2_b();
	};
	static const char *const gs[] = {"1", "2", "3", "4", "6", "8"};
	std::vector<std::function<void()>> fs_f;
	for (const char *gv : gs)
		fs_f.push_back(withv("SWERVE_LIGHTNING_FWD_SEGMENTS", gv, kp_f));
	auto unf_fb = [&] {
		unf_f();
		unf_b();
	};
	auto fu_fb = [&] {
		fu_f();
		fu_b();
	};
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	if (mode == 2) {
		/* round 20 (`r20`): SWERVE_LIGHTNING_FU_CODE=split (kernel_sp) against
		 * shared (kernel_fu), keep's forward, backward and both, with the
		 * default LDG epilogue and with DACT=smem; then the backwards with
		 * L2 flushed before each (us). ms, three interleaved medians of 30. */
		auto sp_f = withv("SWERVE_LIGHTNING_FU_CODE", "split", kp_f);
		auto sp_b = withv("SWERVE_LIGHTNING_FU_CODE", "split", kp_b);
		auto sd_b = withv("SWERVE_LIGHTNING_FU_CODE", "split", ds_b);
		auto sp_fb = [&] {
			sp_f();
			sp_b();
		};
		auto sd_fb = [&] {
			sp_f();
			sd_b();
		};
		printf("# r20: device %s, %d SMs; policy shape %d x %d, %d heads of %d, layer 3 of "
		       "12; ms, medians of 30, three interleaved pairs (min / median / max)\n",
		       prop.name, prop.multiProcessorCount, B, T, H, D);
		struct r20_row {
			const char *what;
			std::function<void()> a, b;
		};
		const r20_row rows[] = {{"fwd split/shared", kp_f, sp_f},
		                        {"bwd split/shared", kp_b, sp_b},
		                        {"fb split/shared", kp_fb, sp_fb},
		                        {"bwd dsm/ldg", kp_b, ds_b},
		                        {"bwd split+dsm/shared+dsm", ds_b, sd_b},
		                        {"bwd split+dsm/shared", kp_b, sd_b},
		                        {"fb split+dsm/shared", kp_fb, sd_fb}};
		printf("%-26s %9s %9s %9s   %9s %9s %9s   %7s\n", "pass (b/a)", "a", "", "", "b",
		       "", "", "b/a");
		for (const r20_row &r : rows) {
			double a[3], b[3];
			for (int i = 0; i < 3; i++) {
				a[i] = median_ms(r.a, 30);
				b[i] = median_ms(r.b, 30);
			}
			std::sort(a, a + 3);
			std::sort(b, b + 3);
			printf("%-26s %9.4f %9.4f %9.4f   %9.4f %9.4f %9.4f   %7.3f\n", r.what,
			       a[0], a[1], a[2], b[0], b[1], b[2], b[1] / a[1]);
			fflush(stdout);
		}
		auto none = [] {};
		double c[4][3];
		for (int i = 0; i < 3; i++) {
			c[0][i] = bench_cold_us(none, kp_b);
			c[1][i] = bench_cold_us(none, sp_b);
			c[2][i] = bench_cold_us(none, ds_b);
			c[3][i] = bench_cold_us(none, sd_b);
		}
		for (auto &r : c)
			std::sort(r, r + 3);
		printf("cold bwd (us, L2 flushed, min / median / max): shared %.1f / %.1f / %.1f   "
		       "split %.1f / %.1f / %.1f   shared+dsm %.1f / %.1f / %.1f   split+dsm %.1f "
		       "/ "
		       "%.1f / %.1f\n",
		       c[0][0], c[0][1], c[0][2], c[1][0], c[1][1], c[1][2], c[2][0], c[2][1],
		       c[2][2], c[3][0], c[3][1], c[3][2]);
		cudaFree(pre), cudaFree(dpre), cudaFree(qkv), cudaFree(dqkv), cudaFree(o);
		cudaFree(g), cudaFree(dsl), cudaFree(dcu), cudaFree(ws);
		return 0;
	}
	printf("# silu: device %s, %d SMs; policy shape %d x %d, %d heads of %d, layer 3 of 12; "
	       "ms, medians of 30, three interleaved pairs\n",
	       prop.name, prop.multiProcessorCount, B, T, H, D);
	printf("# silu pass %.4f ms, SiLU' pass %.4f ms, core fwd %.4f ms, core bwd %.4f ms\n",
	       median_ms(silu_pass, 30), median_ms(dsilu_pass, 30), median_ms(core_f, 30),
	       median_ms(core_b, 30));
	struct cmp_row {
		const char *what;
		std::function<void()> a, b;
	};
	/* core against the passes, keep against the passes, keep against core */
	const cmp_row rows[] = {{"fwd", unf_f, fu_f},
	                        {"bwd", unf_b, fu_b},
	                        {"fwd+bwd", unf_fb, fu_fb},
	                        {"fwd keep", unf_f, kp_f},
	                        {"bwd keep", unf_b, kp_b},
	                        {"fb keep", unf_fb, kp_fb},
	                        {"fb keep/core", fu_fb, kp_fb},
	                        {"fwd keep stg", unf_f, k2_f},
	                        {"bwd keep early", unf_b, k2_b},
	                        {"fb keep2", unf_fb, k2_fb},
	                        {"fb keep2/keep", kp_fb, k2_fb},
	                        {"bwd dsm/keep", kp_b, ds_b},
	                        {"fb dsm/keep", kp_fb, ds_fb},
	                        {"bwd l2/keep", kp_b, l2_b},
	                        {"fb l2/keep", kp_fb, l2_fb},
	                        {"fwd G=1/keep", kp_f, fs_f[0]},
	                        {"fwd G=2/keep", kp_f, fs_f[1]},
	                        {"fwd G=3/keep", kp_f, fs_f[2]},
	                        {"fwd G=4/keep", kp_f, fs_f[3]},
	                        {"fwd G=6/keep", kp_f, fs_f[4]},
	                        {"fwd G=8/keep", kp_f, fs_f[5]}};
	printf("%-12s %-6s %9s %9s %9s   %9s %9s %9s   %7s\n", "pass", "split", "unfused", "", "",
	       "fused", "", "", "b/a");
	for (int sp = 0; sp < 2; sp++) {
		if (sp)
			setenv("SWERVE_LIGHTNING_BWD_SPLIT", "1", 1);
		for (const cmp_row &r : rows) {
			double a[3], b[3];
			for (int i = 0; i < 3; i++) {
				a[i] = median_ms(r.a, 30);
				b[i] = median_ms(r.b, 30);
			}
			std::sort(a, a + 3);
			std::sort(b, b + 3);
			printf("%-12s %-6s %9.4f %9.4f %9.4f   %9.4f %9.4f %9.4f   %7.3f\n", r.what,
			       sp ? "bsplit" : "-", a[0], a[1], a[2], b[0], b[1], b[2],
			       b[1] / a[1]);
			fflush(stdout);
		}
	}
	unsetenv("SWERVE_LIGHTNING_BWD_SPLIT");
	/* round 19: the backwards with L2 flushed before each (the policy's
	 * backward finds its inputs in DRAM): keep (ldg) / smem / l2, us, three
	 * interleaved medians of 25 each */
	{
		auto none = [] {};
		double c[3][3];
		for (int i = 0; i < 3; i++) {
			c[0][i] = bench_cold_us(none, kp_b);
			c[1][i] = bench_cold_us(none, ds_b);
			c[2][i] = bench_cold_us(none, l2_b);
		}
		for (auto &r : c)
			std::sort(r, r + 3);
		printf("cold bwd (us, L2 flushed): ldg %.1f / %.1f / %.1f   smem %.1f / %.1f / "
		       "%.1f   "
		       "l2 %.1f / %.1f / %.1f\n",
		       c[0][0], c[0][1], c[0][2], c[1][0], c[1][1], c[1][2], c[2][0], c[2][1],
		       c[2][2]);
	}
	cudaFree(pre), cudaFree(dpre), cudaFree(qkv), cudaFree(dqkv), cudaFree(o), cudaFree(g);
	cudaFree(dsl), cudaFree(dcu), cudaFree(ws);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "silu") == 0)
		return run_silu(0);
	if (argc > 1 && strcmp(argv[1], "keep1") == 0)
		return run_silu(1);
	if (argc > 1 && strcmp(argv[1], "r20") == 0)
		return run_silu(2);
	if (argc == 6 && strcmp(argv[1], "once") == 0)
		return run_once(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	/* `profile`: shape 1 forward and backward and one decode, once each (for ncu) */
	const bool prof = argc > 1 && strcmp(argv[1], "profile") == 0;
	/* `sweep`: also time the forward and the backward (alone) of every shape
	 * against a forced segment count, for V3's 2- and 4-stage main kernels */
	const bool sweep = argc > 1 && strcmp(argv[1], "sweep") == 0;
	/* `sweep4`: the same for V4 (SWERVE_LIGHTNING_KERNEL=4) only */
	const bool sweep4 = argc > 1 && strcmp(argv[1], "sweep4") == 0;
	/* `policy`: the policy trainer's shape only (4 x 2048, 12 heads of 64) */
	const bool policy_only = argc > 1 && strcmp(argv[1], "policy") == 0;
	/* SWERVE_BENCH_NO_V4=1: no V4 rows (where V4 failed its tests) */
	const bool no_v4 = getenv("SWERVE_BENCH_NO_V4") != nullptr;
	cudaDeviceProp prop;
	if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
		printf("skipped: no GPU\n");
		return 0;
	}
	g_prof = prof;
	/* copy bandwidth: 1 GiB device to device, bytes read + written */
	double bw = 3e12;
	if (!prof) {
		size_t nb = (size_t)1 << 30;
		void *x, *y;
		CK(cudaMalloc(&x, nb));
		CK(cudaMalloc(&y, nb));
		CK(cudaMemset(x, 1, nb));
		double ms =
		        median_ms([&] { cudaMemcpyAsync(y, x, nb, cudaMemcpyDeviceToDevice); }, 10);
		bw = 2.0 * nb / (ms * 1e-3);
		cudaFree(x);
		cudaFree(y);
	}
	printf("# device %s, %d SMs, copy bandwidth %.2f TB/s (read + write); main kernel "
	       "CTAs per SM at D = 128: V4 (two warpgroups) %d, V3 (wgmma) %d, first version %d, "
	       "V2 %d\n",
	       prop.name, prop.multiProcessorCount, bw / 1e12, swerve_lightning_occupancy_(128, 4),
	       swerve_lightning_occupancy_(128, 3), swerve_lightning_occupancy_(128, 1),
	       swerve_lightning_occupancy_(128, 2));
	printf("%-19s %-15s %9s %9s %9s %9s %8s %8s\n", "impl", "B,T,H,D", "fwd_ms", "fb_ms",
	       "fwd_TF/s", "fb_TF/s", "fwd/flr", "fb/flr");

	/* the issue's three shapes (H = 16, D = 128), then the policy trainer's
	 * lightning layers (4 packed sequences of 2048 tokens, 12 heads of 64,
	 * policy/: 11 such layers, forward and backward, per training step) */
	const int shapes[][4] = {
	        {8, 2048, 16, 128}, {4, 8192, 16, 128}, {1, 32768, 16, 128}, {4, 2048, 12, 64}};
	float *dsl;
	CK(cudaMalloc(&dsl, 16 * 4));
	for (auto &s : shapes) {
		if ((prof && s[0] != 8) || (policy_only && s[3] != 64))
			continue;
		const int B = s[0], T = s[1], H = s[2], D = s[3];
		put_slopes(dsl, H, 0, 32);
		const size_t n = (size_t)B * T * H * D;
		__nv_bfloat16 *q, *k, *v, *g, *o, *dq, *dk, *dv;
		CK(cudaMalloc(&q, n * 2));
		CK(cudaMalloc(&k, n * 2));
		CK(cudaMalloc(&v, n * 2));
		CK(cudaMalloc(&g, n * 2));
		CK(cudaMalloc(&o, n * 2));
		CK(cudaMalloc(&dq, n * 2));
		CK(cudaMalloc(&dk, n * 2));
		CK(cudaMalloc(&dv, n * 2));
		fill_bf16<<<1024, 256>>>(q, n, 1, 0.5f);
		fill_bf16<<<1024, 256>>>(k, n, 2, 0.5f);
		fill_bf16<<<1024, 256>>>(v, n, 3, 1.0f);
		fill_bf16<<<1024, 256>>>(g, n, 4, 1.0f);
		int32_t *dcu = new_cu(B, T);
		swerve_lightning_dims dims = {B, H, D, T};
		size_t wf = swerve_lightning_forward_workspace(&dims),
		       wb = swerve_lightning_backward_workspace(&dims);
		void *ws;
		CK(cudaMalloc(&ws, std::max(wf, wb) + 16));
		/* the workspace again, after a switch that changes the plan */
		auto regrow_ws = [&] {
			wf = swerve_lightning_forward_workspace(&dims);
			wb = swerve_lightning_backward_workspace(&dims);
			CK(cudaFree(ws));
			CK(cudaMalloc(&ws, std::max(wf, wb) + 16));
		};
		auto U = [](__nv_bfloat16 *p) { return reinterpret_cast<uint16_t *>(p); };
		auto fwd = [&] {
			SW(swerve_lightning_forward(U(o), nullptr, U(q), U(k), U(v), dcu, dsl,
			                            nullptr, &dims, ws, wf, 0));
		};
		auto bwd = [&] {
			SW(swerve_lightning_backward(U(dq), U(dk), U(dv), nullptr, U(q), U(k), U(v),
			                             U(g), nullptr, dcu, dsl, nullptr, &dims, ws,
			                             wb, 0));
		};
		auto fb = [&] {
			fwd();
			bwd();
		};
		{
			int gf, sf, gb, sb;
			const int kf = swerve_lightning_plan_(&dims, 1, &gf, &sf);
			const int kb = swerve_lightning_plan_(&dims, 3, &gb, &sb);
			setenv("SWERVE_LIGHTNING_WG_PLAN", "3", 1);
			int g3f, g3b, s3;
			swerve_lightning_plan_(&dims, 1, &g3f, &s3);
			swerve_lightning_plan_(&dims, 3, &g3b, &s3);
			unsetenv("SWERVE_LIGHTNING_WG_PLAN");
			setenv("SWERVE_LIGHTNING_KERNEL", "4", 1);
			int g4f, g4b;
			swerve_lightning_plan_(&dims, 1, &g4f, &s3);
			swerve_lightning_plan_(&dims, 3, &g4b, &s3);
			unsetenv("SWERVE_LIGHTNING_KERNEL"); /* each row below sets its own */
			printf("# plan B=%d T=%d: default kernels fwd %d bwd %d, fwd G=%d "
			       "stages=%d, "
			       "bwd G=%d stages=%d (third round's plan: fwd G=%d, bwd G=%d; V4: "
			       "fwd "
			       "G=%d, bwd G=%d)\n",
			       B, T, kf, kb, gf, sf, gb, sb, g3f, g3b, g4f, g4b);
			int subf, bitsf, subb, bitsb;
			const int ff = swerve_lightning_state_plan_(&dims, 1, &subf, &bitsf);
			const int fb_ = swerve_lightning_state_plan_(&dims, 3, &subb, &bitsb);
			printf("# state plan B=%d T=%d: fwd F=%d of %d tokens, window 2^-%d; bwd "
			       "F=%d of %d tokens, window 2^-%d (F 1, window 0 where G = 1)\n",
			       B, T, ff, subf, bitsf, fb_, subb, bitsb);
		}
		if (sweep4 &&
		    !no_v4) { /* V4: forward and backward time against the segment count */
			setenv("SWERVE_LIGHTNING_KERNEL", "4", 1);
			for (int gs : {1, 2, 3, 4, 5, 6, 8, 12, 16}) {
				if (gs > T / 128)
					continue;
				char val[16];
				snprintf(val, sizeof val, "%d", gs);
				setenv("SWERVE_LIGHTNING_SEGMENTS", val, 1);
				regrow_ws();
				printf("# sweep4 B=%d T=%d G=%d: fwd %.4f bwd %.4f ms\n", B, T, gs,
				       median_ms(fwd, 15), median_ms(bwd, 15));
			}
			fflush(stdout);
			unsetenv("SWERVE_LIGHTNING_KERNEL");
			unsetenv("SWERVE_LIGHTNING_SEGMENTS");
			regrow_ws();
		}
		if (sweep) { /* forward and backward time against the segment count */
			/* V3 in the form SWERVE_BENCH_SWEEP_FORM names (else the default) */
			setenv("SWERVE_LIGHTNING_KERNEL", "3", 1);
			const char *sf = getenv("SWERVE_BENCH_SWEEP_FORM");
			if (sf)
				setenv("SWERVE_LIGHTNING_WG_FORM", sf, 1);
			for (const char *stv : {"2", "4"}) {
				setenv("SWERVE_LIGHTNING_WG_STAGES", stv, 1);
				for (int gs : {1, 2, 3, 4, 5, 6, 8, 11, 12, 16, 24, 32}) {
					/* 4 stages: one CTA per SM, so only small grids */
					if (gs > T / 64 || (stv[0] == '4' && gs > 4))
						continue;
					char val[16];
					snprintf(val, sizeof val, "%d", gs);
					setenv("SWERVE_LIGHTNING_SEGMENTS", val, 1);
					regrow_ws();
					printf("# sweep B=%d T=%d stages=%s G=%d: fwd %.4f bwd "
					       "%.4f ms\n",
					       B, T, stv, gs, median_ms(fwd, 15),
					       median_ms(bwd, 15));
				}
			}
			fflush(stdout);
			unsetenv("SWERVE_LIGHTNING_KERNEL");
			unsetenv("SWERVE_LIGHTNING_WG_FORM");
			unsetenv("SWERVE_LIGHTNING_WG_STAGES");
			unsetenv("SWERVE_LIGHTNING_SEGMENTS");
			regrow_ws();
		}
		double flop = (double)B * T * H * (4.0 * 64 * D + 4.0 * D * D);
		double tensor = (double)n * 2;
		double floor_f = 4 * tensor / bw * 1e3, floor_b = 9 * tensor / bw * 1e3;
		char shape[32];
		snprintf(shape, sizeof shape, "%d,%d,%d,%d", B, T, H, D);
		/* Rows (eighth round): the current choice (V3 form 9, V4 form 3, the
		 * seventh round's kernel rules and segment plan; the state pass on
		 * sub-segments of <= 1024 tokens with the 2^-32 head windows); the
		 * seventh round's state pass (SWERVE_LIGHTNING_STATE_SPLIT=1,
		 * SWERVE_LIGHTNING_WINDOW=0: whole segments, every token); each change
		 * alone (sub-segments without the window, the window on whole
		 * segments); other splits (4, 16); V3 and V4 forced; then the default
		 * and the seventh round's again (the spread between two rows of one
		 * configuration is the run's noise). Each row sets
		 * SWERVE_LIGHTNING_KERNEL, _STATE_SPLIT and _WINDOW (or leaves them
		 * unset). The seventh round's other rows (the sixth round's forms and
		 * rules) are in git history. */
		/* Round 13: swerve-bsplit (and -again) runs the backward's overflow
		 * split (SWERVE_LIGHTNING_BWD_SPLIT=1; it applies at the policy's
		 * shape only: elsewhere the same kernels as `swerve`, i.e. a noise
		 * row), and a `# bwd alone` line compares the backward alone, default
		 * against split, interleaved, where the split applies. */
		struct row {
			const char *name, *kernel, *split, *window, *bsplit;
		};
		static const row rows[] = {
		        {"swerve", nullptr, nullptr, nullptr, nullptr},
		        {"swerve-bsplit", nullptr, nullptr, nullptr, "1"},
		        {"swerve-round7", nullptr, "1", "0", nullptr},
		        {"swerve-split-only", nullptr, nullptr, "0", nullptr},
		        {"swerve-window-only", nullptr, "1", nullptr, nullptr},
		        {"swerve-split4", nullptr, "4", nullptr, nullptr},
		        {"swerve-split16", nullptr, "16", nullptr, nullptr},
		        {"swerve-v3", "3", nullptr, nullptr, nullptr},
		        {"swerve-v4", "4", nullptr, nullptr, nullptr},
		        {"swerve-again", nullptr, nullptr, nullptr, nullptr},
		        {"swerve-bsplit-again", nullptr, nullptr, nullptr, "1"},
		        {"swerve-round7-again", nullptr, "1", "0", nullptr},
		};
		constexpr int NROW = sizeof rows / sizeof rows[0];
		auto put = [](const char *name, const char *v) {
			if (v)
				setenv(name, v, 1);
			else
				unsetenv(name);
		};
		for (int r = 0; r < (prof ? 1 : NROW); r++) {
			if (no_v4 && rows[r].kernel && strcmp(rows[r].kernel, "4") == 0)
				continue;
			put("SWERVE_LIGHTNING_KERNEL", rows[r].kernel);
			put("SWERVE_LIGHTNING_STATE_SPLIT", rows[r].split);
			put("SWERVE_LIGHTNING_WINDOW", rows[r].window);
			put("SWERVE_LIGHTNING_BWD_SPLIT", rows[r].bsplit);
			regrow_ws();
			double tf = median_ms(fwd, 30), tb = median_ms(fb, 20);
			printf("%-19s %-15s %9.3f %9.3f %9.1f %9.1f %8.2f %8.2f\n", rows[r].name,
			       shape, tf, tb, flop / tf * 1e-9, 3 * flop / tb * 1e-9, tf / floor_f,
			       tb / floor_b);
			fflush(stdout);
		}
		unsetenv("SWERVE_LIGHTNING_KERNEL");
		unsetenv("SWERVE_LIGHTNING_WG_FORM");
		unsetenv("SWERVE_LIGHTNING_WG_PLAN");
		unsetenv("SWERVE_LIGHTNING_V4_FORM");
		unsetenv("SWERVE_LIGHTNING_V4_RULES");
		unsetenv("SWERVE_LIGHTNING_STATE_SPLIT");
		unsetenv("SWERVE_LIGHTNING_WINDOW");
		unsetenv("SWERVE_LIGHTNING_BWD_SPLIT");
		/* the backward alone, default against the overflow split (the rule,
		 * then forced piece counts 6, 4 and 2), three interleaved pairs of
		 * medians each (the largest split workspace serves all) */
		static const char *const gs[] = {"1", "6", "4", "2"};
		int sg2 = 0, sseg = 0;
		setenv("SWERVE_LIGHTNING_BWD_SPLIT", "1", 1);
		const int soz = swerve_lightning_bwd_split_(&dims, &sg2, &sseg);
		size_t wmax = 0;
		for (const char *gv : gs) {
			setenv("SWERVE_LIGHTNING_BWD_SPLIT", gv, 1);
			wmax = std::max(wmax, swerve_lightning_backward_workspace(&dims));
		}
		unsetenv("SWERVE_LIGHTNING_BWD_SPLIT");
		CK(cudaFree(ws));
		CK(cudaMalloc(&ws, wmax + 16));
		wb = wmax;
		for (int v = 0; soz > 0 && !prof && v < 4; v++) {
			setenv("SWERVE_LIGHTNING_BWD_SPLIT", gs[v], 1);
			swerve_lightning_bwd_split_(&dims, &sg2, &sseg);
			unsetenv("SWERVE_LIGHTNING_BWD_SPLIT");
			double td[3], ts[3];
			for (int i = 0; i < 3; i++) {
				td[i] = median_ms(bwd, 30);
				setenv("SWERVE_LIGHTNING_BWD_SPLIT", gs[v], 1);
				ts[i] = median_ms(bwd, 30);
				unsetenv("SWERVE_LIGHTNING_BWD_SPLIT");
			}
			printf("# bwd alone %s: default %.4f %.4f %.4f ms, split=%s (%d overflow "
			       "sequence(s), %d segments of %d tokens) %.4f %.4f %.4f ms\n",
			       shape, td[0], td[1], td[2], gs[v], soz, sg2, sseg, ts[0], ts[1],
			       ts[2]);
			fflush(stdout);
		}
		cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(g), cudaFree(o), cudaFree(dq);
		cudaFree(dk), cudaFree(dv), cudaFree(dcu), cudaFree(ws);
	}
	/* decode: 64 sequences, one token each, state read and written once */
	{
		const int B = 64, H = 16, D = 128;
		put_slopes(dsl, H, 0, 32);
		const size_t ns = (size_t)B * H * D * D, nt = (size_t)B * H * D;
		float *st;
		__nv_bfloat16 *q, *k, *v, *o;
		CK(cudaMalloc(&st, ns * 4));
		CK(cudaMalloc(&q, nt * 2));
		CK(cudaMalloc(&k, nt * 2));
		CK(cudaMalloc(&v, nt * 2));
		CK(cudaMalloc(&o, nt * 2));
		fill_f32<<<1024, 256>>>(st, ns, 5);
		fill_bf16<<<64, 256>>>(q, nt, 6, 0.5f);
		fill_bf16<<<64, 256>>>(k, nt, 7, 0.5f);
		fill_bf16<<<64, 256>>>(v, nt, 8, 1.0f);
		auto U = [](__nv_bfloat16 *p) { return reinterpret_cast<uint16_t *>(p); };
		/* a decode loop launches step after step: time 20 steps back to back */
		const int steps = 20;
		auto decode20 = [&] {
			for (int i = 0; i < steps; i++)
				SW(swerve_lightning_decode(U(o), st, U(q), U(k), U(v), dsl, B, H, D,
				                           0));
		};
		double t = median_ms(decode20, 20) / steps;
		double bytes = 2.0 * ns * 4;
		/* the same bytes through a device-to-device copy: the ceiling for a
		 * transfer of this size (ramp-up and tail included) */
		float *st2;
		CK(cudaMalloc(&st2, ns * 4));
		auto copy20 = [&] {
			for (int i = 0; i < steps; i++)
				cudaMemcpyAsync(st2, st, ns * 4, cudaMemcpyDeviceToDevice);
		};
		double tc = median_ms(copy20, 20) / steps;
		cudaFree(st2);
		printf("# decode B=%d H=%d D=%d: %.4f ms, state read+write %.2f TB/s = %.0f%% of "
		       "the 1 GiB copy bandwidth (%.2f TB/s), %.0f%% of a same-size copy (%.4f "
		       "ms), "
		       "%.0f%% of 3.35 TB/s\n",
		       B, H, D, t, bytes / (t * 1e-3) / 1e12, 100.0 * bytes / (t * 1e-3) / bw,
		       bw / 1e12, 100.0 * tc / t, tc, 100.0 * bytes / (t * 1e-3) / 3.35e12);
		cudaFree(st), cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(o);
	}
	cudaFree(dsl);
	return 0;
}
