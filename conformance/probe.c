/*
 * probe: a tiny static program run inside containers by the conformance
 * suite.  It reports what the process sees as `key=value` lines so the
 * Python side can compare them with config.json (config.md#process,
 * config-linux.md).  Built by conformance/bundle.py with `gcc -static -O2`.
 *
 * Usage:
 *   probe [facts]              print process facts
 *   probe sys NAME [ARG...]    call syscall NAME with integer args, print
 *                              `ret=N errno=E`
 *   probe clocks               print monotonic and boottime seconds
 *   probe write PATH TEXT      open(O_WRONLY|O_CREAT|O_TRUNC) + write; print result
 *   probe mknod PATH MAJ MIN   try to create a char device MAJ:MIN at PATH
 *   probe open PATH            open(O_RDONLY) PATH and print result
 *   probe alloc MB             touch MB megabytes of memory, then print done
 *   probe fork N               fork N children that sleep, print how many forks worked
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void caps(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0) {
        printf("capget_errno=%d\n", errno);
        return;
    }
    unsigned long long eff = ((unsigned long long)d[1].effective << 32) | d[0].effective;
    unsigned long long prm = ((unsigned long long)d[1].permitted << 32) | d[0].permitted;
    unsigned long long inh = ((unsigned long long)d[1].inheritable << 32) | d[0].inheritable;
    unsigned long long bnd = 0, amb = 0;
    for (int c = 0; c < 64; c++) {
        int r = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
        if (r < 0) break;
        if (r == 1) bnd |= 1ULL << c;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1) amb |= 1ULL << c;
    }
    printf("cap_eff=%016llx\ncap_prm=%016llx\ncap_inh=%016llx\ncap_bnd=%016llx\ncap_amb=%016llx\n",
           eff, prm, inh, bnd, amb);
}

static const struct { const char *name; int res; } RLIMITS[] = {
    {"RLIMIT_CPU", RLIMIT_CPU}, {"RLIMIT_FSIZE", RLIMIT_FSIZE}, {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_STACK", RLIMIT_STACK}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_NPROC", RLIMIT_NPROC}, {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE}, {"RLIMIT_RTPRIO", RLIMIT_RTPRIO}, {"RLIMIT_RTTIME", RLIMIT_RTTIME},
};

static void print_file_line(const char *key, const char *path) {
    char buf[256];
    FILE *f = fopen(path, "r");
    if (!f) { printf("%s=!%d\n", key, errno); return; }
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    printf("%s=%s\n", key, buf);
}

static void status_field(const char *field, const char *key) {
    char line[512];
    size_t n = strlen(field);
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            char *v = line + n + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            printf("%s=%s\n", key, v);
        }
    }
    fclose(f);
}

static int facts(void) {
    struct utsname u;
    char cwd[4096];
    gid_t groups[256];
    printf("pid=%d\nppid=%d\n", getpid(), getppid());
    printf("uid=%d\ngid=%d\neuid=%d\negid=%d\n", getuid(), getgid(), geteuid(), getegid());
    int n = getgroups(256, groups);
    printf("groups=");
    for (int i = 0; i < n; i++) printf(i ? ",%d" : "%d", groups[i]);
    printf("\n");
    mode_t m = umask(0);
    umask(m);
    printf("umask=%04o\n", m);
    printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    caps();
    printf("no_new_privs=%d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    printf("personality=0x%x\n", personality(0xffffffff));
    status_field("Seccomp", "seccomp");
    print_file_line("oom_score_adj", "/proc/self/oom_score_adj");
    for (size_t i = 0; i < sizeof RLIMITS / sizeof RLIMITS[0]; i++) {
        struct rlimit r;
        if (getrlimit(RLIMITS[i].res, &r) == 0)
            printf("%s=%lld:%lld\n", RLIMITS[i].name,
                   r.rlim_cur == RLIM_INFINITY ? -1LL : (long long)r.rlim_cur,
                   r.rlim_max == RLIM_INFINITY ? -1LL : (long long)r.rlim_max);
    }
    if (uname(&u) == 0)
        printf("hostname=%s\ndomainname=%s\nmachine=%s\n", u.nodename, u.domainname, u.machine);
    /* open fds, listed through /proc so the directory stream's own fd is skipped */
    DIR *d = opendir("/proc/self/fd");
    printf("fds=");
    if (d) {
        int self = dirfd(d), first = 1;
        struct dirent *e;
        int fds[1024], nf = 0;
        while ((e = readdir(d)) && nf < 1024) {
            if (e->d_name[0] == '.') continue;
            int fd = atoi(e->d_name);
            if (fd != self) fds[nf++] = fd;
        }
        closedir(d);
        for (int i = 0; i < nf; i++)
            for (int j = i + 1; j < nf; j++)
                if (fds[j] < fds[i]) { int t = fds[i]; fds[i] = fds[j]; fds[j] = t; }
        for (int i = 0; i < nf; i++) { printf(first ? "%d" : ",%d", fds[i]); first = 0; }
    }
    printf("\n");
    for (int fd = 0; fd < 3; fd++) {
        char p[64], t[512];
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        ssize_t l = readlink(p, t, sizeof t - 1);
        t[l > 0 ? l : 0] = 0;
        printf("fd%d=%s\nisatty%d=%d\n", fd, t, fd, isatty(fd));
    }
    printf("sid=%d\npgid=%d\n", getsid(0), getpgid(0));
    return 0;
}

