/* gpu_policy_loss.cu - benchmark of the fused policy loss (kernels/policy_loss.cu).
 *
 * `gpu_policy_loss policy`: the policy's head (policy/gpu.cu fused_head) at
 * its shape, T = 8192 tokens, d = 768, V = 32000: FP32, FP32_FWD and BF16
 * side by side with the automatic chunks, BF16 with the register and the
 * prefetching row kernels (round 9; PL_NO_BF16_ROWS=1 leaves them out),
 * then FP32_FWD at each chunk:row[:x|:p] of PL_CFGS (chunk_tokens:row_tokens,
 * 0 = automatic, x = two-pass rows, p = prefetching rows; default below)
 * and FP32 at each pair of PL_CFGS_FP32; each row then runs once more with
 * phase timing on (swerve_pl_profile:
 * synchronised after every phase) and prints where the time goes. A compact
 * table comes last.
 *
 * Without an argument: issue 9's sizes: N = 16384 tokens, d = 1024, V = 32768 and 131072, forward
 * + backward (CISPO, all tokens on), each precision mode. Prints one line per
 * configuration, "ROW|impl|V|mode|ms|peak GiB|TFLOP/s|logp err|extra GiB",
 * "|dX err" (max |dX - ref| / max |ref| over the sampled tokens' rows, ref
 * from the float64 logits), which tests/bench/gpu_policy_loss.sh puts beside the PyTorch baseline
 * (gpu_policy_loss.py) in one table.
 *   time     median of 10 timed calls (CUDA events) after 2 warm-ups
 *   peak     device memory in use after the call minus before any
 *            allocation (cudaMemGetInfo): inputs, outputs, workspace and
 *            cuBLAS's own workspace; the call allocates nothing else
 *   extra    the workspace alone (swerve_pl_workspace_size)
 *   TFLOP/s  6 N V d (forward, dX, dW products) / time
 *   logp err max over 512 sampled tokens of |logp - ref| / |ref|, ref from
 *            float64 logits (cublasDgemm) and a float64 log-sum-exp
 * Optional: PL_CHUNKS=512,1024,... adds FP32 rows at those chunk sizes. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utility>
#include <vector>

#include "kernels/policy_loss.h"
#include "tests/bench/gpu_bench.cuh"

static int N = 16384, D = 1024;
/* the policy shape's FP32_FWD and FP32 rows past the three baselines: C:R,
 * ":x" = the two-pass row kernel (row_reread 1), ":p" = the persistent kernel
 * that prefetches the next row (row_reread 2, round 9), ":l" / ":s" = round
 * 19's lean register kernel / the streaming one (row_reread 3 / 4), ":n" the
 * streaming one without cache hints (5) */
#define PL_CFGS_DEFAULT                                                                            \
	"0:0,0:0:p,2048:256:x,2048:512:x,2048:1024:x,8192:256:x,8192:512:x,8192:1024:x,2048:256,"  \
	"2048:"                                                                                    \
	"512,8192:256,8192:512,8192:1024,8192:2048,4096:1024"
#define PL_CFGS_FP32_DEFAULT "0:0,2048:512,4096:512"

static const int NSAMPLE = 512;

