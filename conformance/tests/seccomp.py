"""config-linux.md#seccomp: default action, per-syscall actions, argument
conditions and errnoRet."""
from __future__ import annotations

import errno
import os

from conformance.context import parse_kv
from conformance.registry import Fail, Skip, check, check_eq, conformance_test

ARCH = {"x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}


def _seccomp(ctx, default="SCMP_ACT_ALLOW", syscalls=(), **extra):
    if ctx.host.arch not in ARCH:
        raise Skip(f"no seccomp architecture list for {ctx.host.arch}")
    sc = {"defaultAction": default, "architectures": ARCH[ctx.host.arch], "syscalls": list(syscalls), **extra}

    def mut(cfg):
        cfg["linux"]["seccomp"] = sc
    return mut


def _try(ctx, mut, *call):
    c, out = ctx.run(mut, ["/probe", "sys", *call])
    return parse_kv(out), c


@conformance_test("seccomp-errno-action", "config-linux.md#seccomp", "MUST",
                  "SCMP_ACT_ERRNO on a syscall makes it fail (EPERM by default)")
def t_errno(ctx):
    kv, _ = _try(ctx, _seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]), "getpriority")
    check_eq(kv.get("errno"), str(errno.EPERM), "errno of getpriority")


@conformance_test("seccomp-errnoret", "config-linux.md#seccomp", "MUST",
                  "errnoRet sets the errno returned by an SCMP_ACT_ERRNO rule")
def t_errnoret(ctx):
    kv, _ = _try(ctx, _seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
                                               "errnoRet": errno.EXDEV}]), "getpriority")
    check_eq(kv.get("errno"), str(errno.EXDEV), "errno of getpriority")


@conformance_test("seccomp-default-errnoret", "config-linux.md#seccomp", "MUST",
                  "defaultErrnoRet sets the errno of a default SCMP_ACT_ERRNO")
def t_def_errnoret(ctx):
    # allow what the probe and exec need; everything else returns ENOTTY
    needed = ["execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "mprotect",
              "prlimit64", "readlinkat", "getrandom", "write", "exit_group", "mmap", "munmap", "uname",
              "futex", "newfstatat", "fstat", "ioctl", "read", "close", "rt_sigprocmask", "rt_sigaction",
              "sigaltstack", "fcntl", "access", "openat", "getpid", "exit", "statfs", "fstatfs", "close_range",
              "getdents64", "sched_yield", "nanosleep", "clock_gettime", "clock_nanosleep", "capget", "capset",
              "prctl", "setgroups", "setresuid", "setresgid", "setuid", "setgid", "chdir", "fchdir", "dup3",
              "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "pipe2", "gettid", "tgkill", "madvise",
              "sched_getaffinity", "getppid", "getuid", "geteuid", "getgid", "getegid", "setsid", "sethostname",
              "umask", "mount", "pivot_root", "unshare", "keyctl", "socket", "connect", "sendmsg", "recvmsg",
              "write", "writev", "pread64", "lseek", "dup", "dup2", "mkdirat", "symlinkat", "mknodat",
              "fchownat", "fchmodat", "readlink", "stat", "lstat", "statx", "faccessat", "faccessat2",
              "rt_sigreturn", "kill", "wait4", "waitid", "clone", "clone3", "fork", "vfork", "execveat",
              "getcwd", "setpgid", "getpgid", "getrlimit", "setrlimit", "poll", "ppoll", "select",
              "pselect6", "sched_getparam", "sysinfo", "seccomp", "personality", "umount2", "fsync"]
    mut = _seccomp(ctx, default="SCMP_ACT_ERRNO", defaultErrnoRet=errno.ENOTTY,
                   syscalls=[{"names": needed, "action": "SCMP_ACT_ALLOW"}])
    kv, _ = _try(ctx, mut, "getpriority")
    check_eq(kv.get("errno"), str(errno.ENOTTY), "errno of a default-denied getpriority")


@conformance_test("seccomp-allow-default", "config-linux.md#seccomp", "MUST",
                  "syscalls not listed get defaultAction (ALLOW)")
