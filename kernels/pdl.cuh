/* pdl.cuh - programmatic dependent launch (Hopper) for the training step's
 * chains of small dependent kernels (issue 10, round 20; opt-in).
 *
 * A kernel launched with cudaLaunchAttributeProgrammaticStreamSerialization
 * may start while the kernel before it in the stream is still running, once
 * every block of that kernel has executed griddepcontrol.launch_dependents;
 * it must then execute griddepcontrol.wait before it touches anything the
 * earlier work wrote: the wait returns once every prerequisite grid has
 * completed and its memory is visible. pdl::enter() does both, first thing
 * in a kernel, unconditionally (a block that left before waiting would let
 * the grid complete early and a later kernel, which waits only on this one,
 * read its predecessor's output too soon). Without the launch attribute
 * both instructions return at once, so a kernel that calls pdl::enter()
 * may be launched either way. pdl::launch() launches with the attribute
 * where swerve_gpu_pdl is set (the policy's POLICY_GPU_PDL), else as <<<>>>
 * would. */
#ifndef SWERVE_KERNELS_PDL_CUH
#define SWERVE_KERNELS_PDL_CUH

#include <cuda_runtime.h>

#include <utility>

extern "C" int swerve_gpu_pdl; /* kernels/pdl.cu; 0 unless the policy sets it */

namespace pdl
{
__device__ __forceinline__ void enter()
{
	asm volatile("griddepcontrol.wait;" ::: "memory");
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

template <typename... KA, typename... A>
static inline cudaError_t launch(void (*k)(KA...), dim3 grid, dim3 block, size_t smem,
                                 cudaStream_t st, A &&...args)
{
	cudaLaunchConfig_t cfg = {};
	cudaLaunchAttribute at[1];
	cfg.gridDim = grid;
	cfg.blockDim = block;
	cfg.dynamicSmemBytes = smem;
	cfg.stream = st;
	if (swerve_gpu_pdl) {
		at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
		at[0].val.programmaticStreamSerializationAllowed = 1;
		cfg.attrs = at;
		cfg.numAttrs = 1;
	}
	return cudaLaunchKernelEx(&cfg, k, std::forward<A>(args)...);
}
} // namespace pdl

#endif
