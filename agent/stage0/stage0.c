/*
 * stage0: the stub domain's /init, run by the kernel before anything else.
 *
 * Why it exists: the agent is a compiled Bun binary, and such a binary aborts at start-up
 * when /proc is not mounted (glibc's pthread_getattr_np reads /proc/self/maps for the main
 * thread's stack). As /init that abort is a kernel panic. Something must mount /proc, /sys
 * and devtmpfs first and then execve the agent, so that the agent is still PID 1.
 *
 * It also exists for memory: the agent binary (~110 MB), QEMU and the libraries are kept in a
 * compressed squashfs, because libxl gives a stub domain 128 MiB + video RAM. The squashfs is
 * the first entry of the initramfs, one the kernel does not unpack (its parent directory never
 * exists: agent/build/cpio.ts detachedFileChunks), so it is never copied: the kernel keeps the
 * initrd (retain_initrd, in our kernel's built-in command line) and shows it as
 * /sys/firmware/initrd (Linux 6.8+), and the squashfs is mounted on /usr from there through a
 * read-only loop device with the entry's offset. The kernel has everything built in.
 *
 * Why C and not a busybox script: no shell, no busybox and no dynamic loader are needed before
 * /usr is mounted (all of glibc lives there), each failure can name its step and errno
 * exactly, and the whole stage is one static file of a few hundred KiB.
 *
 * A failure prints the step and errno on the console and powers the domain off: returning or
 * exiting from PID 1 would panic the kernel instead of stopping cleanly.
 *
 * The same file is /sbin/poweroff (a symlink to /init). `xl shutdown` of a stub domain makes
 * the kernel (drivers/xen/manage.c) call orderly_poweroff(), which runs /sbin/poweroff as a
 * usermode helper; a power-off that bypassed the agent would leave QEMU unstopped and the
 * health report at "running". So, run under that name, stage 0 only asks PID 1 (the agent)
 * for its graceful stop with SIGTERM, the signal it already handles, and exits.
 *
 * And it is /sbin/stubdom-confine (confine.c): the agent starts QEMU through it, so that QEMU
 * runs under the seccomp filter and Landlock rules the agent computed (agent/qemu/confine.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"

#define INITRD "/sys/firmware/initrd"
#define USR_PAYLOAD ".stubdom/usr.squashfs" /* agent/build/image.ts USR_PAYLOAD */
#define AGENT "/usr/bin/stubdom-init"

