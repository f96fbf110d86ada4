/* gpu_lightning_wgmma.cu - what one wgmma.mma_async costs on this card, for the
 * shapes and operand forms kernels/lightning.cu's V3 kernel uses (bf16, fp32
 * accumulators, 128-byte-swizzled shared-memory tiles): each CTA (one
 * warpgroup) issues rounds of wgmma on data in shared memory, waits once per
 * round, and the SM clock (clock64) gives cycles per instruction. Rows:
 *   form       operands                         accumulators per round
 *   ss-k       A, B smem, both K-major          1 chain of 8 (S = Q K^T)
 *   ss-mn      A smem, B smem MN-major          1 chain of 8 (O = Q KV)
 *   rs-mn      A registers, B smem MN-major     1 chain of 8 (P V, state update)
 *   ss-k-x4    as ss-k, 4 accumulators          4 chains of 2, interleaved
 *   ss-k-n128  m64n128k16, both K-major         1 chain of 8
 * each with 1 and 2 CTAs per SM (132 and 264 CTAs). Timing only: the data is
 * random bf16, the results are not checked. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#define CK(x)                                                                                      \
	do {                                                                                       \
		cudaError_t e_ = (x);                                                              \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,                         \
			        cudaGetErrorString(e_));                                           \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

__device__ __forceinline__ uint64_t desc(uint32_t a, uint32_t lbo = 1024)
{
	return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) |
	       ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

#define D32(d)                                                                                     \
	"+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
	        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),         \
	        "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),      \
	        "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),      \
	        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),      \
	        "+f"(d[31])
#define R32(o)                                                                                     \
	"{%" #o "0, %" #o "1, %" #o "2, %" #o "3, %" #o "4, %" #o "5, %" #o "6, %" #o "7, %" #o    \
	"8, %" #o "9, %" #o "10, %" #o "11, %" #o "12, %" #o "13, %" #o "14, %" #o "15, %" #o      \
	"16, %" #o "17, %" #o "18, %" #o "19, %" #o "20, %" #o "21, %" #o "22, %" #o "23, %" #o    \
	"24, %" #o "25, %" #o "26, %" #o "27, %" #o "28, %" #o "29, %" #o "30, %" #o "31}"

template <int TB> __device__ __forceinline__ void ss64(float (&d)[32], uint64_t a, uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
	             "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
	             "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
	             "%31}, %32, %33, 1, 1, 1, 0, %34;\n"
	             : D32(d)
	             : "l"(a), "l"(b), "n"(TB));
}

__device__ __forceinline__ void rs64(float (&d)[32], const uint32_t (&a)[4], uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
	             "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
	             "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
	             "%31}, {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
	             : D32(d)
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

__device__ __forceinline__ void ss128(float (&d)[32], float (&e)[32], uint64_t a, uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
	             "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
	             "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "
	             "%31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "
	             "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, "
	             "%61, %62, %63}, %64, %65, 1, 1, 1, 0, 0;\n"
	             : D32(d), D32(e)
	             : "l"(a), "l"(b));
}

__device__ __forceinline__ void fence_all()
{
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void commit_wait()
{
	asm volatile("wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;\n" ::
	                     : "memory");
}

constexpr int ROUNDS = 256;

/* 32 KB of tiles: A [64][128] (2 atoms) at 0, B [128 rows] at 16 KB */
template <int MODE> __global__ void __launch_bounds__(128) bench(float *sink, long long *cycles)
{
	extern __shared__ __align__(1024) unsigned char sm[];
	const uint32_t base = ((uint32_t)__cvta_generic_to_shared(sm) + 1023) & ~1023u;
	unsigned char *p = sm + (base - (uint32_t)__cvta_generic_to_shared(sm));
	for (int i = threadIdx.x; i < 32768 / 4; i += 128)
		reinterpret_cast<uint32_t *>(p)[i] = 0x3c003c00u ^ (i * 2654435761u & 0x00ff00ffu);
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
	__syncthreads();
	float a0[32], a1[32], a2[32], a3[32];
	for (int i = 0; i < 32; i++)
		a0[i] = a1[i] = a2[i] = a3[i] = 0.0f;
	uint32_t ra[4] = {0x3c003c00u, 0x3c003c01u, 0x3c013c00u, 0x3c003c02u};
	const long long t0 = clock64();
	for (int r = 0; r < ROUNDS; r++) {
		fence_all();
#pragma unroll
		for (int k = 0; k < 8; k++) {
			const uint64_t da = desc(base + (k >> 2) * 8192 + (k & 3) * 32);
			if (MODE == 0)
				ss64<0>(a0, da,
				        desc(base + 16384 + (k >> 2) * 8192 + (k & 3) * 32));
			else if (MODE == 1)
				ss64<1>(a0, da, desc(base + 16384 + k * 2048));
			else if (MODE == 2)
				rs64(a0, ra, desc(base + 16384 + (k & 3) * 2048));
			else if (MODE == 3) {
				float(&acc)[32] = (k & 3) == 0   ? a0
				                  : (k & 3) == 1 ? a1
				                  : (k & 3) == 2 ? a2
				                                 : a3;
				ss64<0>(acc, da,
				        desc(base + 16384 + (k >> 2) * 8192 + (k & 3) * 32));
			} else
				ss128(a0, a1, da, desc(base + 16384 + (k & 3) * 32));
		}
		commit_wait();
	}
	const long long t1 = clock64();
	float s = 0.0f;
	for (int i = 0; i < 32; i++)
		s += a0[i] + a1[i] + a2[i] + a3[i];
	sink[blockIdx.x * 128 + threadIdx.x] = s;
	if (threadIdx.x == 0)
		cycles[blockIdx.x] = t1 - t0;
}

