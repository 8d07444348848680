/*
 * A stand-in for a compromised QEMU under stubdom-confine: tries one action and prints what
 * happened ("ok" or the errno name). A filter that kills prints nothing: the test sees SIGSYS.
 *   confine-probe ACTION [PATH]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int result(long rc)
{
	if (rc < 0)
		printf("%s\n", strerrorname_np(errno));
	else
		printf("ok\n");
	return 0;
}

static void *thread(void *arg)
{
	return arg;
}

int main(int argc, char **argv)
{
	const char *a = argc > 1 ? argv[1] : "ok";
	const char *path = argc > 2 ? argv[2] : "/";
	setvbuf(stdout, NULL, _IONBF, 0);
	if (!strcmp(a, "ok"))
		return result(0);
	if (!strcmp(a, "thread")) {
		pthread_t t;
		int e = pthread_create(&t, NULL, thread, NULL);
		if (e == 0)
			pthread_join(t, NULL);
		errno = e;
		return result(e ? -1 : 0);
	}
	if (!strcmp(a, "read"))
		return result(open(path, O_RDONLY));
	if (!strcmp(a, "write"))
		return result(open(path, O_WRONLY | O_CREAT, 0600));
	if (!strcmp(a, "execve")) {
		char *args[] = { (char *)path, NULL };
		return result(execve(path, args, environ));
	}
	if (!strcmp(a, "fork"))
		return result(syscall(SYS_fork));
	if (!strcmp(a, "spawn")) {
		pid_t pid;
		char *args[] = { (char *)path, NULL };
		errno = posix_spawn(&pid, path, NULL, NULL, args, environ);
		return result(errno ? -1 : 0);
	}
	if (!strcmp(a, "setuid"))
		return result(setuid(0));
	if (!strcmp(a, "setpriority"))
		return result(setpriority(PRIO_PROCESS, 0, 5));
	if (!strcmp(a, "mount"))
		return result(mount("none", "/mnt", "tmpfs", 0, NULL));
	if (!strcmp(a, "unshare"))
		return result(unshare(CLONE_NEWNET));
	if (!strcmp(a, "status")) {
		/* Our own /proc status: the Seccomp and NoNewPrivs lines the agent checks on QEMU. */
		char buf[8192];
		int fd = open("/proc/self/status", O_RDONLY);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
		if (n <= 0)
			return result(-1);
		fwrite(buf, 1, (size_t)n, stdout);
		return 0;
	}
	if (!strcmp(a, "syscall-ns")) {
		/* The filter's cost: ns per getppid over 1,000,000 calls (for the README's figure). */
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < 1000000; i++)
			syscall(SYS_getppid);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e6);
		return 0;
	}
	if (!strcmp(a, "kill-parent"))
		return result(kill(getppid(), 0));
	printf("unknown action %s\n", a);
	return 2;
}
