/* test_policy_flash.cu - the policy's flash softmax attention (policy/
 * gpu_flash.cu) against a plain CPU reference in double, every
 * implementation (fa2, fa2_64, wmma), on fresh random inputs each run (the
 * seed is printed), every output poisoned (NaN) before the call.
 *
 * Shapes: packed variable-length sequences of 65, 1, 2048, 63 and 300 tokens
 * (lengths that are and are not multiples of the 64-row tiles, a sequence of
 * one token, offsets that are not tile-aligned), GQA groups 1 (H = KV = 2) and
 * 3 (H = 3, KV = 1). Forward: o and lse; backward: dq, dk, dv with lse and
 * Dsum = rowsum(dout * o) from the reference. Tolerances, as bf16 operands
 * allow: ||gpu - ref|| / ||ref|| <= 1.5e-2 per tensor and the worst element
 * within 5e-2 of max |ref| (lse: 2e-2 absolute); every element finite. The
 * worst element of each tensor is printed. A last test compares fa2 with
 * wmma at the benchmark shape (4 x 2048, H 12, KV 4), too large for the
 * reference. Round 19: fa2_par (dQ on a second stream) in every case and
 * bit for bit fa2 at the benchmark shape; policy_flash_rope bit for bit
 * the elem form (policy_flash_rope_elem, gpu.cu's k_rotary until round
 * 19); the switches' spellings. */
#include <cuda_runtime.h>

#include <atomic>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <thread>
#include <time.h>
#include <vector>

#include "policy/gpu_flash.h"
#include "tests/gpu/gpu_check.h"

extern "C" {
#include "sandbox/error.h"
}

#define DH 64

