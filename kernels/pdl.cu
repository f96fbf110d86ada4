/* pdl.cu - the switch behind pdl::launch (kernels/pdl.cuh) */
extern "C" {
int swerve_gpu_pdl = 0;
}
