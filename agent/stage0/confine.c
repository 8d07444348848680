/*
 * stubdom-confine: confines QEMU between fork and exec (stage 0 run under that name).
 *
 *   stubdom-confine POLICY_FD PROGRAM [ARG...]
 *
 * The agent (agent/qemu/confine.ts) computes the policy and hands it over as an fd open on a
 * memfd; this step only applies it, in the order the kernel needs: no_new_privs, Landlock, the
 * seccomp filter, then execve of PROGRAM. Nothing in here decides what is allowed.
 *
 * Policy text (every number decimal, at most MAX_POLICY bytes):
 *   stubdom-confine 1
 *   landlock <abi> <handled_access_fs> <scoped>      abi 0: no Landlock
 *   allow <access_fs> <path>                          one per rule, after landlock
 *   exec <fd>                                         start PROGRAM as execveat(fd, "", ..., AT_EMPTY_PATH)
 *   seccomp <n>                                       then n lines "<code> <jt> <jf> <k>"
 *   end
 *
 * Why `exec`: the filter denies execve, as QEMU's `-sandbox spawn=deny` does, yet it must be in
 * place before QEMU runs. So the one exec it lets through is execveat of one fd number with
 * AT_EMPTY_PATH, the way this step starts PROGRAM (the fd is close-on-exec: QEMU never sees
 * it); Landlock's EXECUTE right, granted on QEMU's binary and its loader only, bounds what a
 * process that forges that call could run.
 *
 * A path that does not exist is skipped (a console the toolstack did not create); every other
 * failure names its step and errno on stderr and exits 126, so QEMU never runs half-confined:
 * the agent sees the exit and the line in QEMU's stderr tail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"

#define MAX_POLICY 65536
#define MAX_FILTER 4096
#define EXIT_CONFINE 126

/* struct landlock_ruleset_attr and landlock_path_beneath_attr as the kernel defines them; our
 * own copies, so that building does not depend on how new the build host's headers are. */
struct ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};
struct path_beneath {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));
#define RULE_PATH_BENEATH 1
/* Rights that apply to a file (not a directory): EXECUTE, WRITE_FILE, READ_FILE, TRUNCATE, IOCTL_DEV. */
#define FILE_RIGHTS ((1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 14) | (1ULL << 15))

static void die(const char *step, const char *subject)
{
	int e = errno;
	fprintf(stderr, "stubdom-confine: %s%s: %s (errno %d)\n", step, subject, strerror(e), e);
	exit(EXIT_CONFINE);
}

static void bad_policy(int line, const char *why)
{
	fprintf(stderr, "stubdom-confine: policy line %d: %s\n", line, why);
	exit(EXIT_CONFINE);
}

static char *read_policy(int fd)
{
	static char buf[MAX_POLICY + 1];
	size_t n = 0;
	for (;;) {
		ssize_t r = pread(fd, buf + n, MAX_POLICY + 1 - n, (off_t)n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read the policy", "");
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > MAX_POLICY) {
			errno = EFBIG;
			die("read the policy", " (longer than 64 KiB)");
		}
	}
	buf[n] = '\0';
	close(fd);
	return buf;
}