__global__ void to_bf16(const float *x, size_t n, __nv_bfloat16 *y)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void to_f64(const float *x, size_t n, double *y)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x)
		y[i] = (double)x[i];
}
__global__ void gather_x_f64(const __nv_bfloat16 *X, const int *idx, int d, double *out)
{
	int r = blockIdx.x;
	for (int k = threadIdx.x; k < d; k += blockDim.x)
		out[(size_t)r * d + k] = (double)__bfloat162float(X[(size_t)idx[r] * d + k]);
}
/* one block per sampled token: logp in double from double logits (V, T) column-major */
__global__ void ref_logp(const double *Z, int V, const int *idx, const int *y, double *out,
                         double *lse)
{
	const double *z = Z + (size_t)blockIdx.x * V;
	__shared__ double sh[256];
	double m = -INFINITY;
	for (int v = threadIdx.x; v < V; v += 256)
		m = fmax(m, z[v]);
	sh[threadIdx.x] = m;
	__syncthreads();
	for (int s = 128; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] = fmax(sh[threadIdx.x], sh[threadIdx.x + s]);
		__syncthreads();
	}
	m = sh[0];
	__syncthreads();
	double acc = 0.0;
	for (int v = threadIdx.x; v < V; v += 256)
		acc += exp(z[v] - m);
	sh[threadIdx.x] = acc;
	__syncthreads();
	for (int s = 128; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	if (threadIdx.x == 0) {
		out[blockIdx.x] = z[y[idx[blockIdx.x]]] - m - log(sh[0]);
		lse[blockIdx.x] = m + log(sh[0]);
	}
}
/* in place: logits -> CISPO logit gradient (token normalisation over N, cap 5) */
__global__ void ref_dz(double *Z, int V, const int *idx, const int *y, const double *logp,
                       const double *lse, const float *old, const float *adv, int n_tokens)
{
	double *z = Z + (size_t)blockIdx.x * V;
	const int t = idx[blockIdx.x];
	double r = exp(logp[blockIdx.x] - (double)old[t]);
	double coef = -(r < 5.0 ? r : 5.0) * (double)adv[t] / n_tokens;
	for (int v = threadIdx.x; v < V; v += 256)
		z[v] = coef * ((v == y[t] ? 1.0 : 0.0) - exp(z[v] - lse[blockIdx.x]));
}

static size_t used_bytes(void)
{
	size_t fr, tot;
	CK(cudaMemGetInfo(&fr, &tot));
	return tot - fr;
}

static const char *mode_name(enum swerve_pl_precision p)
{
	return p == SWERVE_PL_FP32       ? "fp32"
	       : p == SWERVE_PL_TF32     ? "tf32"
	       : p == SWERVE_PL_FP32_FWD ? "fp32fwd"
	                                 : "bf16";
}

/* one row's figures, for the policy-shape table */
struct row {
	char mode[64];
	int C, R;
	double ms, peak, tflops, lp_err, dx_err, extra, ph[SWERVE_PL_NPHASES];
};

static struct row bench(int V, enum swerve_pl_precision prec, int chunk, int rows,
                        struct swerve_pl_ctx *ctx, size_t base, int reread = 0)
{
	struct row res;
	memset(&res, 0, sizeof(res));
	const size_t nx = (size_t)N * D, nw = (size_t)V * D;
	float *Wt, *tmp, *old, *adv, *logp, *ent, *ratio, *loss, *dX, *dW;
	__nv_bfloat16 *X;
	int *y;
	uint8_t *clipped;
	CK(cudaMalloc(&Wt, nw * 4));
	CK(cudaMalloc(&tmp, nx * 4));
	CK(cudaMalloc(&X, nx * 2));
	CK(cudaMalloc(&old, N * 4));
	CK(cudaMalloc(&adv, N * 4));
	CK(cudaMalloc(&logp, N * 4));
	CK(cudaMalloc(&ent, N * 4));
	CK(cudaMalloc(&ratio, N * 4));
	CK(cudaMalloc(&loss, 4));
	CK(cudaMalloc(&clipped, N));
	CK(cudaMalloc(&y, N * 4));
	CK(cudaMalloc(&dX, nx * 4));
	CK(cudaMalloc(&dW, nw * 4));
	/* PL_WSCALE=f: W's spread times f (logits' spread ~2 f): the W-parts
	 * error grows with the logits' size, the accumulator's too */
	const float wscale = getenv("PL_WSCALE") ? (float)atof(getenv("PL_WSCALE")) : 1.0f;
	fill_normal<<<1024, 256>>>(Wt, nw, 2.0f * wscale / sqrtf((float)D), 1234 + V);
	fill_normal<<<1024, 256>>>(tmp, nx, 1.0f, 99);
	to_bf16<<<1024, 256>>>(tmp, nx, X);
	fill_normal<<<64, 256>>>(adv, N, 1.0f, 7);
	std::vector<int> hy(N);
	srand(5);
	for (auto &t : hy)
		t = rand() % V;
	CK(cudaMemcpy(y, hy.data(), N * 4, cudaMemcpyHostToDevice));
	CK(cudaFree(tmp));

