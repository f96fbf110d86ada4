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