def t_allow(ctx):
    kv, _ = _try(ctx, _seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]), "getpid")
    check_eq(kv.get("errno"), "0", "errno of getpid")


def _killed_by_sigsys(ctx, action):
    """Run the probe's getpriority under ``action`` from a shell that reports
    how the probe ended: killed by SIGSYS is exit status 128 + 31."""
    mut = _seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": action}])
    _, out = ctx.run(mut, ["/bin/sh", "-c", "/probe sys getpriority 0 0; echo status=$?"])
    words = out.split()
    check(any(w.startswith("status=") for w in words), f"the shell did not report the probe's end: {words}")
    check(not any(w.startswith("ret=") for w in words), f"getpriority returned: {words}")
    check("status=159" in words, f"output {words} (want death by SIGSYS: status=159)")


@conformance_test("seccomp-kill-action", "config-linux.md#seccomp", "MUST",
                  "SCMP_ACT_KILL kills the process on the syscall")
def t_kill(ctx):
    _killed_by_sigsys(ctx, "SCMP_ACT_KILL")


@conformance_test("seccomp-kill-process-action", "config-linux.md#seccomp", "MUST",
                  "SCMP_ACT_KILL_PROCESS kills the process on the syscall")
def t_kill_proc(ctx):
    _killed_by_sigsys(ctx, "SCMP_ACT_KILL_PROCESS")


@conformance_test("seccomp-trap-action", "config-linux.md#seccomp", "MUST",
                  "SCMP_ACT_TRAP sends SIGSYS on the syscall")
def t_trap(ctx):
    _killed_by_sigsys(ctx, "SCMP_ACT_TRAP")


@conformance_test("seccomp-log-action", "config-linux.md#seccomp", "MUST",
                  "SCMP_ACT_LOG allows the syscall")
def t_log(ctx):
    kv, _ = _try(ctx, _seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_LOG"}]), "getpriority")
    check_eq(kv.get("errno"), "0", "errno of a logged getppid")


@conformance_test("seccomp-arg-eq", "config-linux.md#seccomp", "MUST",
                  "an SCMP_CMP_EQ argument condition limits the rule to matching calls")
def t_arg_eq(ctx):
    rule = {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
            "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
    mut = _seccomp(ctx, syscalls=[rule])
    _, out = ctx.run(mut, ["/bin/sh", "-c", "/probe sys personality 8; /probe sys personality 0xffffffff"])
    errs = [ln for ln in out.split() if ln.startswith("errno=")]
    check_eq(errs, [f"errno={errno.EDOM}", "errno=0"], "errno of personality(8), personality(query)")


@conformance_test("seccomp-arg-ne", "config-linux.md#seccomp", "MUST",
                  "an SCMP_CMP_NE argument condition")
def t_arg_ne(ctx):
    rule = {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
            "args": [{"index": 0, "value": 0xffffffff, "op": "SCMP_CMP_NE"}]}
    _, out = ctx.run(_seccomp(ctx, syscalls=[rule]),
                     ["/bin/sh", "-c", "/probe sys personality 8; /probe sys personality 0xffffffff"])
    errs = [ln for ln in out.split() if ln.startswith("errno=")]
    check_eq(errs, [f"errno={errno.EDOM}", "errno=0"], "errno of personality(8), personality(query)")


@conformance_test("seccomp-arg-masked-eq", "config-linux.md#seccomp", "MUST",
                  "an SCMP_CMP_MASKED_EQ condition (value is the mask, valueTwo the result)")
def t_arg_masked(ctx):
    rule = {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
            "args": [{"index": 0, "value": 0o7, "valueTwo": 0o7, "op": "SCMP_CMP_MASKED_EQ"}]}
    _, out = ctx.run(_seccomp(ctx, syscalls=[rule]),
                     ["/bin/sh", "-c", "/probe sys umask 0777; /probe sys umask 0770"])
    errs = [ln for ln in out.split() if ln.startswith("errno=")]
    check_eq(errs, [f"errno={errno.EDOM}", "errno=0"], "errno of umask(0777), umask(0770)")


@conformance_test("seccomp-arg-gt-lt", "config-linux.md#seccomp", "MUST",
                  "SCMP_CMP_GT and SCMP_CMP_LT conditions")
def t_arg_gt(ctx):
    rules = [{"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
              "args": [{"index": 0, "value": 0o700, "op": "SCMP_CMP_GT"}]},
             {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ERANGE,
              "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_LT"}]}]
    _, out = ctx.run(_seccomp(ctx, syscalls=rules),
                     ["/bin/sh", "-c", "/probe sys umask 0777; /probe sys umask 022; /probe sys getpgid 0"])
    errs = [ln for ln in out.split() if ln.startswith("errno=")]
    check_eq(errs, [f"errno={errno.EDOM}", "errno=0", f"errno={errno.ERANGE}"], "errnos")


