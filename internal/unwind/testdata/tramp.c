// A call through JIT code with neither CFI nor a frame pointer, as CPython's
// -X perf trampolines are: main -> chain_a -> call_via -> [trampoline in
// anonymous memory: sub $8,%rsp; call *%rcx; add $8,%rsp; ret] ->
// jit_target -> chain_leaf, which spins until killed. Built with -O2
// -fomit-frame-pointer. call_via enters the trampoline with rbp pointing
// at a stack slot holding a function's address: a frame-pointer step there
// reads a "return address" that is code but follows no call, so only the
// trampoline's epilogue unwinds it.
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) int chain_leaf(int x) {
	static int said;
	if (!said) {
		said = 1;
		write(1, "ready\n", 6);
	}
	for (;;)
		sink += x;
	return (int)sink;
}

__attribute__((noinline)) int jit_target(int x) {
	volatile int buf[8];
	for (int i = 0; i < 8; i++)
		buf[i] = x + i;
	return chain_leaf(buf[2]) + buf[4];
}

// int call_via(void *tramp, int x, int (*target)(int), void *rbp_value):
// calls tramp(x) with rcx = target (the trampoline's convention) and rbp =
// rbp_value, with exact CFI of its own.
int call_via(void *tramp, int x, int (*target)(int), void *rbp_value);
__asm__(
	".text\n"
	".globl call_via\n"
	".type call_via,@function\n"
	"call_via:\n"
	"	.cfi_startproc\n"
	"	push %rbp\n"
	"	.cfi_def_cfa_offset 16\n"
	"	.cfi_offset %rbp, -16\n"
	"	mov %rdi, %rax\n"
	"	mov %rsi, %rdi\n"
	"	mov %rcx, %rbp\n"
	"	mov %rdx, %rcx\n"
	"	call *%rax\n"
	"	pop %rbp\n"
	"	.cfi_def_cfa_offset 8\n"
	"	ret\n"
	"	.cfi_endproc\n"
	".size call_via, .-call_via\n");

// CPython 3.12's _Py_trampoline_func_start, byte for byte.
static const unsigned char trampoline[] = {
	0x48, 0x83, 0xec, 0x08, // sub $8,%rsp
	0xff, 0xd1,             // call *%rcx
	0x48, 0x83, 0xc4, 0x08, // add $8,%rsp
	0xc3,                   // ret
};

__attribute__((noinline)) int chain_a(int n) {
	// A fake frame on the stack: [slot] then [slot+8] = a function's entry.
	volatile unsigned long fake[2] = {0, (unsigned long)jit_target};
	unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED)
		return -1;
	memset(code, 0xcc, 4096);
	memcpy(code + 256, trampoline, sizeof trampoline); // not at the mapping's start
	if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0)
		return -1;
	return call_via(code + 256, n, jit_target, (void *)fake) + (int)fake[0];
}

int main(int argc, char **argv) {
	(void)argv;
	printf("%d\n", chain_a(argc + 1));
	return 0;
}
