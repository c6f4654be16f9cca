// Inlined functions for the symbolizer and capture tests, built with -O2 -g:
// main -> run -> mix (inlined) -> step (inlined into mix) -> spin. spin and
// step's own loop are where the time goes, so samples land both in code
// of the inlined step and in spin called from it. The INLINE-CALL-* markers
// name the lines of the calls the tests expect as the callers' lines.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile int stop;

volatile unsigned long kept;

__attribute__((noinline)) void keep(unsigned long v) { kept = v; }

// Not a leaf (it calls keep), so -fno-omit-frame-pointer gives it a frame
// and a frame-pointer walk from its loop finds its caller.
__attribute__((noinline)) unsigned long spin(unsigned long x) {
	unsigned long s = 0;
	for (unsigned long i = 0; i < 3000; i++)
		s += (x ^ i) * 2654435761u;
	keep(s);
	return s;
}

static inline __attribute__((always_inline)) unsigned long step(unsigned long x) {
	unsigned long y = spin(x); // INLINE-CALL-SPIN
	for (unsigned long i = 0; i < 2000; i++)
		y = y * 31 + (i ^ x);
	return y;
}

static inline __attribute__((always_inline)) unsigned long mix(unsigned long x) {
	unsigned long v = step(x) ^ 7; // INLINE-CALL-STEP
	return v >> 1;
}

__attribute__((noinline)) unsigned long run(unsigned long n) {
	static int said;
	unsigned long acc = 0;
	if (!said) {
		said = 1;
		write(1, "ready\n", 6);
	}
	while (!stop)
		acc += mix(acc + n); // INLINE-CALL-MIX
	return acc;
}

static void on_alarm(int sig) { (void)sig; stop = 1; }

// run spins for argv[1] seconds (default 1).
int main(int argc, char **argv) {
	signal(SIGALRM, on_alarm);
	alarm(argc > 1 ? (unsigned)atoi(argv[1]) : 1);
	printf("%lu\n", run((unsigned long)argc));
	return 0;
}
