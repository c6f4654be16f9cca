// threads: a multi-threaded allocator workload with known leaks, for the
// mem probe's exactness test (capture/mem_threads_test.go).
//
// THREADS worker threads each run ROUNDS rounds of:
//   churn:          CHURN malloc/free pairs of varying size (freed)
//   leak_malloc:    1 block of 48 bytes            (leaked)
//   leak_calloc:    1 block of 10 x 12 = 120 bytes (leaked)
//   leak_realloc:   malloc(24) grown to 300 bytes  (leaked, as realloc)
//   handoff_alloc:  2 blocks of 72 bytes handed to the freer thread, which
//                   frees them: allocated in one thread, freed in another
//   leak_mmap:      3 anonymous pages mapped, the middle one unmapped
//                   (2 pages leaked per call)
// and the main thread joins them. Expected outstanding per call site:
//   leak_malloc  THREADS*ROUNDS blocks, 48 bytes each
//   leak_calloc  THREADS*ROUNDS blocks, 120 bytes each
//   leak_realloc THREADS*ROUNDS blocks, 300 bytes each
//   leak_mmap    THREADS*ROUNDS*2 pages (mmap)
//   churn, handoff_alloc: nothing
// Usage: threads THREADS ROUNDS CHURN; waits for $THREADS_WAIT_FILE first.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int rounds, churns;
static void **kept;
static long nkept;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

// The hand-off queue between workers and the freer thread.
#define QCAP 4096
static void *queue[QCAP];
static int qhead, qtail, done;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;

static inline void *escape(void *p)
{
	__asm__ volatile("" : : "r"(p) : "memory");
	return p;
}

static void keep(void *p)
{
	pthread_mutex_lock(&mu);
	kept[nkept++] = p;
	pthread_mutex_unlock(&mu);
}

__attribute__((noinline)) void leak_malloc(void) { keep(escape(malloc(48))); }
__attribute__((noinline)) void leak_calloc(void) { keep(escape(calloc(10, 12))); }
__attribute__((noinline)) void leak_realloc(void)
{
	char *p = escape(malloc(24));
	keep(escape(realloc(p, 300)));
}

__attribute__((noinline)) void leak_mmap(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		abort();
	p[0] = 1;
	munmap(p + pg, pg);
}

__attribute__((noinline)) void churn(int n, int seed)
{
	for (int i = 0; i < n; i++) {
		void *p = escape(malloc(16 + (i * 7 + seed) % 700));
		memset(p, 1, 8);
		free(escape(p));
	}
}

__attribute__((noinline)) void handoff_alloc(void)
{
	void *p = escape(malloc(72));
	pthread_mutex_lock(&mu);
	while ((qtail + 1) % QCAP == qhead)
		pthread_cond_wait(&qcond, &mu);
	queue[qtail] = p;
	qtail = (qtail + 1) % QCAP;
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&mu);
}

static void *freer(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (qhead == qtail && !done)
			pthread_cond_wait(&qcond, &mu);
		if (qhead == qtail && done)
			break;
		void *p = queue[qhead];
		qhead = (qhead + 1) % QCAP;
		pthread_cond_broadcast(&qcond);
		pthread_mutex_unlock(&mu);
		free(p);
		pthread_mutex_lock(&mu);
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

static void *worker(void *arg)
{
	int id = (int)(long)arg;
	for (int r = 0; r < rounds; r++) {
		churn(churns, id * 31 + r);
		leak_malloc();
		leak_calloc();
		leak_realloc();
		handoff_alloc();
		handoff_alloc();
		leak_mmap();
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 4;
	rounds = argc > 2 ? atoi(argv[2]) : 100;
	churns = argc > 3 ? atoi(argv[3]) : 500;
	const char *wait = getenv("THREADS_WAIT_FILE");
	while (wait && access(wait, F_OK) != 0)
		usleep(10000);
	kept = calloc((size_t)threads * rounds * 3 + 1, sizeof(void *));
	pthread_t f, w[threads];
	pthread_create(&f, NULL, freer, NULL);
	for (int i = 0; i < threads; i++)
		pthread_create(&w[i], NULL, worker, (void *)(long)i);
	for (int i = 0; i < threads; i++)
		pthread_join(w[i], NULL);
	pthread_mutex_lock(&mu);
	done = 1;
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&mu);
	pthread_join(f, NULL);
	printf("kept %ld blocks\n", nkept);
	return 0;
}
