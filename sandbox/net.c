/* net.c - the network of a sandbox: a fresh network namespace where only the
 * loopback interface is brought up (SIOCSIFFLAGS; no iproute2). Nothing else
 * exists in that namespace, so the host's network and its loopback listeners
 * are unreachable, while servers inside the sandbox can use 127.0.0.1. */
#include "sandbox/internal.h"

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
