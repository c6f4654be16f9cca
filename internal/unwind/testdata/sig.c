// Signal frames: SIGALRM interrupts interrupted_loop, and the handler spins
// in sig_leaf, so the stack is sig_leaf <- sig_mid <- on_alarm <-
// __restore_rt (libc's sigreturn trampoline, CIE augmentation "S") <-
// interrupted_loop <- main. Built with -O2 -fomit-frame-pointer.
#include <signal.h>
#include <unistd.h>

volatile unsigned long sink;
volatile int stop, in_handler;

__attribute__((noinline)) int sig_leaf(int x) {
	write(1, "ready\n", 6);
	while (!stop)
		sink += x;
	return (int)sink;
}

__attribute__((noinline)) int sig_mid(int x) {
	volatile int buf[8];
	buf[x & 7] = x;
	return sig_leaf(buf[x & 7]) + 1;
}

void on_alarm(int sig) { sink += sig_mid(sig); }

__attribute__((noinline)) int interrupted_loop(int n) {
	volatile char pad[64];
	pad[n & 63] = 1;
	for (;;)
		sink += pad[n & 63];
	return 0;
}

int main(int argc, char **argv) {
	(void)argv;
	signal(SIGALRM, on_alarm);
	alarm(1);
	return interrupted_loop(argc);
}
