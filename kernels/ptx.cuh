/* ptx.cuh - the inline PTX primitives that swerve's hand-written CUDA
 * kernels share (kernels/lightning.cu, policy/gpu_moe.cu; internal, device
 * code only, sm_90a): cp.async copies, ldmatrix / stmatrix, mma.sync
 * m16n8k16 (bf16, fp32 accumulation), Hopper's wgmma m64n64k16 with
 * 128-byte-swizzled shared-memory descriptors, and the mbarrier and TMA
 * (cp.async.bulk.tensor) loads that feed them (policy/gpu_moe_ws.cu,
 * kernels/policy_loss.cu too), and the acquire / release flags that order
 * split weight-gradient tiles between CTAs. One definition of each, so
 * every kernel issues the same instructions with the same compiler
 * barriers. */
#ifndef SWERVE_KERNELS_PTX_CUH
#define SWERVE_KERNELS_PTX_CUH

#include <cuda.h> /* CUtensorMap (a type only) */
#include <cuda_bf16.h>
#include <stdint.h>

namespace ptx
{

/* ---- copies, ldmatrix / stmatrix, mma.sync ------------------------------------ */

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid)
{
	int n = valid ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
	             "r"(n));
}

__device__ __forceinline__ void cp_commit()
{
	asm volatile("cp.async.commit_group;\n" ::);
}

template <int N> __device__ __forceinline__ void cp_wait()
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
	             : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
	             : "r"(addr));
}

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
	             "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
	             : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ void stsm_x4(uint32_t a, uint32_t r0, uint32_t r1, uint32_t r2,
                                        uint32_t r3)
{
	asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(a),
	             "r"(r0), "r"(r1), "r"(r2), "r"(r3));
}

/* ---- wgmma ------------------------------------------------------------------- */

/* shared-memory descriptors: 128-byte swizzle; the 8-row group stride (1024
 * bytes) in both offset fields: every operand here is one swizzle atom wide in
 * the dimension the other field would step, so that field is unused. Shared
 * addresses are below 2^18 and multiples of 16, so the start-address field of
 * (address + off) is dlo(address) + off / 16: one add per product. */
__device__ __forceinline__ uint32_t dlo(uint32_t saddr)
{
	return (saddr >> 4) | ((1024u >> 4) << 16);
}

__device__ __forceinline__ uint64_t dsc(uint32_t lo, uint32_t off)
{
	return ((uint64_t)((1024u >> 4) | (1u << 30)) << 32) | (uint64_t)(lo + (off >> 4));
}

__device__ __forceinline__ void fence()
{
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void commit()
{
	asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void wait()
{
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* keep the compiler from moving accesses of wgmma registers across the
 * fence/wait instructions (it does not know they are asynchronous) */
__device__ __forceinline__ void reg_fence(float (&d)[32])
{
#pragma unroll
	for (int i = 0; i < 32; i++)
		asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ void reg_fence(uint32_t (&a)[4])
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		asm volatile("" : "+r"(a[i])::"memory");
}

__device__ __forceinline__ void fence_proxy_async()
{
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

#define LA_D32(d)                                                                                  \
	"+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
	        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),         \
	        "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),      \
	        "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),      \
	        "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),      \
	        "+f"(d[31])
#define LA_R32                                                                                     \
	"{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "   \
	"%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"

/* d (+)= A B, m64n64k16, A and B from shared memory; TA = 1: A is M-major,
 * TB = 1: B is N-major (else K-major) */
template <int TA, int TB>
__device__ __forceinline__ void mma_ss(float (&d)[32], uint64_t da, uint64_t db, int acc)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_R32
	             ", %32, %33, p, 1, 1, %35, %36;\n}\n"
	             : LA_D32(d)
	             : "l"(da), "l"(db), "r"(acc), "n"(TA), "n"(TB));
}

/* d += A B, m64n64k16, A from registers (the mma.sync m16n8k16 A layout, warp
 * w holding rows 16w..16w+15), B from shared memory, MN-major */
__device__ __forceinline__ void mma_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t db,
                                       int acc = 1)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
	             "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LA_R32
	             ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
	             : LA_D32(d)
	             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
}
#undef LA_D32
#undef LA_R32

/* ---- mbarriers and TMA loads ---------------------------------------------------- */

/* arrive on the shared-memory mbarrier at bar and expect bytes more of
 * asynchronous copies for the current phase */
__device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t bytes)
{
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
	             "r"(bytes)
	             : "memory");
}

/* spin until the phase of parity `parity` of the mbarrier at bar completed */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity)
{
	uint32_t ok;
	do {
		asm volatile("{\n.reg .pred p;\n"
		             "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
		             "selp.u32 %0, 1, 0, p;\n}\n"
		             : "=r"(ok)
		             : "r"(bar), "r"(parity)
		             : "memory");
	} while (!ok);
}

/* a 2-D / 3-D TMA tensor load of the box at (x, y[, z]) of map into shared
 * memory at dst, its bytes counted on the mbarrier at bar */
__device__ __forceinline__ void tma_load2(uint32_t dst, const CUtensorMap *map, int x, int y,
                                          uint32_t bar)
{
	asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes "
	             "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
	             "l"(map), "r"(x), "r"(y), "r"(bar)
	             : "memory");
}
__device__ __forceinline__ void tma_load3(uint32_t dst, const CUtensorMap *map, int x, int y, int z,
                                          uint32_t bar)
{
	asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes "
	             "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
	             "l"(map), "r"(x), "r"(y), "r"(z), "r"(bar)
	             : "memory");
}

/* ---- ordering between CTAs through a flag in global memory ---------------------- */

/* spin until the flag reads value (acquire, GPU scope: what the CTA that set
 * it wrote before its release is visible after this) */
__device__ __forceinline__ void flag_wait(const int *flag, int value)
{
	int v;
	do {
		asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n"
		             : "=r"(v)
		             : "l"(flag)
		             : "memory");
	} while (v != value);
}

/* set the flag to value (release, GPU scope) */
__device__ __forceinline__ void flag_set(int *flag, int value)
{
	asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(flag), "r"(value) : "memory");
}

/* ---- reductions in L2 ---------------------------------------------------------- */

/* p[0..3] += v, performed at L2 (red.global.add.v4.f32, sm_90): no value
 * comes back, so the issuing thread does not wait for the old values
 * (policy/gpu_moe_ws.cu's weight gradients, POLICY_GPU_MOE_DW_ADD=red);
 * p 16-byte aligned */
__device__ __forceinline__ void red_add4(float *p, float4 v)
{
	asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(v.x), "f"(v.y),
	             "f"(v.z), "f"(v.w)
	             : "memory");
}

/* ---- L2 cache policies ----------------------------------------------------------- */

/* a policy word for the .L2::cache_hint forms of loads and stores: last
 * (evict_last) for data read again, else evict_first for data read or
 * written once (policy/gpu_moe.cu's wsb8h, policy/gpu_moe_ws.cu's wsb8k) */
__device__ __forceinline__ uint64_t l2_policy(bool last)
{
	uint64_t p;
	if (last)
		asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(p));
	else
		asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(p));
	return p;
}

} // namespace ptx

#endif