static int have_gpu(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/* runs fn(i) for i in [0, n) on every hardware thread */
template <class F> static void par_for(int n, F fn)
{
	std::atomic<int> next(0);
	unsigned nt = std::thread::hardware_concurrency();
	std::vector<std::thread> th;
	for (unsigned t = 0; t < (nt ? nt : 1); t++)
		th.emplace_back([&]() {
			for (int i; (i = next++) < n;)
				fn(i);
		});
	for (auto &t : th)
		t.join();
}

struct problem {
	std::vector<int> cu; /* n_seqs + 1 */
	int T, H, KV, maxlen;
	std::vector<float> q, k, v, dout; /* (T, H|KV, 64) */
	std::vector<double> o, lse, D;    /* reference forward, D = rowsum(dout o) */
	std::vector<double> dq, dk, dv;   /* reference backward */
	std::vector<int> seq;             /* token -> sequence */
};

static double dot64(const float *a, const float *b)
{
	double s = 0;
	for (int c = 0; c < DH; c++)
		s += (double)a[c] * b[c];
	return s;
}

static void make(struct problem *p, const int *lens, int n, int H, int KV, double qk_scale)
{
	p->cu.assign(1, 0);
	p->maxlen = 0;
	for (int i = 0; i < n; i++) {
		p->cu.push_back(p->cu.back() + lens[i]);
		if (lens[i] > p->maxlen)
			p->maxlen = lens[i];
	}
	p->T = p->cu.back(), p->H = H, p->KV = KV;
	p->seq.resize(p->T);
	for (int s = 0; s < n; s++)
		for (int t = p->cu[s]; t < p->cu[s + 1]; t++)
			p->seq[t] = s;
	size_t nq = (size_t)p->T * H * DH, nk = (size_t)p->T * KV * DH;
	p->q.resize(nq), p->dout.resize(nq), p->k.resize(nk), p->v.resize(nk);
	for (auto &x : p->q)
		x = (float)(qk_scale * gpu_nrand());
	for (auto &x : p->k)
		x = (float)(qk_scale * gpu_nrand());
	for (auto &x : p->v)
		x = (float)gpu_nrand();
	for (auto &x : p->dout)
		x = (float)gpu_nrand();
}

/* the reference: softmax(scale q k^T, causal within each sequence) v, in double */
static void reference(struct problem *p)
{
	int T = p->T, H = p->H, KV = p->KV, grp = H / KV;
	double scale = 1.0 / sqrt((double)DH);
	p->o.assign((size_t)T * H * DH, 0), p->lse.assign((size_t)T * H, 0);
	p->D.assign((size_t)T * H, 0), p->dq.assign((size_t)T * H * DH, 0);
	p->dk.assign((size_t)T * KV * DH, 0), p->dv.assign((size_t)T * KV * DH, 0);
	/* forward, D and dq: one query row of one head per item */
	par_for(T * H, [&](int it) {
		int i = it / H, h = it % H, kh = h / grp, t0 = p->cu[p->seq[i]];
		const float *qi = &p->q[((size_t)i * H + h) * DH],
		            *gi = &p->dout[((size_t)i * H + h) * DH];
		std::vector<double> s(i - t0 + 1);
		double m = -INFINITY, l = 0, D = 0;
		for (int j = t0; j <= i; j++) {
			s[j - t0] = scale * dot64(qi, &p->k[((size_t)j * KV + kh) * DH]);
			m = fmax(m, s[j - t0]);
		}
		for (double x : s)
			l += exp(x - m);
		double lse = m + log(l), *o = &p->o[((size_t)i * H + h) * DH];
		for (int j = t0; j <= i; j++) {
			double pj = exp(s[j - t0] - lse);
			const float *vj = &p->v[((size_t)j * KV + kh) * DH];
			for (int c = 0; c < DH; c++)
				o[c] += pj * vj[c];
		}
		for (int c = 0; c < DH; c++)
			D += gi[c] * o[c];
		p->lse[(size_t)i * H + h] = lse;
		p->D[(size_t)i * H + h] = D;
		double *dq = &p->dq[((size_t)i * H + h) * DH];
		for (int j = t0; j <= i; j++) {
			double pj = exp(s[j - t0] - lse);
			double ds = pj * (dot64(gi, &p->v[((size_t)j * KV + kh) * DH]) - D) * scale;
			const float *kj = &p->k[((size_t)j * KV + kh) * DH];
			for (int c = 0; c < DH; c++)
				dq[c] += ds * kj[c];
		}
	});
	/* dk, dv: one key row of one KV head per item, over the group's heads */
	par_for(T * KV, [&](int it) {
		int j = it / KV, kh = it % KV, t1 = p->cu[p->seq[j] + 1];
		const float *kj = &p->k[((size_t)j * KV + kh) * DH],
		            *vj = &p->v[((size_t)j * KV + kh) * DH];
		double *dk = &p->dk[((size_t)j * KV + kh) * DH],
		       *dv = &p->dv[((size_t)j * KV + kh) * DH];
		for (int h = kh * grp; h < (kh + 1) * grp; h++)
			for (int i = j; i < t1; i++) {
				const float *qi = &p->q[((size_t)i * H + h) * DH];
				const float *gi = &p->dout[((size_t)i * H + h) * DH];
				double pij = exp(scale * dot64(qi, kj) - p->lse[(size_t)i * H + h]);
				double ds = pij * (dot64(gi, vj) - p->D[(size_t)i * H + h]) * scale;
				for (int c = 0; c < DH; c++) {
					dk[c] += ds * qi[c];
					dv[c] += pij * gi[c];
				}
			}
	});
}

/* compares n values; 0 when within tolerance (abs_tol > 0: absolute only) */
static int compare(const char *what, const float *got, const double *ref, size_t n, double abs_tol)
{
	double e2 = 0, r2 = 0, emax = 0, rmax = 0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(got[i])) {
			fprintf(stderr, "  %s[%zu] = %g: not written or not finite\n", what, i,
			        (double)got[i]);
			return 1;
		}
		double e = fabs(got[i] - ref[i]);
		e2 += e * e, r2 += ref[i] * ref[i];
		rmax = fmax(rmax, fabs(ref[i]));
		if (e > emax)
			emax = e, at = i;
	}
	double rel = r2 > 0 ? sqrt(e2 / r2) : sqrt(e2);
	printf("  %-4s norm rel %.2e, worst [%zu] %.6g vs %.6g (|err| %.2e, %.2e of max|ref| "
	       "%.3g)\n",
	       what, rel, at, (double)got[at], ref[at], emax, rmax > 0 ? emax / rmax : emax, rmax);
	if (abs_tol > 0)
		return emax > abs_tol;
	return rel > 1.5e-2 || emax > 5e-2 * rmax;
}