@conformance_test("seccomp-multiple-names", "config-linux.md#seccomp", "MUST",
                  "a rule applies to every syscall in names")
def t_names(ctx):
    rule = {"names": ["getpriority", "getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM}
    _, out = ctx.run(_seccomp(ctx, syscalls=[rule]),
                     ["/bin/sh", "-c", "/probe sys getpriority 0 0; /probe sys getsid 0"])
    errs = [ln for ln in out.split() if ln.startswith("errno=")]
    check_eq(errs, [f"errno={errno.EDOM}"] * 2, "errnos")


@conformance_test("seccomp-mode-filter", "config-linux.md#seccomp", "MUST",
                  "with a seccomp object the process runs under a seccomp filter")
def t_mode(ctx):
    f = ctx.facts(_seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]))
    check_eq(f.get("seccomp"), "2", "Seccomp mode in /proc/self/status")


@conformance_test("seccomp-none-without-config", "config-linux.md#seccomp", "SHOULD",
                  "without linux.seccomp no filter is installed")
def t_nomode(ctx):
    check_eq(ctx.facts().get("seccomp"), "0", "Seccomp mode")


@conformance_test("seccomp-errnoret-invalid-action", "config-linux.md#seccomp", "MUST",
                  "errnoRet with an action other than ERRNO/TRACE is an error")
def t_errnoret_bad(ctx):
    ctx.expect_create_error(_seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ALLOW",
                                                     "errnoRet": 5}]), "errnoRet with SCMP_ACT_ALLOW",
                            control=_seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
                                                             "errnoRet": 5}]),
                            control_what="errnoRet with SCMP_ACT_ERRNO")


@conformance_test("seccomp-invalid-action", "config-linux.md#seccomp", "MUST",
                  "an unknown seccomp action is an error")
def t_bad_action(ctx):
    ctx.expect_create_error(_seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_FROB"}]),
                            "action SCMP_ACT_FROB", control=_seccomp(ctx, syscalls=[{"names": ["getpriority"],
                                                                                     "action": "SCMP_ACT_ERRNO"}]),
                            control_what="action SCMP_ACT_ERRNO")


@conformance_test("seccomp-invalid-operator", "config-linux.md#seccomp", "MUST",
                  "an unknown argument operator is an error")
def t_bad_op(ctx):
    rule = {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]}
    good = dict(rule, args=[{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}])
    ctx.expect_create_error(_seccomp(ctx, syscalls=[rule]), "operator SCMP_CMP_XX",
                            control=_seccomp(ctx, syscalls=[good]), control_what="operator SCMP_CMP_EQ")


@conformance_test("seccomp-listener-metadata-without-path", "config-linux.md#seccomp", "MUST",
                  "listenerMetadata without listenerPath is an error")
def t_listener_meta(ctx):
    ctx.expect_create_error(_seccomp(ctx, listenerMetadata="x",
                                     syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]),
                            "listenerMetadata without listenerPath",
                            control=_seccomp(ctx, syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]),
                            control_what="the same filter without listenerMetadata")


