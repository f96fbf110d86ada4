/* tma.cu - see tma.h */
#include "kernels/tma.h"

#include <cuda_runtime.h>
#include <mutex>

extern "C" {
#include "sandbox/error.h"
}

swerve_tma_encode_fn swerve_tma_encoder(const char *who)
{
	static std::once_flag once;
	static void *fn;
	static cudaError_t err;
	static cudaDriverEntryPointQueryResult found;
	std::call_once(once, [] {
		err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
		                                       cudaEnableDefault, &found);
	});
	if (err != cudaSuccess || found != cudaDriverEntryPointSuccess || !fn) {
		swerve_error_set(SWERVE_ERROR,
		                 "%s: cuTensorMapEncodeTiled not found in the driver: %s", who,
		                 cudaGetErrorString(err));
		return nullptr;
	}
	return reinterpret_cast<swerve_tma_encode_fn>(fn);
}

int swerve_tma_map_bf16(CUtensorMap *m, const void *p, int nd, const cuuint64_t *dim, int box_rows,
                        const char *who)
{
	const swerve_tma_encode_fn encode = swerve_tma_encoder(who);
	if (!encode)
		return SWERVE_ERROR;
	const cuuint64_t stride[2] = {dim[0] * 2, dim[0] * dim[1] * 2};
	const cuuint32_t box[3] = {64, (cuuint32_t)box_rows, 1}, es[3] = {1, 1, 1};
	CUresult r =
	        encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, (cuuint32_t)nd, (void *)p, dim, stride,
	               box, es, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
	               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
	if (r != CUDA_SUCCESS)
		return swerve_error_set(SWERVE_ERROR, "%s: tensor map: CUresult %d", who, (int)r);
	return 0;
}