static void say(const char *a, const char *b, const char *c)
{
	char line[512];
	int n = snprintf(line, sizeof line, "stage0: %s%s%s\n", a, b, c);
	if (n > 0)
		(void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void fail(const char *step, const char *subject)
{
	int e = errno;
	char detail[160];
	snprintf(detail, sizeof detail, ": %s (errno %d, %s)", strerrorname_np(e) ? strerrorname_np(e) : "?", e,
		 strerror(e));
	say(step, subject, detail);
	say("powering off", "", "");
	sync();
	reboot(RB_POWER_OFF);
	/* reboot only returns on failure; PID 1 must never exit, so wait for the end. */
	for (;;)
		pause();
}

static void mount_fs(const char *src, const char *target, const char *type, unsigned long flags)
{
	if (mkdir(target, 0755) != 0 && errno != EEXIST)
		fail("mkdir ", target);
	if (mount(src, target, type, flags, NULL) != 0)
		fail("mount ", target);
}

/* The initrd's first newc header: where the squashfs entry's body starts and how long it is. */
static void find_payload(int fd, off_t *offset, off_t *size)
{
	char head[110 + sizeof USR_PAYLOAD];
	if (pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head)
		fail("read the first cpio header of ", INITRD);
	unsigned long f[13];
	for (int i = 0; i < 13; i++) {
		char hex[9];
		memcpy(hex, head + 6 + 8 * i, 8);
		hex[8] = '\0';
		char *end;
		f[i] = strtoul(hex, &end, 16);
		if (*end != '\0')
			f[i] = ~0UL;
	}
	errno = EINVAL;
	if (memcmp(head, "070701", 6) != 0 || f[11] != sizeof USR_PAYLOAD || memcmp(head + 110, USR_PAYLOAD, sizeof USR_PAYLOAD) != 0)
		fail("the initrd does not start with ", USR_PAYLOAD " (is this our rootfs?)");
	*offset = (off_t)((110 + sizeof USR_PAYLOAD + 3) & ~3UL);
	*size = (off_t)f[6];
	char magic[4];
	if (pread(fd, magic, 4, *offset) != 4 || memcmp(magic, "hsqs", 4) != 0) {
		errno = EINVAL;
		fail("no squashfs magic at the start of ", USR_PAYLOAD);
	}
}

static void mount_usr(void)
{
	int img = open(INITRD, O_RDONLY | O_CLOEXEC);
	if (img < 0)
		fail("open ", INITRD " (needs Linux 6.8+ booted with retain_initrd, as our kernel is)");
	struct stat st;
	off_t offset, size;
	find_payload(img, &offset, &size);
	if (fstat(img, &st) != 0)
		fail("stat ", INITRD);
	if (offset + size > st.st_size) {
		errno = EINVAL;
		fail("the squashfs runs past the end of ", INITRD " (a truncated rootfs?)");
	}
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		fail("open ", "/dev/loop-control");
	int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	if (nr < 0)
		fail("ioctl LOOP_CTL_GET_FREE ", "/dev/loop-control");
	close(ctl);
	char dev[32];
	snprintf(dev, sizeof dev, "/dev/loop%d", nr);
	int loop = open(dev, O_RDONLY | O_CLOEXEC);
	if (loop < 0)
		fail("open ", dev);
	struct loop_config cfg = { .fd = (unsigned)img };
	cfg.info.lo_offset = (unsigned long long)offset;
	cfg.info.lo_sizelimit = (unsigned long long)size;
	cfg.info.lo_flags = LO_FLAGS_READ_ONLY;
	if (ioctl(loop, LOOP_CONFIGURE, &cfg) != 0)
		fail("ioctl LOOP_CONFIGURE ", dev);
	close(img);
	if (mount(dev, "/usr", "squashfs", MS_RDONLY | MS_NODEV, NULL) != 0)
		fail("mount squashfs on ", "/usr");
	close(loop);
}

/* /sbin/poweroff: PID 1 stops QEMU, syncs and powers off; a second request is harmless. */
static int ask_pid1_to_power_off(void)
{
	if (kill(1, SIGTERM) != 0) {
		char detail[96];
		snprintf(detail, sizeof detail, "(errno %d, %s)", errno, strerror(errno));
		say("poweroff: kill(1, SIGTERM) failed ", detail, "");
		return 1;
	}
	say("poweroff: asked PID 1 to stop (SIGTERM)", "", "");
	return 0;
}

/*
 * JavaScriptCore settings for the agent, each unless the kernel command line set it: only the
 * interpreter (LLInt), one GC marker thread, nothing compiled on other threads. The agent waits
 * on I/O and runs little JavaScript; without the JIT tiers and their threads it touches less of
 * the binary and of the heap: the memory floor under Xen went from 120 to 112 MiB with them
 * (measured with an xz image; README.md, Performance). useJIT=0 would go further, but bun:ffi stops working with it.
 */
static const char *const jsc_defaults[] = { "BUN_JSC_useDFGJIT=0", "BUN_JSC_useConcurrentJIT=0", "BUN_JSC_useBaselineJIT=0", "BUN_JSC_numberOfGCMarkers=1" };

static int env_has(char **env, size_t n, const char *setting)
{
	size_t key = strcspn(setting, "=") + 1;
	for (size_t i = 0; i < n; i++)
		if (strncmp(env[i], setting, key) == 0)
			return 1;
	return 0;
}

/* The kernel passes at most 32 variables to init; the array has room for them and ours. */
static char **agent_env(char **envp)
{
	static char *env[64];
	const size_t ours = sizeof jsc_defaults / sizeof jsc_defaults[0];
	size_t n = 0;
	while (envp[n] && n < 63 - ours) {
		env[n] = envp[n];
		n++;
	}
	size_t kernel = n;
	for (size_t i = 0; i < ours; i++)
		if (!env_has(env, kernel, jsc_defaults[i]))
			env[n++] = (char *)jsc_defaults[i];
	env[n] = NULL;
	return env;
}

int main(int argc, char **argv, char **envp)
{
	if (argc > 0 && strcmp(basename(argv[0]), "stubdom-confine") == 0)
		return confine_main(argc, argv, envp);
	if (getpid() != 1 && argc > 0 && strcmp(basename(argv[0]), "poweroff") == 0)
		return ask_pid1_to_power_off();
	if (getpid() != 1) {
		say("must run as PID 1 (the kernel's /init)", "", "");
		return 1;
	}
	/* The kernel opened /dev/console from the cpio's node; devtmpfs replaces /dev after that. */
	mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC);
	mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
	mount_usr();
	argv[0] = (char *)"stubdom-init";
	execve(AGENT, argv, agent_env(envp));
	fail("execve ", AGENT);
	return 1;
}