	struct swerve_pl_opts o;
	swerve_pl_opts_init(&o, SWERVE_PL_CISPO);
	o.precision = prec;
	o.chunk_tokens = chunk;
	o.row_tokens = rows;
	o.row_reread = reread;
	struct swerve_pl_batch b = {N, D, V, y, old, adv, NULL, 0, 0, NULL};
	struct swerve_pl_out out = {logp, ent, ratio, clipped, loss, dX, dW};
	size_t wsz = swerve_pl_workspace_size(&b, &o);
	void *ws;
	CK(cudaMalloc(&ws, wsz));
	/* logp_old: this policy's own logp, shifted so some ratios are capped */
	struct swerve_pl_opts lo = o;
	lo.logprob_only = 1;
	SW(swerve_policy_loss_cuda(ctx, &out, &b, (const uint16_t *)X, Wt, &lo, ws, wsz, NULL));
	std::vector<float> h(N);
	CK(cudaMemcpy(h.data(), logp, N * 4, cudaMemcpyDeviceToHost));
	for (int t = 0; t < N; t++)
		h[t] += (t % 7 == 0) ? -2.0f : 0.1f * ((t % 5) - 2);
	CK(cudaMemcpy(old, h.data(), N * 4, cudaMemcpyHostToDevice));

	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	std::vector<float> ms;
	for (int it = 0; it < 12; it++) {
		CK(cudaEventRecord(e0));
		SW(swerve_policy_loss_cuda(ctx, &out, &b, (const uint16_t *)X, Wt, &o, ws, wsz,
		                           NULL));
		CK(cudaEventRecord(e1));
		CK(cudaEventSynchronize(e1));
		float t;
		CK(cudaEventElapsedTime(&t, e0, e1));
		if (it >= 2)
			ms.push_back(t);
	}
	CK(cudaGetLastError());
	const size_t peak = used_bytes() - base;
	std::sort(ms.begin(), ms.end());
	const double med = 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
	const double tflops = 6.0 * N * (double)V * D / (med * 1e-3) / 1e12;
	float hl;
	CK(cudaMemcpy(&hl, loss, 4, cudaMemcpyDeviceToHost));
	/* one more call with phase timing (synchronised per phase) */
	SW(swerve_pl_profile(ctx, 1));
	SW(swerve_policy_loss_cuda(ctx, &out, &b, (const uint16_t *)X, Wt, &o, ws, wsz, NULL));
	CK(cudaDeviceSynchronize());
	swerve_pl_profile_read(ctx, res.ph);
	SW(swerve_pl_profile(ctx, 0));
	CK(cudaFree(ws));