template <int MODE> static int run(const char *name, int per_sm, int nsm)
{
	const int grid = nsm * per_sm, smem = 32768 + 1024 + (per_sm == 1 ? 90000 : 0);
	float *sink;
	long long *cyc;
	CK(cudaFuncSetAttribute(bench<MODE>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
	CK(cudaMalloc(&sink, (size_t)grid * 128 * 4));
	CK(cudaMalloc(&cyc, grid * 8));
	bench<MODE><<<grid, 128, smem>>>(sink, cyc); /* warm-up */
	CK(cudaGetLastError());
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	CK(cudaEventRecord(e0));
	bench<MODE><<<grid, 128, smem>>>(sink, cyc);
	CK(cudaEventRecord(e1));
	CK(cudaEventSynchronize(e1));
	float ms;
	CK(cudaEventElapsedTime(&ms, e0, e1));
	long long c[1024];
	CK(cudaMemcpy(c, cyc, grid * 8, cudaMemcpyDeviceToHost));
	double avg = 0;
	for (int i = 0; i < grid; i++)
		avg += (double)c[i] / grid;
	const double n = (double)ROUNDS * 8,
	             flop = MODE == 4 ? 2.0 * 64 * 128 * 16 : 2.0 * 64 * 64 * 16;
	printf("%-10s %d CTA/SM: %6.1f cycles per wgmma (per CTA), %6.1f TFLOP/s over the GPU\n",
	       name, per_sm, avg / n, flop * n * grid / (ms * 1e-3) / 1e12);
	cudaFree(sink);
	cudaFree(cyc);
	return 0;
}

int main(void)
{
	cudaDeviceProp prop;
	if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
		printf("skipped: no GPU\n");
		return 0;
	}
	printf("# %s: wgmma cost, %d rounds of 8 per CTA, one wait per round\n", prop.name, ROUNDS);
	const int n = prop.multiProcessorCount;
	int rc = 0;
	for (int per = 1; per <= 2; per++) {
		rc |= run<0>("ss-k", per, n);
		rc |= run<1>("ss-mn", per, n);
		rc |= run<2>("rs-mn", per, n);
		rc |= run<3>("ss-k-x4", per, n);
		rc |= run<4>("ss-k-n128", per, n);
	}
	return rc;
}
