// A known call chain for the unwinder tests, built with -O2
// -fomit-frame-pointer: main -> chain_a -> chain_b -> qsort (libc) ->
// chain_cmp -> chain_c -> chain_leaf, which spins until killed. The frames
// use the stack (arrays) so their CFA is not simply rsp+8, and the qsort
// detour puts libc frames (no frame pointers) in the middle of the chain.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

volatile unsigned long sink;
volatile int stop;

__attribute__((noinline)) int chain_leaf(int x) {
	static int said;
	if (!said) {
		said = 1;
		write(1, "ready\n", 6);
	}
	while (!stop)
		sink += x;
	return (int)sink;
}

__attribute__((noinline)) int chain_c(int x) {
	volatile int buf[16];
	for (int i = 0; i < 16; i++)
		buf[i] = x + i;
	return chain_leaf(buf[3]) + buf[5];
}

__attribute__((noinline)) int chain_cmp(const void *p, const void *q) {
	int a = *(const int *)p, b = *(const int *)q;
	return chain_c(a - b) + 1;
}

__attribute__((noinline)) int chain_b(int n) {
	int v[4] = {n, n + 3, n + 1, n + 2};
	qsort(v, 4, sizeof v[0], chain_cmp);
	return v[0] + v[3];
}

__attribute__((noinline)) int chain_a(int n) {
	volatile char pad[100];
	// A stand-in for a secret held on the stack (capture privacy test).
	const char *secret = "BPFSNAP-STACK-SECRET-7f3a";
	for (int i = 0; secret[i]; i++)
		pad[i] = secret[i];
	pad[n % 100] = (char)n;
	return chain_b(n + pad[n % 100]) * 3;
}

static void on_alarm(int sig) { (void)sig; stop = 1; }

// With an argument N, the leaf spins for N seconds (capture tests); without,
// until killed (ptrace tests).
int main(int argc, char **argv) {
	if (argc > 1) {
		signal(SIGALRM, on_alarm);
		alarm((unsigned)atoi(argv[1]));
	}
	int r = chain_a(argc + 1);
	printf("%d\n", r);
	return 0;
}
