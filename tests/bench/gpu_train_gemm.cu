/* gpu_train_gemm.c - the MoE expert GEMMs of the policy benchmark config in
 * isolation (8 experts, D 768, F 1024, ~2048 rows an expert), to tell which
 * cuBLAS call is slow: each projection as one strided-batched call over the
 * experts or as 8 plain calls, with bf16 operands (bf16 or fp32 output) or
 * fp32 operands with FAST_16BF; with the same row count every call ("fixed")
 * or a different one every call ("varying", as routing makes them). GPU time
 * with events (median of 5 rounds of 24 calls) and host time to enqueue a
 * call. Random data (never zeros). Prints a table. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/bench/gpu_bench.cuh"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { E = 8, D = 768, F = 1024, CAPMAX = 2048 + 64 * 16, REPS = 24, ROUNDS = 5 };

struct buf {
	void *x, *w, *y;
};
static struct buf b16, b32;

static void fill(void *p, size_t n, int bf)
{
	void *h = malloc(n * (bf ? 2 : 4));
	for (size_t i = 0; i < n; i++) {
		float f = (float)((rand() & 0xffff) / 65536.0 - 0.5) * 0.1f;
		if (bf) {
			uint32_t u;
			memcpy(&u, &f, 4);
			((uint16_t *)h)[i] = (uint16_t)(u >> 16);
		} else
			((float *)h)[i] = f;
	}
	if (cudaMemcpy(p, h, n * (bf ? 2 : 4), cudaMemcpyHostToDevice))
		DIE("cudaMemcpy");
	free(h);
}

/* one projection kind: 0 fwd h1 (O F, I D), 1 fwd yp (O D, I F), 2 dW1
 * (O F, I D, k rows), 3 dX (I D from O F) */
