/* tma.h - the driver's tensor-map encoder for the TMA (bulk tensor copy)
 * kernels, fetched once through the runtime so nothing links against
 * libcuda (internal to kernels/ and policy/; C++ host code only). */
#ifndef SWERVE_KERNELS_TMA_H
#define SWERVE_KERNELS_TMA_H

#include <cuda.h>

typedef CUresult (*swerve_tma_encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                         const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                         const cuuint32_t *, CUtensorMapInterleave,
                                         CUtensorMapSwizzle, CUtensorMapL2promotion,
                                         CUtensorMapFloatOOBfill);

/* cuTensorMapEncodeTiled, or NULL with a one-line message naming `who` */
swerve_tma_encode_fn swerve_tma_encoder(const char *who);

/* *m = the tensor map of a dense bf16 tensor at p, nd (2 or 3) dims given
 * innermost first, boxes of 64 x box_rows (x 1), 128-byte swizzle, L2
 * promotion 256 B, no out-of-bounds fill; 0, or SWERVE_ERROR with a
 * one-line message naming `who` */
int swerve_tma_map_bf16(CUtensorMap *m, const void *p, int nd, const cuuint64_t *dim, int box_rows,
                        const char *who);

#endif
