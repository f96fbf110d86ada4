/* kernels.h - the public API of kernels/: GPU kernels, each with a plain-C
 * CPU reference of the same function. One #include per kernel module. */
#ifndef SWERVE_KERNELS_H
#define SWERVE_KERNELS_H

#include "kernels/lightning.h"
#include "kernels/policy_loss.h"

#endif