static int landlock_ruleset(uint64_t handled, uint64_t scoped)
{
	struct ruleset_attr attr = { .handled_access_fs = handled, .scoped = scoped };
	int fd = (int)syscall(__NR_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (fd < 0)
		die("landlock_create_ruleset", "");
	return fd;
}

static void landlock_allow(int ruleset, uint64_t access, const char *path)
{
	int fd = open(path, O_PATH | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return;
	if (fd < 0)
		die("open ", path);
	struct stat st;
	if (fstat(fd, &st) != 0)
		die("stat ", path);
	struct path_beneath rule = { .allowed_access = S_ISDIR(st.st_mode) ? access : access & FILE_RIGHTS, .parent_fd = fd };
	if (rule.allowed_access != 0 && syscall(__NR_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule, 0) != 0)
		die("landlock_add_rule ", path);
	close(fd);
}

int confine_main(int argc, char **argv, char **envp)
{
	if (argc < 3) {
		fprintf(stderr, "usage: stubdom-confine POLICY_FD PROGRAM [ARG...]\n");
		return 2;
	}
	char *end;
	long pfd = strtol(argv[1], &end, 10);
	if (*end != '\0' || pfd < 0 || pfd > 1023) {
		fprintf(stderr, "stubdom-confine: '%s' is not an fd\n", argv[1]);
		return 2;
	}
	char *text = read_policy((int)pfd);
	static struct sock_filter filter[MAX_FILTER];
	unsigned short nfilter = 0;
	int ruleset = -1, line = 0, header = 0, done = 0, exec_fd = -1;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && !done; l = strtok_r(NULL, "\n", &save)) {
		line++;
		unsigned long long a = 0, b = 0, c = 0;
		int off = 0;
		if (!header) {
			if (strcmp(l, "stubdom-confine 1") != 0)
				bad_policy(line, "not a stubdom-confine 1 policy");
			header = 1;
		} else if (sscanf(l, "landlock %llu %llu %llu%n", &a, &b, &c, &off) == 3 && l[off] == '\0') {
			if (a > 0)
				ruleset = landlock_ruleset(b, c);
		} else if (sscanf(l, "allow %llu %n", &a, &off) == 1 && l[off] == '/') {
			if (ruleset < 0)
				bad_policy(line, "allow without a Landlock ruleset");
			landlock_allow(ruleset, a, l + off);
		} else if (sscanf(l, "exec %llu%n", &a, &off) == 1 && l[off] == '\0') {
			if (a < 3 || a > 1023)
				bad_policy(line, "exec fd out of range");
			exec_fd = (int)a;
		} else if (sscanf(l, "seccomp %llu%n", &a, &off) == 1 && l[off] == '\0') {
			if (a == 0 || a > MAX_FILTER)
				bad_policy(line, "seccomp program length out of range");
			for (unsigned long long i = 0; i < a; i++) {
				char *insn = strtok_r(NULL, "\n", &save);
				unsigned code, jt, jf, k;
				line++;
				if (!insn || sscanf(insn, "%u %u %u %u%n", &code, &jt, &jf, &k, &off) != 4 || insn[off] != '\0' || code > 0xffff || jt > 255 || jf > 255)
					bad_policy(line, "not a BPF instruction");
				filter[nfilter++] = (struct sock_filter){ (unsigned short)code, (unsigned char)jt, (unsigned char)jf, k };
			}
		} else if (strcmp(l, "end") == 0) {
			done = 1;
		} else {
			bad_policy(line, "not understood");
		}
	}
	if (!done)
		bad_policy(line, "no end line (a truncated policy?)");
	if (exec_fd < 0)
		bad_policy(line, "no exec line");
	/* Opened before Landlock: the ruleset decides whether it may run, at execveat. */
	int program = open(argv[2], O_PATH | O_CLOEXEC);
	if (program < 0)
		die("open ", argv[2]);
	if (dup3(program, exec_fd, O_CLOEXEC) != exec_fd)
		die("dup3 ", argv[2]);
	close(program);
	/* Required by both: without it an unprivileged process may not restrict itself, and a
	 * set-user-ID program could regain what the filter took away. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		die("prctl PR_SET_NO_NEW_PRIVS", "");
	if (ruleset >= 0) {
		if (syscall(__NR_landlock_restrict_self, ruleset, 0) != 0)
			die("landlock_restrict_self", "");
		close(ruleset);
	}
	if (nfilter > 0) {
		struct sock_fprog prog = { .len = nfilter, .filter = filter };
		if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &prog) != 0)
			die("seccomp SECCOMP_SET_MODE_FILTER", "");
	}
	syscall(__NR_execveat, exec_fd, "", argv + 2, envp, AT_EMPTY_PATH);
	die("execveat ", argv[2]);
	return EXIT_CONFINE;
}
