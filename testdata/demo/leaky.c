// leaky: a demo workload that leaks at three known call sites while
// churning many allocations it frees. Built with frame pointers.
//   leak_malloc:  100 blocks of 64 bytes  (malloc)
//   leak_calloc:   50 blocks of 128 bytes (calloc, 32 x 4)
//   leak_realloc:  20 blocks of 256 bytes (malloc 16, then realloc to 256)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *keep[1000];
int kept;

// escape makes a pointer observable, so the compiler can neither drop an
// allocation nor pair a malloc with its free away.
static inline void *escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

__attribute__((noinline)) void leak_malloc(void) { keep[kept++] = escape(malloc(64)); }
__attribute__((noinline)) void leak_calloc(void) { keep[kept++] = escape(calloc(32, 4)); }
__attribute__((noinline)) void leak_realloc(void)
{
	char *p = escape(malloc(16));
	keep[kept++] = escape(realloc(p, 256));
}

__attribute__((noinline)) void churn(long n)
{
	for (long i = 0; i < n; i++) {
		void *p = escape(malloc(32 + i % 512));
		memset(p, 1, 8);
		free(escape(p));
	}
}

int main(int argc, char **argv)
{
	// LEAKY_WAIT_FILE lets a test attach to the running process before it
	// allocates anything: the program waits until the file exists.
	const char *wait = getenv("LEAKY_WAIT_FILE");
	while (wait && access(wait, F_OK) != 0)
		usleep(10000);
	long churns = argc > 1 ? atol(argv[1]) : 200000;
	int rounds = 10;
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < 10; i++) leak_malloc();
		for (int i = 0; i < 5; i++) leak_calloc();
		for (int i = 0; i < 2; i++) leak_realloc();
		churn(churns / rounds);
		if (argc > 2)
			usleep(atoi(argv[2]) * 1000);
	}
	printf("kept %d blocks\n", kept);
	return 0;
}
