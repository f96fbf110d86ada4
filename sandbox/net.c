/* net.c - the network of a sandbox: a fresh network namespace where only the
 * loopback interface is brought up (SIOCSIFFLAGS; no iproute2). Nothing else
 * exists in that namespace, so the host's network and its loopback listeners
 * are unreachable, while servers inside the sandbox can use 127.0.0.1. */
#include "sandbox/internal.h"

#include <fcntl.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int sb_net_loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		goto fail;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		goto fail;
	close(fd);
	return 0;
fail:
	close(fd);
	return -1;
}

static int write_sysctl(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, v, strlen(v));
	close(fd);
	return w == (ssize_t)strlen(v) ? 0 : -1;
}

int sb_net_reusable(void)
{
	/* tcp_max_tw_buckets also governs IPv6 TIME_WAIT (one death row per
	 * namespace); at 0 a closing socket is closed at once */
	if (write_sysctl("/proc/sys/net/ipv4/tcp_max_tw_buckets", "0") < 0 ||
	    write_sysctl("/proc/sys/net/ipv4/tcp_no_metrics_save", "1") < 0)
		return -1;
	return 0;
}
