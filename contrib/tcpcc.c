/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * LD_PRELOAD shim for contrib/bench.sh: every socket a server listens on gets
 * the TCP congestion control named by $LAZYIMG_TCPCC (setsockopt
 * TCP_CONGESTION before listen()), and so do the connections it accepts,
 * which inherit it from the listener. For nginx, which has no setting of its
 * own for it: the bench serves the same files a second time with "cubic"
 * where the machine's default is another one (bbr paces its sends with
 * timers, and over loopback that work runs on the client's CPUs too).
 * Without the variable, or if the kernel refuses the name, listen() is
 * unchanged; the bench checks the connections it gets.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int listen(int fd, int backlog)
{
    int (*real)(int, int) = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    const char *cc = getenv("LAZYIMG_TCPCC");

    if (cc && *cc)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc));
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd, backlog);
}
