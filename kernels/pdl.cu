/* pdl.cu - the switch behind pdl::launch (kernels/pdl.cuh): 0 unless
 * POLICY_GPU_PDL=on is in the environment at load time (so that the
 * kernels' own tests run under it too); the policy sets it for each of its
 * steps from its model's switch */
#include <stdlib.h>
#include <string.h>

extern "C" {
int swerve_gpu_pdl = 0;
}

__attribute__((constructor)) static void pdl_from_env(void)
{
	const char *e = getenv("POLICY_GPU_PDL");
	swerve_gpu_pdl = e && !strcmp(e, "on");
}