	/* logp error against float64 on sampled tokens */
	std::vector<int> hidx(NSAMPLE);
	for (int i = 0; i < NSAMPLE; i++)
		hidx[i] = (int)((long)i * N / NSAMPLE + (i * 37) % (N / NSAMPLE));
	int *idx;
	double *Xd, *Wd, *Zd, *ref, *rlse, *dXr;
	CK(cudaMalloc(&idx, NSAMPLE * 4));
	CK(cudaMemcpy(idx, hidx.data(), NSAMPLE * 4, cudaMemcpyHostToDevice));
	CK(cudaMalloc(&Xd, (size_t)NSAMPLE * D * 8));
	CK(cudaMalloc(&Wd, nw * 8));
	CK(cudaMalloc(&Zd, (size_t)NSAMPLE * V * 8));
	CK(cudaMalloc(&ref, NSAMPLE * 8));
	CK(cudaMalloc(&rlse, NSAMPLE * 8));
	CK(cudaMalloc(&dXr, (size_t)NSAMPLE * D * 8));
	gather_x_f64<<<NSAMPLE, 256>>>(X, idx, D, Xd);
	to_f64<<<1024, 256>>>(Wt, nw, Wd);
	cublasHandle_t hb;
	cublasCreate(&hb);
	const double one = 1.0, zero = 0.0;
	/* Z^T (V x T) = W (V x d) . X^T, column-major */
	if (cublasDgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, V, NSAMPLE, D, &one, Wd, D, Xd, D, &zero, Zd,
	                V) != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cublasDgemm failed\n");
		exit(1);
	}
	ref_logp<<<NSAMPLE, 256>>>(Zd, V, idx, y, ref, rlse);
	ref_dz<<<NSAMPLE, 256>>>(Zd, V, idx, y, ref, rlse, old, adv, N);
	/* dX^T (d x T) = W^T (d x V) . dZ^T (V x T), column-major */
	if (cublasDgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, D, NSAMPLE, V, &one, Wd, D, Zd, V, &zero, dXr,
	                D) != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cublasDgemm failed\n");
		exit(1);
	}
	CK(cudaDeviceSynchronize());
	cublasDestroy(hb);
	std::vector<double> hr(NSAMPLE);
	CK(cudaMemcpy(hr.data(), ref, NSAMPLE * 8, cudaMemcpyDeviceToHost));
	CK(cudaMemcpy(h.data(), logp, N * 4, cudaMemcpyDeviceToHost));
	double err = 0.0;
	for (int i = 0; i < NSAMPLE; i++) {
		double e = fabs((double)h[hidx[i]] - hr[i]) / fabs(hr[i]);
		err = isnan(e) ? INFINITY : fmax(err, e);
	}
	std::vector<double> hdxr((size_t)NSAMPLE * D);
	std::vector<float> hdx(D);
	CK(cudaMemcpy(hdxr.data(), dXr, hdxr.size() * 8, cudaMemcpyDeviceToHost));
	double dxe = 0.0, dxm = 0.0;
	for (int i = 0; i < NSAMPLE; i++) {
		CK(cudaMemcpy(hdx.data(), dX + (size_t)hidx[i] * D, D * 4, cudaMemcpyDeviceToHost));
		for (int k = 0; k < D; k++) {
			double r = hdxr[(size_t)i * D + k];
			dxm = fmax(dxm, fabs(r));
			double e = fabs((double)hdx[k] - r);
			dxe = isnan(e) ? INFINITY : fmax(dxe, e);
		}
	}
	char name[64];
	const int C = swerve_pl_chunk_tokens(N, V, &o), R = swerve_pl_row_tokens(N, V, &o);
	static const char *const kerns[] = {"",      " 2-pass", " prefetch",
	                                    " lean", " stream", " stream-plain"};
	const char *kern = reread >= 0 && reread <= 5 ? kerns[reread] : " ?";
	/* FP32 / FP32_FWD rows name their W parts: W2 (the default since round
	 * 20) or W3 (SWERVE_PL_WPARTS=3, rounds 9-19) */
	const char *wp = getenv("SWERVE_PL_WPARTS");
	const char *w2 = prec != SWERVE_PL_FP32 && prec != SWERVE_PL_FP32_FWD ? ""
	                 : wp && !strcmp(wp, "3")                             ? " W3"
	                                                                      : " W2";
	if (R < C)
		snprintf(name, sizeof(name), "%s%s C=%d R=%d%s", mode_name(prec), w2, C, R, kern);
	else
		snprintf(name, sizeof(name), "%s%s C=%d%s", mode_name(prec), w2, C, kern);
	printf("ROW|swerve|%d|%s|%.2f|%.3f|%.1f|%.2e|%.3f|%.2e\n", V, name, med,
	       peak / 1073741824.0, tflops, err, wsz / 1073741824.0, dxe / dxm);
	printf("PHASES|%d|%s", V, name);
	for (int ph = 0; ph < SWERVE_PL_NPHASES; ph++)
		printf("|%s %.3f", swerve_pl_phase_name(ph), res.ph[ph]);
	printf("\n");
	snprintf(res.mode, sizeof(res.mode), "%s", name);
	res.C = C, res.R = R, res.ms = med, res.peak = peak / 1073741824.0, res.tflops = tflops;
	res.lp_err = err, res.dx_err = dxe / dxm, res.extra = wsz / 1073741824.0;
	fprintf(stderr,
	        "  swerve V=%d %s: loss %.6g, times(ms) min %.2f max %.2f, dX err (max/max) %.2e\n",
	        V, name, hl, ms.front(), ms.back(), dxe / dxm);
	fflush(stdout);
	cudaFree(idx), cudaFree(Xd), cudaFree(Wd), cudaFree(Zd), cudaFree(ref), cudaFree(rlse),
	        cudaFree(dXr);
	cudaFree(Wt), cudaFree(X), cudaFree(old), cudaFree(adv), cudaFree(logp), cudaFree(ent),
	        cudaFree(ratio);
	cudaFree(loss), cudaFree(clipped), cudaFree(y), cudaFree(dX), cudaFree(dW);
	cudaEventDestroy(e0), cudaEventDestroy(e1);
	return res;
}

