// chain: allocations at the end of a known call chain, for the mem probe's
// DWARF unwinding test. Built with -O2 -fomit-frame-pointer, so a
// frame-pointer walk cannot see past the allocating function:
//   main -> chain_a -> chain_b -> malloc   (LEAKS blocks of 40 bytes, kept)
// Every function uses its stack and does work after its call, so none is a
// tail call and each has a real frame. Usage: chain LEAKS [LINGER_MS]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *kept[100000];
int nkept;

__attribute__((noinline)) void *chain_b(int n)
{
	volatile char pad[64];
	memset((char *)pad, n, sizeof pad);
	char *p = malloc(40);
	p[0] = pad[n % 64];
	kept[nkept++] = p;
	return p;
}

__attribute__((noinline)) int chain_a(int n)
{
	volatile int buf[32];
	for (int i = 0; i < 32; i++)
		buf[i] = n + i;
	char *p = chain_b(buf[n % 32]);
	return p[0] + buf[7];
}

int main(int argc, char **argv)
{
	int leaks = argc > 1 ? atoi(argv[1]) : 1000;
	int sum = 0;
	for (int i = 0; i < leaks && i < 100000; i++)
		sum += chain_a(i);
	printf("kept %d blocks (%d)\n", nkept, sum & 1);
	// Optional linger (ms): a process that exits within milliseconds of
	// its exec can be gone before the recorder snapshots its mappings.
	if (argc > 2)
		usleep(atoi(argv[2]) * 1000);
	return 0;
}
