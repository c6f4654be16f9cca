// slowfree: the kill -9 test's workload (capture/mem_more_test.go).
//   slowfree N GAP_MS   N malloc+free pairs GAP_MS apart, then sleeps
// Frees this far apart fill a batch slowly: the kernel must send it by age.
#include <stdlib.h>
#include <unistd.h>

static inline void *escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20;
	int gap = argc > 2 ? atoi(argv[2]) : 200;
	for (int i = 0; i < n; i++) {
		free(escape(malloc(100)));
		usleep(gap * 1000);
	}
	sleep(60);
	return 0;
}