/* "C:R[:x|:p|:l|:s|:n],..." -> (chunk_tokens, row_tokens, row_reread = 1 for
 * x, 2 for p, 3 for l (lean), 4 for s (stream), 5 for n (stream-plain)) */
struct cfg3 {
	int C, R, reread;
};
static std::vector<cfg3> cfg_list(const char *env, const char *dflt)
{
	std::vector<cfg3> v;
	const char *s0 = getenv(env) ? getenv(env) : dflt;
	for (char *s = (char *)s0; *s;) {
		cfg3 c = {(int)strtol(s, &s, 10), 0, 0};
		if (*s == ':')
			c.R = (int)strtol(s + 1, &s, 10);
		if (*s == ':' && s[1] && strchr("xplsn", s[1]))
			c.reread = (int)(strchr("xplsn", s[1]) - "xplsn") + 1, s += 2;
		if (c.C >= 0 && c.R >= 0)
			v.push_back(c);
		if (*s != ',')
			break;
		s++;
	}
	return v;
}

/* the policy's head: T 8192, d 768, V 32000 */
static void policy_shape(void)
{
	N = 8192;
	D = 768;
	const int V = 32000;
	std::vector<struct row> r;
	size_t base = used_bytes();
	struct swerve_pl_ctx *ctx;
	SW(swerve_pl_ctx_new(&ctx));
	/* the baseline: FP32 as issue 9 left it (automatic chunk, two-pass rows) */
	r.push_back(bench(V, SWERVE_PL_FP32, 0, 0, ctx, base, 1));
	r.push_back(bench(V, SWERVE_PL_FP32_FWD, 0, 0, ctx, base, 1));
	r.push_back(bench(V, SWERVE_PL_BF16, 0, 0, ctx, base, 1));
	/* round 9: BF16 with the register and the prefetching row kernels */
	if (!getenv("PL_NO_BF16_ROWS")) {
		r.push_back(bench(V, SWERVE_PL_BF16, 0, 0, ctx, base, 0));
		r.push_back(bench(V, SWERVE_PL_BF16, 0, 0, ctx, base, 2));
	}
	for (auto c : cfg_list("PL_CFGS", PL_CFGS_DEFAULT))
		r.push_back(bench(V, SWERVE_PL_FP32_FWD, c.C, c.R, ctx, base, c.reread));
	for (auto c : cfg_list("PL_CFGS_FP32", PL_CFGS_FP32_DEFAULT))
		r.push_back(bench(V, SWERVE_PL_FP32, c.C, c.R, ctx, base, c.reread));
	/* round 20: W in three bf16 parts (SWERVE_PL_WPARTS=3, rounds 9-19), beside
	 * the default's two */
	if (!getenv("SWERVE_PL_WPARTS")) {
		setenv("SWERVE_PL_WPARTS", "3", 1);
		r.push_back(bench(V, SWERVE_PL_FP32_FWD, 0, 0, ctx, base, 0));
		r.push_back(bench(V, SWERVE_PL_FP32, 0, 0, ctx, base, 0));
		unsetenv("SWERVE_PL_WPARTS");
		r.push_back(bench(V, SWERVE_PL_FP32_FWD, 0, 0, ctx, base, 0));
	}
	swerve_pl_ctx_free(ctx);
	cudaDeviceProp p;
	CK(cudaGetDeviceProperties(&p, 0));
	printf("\nthe policy's LM head + loss, T=%d d=%d V=%d, CISPO forward+backward, card: %s "
	       "(L2 %d MB)\n",
	       N, D, V, p.name, p.l2CacheSize >> 20);
	printf("ms: median of 10 after 2 warm-ups; phases: one more call, synchronised per "
	       "phase (ms)\n");
	printf("%-26s %7s %6s %7s %9s %9s %6s | %6s %6s %6s %6s %6s %6s %6s %7s\n", "mode", "ms",
	       "vsFP32", "TFLOP/s", "logp err", "dX err", "extra", "prep", "xcopy", "fwd", "row",
	       "dX", "dW", "loss", "sum");
	for (auto &x : r) {
		double sum = 0;
		for (double v : x.ph)
			sum += v;
		printf("%-26s %7.3f %5.2fx %7.1f %9.2e %9.2e %6.3f | %6.3f %6.3f %6.3f %6.3f "
		       "%6.3f %6.3f %6.3f %7.3f\n",
		       x.mode, x.ms, r[0].ms / x.ms, x.tflops, x.lp_err, x.dx_err, x.extra, x.ph[0],
		       x.ph[1], x.ph[2], x.ph[3], x.ph[4], x.ph[5], x.ph[6], sum);
	}
}

