/* fuzz_patch.c - libFuzzer target for the static checks of model-written
 * patches (envs/patch.c: raw-text header scan, libgit2 parse, symlink and
 * binary checks). Must never crash, leak or read out of bounds, and must
 * either refuse with a "patch did not apply: " reason or accept. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envs/patch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct swerve_patch_outcome o;
	if (swerve_patch_check(&o, (const char *)data, size, NULL) == 0 && o.reason[0] &&
	    strncmp(o.reason, "patch did not apply: ", 21) != 0)
		abort();
	return 0;
}
