// touch makes anonymous memory resident in known amounts, for the growth
// probe set's accuracy test:
//   touch huge MIB      one mapping advised MADV_HUGEPAGE, touched a page
//                       at a time (transparent huge pages where the kernel
//                       allows them)
//   touch threads MIB N  N threads each touching MIB of their own mapping
//                       at once (their counter changes fold concurrently)
// It prints its anonymous memory (Anonymous and AnonHugePages of
// smaps_rollup, kB) as "ready ANON HUGE", waits for a line on stdin (the
// test attaches its capture meanwhile), touches, prints "done ANON HUGE"
// and waits for stdin to close.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static size_t size;

__attribute__((noinline)) static void touch_pages(char *p, size_t n)
{
	for (size_t i = 0; i < n; i += 4096)
		p[i] = 1;
}

static void *worker(void *arg)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	touch_pages(p, size);
	return p;
}

static void report(const char *what)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	long anon = -1, huge = -1;
	while (f && fgets(line, sizeof line, f)) {
		sscanf(line, "Anonymous: %ld kB", &anon);
		sscanf(line, "AnonHugePages: %ld kB", &huge);
	}
	if (f)
		fclose(f);
	printf("%s %ld %ld\n", what, anon, huge);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	size = (size_t)atoi(argv[2]) << 20;
	char buf[64];
	report("ready");
	if (!fgets(buf, sizeof buf, stdin))
		return 1;
	if (strcmp(argv[1], "huge") == 0) {
		size_t huge = 2UL << 20;
		char *p = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *a = (char *)(((unsigned long)p + huge - 1) & ~(huge - 1));
		madvise(a, size, MADV_HUGEPAGE);
		touch_pages(a, size);
	} else {
		int n = argc > 3 ? atoi(argv[3]) : 2;
		pthread_t th[64];
		for (int i = 0; i < n && i < 64; i++)
			pthread_create(&th[i], NULL, worker, NULL);
		for (int i = 0; i < n && i < 64; i++)
			pthread_join(th[i], NULL);
	}
	report("done");
	while (fgets(buf, sizeof buf, stdin))
		;
	return 0;
}
