// pingpong: the off-CPU benchmark's workload (bench/offcpu.go). Two
// threads pass a byte back and forth through two pipes, each blocking in
// read until the other writes: every round trip is two context switches
// of the pair (four with the switch to idle when they run on two CPUs).
//   pingpong N      N round trips; prints "X switches/s Y ns/switch"
//                   counted from the threads' own context switches,
//                   voluntary and not (getrusage RUSAGE_THREAD)
// With $PINGPONG_WAIT_FILE set it first waits until that file exists, so a
// tracer can attach to the running process before the timed loop. Pin it
// to one CPU (taskset -c 0) for the highest rate.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static int ab[2], ba[2];
static long rounds;
static long peer_switches;

static void *peer(void *arg)
{
	(void)arg;
	char c;
	for (long i = 0; i < rounds; i++) {
		if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1)
			exit(1);
	}
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	peer_switches = ru.ru_nvcsw + ru.ru_nivcsw;
	return NULL;
}

int main(int argc, char **argv)
{
	rounds = argc > 1 ? atol(argv[1]) : 200000;
	const char *wait = getenv("PINGPONG_WAIT_FILE");
	while (wait && access(wait, F_OK) != 0)
		usleep(10000);
	if (pipe(ab) || pipe(ba))
		return 1;
	struct rusage before;
	getrusage(RUSAGE_THREAD, &before);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pthread_t t;
	pthread_create(&t, NULL, peer, NULL);
	char c = 'x';
	for (long i = 0; i < rounds; i++) {
		if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1)
			return 1;
	}
	pthread_join(t, NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	struct rusage after;
	getrusage(RUSAGE_THREAD, &after);
	double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	long sw = after.ru_nvcsw + after.ru_nivcsw - before.ru_nvcsw - before.ru_nivcsw + peer_switches;
	printf("%.0f switches/s %.1f ns/switch (%ld switches, %ld rounds, %.3f s)\n", sw / s, s * 1e9 / (sw ? sw : 1), sw, rounds, s);
	return 0;
}