class _Listener:
    """A seccomp agent stand-in: one AF_UNIX stream socket in the test dir,
    accepting in a thread and recording every recvmsg until EOF."""

    def __init__(self, ctx):
        import socket
        import threading
        self.path = ctx.socket_path("seccomp.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(4)
        self.srv.settimeout(20)
        self.chunks: list[tuple[bytes, list[int]]] = []
        self.connections = 0
        self.eof = False
        self.error = ""
        ctx.finalizers.append(self.close)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import array
        import socket
        try:
            conn, _ = self.srv.accept()
        except OSError as e:
            self.error = f"no connection: {e}"
            return
        self.connections += 1
        conn.settimeout(20)
        try:
            while True:
                fds = array.array("i")
                data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
                for level, typ, cdata in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        fds.frombytes(cdata[: len(cdata) - len(cdata) % 4])
                if not data and not fds:
                    self.eof = True
                    break
                self.chunks.append((data, list(fds)))
        except OSError as e:
            self.error = f"reading the connection: {e}"
        finally:
            conn.close()

    def wait(self):
        self.thread.join(25)

    def close(self):
        self.srv.close()
        for _, fds in self.chunks:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass


def _notify(ctx, path):
    return _seccomp(ctx, listenerPath=path, listenerMetadata="conformance-metadata",
                    syscalls=[{"names": ["getpriority"], "action": "SCMP_ACT_NOTIFY"}])


@conformance_test("seccomp-listener-state", "config-linux.md#the-container-process-state", "MUST",
                  "SCMP_ACT_NOTIFY + listenerPath: one container process state (JSON, seccomp fd by SCM_RIGHTS "
                  "in the first sendmsg) per AF_UNIX stream connection, which is then closed")
def t_listener(ctx):
    import json
    lst = _Listener(ctx)
    c = ctx.created(_notify(ctx, lst.path), ["/bin/sleep", "30"])
    lst.wait()
    check(lst.connections == 1 and not lst.error, f"listener: {lst.error or 'no connection'}")
    check(lst.eof, "the runtime did not close the connection after sending the state")
    check(lst.chunks, "the connection carried no data")
    data = b"".join(d for d, _ in lst.chunks)
    fd_chunks = [i for i, (_, fds) in enumerate(lst.chunks) if fds]
    check(fd_chunks == [0], f"descriptors arrived in recvmsg calls {fd_chunks}, want only the first")
    try:
        st = json.loads(data)  # exactly one JSON document: trailing data is an error
    except ValueError as e:
        raise Fail(f"the payload is not one JSON document ({e}): {data[:120]!r}") from None
    check(isinstance(st, dict), f"the payload is {type(st).__name__}, not an object")
    missing = [k for k in ("ociVersion", "pid", "state") if k not in st]
    check(not missing, f"container process state lacks {missing}: {sorted(st)}")
    check_eq(st.get("pid"), c.pid, "pid (the container process as seen by the runtime)")
    check(isinstance(st["state"], dict) and st["state"].get("id") == c.id,
          f"state.id {st['state'].get('id') if isinstance(st['state'], dict) else st['state']!r}")
    check_eq(st.get("metadata"), "conformance-metadata", "metadata")
    fds = lst.chunks[0][1]
    names = st.get("fds", [])
    check(isinstance(names, list) and "seccompFd" in names and len(names) == len(fds),
          f"fds {names} for {len(fds)} descriptors")
    link = os.readlink(f"/proc/self/fd/{fds[names.index('seccompFd')]}")
    check("seccomp" in link, f"the seccompFd descriptor is {link}, not a seccomp notify fd")


@conformance_test("seccomp-listener-unreachable", "config-linux.md#seccomp", "MUST",
                  "failing to send the container process state to listenerPath is an error")
def t_listener_missing(ctx):
    lst = _Listener(ctx)  # positive control: the same config with a listening socket works
    ctx.control(_notify(ctx, lst.path), "listenerPath of a listening socket")
    lst.wait()
    ctx.expect_create_error(_notify(ctx, ctx.socket_path("nobody-listens.sock")),
                            "a listenerPath where no socket exists", control=None)
