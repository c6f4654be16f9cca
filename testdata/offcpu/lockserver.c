// lockserver: an HTTP/1.1 server with a thread per connection, for the
// off-CPU tests (capture/offcpu_test.go). Three routes, each slow for a
// different reason:
//   /lock     waits in wait_for_shared_lock() on a mutex that a background
//             thread holds 40 ms out of every 50
//   /sleep    sleeps 20 ms in take_a_nap()
//   /compute  burns ~20 ms of CPU in crunch_numbers()
// Usage: lockserver PORT
#define _GNU_SOURCE
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t shared = PTHREAD_MUTEX_INITIALIZER;

static void *holder(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&shared);
		usleep(40000);
		pthread_mutex_unlock(&shared);
		usleep(10000);
	}
	return NULL;
}

__attribute__((noinline)) static void wait_for_shared_lock(void)
{
	pthread_mutex_lock(&shared);
	pthread_mutex_unlock(&shared);
}

__attribute__((noinline)) static void take_a_nap(void)
{
	usleep(20000);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static unsigned long crunch_numbers(void)
{
	volatile unsigned long x = 1;
	double end = now_s() + 0.020; // 20 ms of this thread's CPU time
	while (now_s() < end)
		for (int i = 0; i < 10000; i++)
			x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

__attribute__((noinline)) static void handle(int fd, const char *path)
{
	const char *body = "not found\n";
	const char *status = "404 Not Found";
	if (strcmp(path, "/lock") == 0) {
		wait_for_shared_lock();
		body = "locked\n", status = "200 OK";
	} else if (strcmp(path, "/sleep") == 0) {
		take_a_nap();
		body = "slept\n", status = "200 OK";
	} else if (strcmp(path, "/compute") == 0) {
		crunch_numbers();
		body = "computed\n", status = "200 OK";
	}
	char resp[256];
	int n = snprintf(resp, sizeof(resp), "HTTP/1.1 %s\r\nContent-Length: %zu\r\nContent-Type: text/plain\r\n\r\n%s", status, strlen(body), body);
	if (write(fd, resp, n) != n)
		return;
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	char buf[4096];
	size_t have = 0;
	for (;;) {
		char *end = memmem(buf, have, "\r\n\r\n", 4);
		if (!end) {
			if (have == sizeof(buf))
				break;
			ssize_t n = read(fd, buf + have, sizeof(buf) - have);
			if (n <= 0)
				break;
			have += n;
			continue;
		}
		// "GET /path HTTP/1.1"
		char path[256] = "";
		char *sp = memchr(buf, ' ', end - buf);
		if (sp) {
			char *sp2 = memchr(sp + 1, ' ', end - sp - 1);
			size_t len = sp2 ? (size_t)(sp2 - sp - 1) : 0;
			if (len < sizeof(path)) {
				memcpy(path, sp + 1, len);
				path[len] = 0;
			}
		}
		handle(fd, path);
		size_t used = end + 4 - buf;
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	int port = argc > 1 ? atoi(argv[1]) : 8080;
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) || listen(ls, 128)) {
		perror("listen");
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_create(&t, &at, serve, (void *)(long)fd);
		pthread_attr_destroy(&at);
	}
}