int main(int argc, char **argv)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
		printf("gpu_policy_loss: skipped: no CUDA device\n");
		return 0;
	}
	cudaDeviceProp p;
	CK(cudaGetDeviceProperties(&p, 0));
	CK(cudaFree(0));
	fprintf(stderr, "device: %s, %d SMs\n", p.name, p.multiProcessorCount);
	if (argc > 1 && !strcmp(argv[1], "policy")) {
		policy_shape();
		return 0;
	}
	std::vector<int> chunks;
	if (getenv("PL_CHUNKS"))
		for (char *s = getenv("PL_CHUNKS"); *s;) {
			chunks.push_back((int)strtol(s, &s, 10));
			if (*s == ',')
				s++;
			else
				break;
		}
	const int Vs[] = {32768, 131072};
	for (int V : Vs) {
		/* base excludes the cuBLAS handle of this context: count it per row */
		size_t base = used_bytes();
		struct swerve_pl_ctx *ctx;
		SW(swerve_pl_ctx_new(&ctx));
		bench(V, SWERVE_PL_FP32, 0, 0, ctx, base);
		for (int c : chunks)
			bench(V, SWERVE_PL_FP32, c, 0, ctx, base);
		bench(V, SWERVE_PL_TF32, 0, 0, ctx, base);
		bench(V, SWERVE_PL_FP32_FWD, 0, 0, ctx, base);
		bench(V, SWERVE_PL_BF16, 0, 0, ctx, base);
		if (!getenv("SWERVE_PL_WPARTS")) { /* round 20: W in three parts */
			setenv("SWERVE_PL_WPARTS", "3", 1);
			bench(V, SWERVE_PL_FP32, 0, 0, ctx, base);
			bench(V, SWERVE_PL_FP32_FWD, 0, 0, ctx, base);
			unsetenv("SWERVE_PL_WPARTS");
		}
		swerve_pl_ctx_free(ctx);
	}
	return 0;
}
