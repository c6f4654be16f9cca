// pairs: the allocation tracing benchmark's workload (bench/mem.go).
//   pairs N          N malloc(64)/free pairs; prints "X ns/pair"
//   pairs N sys      N getppid syscalls; prints "X ns/call" (what enabled
//                    syscall tracepoints cost a process that is not traced)
// With $PAIRS_WAIT_FILE set it first waits until that file exists, so a
// tracer can attach to the running process before the timed loop.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline void *escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	int sys = argc > 2 && strcmp(argv[2], "sys") == 0;
	const char *wait = getenv("PAIRS_WAIT_FILE");
	while (wait && access(wait, F_OK) != 0)
		usleep(10000);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	if (sys) {
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
	} else {
		for (long i = 0; i < n; i++)
			free(escape(malloc(64)));
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("%.1f ns/%s\n", ns / n, sys ? "call" : "pair");
	return 0;
}