static const struct { const char *name; long nr; } SYSCALLS[] = {
    {"getpid", SYS_getpid}, {"getppid", SYS_getppid}, {"getuid", SYS_getuid},
    {"getcwd", SYS_getcwd}, {"uname", SYS_uname}, {"umask", SYS_umask},
    {"personality", SYS_personality}, {"sync", SYS_sync}, {"getpgid", SYS_getpgid},
    {"setpgid", SYS_setpgid}, {"getpriority", SYS_getpriority}, {"dup", SYS_dup},
    {"close", SYS_close}, {"kill", SYS_kill}, {"setuid", SYS_setuid},
    {"sethostname", SYS_sethostname}, {"unshare", SYS_unshare}, {"chroot", SYS_chroot},
    {"getsid", SYS_getsid},
#ifdef SYS_mkdir
    {"mkdir", SYS_mkdir},
#endif
    {"mkdirat", SYS_mkdirat},
};

static int do_sys(int argc, char **argv) {
    long a[6] = {0};
    if (argc < 1) return 2;
    long nr = -1;
    for (size_t i = 0; i < sizeof SYSCALLS / sizeof SYSCALLS[0]; i++)
        if (strcmp(SYSCALLS[i].name, argv[0]) == 0) nr = SYSCALLS[i].nr;
    if (nr < 0) { printf("unknown_syscall=%s\n", argv[0]); return 2; }
    for (int i = 1; i < argc && i <= 6; i++) a[i - 1] = strtol(argv[i], NULL, 0);
    if (nr == SYS_getcwd || nr == SYS_uname) { static char buf[8192]; a[0] = (long)buf; a[1] = sizeof buf; }
    errno = 0;
    long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    printf("ret=%ld\nerrno=%d\n", r, r < 0 ? errno : 0);
    fflush(stdout);
    return 0;
}

static int clocks(void) {
    struct timespec m, b;
    clock_gettime(CLOCK_MONOTONIC, &m);
    clock_gettime(CLOCK_BOOTTIME, &b);
    printf("monotonic=%lld\nboottime=%lld\n", (long long)m.tv_sec, (long long)b.tv_sec);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || strcmp(argv[1], "facts") == 0) return facts();
    if (strcmp(argv[1], "sys") == 0) return do_sys(argc - 2, argv + 2);
    if (strcmp(argv[1], "clocks") == 0) return clocks();
    if (strcmp(argv[1], "write") == 0 && argc == 4) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { printf("errno=%d\n", errno); return 1; }
        ssize_t w = write(fd, argv[3], strlen(argv[3]));
        printf("written=%zd\nerrno=%d\n", w, w < 0 ? errno : 0);
        return w < 0;
    }
    if (strcmp(argv[1], "open") == 0 && argc == 3) {
        int fd = open(argv[2], O_RDONLY);
        printf("errno=%d\n", fd < 0 ? errno : 0);
        return fd < 0;
    }
    if (strcmp(argv[1], "mknod") == 0 && argc == 5) {
        int r = mknod(argv[2], S_IFCHR | 0666, makedev(atoi(argv[3]), atoi(argv[4])));
        printf("errno=%d\n", r < 0 ? errno : 0);
        return r < 0;
    }
    if (strcmp(argv[1], "alloc") == 0 && argc == 3) {
        long mb = atol(argv[2]);
        for (long i = 0; i < mb; i++) {
            char *p = malloc(1 << 20);
            if (!p) { printf("malloc_failed_at=%ld\n", i); return 1; }
            memset(p, 1, 1 << 20);
        }
        printf("done=%ld\n", mb);
        return 0;
    }
    if (strcmp(argv[1], "fork") == 0 && argc == 3) {
        int want = atoi(argv[2]), ok = 0, err = 0;
        for (int i = 0; i < want; i++) {
            pid_t p = fork();
            if (p == 0) { sleep(5); _exit(0); }
            if (p < 0) { err = errno; break; }
            ok++;
        }
        printf("forked=%d\nerrno=%d\n", ok, err);
        return 0;
    }
    fprintf(stderr, "probe: unknown command\n");
    return 2;
}
