/* gemm_tune.h - cuBLAS GEMMs whose algorithm is timed once per shape
 * (internal to kernels/, policy/ and the GPU tests and benchmarks).
 *
 * cublasGemmEx's CUBLAS_GEMM_DEFAULT runs the heuristic's first choice.
 * Where SWERVE_GEMM_TUNE is on (the default), the first call of a shape (transposes, sizes,
 * leading dimensions, strides, types, beta zero or not, pointer alignment,
 * workspace size) times that choice against cuBLASLt's next heuristic
 * candidates on a scratch copy of C, keeps the fastest (the default unless
 * another is 3% faster) and runs every later call of the shape with it. A
 * shape that differs from a timed one only in its sizes, each within a
 * factor of 2 (a packed batch's token count changes every RL step), takes
 * that shape's choice without timing (where cuBLASLt accepts it).
 * The choice is process-wide: two models in one process run a shape the
 * same way, bit for bit. A shape first seen while its stream is being
 * captured into a CUDA graph is not timed: it takes a timed sibling's
 * choice or keeps the default, for the process. */
#ifndef SWERVE_KERNELS_GEMM_TUNE_H
#define SWERVE_KERNELS_GEMM_TUNE_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* one call: cublasGemmEx's / cublasGemmStridedBatchedEx's arguments
 * (column-major, alpha 1); batch > 1 uses the strides */
struct swerve_gemm {
	cublasOperation_t ta, tb;
	int m, n, k;
	const void *A;
	int lda;
	long long sa;
	const void *B;
	int ldb;
	long long sb;
	cudaDataType_t ab; /* A and B */
	float beta;
	void *C;
	cudaDataType_t ct;
	int ldc;
	long long sc;
	int batch;
	cublasComputeType_t cp;
	/* > 0: cuBLASLt's CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET (the GEMM sized
	 * for that many SMs, leaving the rest to another stream's kernels); the
	 * fastest cuBLASLt candidate is kept, cuBLAS's default is not one; 0:
	 * the device's count */
	int sm_target;
	/* not NULL (round 23): C's input, C the output: C = A B + beta Cin
	 * (cuBLASLt's separate C and D: the same type and layout; Cin not
	 * written). Only cuBLASLt runs such a call: cuBLAS's default is not a
	 * candidate, and where the call is not timed (tuning off, or first
	 * seen in a capture without a timed sibling) cuBLASLt's heuristic's
	 * first choice runs. NULL: C in place, as cublasGemmEx */
	const void *Cin;
};

/* the cuBLASLt descriptors of one call's shape: the matmul (compute type
 * cp, fp32 scale, the transposes, sm_target where > 0) and the layouts of
 * A, B and C (the batch count and strides where batch > 1) */
struct swerve_lt_desc {
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t la, lb, lc;
};
/* 1 with d made, 0 where cuBLASLt refuses one (nothing is left to free) */
int swerve_lt_desc_make(struct swerve_lt_desc *d, const struct swerve_gemm *c);
void swerve_lt_desc_free(struct swerve_lt_desc *d);

/* SWERVE_GEMM_TUNE: off = 0, unset / on = 1 (the default), log = 2 (on, and
 * one line a tuned shape on stderr); read at each call. SWERVE_EINVAL with a one-line message
 * for any other value. */
int swerve_gemm_tune_setting(int *mode);

/* c on h's stream: tuned as above where mode > 0, else cublasGemmEx (or,
 * with Cin, cuBLASLt's first choice; CUBLAS_STATUS_NOT_SUPPORTED where
 * cuBLASLt offers none); ws /
 * ws_bytes: a workspace no other stream uses at the same time (NULL, 0:
 * candidates that need none). A cuBLAS status (CUBLAS_STATUS_SUCCESS = 0);
 * tuning's own CUDA failures come back as CUBLAS_STATUS_EXECUTION_FAILED. */
int swerve_gemm_run(cublasHandle_t h, int mode, void *ws, size_t ws_bytes,
                    const struct swerve_gemm *c);

/* shapes seen so far in this process while tuning was on (and calls with
 * Cin while it was off), how many of them
 * were timed, and how many run another algorithm than the default (for
 * tests and benchmarks) */
void swerve_gemm_tune_counts(int *shapes_seen, int *timed, int *changed);

#ifdef __cplusplus
}
#endif

#endif
