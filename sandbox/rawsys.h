/* rawsys.h - a system call that never touches errno: sb_raw_syscall()
 * returns the result or -errno. Used by code that runs in a CLONE_VM child
 * while the thread whose TLS (and so errno) it shares is running
 * (sandbox/spawn.c, the shared-memory start), and by the libc-free
 * launcher (envs/launch_main.c). Where the architecture is not covered,
 * SB_HAVE_RAW_SYSCALL is 0 (runs then use the copy-on-write start).
 * Freestanding: includes nothing. */
#ifndef SWERVE_SANDBOX_RAWSYS_H
#define SWERVE_SANDBOX_RAWSYS_H

#if defined(__x86_64__)
#define SB_HAVE_RAW_SYSCALL 1
static inline long sb_raw_syscall(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
	                 : "=a"(ret)
	                 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
	                 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__aarch64__)
#define SB_HAVE_RAW_SYSCALL 1
static inline long sb_raw_syscall(long n, long a, long b, long c, long d, long e, long f)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	register long x5 __asm__("x5") = f;
	__asm__ volatile("svc 0"
	                 : "+r"(x0)
	                 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
	                 : "memory");
	return x0;
}
#else
#define SB_HAVE_RAW_SYSCALL 0
#endif

#endif
