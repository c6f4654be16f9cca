// cpuburn: a CPU-bound demo workload with a known split. work() spends
// three quarters of its loop iterations in hot_a and one quarter in hot_b,
// both doing the same arithmetic per iteration. Built with frame pointers.
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) unsigned long hot_a(unsigned long n)
{
	volatile unsigned long x = 0;
	for (unsigned long i = 0; i < n; i++)
		x += i * 2654435761u;
	return x;
}

__attribute__((noinline)) unsigned long hot_b(unsigned long n)
{
	volatile unsigned long x = 0;
	for (unsigned long i = 0; i < n; i++)
		x += i * 2654435761u;
	return x;
}

__attribute__((noinline)) unsigned long work(void)
{
	return hot_a(3000000) + hot_b(1000000);
}

int main(int argc, char **argv)
{
	// Rounds of work(); the default runs for a few seconds.
	long rounds = argc > 1 ? atol(argv[1]) : 400;
	unsigned long s = 0;
	for (long i = 0; i < rounds; i++)
		s += work();
	printf("%lu\n", s & 1);
	return 0;
}