template <class T> static T *dev_copy(const std::vector<T> &x)
{
	T *d = NULL;
	if (cudaMalloc((void **)&d, x.size() * sizeof(T) + 16) != cudaSuccess)
		return NULL;
	cudaMemcpy(d, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice);
	return d;
}

static std::vector<float> to_float(const std::vector<double> &x)
{
	return std::vector<float>(x.begin(), x.end());
}

static const char *impl_name(enum policy_flash_impl i)
{
	return i == POLICY_FLASH_FA2       ? "fa2"
	       : i == POLICY_FLASH_FA2_64  ? "fa2_64"
	       : i == POLICY_FLASH_FA2_PAR ? "fa2_par"
	                                   : "wmma";
}

/* one problem through every implementation against the reference */
static int check_problem(const int *lens, int n, int H, int KV)
{
	if (!have_gpu())
		return GPU_SKIP;
	struct problem p;
	make(&p, lens, n, H, KV, 1.0);
	reference(&p);
	size_t nq = (size_t)p.T * H * DH, nk = (size_t)p.T * KV * DH, nr = (size_t)p.T * H;
	std::vector<float> lsef = to_float(p.lse), Df = to_float(p.D);
	float *q = dev_copy(p.q), *k = dev_copy(p.k), *v = dev_copy(p.v), *g = dev_copy(p.dout);
	float *lse_in = dev_copy(lsef), *D = dev_copy(Df), *o, *lse, *dq, *dk, *dv;
	int *cu = dev_copy(p.cu), fails = 0;
	CHECK(q && k && v && g && lse_in && D && cu, "cudaMalloc");
	CK(cudaMalloc(&o, nq * 4));
	CK(cudaMalloc(&dq, nq * 4));
	CK(cudaMalloc(&lse, nr * 4));
	CK(cudaMalloc(&dk, nk * 4));
	CK(cudaMalloc(&dv, nk * 4));
	CHECK(policy_flash_setup() == 0, "%s", swerve_error_last());
	std::vector<float> ho(nq), hl(nr), hq(nq), hk(nk), hv(nk);
	const enum policy_flash_impl impls[] = {POLICY_FLASH_FA2, POLICY_FLASH_FA2_64,
	                                        POLICY_FLASH_FA2_PAR, POLICY_FLASH_WMMA};
	for (enum policy_flash_impl im : impls) {
		printf(" %s, T %d, H %d, KV %d:\n", impl_name(im), p.T, H, KV);
		CHECK(policy_flash_select(im) == 0, "%s", swerve_error_last());
		CK(cudaMemset(o, 0xff, nq * 4));
		CK(cudaMemset(lse, 0xff, nr * 4));
		CK(cudaMemset(dq, 0xff, nq * 4));
		CK(cudaMemset(dk, 0xff, nk * 4));
		CK(cudaMemset(dv, 0xff, nk * 4));
		CHECK(policy_flash_fwd(o, lse, q, k, v, cu, n, p.maxlen, H, KV) == 0, "%s",
		      swerve_error_last());
		CHECK(policy_flash_bwd(dq, dk, dv, g, D, q, k, v, lse_in, cu, n, p.maxlen, H, KV) ==
		              0,
		      "%s", swerve_error_last());
		CK(cudaDeviceSynchronize());
		CK(cudaMemcpy(ho.data(), o, nq * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(hl.data(), lse, nr * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(hq.data(), dq, nq * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(hk.data(), dk, nk * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(hv.data(), dv, nk * 4, cudaMemcpyDeviceToHost));
		fails += compare("o", ho.data(), p.o.data(), nq, 0);
		fails += compare("lse", hl.data(), p.lse.data(), nr, 2e-2);
		fails += compare("dq", hq.data(), p.dq.data(), nq, 0);
		fails += compare("dk", hk.data(), p.dk.data(), nk, 0);
		fails += compare("dv", hv.data(), p.dv.data(), nk, 0);
	}
	CHECK(policy_flash_select(POLICY_FLASH_FA2) == 0, "%s", swerve_error_last());
	cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(g), cudaFree(lse_in), cudaFree(D);
	cudaFree(o), cudaFree(lse), cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(cu);
	CHECK(fails == 0, "%d tensors out of tolerance (above)", fails);
	return 0;
}

static const int mixed[] = {65, 1, 2048, 63, 300};

static int group1_varlen(void)
{
	return check_problem(mixed, 5, 2, 2);
}

static int group3_varlen(void)
{
	return check_problem(mixed, 5, 3, 1);
}

static int group3_short(void)
{
	static const int lens[] = {1, 1, 7, 64, 128, 129};
	return check_problem(lens, 6, 6, 2);
}

/* fa2 against wmma at the benchmark shape (no reference: 4 x 2048 x 12 heads) */
static int fa2_matches_wmma_bench_shape(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	const int n = 4, L = 2048, H = 12, KV = 4, T = n * L;
	size_t nq = (size_t)T * H * DH, nk = (size_t)T * KV * DH, nr = (size_t)T * H;
	std::vector<float> hq(nq), hk(nk), hv(nk), hg(nq), hD(nr);
	std::vector<int> hcu(n + 1);
	for (int s = 0; s <= n; s++)
		hcu[s] = s * L;
	for (auto *x : {&hq, &hk, &hv, &hg})
		for (auto &y : *x)
			y = (float)gpu_nrand();
	float *q = dev_copy(hq), *k = dev_copy(hk), *v = dev_copy(hv), *g = dev_copy(hg);
	int *cu = dev_copy(hcu);
	float *out[2][5]; /* o, lse, dq, dk, dv per implementation */
	size_t sz[5] = {nq, nr, nq, nk, nk};
	CHECK(q && k && v && g && cu, "cudaMalloc");
	CHECK(policy_flash_setup() == 0, "%s", swerve_error_last());
	for (int i = 0; i < 2; i++) {
		for (int j = 0; j < 5; j++) {
			CK(cudaMalloc(&out[i][j], sz[j] * 4));
			CK(cudaMemset(out[i][j], 0xff, sz[j] * 4));
		}
		CHECK(policy_flash_select(i ? POLICY_FLASH_WMMA : POLICY_FLASH_FA2) == 0, "%s",
		      swerve_error_last());
		CHECK(policy_flash_fwd(out[i][0], out[i][1], q, k, v, cu, n, L, H, KV) == 0, "%s",
		      swerve_error_last());
		/* Dsum from fa2's o: both backward passes see the same inputs */
		if (i == 0) {
			std::vector<float> ho(nq);
			CK(cudaMemcpy(ho.data(), out[0][0], nq * 4, cudaMemcpyDeviceToHost));
			for (size_t r = 0; r < nr; r++) {
				double s = 0;
				for (int c = 0; c < DH; c++)
					s += (double)hg[r * DH + c] * ho[r * DH + c];
				hD[r] = (float)s;
			}
		}
		float *D = dev_copy(hD);
		CHECK(D, "cudaMalloc");
		CHECK(policy_flash_bwd(out[i][2], out[i][3], out[i][4], g, D, q, k, v, out[0][1],
		                       cu, n, L, H, KV) == 0,
		      "%s", swerve_error_last());
		CK(cudaDeviceSynchronize());
		cudaFree(D);
	}
	static const char *names[5] = {"o", "lse", "dq", "dk", "dv"};
	int fails = 0;
	printf(" fa2 vs wmma, 4 x 2048, H 12, KV 4:\n");
	for (int j = 0; j < 5; j++) {
		std::vector<float> a(sz[j]), b(sz[j]);
		CK(cudaMemcpy(a.data(), out[0][j], sz[j] * 4, cudaMemcpyDeviceToHost));
		CK(cudaMemcpy(b.data(), out[1][j], sz[j] * 4, cudaMemcpyDeviceToHost));
		std::vector<double> bd(b.begin(), b.end());
		fails += compare(names[j], a.data(), bd.data(), sz[j], j == 1 ? 2e-2 : 0);
		cudaFree(out[0][j]), cudaFree(out[1][j]);
	}
	policy_flash_select(POLICY_FLASH_FA2);
	cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(g), cudaFree(cu);
	CHECK(fails == 0, "%d tensors differ beyond tolerance", fails);
	return 0;
}

/* Round 19: fa2_par (fa2's kernels, dQ on a second stream) against fa2 bit
 * for bit at the benchmark shape (4 x 2048, H 12, KV 4), the outputs
 * poisoned before each call; the backward twice under fa2_par (a second
 * fork and join on the same events) */
static int fa2_par_bitwise_fa2(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	const int n = 4, L = 2048, H = 12, KV = 4, T = n * L;
	size_t nq = (size_t)T * H * DH, nk = (size_t)T * KV * DH, nr = (size_t)T * H;
	std::vector<float> hq(nq), hk(nk), hv(nk), hg(nq), hD(nr);
	std::vector<int> hcu(n + 1);
	for (int s = 0; s <= n; s++)
		hcu[s] = s * L;
	for (auto *x : {&hq, &hk, &hv, &hg})
		for (auto &y : *x)
			y = (float)gpu_nrand();
	for (auto &y : hD)
		y = (float)(0.3 * gpu_nrand());
	float *q = dev_copy(hq), *k = dev_copy(hk), *v = dev_copy(hv), *g = dev_copy(hg);
	float *D = dev_copy(hD), *o, *lse, *d3[3][3];
	int *cu = dev_copy(hcu), fails = 0;
	size_t sz[3] = {nq, nk, nk};
	CHECK(q && k && v && g && D && cu, "cudaMalloc");
	CK(cudaMalloc(&o, nq * 4));
	CK(cudaMalloc(&lse, nr * 4));
	CHECK(policy_flash_setup() == 0, "%s", swerve_error_last());
	CHECK(policy_flash_select(POLICY_FLASH_FA2) == 0, "%s", swerve_error_last());
	CHECK(policy_flash_fwd(o, lse, q, k, v, cu, n, L, H, KV) == 0, "%s", swerve_error_last());
	for (int r = 0; r < 3; r++) { /* fa2, fa2_par, fa2_par again */
		for (int j = 0; j < 3; j++) {
			CK(cudaMalloc(&d3[r][j], sz[j] * 4));
			CK(cudaMemset(d3[r][j], 0xff, sz[j] * 4));
		}
		CHECK(policy_flash_select(r ? POLICY_FLASH_FA2_PAR : POLICY_FLASH_FA2) == 0, "%s",
		      swerve_error_last());
		CHECK(policy_flash_bwd(d3[r][0], d3[r][1], d3[r][2], g, D, q, k, v, lse, cu, n, L,
		                       H, KV) == 0,
		      "%s", swerve_error_last());
	}
	CK(cudaDeviceSynchronize());
	static const char *names[3] = {"dq", "dk", "dv"};
	for (int j = 0; j < 3; j++) {
		std::vector<float> a(sz[j]), b(sz[j]);
		CK(cudaMemcpy(a.data(), d3[0][j], sz[j] * 4, cudaMemcpyDeviceToHost));
		for (int r = 1; r < 3; r++) {
			size_t diff = 0, first = 0;
			CK(cudaMemcpy(b.data(), d3[r][j], sz[j] * 4, cudaMemcpyDeviceToHost));
			for (size_t i = 0; i < sz[j]; i++)
				if (memcmp(&a[i], &b[i], 4) && !diff++)
					first = i;
			printf(" fa2_par (call %d) vs fa2, %s: %zu of %zu elements differ%s\n", r,
			       names[j], diff, sz[j], diff ? " <-- FAIL" : "");
			if (diff)
				printf("  first at %zu: %.9g vs %.9g\n", first, b[first], a[first]);
			fails += diff != 0;
		}
	}
	for (int r = 0; r < 3; r++)
		for (int j = 0; j < 3; j++)
			cudaFree(d3[r][j]);
	policy_flash_select(POLICY_FLASH_FA2);
	cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(g), cudaFree(D), cudaFree(o);
	cudaFree(lse), cudaFree(cu);
	CHECK(fails == 0, "%d tensors differ from fa2's", fails);
	return 0;
}

/* Round 19: policy_flash_rope (POLICY_GPU_FLASH_ROPE=fused) against the
 * elem form (policy_flash_rope_elem) bit for bit, on q (T, H, 64) and k (T, KV, 64) with
 * random values and positions (packed sequences' positions, and large ones
 * up to 2^20 for the long argument reduction), both directions, for the
 * model's rotary width (8, theta 1e7), the trainer's (32, 1e4) and the whole
 * head (64, 5e5), H 12 / KV 4 and H 3 / KV 1 (a partial group of 4 heads),
 * k alone (q NULL); every element also within 1e-5 (relative to the row's
 * scale) of a double rotation on the CPU, the inverse undoing the forward to
 * 1e-5 */
static int rope_fused_bitwise_k_rotary(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	static const struct {
		int H, KV, rd;
		float theta;
		int q_null;
	} cases[] = {{12, 4, 8, 1e7f, 0},
	             {12, 4, 32, 1e4f, 0},
	             {3, 1, 64, 5e5f, 0},
	             {3, 1, 32, 1e4f, 1},
	             {5, 5, 16, 1e4f, 0}};
	const int T = 2477, d = DH;
	int fails = 0;
	std::vector<int> hp(T);
	for (int t = 0; t < T; t++)
		hp[t] = t < 2000 ? t % 700 : (int)(gpu_urand() * (1 << 20));
	int *pos = dev_copy(hp);
	CHECK(pos, "cudaMalloc");
	for (const auto &c : cases)
		for (int inv = 0; inv < 2; inv++) {
			size_t nq = (size_t)T * c.H * d, nk = (size_t)T * c.KV * d;
			std::vector<float> hq(nq), hk(nk), a(nq), b(nq), ak(nk), bk(nk);
			for (auto &y : hq)
				y = (float)gpu_nrand();
			for (auto &y : hk)
				y = (float)gpu_nrand();
			float *q1 = dev_copy(hq), *k1 = dev_copy(hk), *q2 = dev_copy(hq),
			      *k2 = dev_copy(hk);
			CHECK(q1 && k1 && q2 && k2, "cudaMalloc");
			CHECK(policy_flash_rope_elem(c.q_null ? NULL : q1, k1, pos, T, c.H, c.KV, d,
			                             c.rd, c.theta, inv) == 0,
			      "%s", swerve_error_last());
			CHECK(policy_flash_rope(c.q_null ? NULL : q2, k2, pos, T, c.H, c.KV, d,
			                        c.rd, c.theta, inv) == 0,
			      "%s", swerve_error_last());
			CK(cudaDeviceSynchronize());
			CK(cudaMemcpy(a.data(), q1, nq * 4, cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(b.data(), q2, nq * 4, cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(ak.data(), k1, nk * 4, cudaMemcpyDeviceToHost));
			CK(cudaMemcpy(bk.data(), k2, nk * 4, cudaMemcpyDeviceToHost));
			size_t dq_bits = memcmp(a.data(), b.data(), nq * 4) != 0,
			       dk_bits = memcmp(ak.data(), bk.data(), nk * 4) != 0;
			/* the CPU's rotation in double (q: the untouched input where NULL) */
			double worst = 0;
			for (int w = 0; w < 2; w++) {
				int nh = w ? c.KV : c.H;
				const std::vector<float> &in = w ? hk : hq, &got = w ? bk : b;
				for (int t = 0; t < T; t++)
					for (int h = 0; h < nh; h++) {
						const float *x = &in[((size_t)t * nh + h) * d];
						const float *y = &got[((size_t)t * nh + h) * d];
						for (int j = 0; j < d; j++) {
							double e = x[j];
							int hf = c.rd / 2;
							if (j < c.rd && !(w == 0 && c.q_null)) {
								int jj = j % hf;
								double ang = hp[t] *
								             pow((double)c.theta,
								                 -2.0 * jj / c.rd),
								       sn = inv ? -sin(ang)
								                : sin(ang);
								e = j < hf ? x[j] * cos(ang) -
								                     x[j + hf] * sn
								           : x[j] * cos(ang) +
								                     x[j - hf] * sn;
							}
							double err = fabs(y[j] - e);
							if (err > worst)
								worst = err;
						}
					}
			}
			printf(" rope H %d KV %d rd %d theta %g%s%s: q %s, k %s; worst vs double "
			       "%.2e%s\n",
			       c.H, c.KV, c.rd, c.theta, inv ? " inverse" : "",
			       c.q_null ? " (q NULL)" : "", dq_bits ? "DIFFERS" : "bit for bit",
			       dk_bits ? "DIFFERS" : "bit for bit", worst,
			       dq_bits || dk_bits || worst > 1e-5 ? " <-- FAIL" : "");
			fails += dq_bits || dk_bits || worst > 1e-5;
			cudaFree(q1), cudaFree(k1), cudaFree(q2), cudaFree(k2);
		}
	CHECK(policy_flash_rope(NULL, NULL, pos, T, 12, 4, d, 7, 1e4f, 0) == SWERVE_EINVAL,
	      "odd rotary width accepted");
	CHECK(strstr(swerve_error_last(), "rotary dims 7") != NULL, "%s", swerve_error_last());
	CHECK(policy_flash_rope(NULL, NULL, pos, T, 12, 4, d, 66, 1e4f, 0) == SWERVE_EINVAL,
	      "rotary width past the head accepted");
	cudaFree(pos);
	CHECK(fails == 0, "%d cases differ (above)", fails);
	return 0;
}

/* Round 19: the switches' spellings: POLICY_GPU_FLASH=fa2_par and
 * POLICY_GPU_FLASH_ROPE=elem|fused are taken, a misspelt value refused with
 * its name */
static int switches(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	setenv("POLICY_GPU_FLASH", "fa2_par", 1);
	setenv("POLICY_GPU_FLASH_ROPE", "fused", 1);
	CHECK(policy_flash_setup() == 0, "%s", swerve_error_last());
	CHECK(policy_flash_selected() == POLICY_FLASH_FA2_PAR, "fa2_par not selected");
	CHECK(policy_flash_rope_fused() == 1, "fused not selected");
	setenv("POLICY_GPU_FLASH_ROPE", "elem", 1);
	CHECK(policy_flash_setup() == 0, "%s", swerve_error_last());
	CHECK(policy_flash_rope_fused() == 0, "elem not selected");
	setenv("POLICY_GPU_FLASH_ROPE", "fusd", 1);
	CHECK(policy_flash_setup() == SWERVE_EINVAL, "fusd accepted");
	CHECK(strstr(swerve_error_last(), "POLICY_GPU_FLASH_ROPE=fusd") != NULL, "%s",
	      swerve_error_last());
	unsetenv("POLICY_GPU_FLASH_ROPE");
	setenv("POLICY_GPU_FLASH", "fa2par", 1);
	CHECK(policy_flash_setup() == SWERVE_EINVAL, "fa2par accepted");
	CHECK(strstr(swerve_error_last(), "POLICY_GPU_FLASH=fa2par") != NULL, "%s",
	      swerve_error_last());
	unsetenv("POLICY_GPU_FLASH");
	CHECK(policy_flash_setup() == 0, "%s", swerve_error_last());
	CHECK(policy_flash_selected() == POLICY_FLASH_FA2 && policy_flash_rope_fused(),
	      "unset: not the defaults (fa2, fused rotary since round 19)");
	return 0;
}

static int bad_shapes_are_refused(void)
{
	if (!have_gpu())
		return GPU_SKIP;
	CHECK(policy_flash_select((enum policy_flash_impl)7) == SWERVE_EINVAL, "impl 7 accepted");
	CHECK(policy_flash_fwd(NULL, NULL, NULL, NULL, NULL, NULL, 1, 8, 3, 2) == SWERVE_EINVAL,
	      "H 3, KV 2 accepted");
	CHECK(strstr(swerve_error_last(), "multiple") != NULL, "%s", swerve_error_last());
	return 0;
}

int main(void)
{
	gpu_rng_seed();
	static const struct gpu_test tests[] = {
	        {"group1_varlen", group1_varlen},
	        {"group3_varlen", group3_varlen},
	        {"group3_short", group3_short},
	        {"fa2_matches_wmma_bench_shape", fa2_matches_wmma_bench_shape},
	        {"bad_shapes_are_refused", bad_shapes_are_refused},
	        {"fa2_par_bitwise_fa2", fa2_par_bitwise_fa2},
	        {"rope_fused_bitwise_k_rotary", rope_fused_bitwise_k_rotary},
	        {"switches", switches},
	};
	return gpu_run_tests(tests, (int)(sizeof(tests) / sizeof(tests[0])));
}