static int call(cublasHandle_t h, int kind, int batched, int mode, int rows)
{
	/* mode 0: bf16 in, bf16 out; 1: bf16 in, fp32 out; 2: fp32 in FAST_16BF */
	int O = kind == 1 ? D : F, I = kind == 1 ? F : D;
	cudaDataType_t ab = mode == 2 ? CUDA_R_32F : CUDA_R_16BF;
	cudaDataType_t ct = mode == 0 ? CUDA_R_16BF : CUDA_R_32F;
	cublasComputeType_t cp = mode == 2 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
	struct buf *b = mode == 2 ? &b32 : &b16;
	size_t as = mode == 2 ? 4 : 2, cs = ct == CUDA_R_16BF ? 2 : 4;
	float one = 1, beta = kind == 2 ? 1.0f : 0.0f;
	long long sW = (long long)O * I, sX, sY;
	int st = 0;
	if (kind == 2)
		ct = CUDA_R_32F, cs = 4;
	for (int e = 0; e < (batched ? 1 : E); e++) {
		char *x = (char *)b->x + (size_t)e * rows * (kind == 3 ? O : I) * as;
		char *w = (char *)b->w + (size_t)e * sW * as;
		char *y = (char *)b->y + (size_t)e * rows * (kind == 3 ? I : O) * cs;
		int bt = batched ? E : 1;
		if (kind == 0 || kind == 1) {
			sX = (long long)rows * I;
			sY = (long long)rows * O;
			st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, O, rows, I,
			                                &one, w, ab, I, sW, x, ab, I, sX, &beta, y,
			                                ct, O, sY, bt, cp, CUBLAS_GEMM_DEFAULT);
		} else if (kind == 2) { /* dW (O, I) += dY^T X: dY = y-region as (rows, O) */
			char *dy = (char *)b->x + (size_t)e * rows * O * as;
			char *xx = (char *)b->w + (size_t)e * rows * I * as;
			char *dw = (char *)b->y + (size_t)e * sW * 4;
			st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, I, O, rows,
			                                &one, xx, ab, I, (long long)rows * I, dy,
			                                ab, O, (long long)rows * O, &beta, dw, ct,
			                                I, sW, bt, cp, CUBLAS_GEMM_DEFAULT);
		} else {
			sX = (long long)rows * O;
			sY = (long long)rows * I;
			st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, I, rows, O,
			                                &one, w, ab, I, sW, x, ab, O, sX, &beta, y,
			                                ct, I, sY, bt, cp, CUBLAS_GEMM_DEFAULT);
		}
		if (st)
			return st;
	}
	return 0;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(void)
{
	cublasHandle_t h;
	cudaEvent_t e0, e1;
	int ndev = 0;
	static const char *const kn[4] = {"fwd x.W1^T (bf16/fp32 out)", "fwd h.W2^T",
	                                  "dW1 += dh1^T x", "dx = dh1.W1"};
	static const char *const mn[3] = {"bf16->bf16", "bf16->fp32", "fp32 FAST_16BF"};
	size_t big = (size_t)E * CAPMAX * F > (size_t)E * F * D ? (size_t)E * CAPMAX * F
	                                                        : (size_t)E * F * D;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
		printf("gpu_train_gemm: skipped: no CUDA device\n");
		return 0;
	}
	big += (size_t)E * CAPMAX * F; /* room for the dW case's operands */
	if (cudaMalloc(&b16.x, big * 2) || cudaMalloc(&b16.w, big * 2) ||
	    cudaMalloc(&b16.y, big * 4) || cudaMalloc(&b32.x, big * 4) ||
	    cudaMalloc(&b32.w, big * 4) || cudaMalloc(&b32.y, big * 4))
		DIE("cudaMalloc failed");
	fill(b16.x, big, 1);
	fill(b16.w, big, 1);
	fill(b32.x, big, 0);
	fill(b32.w, big, 0);
	cublasCreate(&h);
	cudaEventCreate(&e0);
	cudaEventCreate(&e1);
	printf("\nexpert GEMMs: %d experts, D %d, F %d, ~2048 rows an expert (fixed 2048; "
	       "varying 2048..%d)\n",
	       E, D, F, CAPMAX - 64);
	printf("%-28s %-15s %-8s %-8s %9s %9s %10s\n", "projection", "operands", "calls", "rows",
	       "gpu ms", "TFLOP/s", "host us/call");
	for (int kind = 0; kind < 4; kind++)
		for (int mode = 0; mode < 3; mode++) {
			if (mode == 0 && (kind == 1 || kind == 2))
				continue; /* fwd yp and dW have fp32 outputs */
			for (int batched = 1; batched >= 0; batched--)
				for (int vary = 0; vary < 2; vary++) {
					double gms[ROUNDS], hus[ROUNDS], rows_sum = 0;
					for (int r = 0; r < ROUNDS + 1; r++) {
						float ms;
						double t0;
						rows_sum = 0;
						cudaEventRecord(e0, 0);
						t0 = now();
						for (int i = 0; i < REPS; i++) {
							int rows = vary ? 2048 + 64 * ((i * 7 +
							                                r * 5) %
							                               16)
							                : 2048;
							rows_sum += rows;
							if (call(h, kind, batched, mode, rows))
								DIE("cuBLAS failed: kind %d mode "
								    "%d",
								    kind, mode);
						}
						if (r > 0)
							hus[r - 1] = (now() - t0) * 1e6 / REPS /
							             (batched ? 1 : E);
						cudaEventRecord(e1, 0);
						cudaEventSynchronize(e1);
						cudaEventElapsedTime(&ms, e0, e1);
						if (r > 0)
							gms[r - 1] = ms / REPS;
					}
					if (cudaGetLastError())
						DIE("CUDA error");
					qsort(gms, ROUNDS, sizeof(double), cmpd);
					qsort(hus, ROUNDS, sizeof(double), cmpd);
					double fl = 2.0 * E * (rows_sum / REPS) * D * F;
					printf("%-28s %-15s %-8s %-8s %9.3f %9.1f %10.1f\n",
					       kn[kind], mn[mode], batched ? "batched" : "8 plain",
					       vary ? "varying" : "fixed", gms[ROUNDS / 2],
					       fl / (gms[ROUNDS / 2] * 1e-3) / 1e12,
					       hus[ROUNDS / 2]);
				}
		}
	cublasDestroy(h);
	return 0;
}
