"""config.md#process and config.md#linux-process: args, env, cwd, user,
umask, rlimits, capabilities, noNewPrivileges, oomScoreAdj, terminal."""
from __future__ import annotations

import array
import os
import socket
import time

from conformance.bundle import DEFAULT_CAPS
from conformance.registry import Fail, Skip, check, check_eq, conformance_test

CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"]


def capmask(names) -> int:
    m = 0
    for n in names:
        m |= 1 << CAPS.index(n.removeprefix("CAP_"))
    return m


def setp(**kw):
    def mut(cfg):
        cfg["process"].update(kw)
    return mut


@conformance_test("process-args-exec", "config.md#process", "MUST",
                  "process.args are exec'd with argv as given")
def t_args(ctx):
    out = ctx.sh('for a in "$0" "$@"; do echo "[$a]"; done', lambda c: c["process"].update(
        args=["/bin/sh", "-c", 'for a in "$0" "$@"; do echo "[$a]"; done', "zero", "a b", ""]))
    check_eq(out.split(), ["[zero]", "[a", "b]", "[]"], "argv as seen by the program")


@conformance_test("process-args-path-lookup", "config.md#process", "SHOULD",
                  "args[0] without a slash is looked up in the container PATH (execvp semantics)")
def t_path(ctx):
    _, out = ctx.run(args=["echo", "found-in-path"])
    check("found-in-path" in out, f"output {out!r}")


@conformance_test("process-env", "config.md#process", "MUST",
                  "process.env is the program's environment")
def t_env(ctx):
    _, out = ctx.run(setp(env=["PATH=/bin", "FOO=bar baz", "EMPTY="]), ["/bin/env"])
    lines = out.splitlines()
    for want in ("FOO=bar baz", "EMPTY=", "PATH=/bin"):
        check(want in lines, f"{want!r} missing from {lines}")


@conformance_test("process-env-not-inherited", "config.md#process", "SHOULD",
                  "the runtime's own environment does not leak into the container")
def t_env_leak(ctx):
    os.environ["OCI_CONFORMANCE_LEAK"] = "1"
    ctx.finalizers.append(lambda: os.environ.pop("OCI_CONFORMANCE_LEAK", None))
    _, out = ctx.run(args=["/bin/env"])
    check("OCI_CONFORMANCE_LEAK" not in out, "runtime env leaked into the container")


@conformance_test("process-cwd", "config.md#process", "MUST", "the program runs in process.cwd")
def t_cwd(ctx):
    check_eq(ctx.facts(setp(cwd="/tmp"))["cwd"], "/tmp", "cwd")


@conformance_test("process-cwd-relative-error", "config.md#process", "MUST",
                  "process.cwd must be absolute: a relative cwd is refused")
def t_cwd_rel(ctx):
    ctx.expect_create_error(setp(cwd="tmp"), "relative cwd", control=setp(cwd="/tmp"), control_what="cwd /tmp")


@conformance_test("process-user-uid-gid", "config.md#posix-platform-user", "MUST",
                  "the process runs with user.uid and user.gid")
def t_uid(ctx):
    f = ctx.facts(setp(user={"uid": 1234, "gid": 4321}))
    check_eq((f["uid"], f["euid"], f["gid"], f["egid"]), ("1234", "1234", "4321", "4321"), "uid/euid/gid/egid")


@conformance_test("process-additional-gids", "config.md#posix-platform-user", "MUST",
                  "user.additionalGids are the supplementary groups")
def t_gids(ctx):
    f = ctx.facts(setp(user={"uid": 1000, "gid": 1000, "additionalGids": [10, 20, 30]}))
    groups = set(f["groups"].split(",")) - {""}
    check({"10", "20", "30"} <= groups, f"groups {f['groups']!r}")


@conformance_test("process-no-additional-gids", "config.md#posix-platform-user", "SHOULD",
                  "without additionalGids the process has no stray supplementary groups")
def t_nogids(ctx):
    f = ctx.facts(setp(user={"uid": 1000, "gid": 1000}))
    check(set(f["groups"].split(",")) <= {"", "1000"}, f"groups {f['groups']!r}")


@conformance_test("process-umask", "config.md#posix-platform-user", "MUST", "user.umask is applied")
def t_umask(ctx):
    check_eq(ctx.facts(setp(user={"uid": 0, "gid": 0, "umask": 0o077}))["umask"], "0077", "umask")


@conformance_test("process-umask-file", "config.md#posix-platform-user", "MUST",
                  "a file created by the program gets umask-filtered mode")
def t_umask_file(ctx):
    out = ctx.sh("touch /tmp/f; stat -c %a /tmp/f", setp(user={"uid": 0, "gid": 0, "umask": 0o027}))
    check_eq(out.strip(), "640", "mode of a new file")


@conformance_test("process-rlimits", "config.md#posix-process", "MUST",
                  "getrlimit shows exactly the configured soft and hard values")
def t_rlimit(ctx):
    f = ctx.facts(setp(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000}]))
    check_eq(f["RLIMIT_NOFILE"], "512:1000", "RLIMIT_NOFILE")


@conformance_test("process-rlimits-several", "config.md#posix-process", "MUST",
                  "every listed rlimit is applied")
def t_rlimits(ctx):
    f = ctx.facts(setp(rlimits=[{"type": "RLIMIT_CORE", "soft": 1024, "hard": 2048},
                                {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
                                {"type": "RLIMIT_MSGQUEUE", "soft": 8192, "hard": 8192}]))
    check_eq((f["RLIMIT_CORE"], f["RLIMIT_NPROC"], f["RLIMIT_MSGQUEUE"]),
             ("1024:2048", "300:400", "8192:8192"), "rlimits")


@conformance_test("process-rlimit-unknown-type", "config.md#posix-process", "MUST",
                  "an rlimit type with no kernel equivalent is an error")
def t_rlimit_bad(ctx):
    ctx.expect_create_error(setp(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]), "RLIMIT_BOGUS",
                            control=setp(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}]),
                            control_what="RLIMIT_NOFILE")


@conformance_test("process-rlimit-duplicate", "config.md#posix-process", "MUST",
                  "the same rlimit type twice is an error")
def t_rlimit_dup(ctx):
    # the second entry lowers the limit, so applying both would not fail by
    # accident (raising a hard limit can): only a check for duplicates refuses
    ctx.expect_create_error(setp(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200},
                                          {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}]),
                            "duplicate RLIMIT_NOFILE",
                            control=setp(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                                                  {"type": "RLIMIT_CORE", "soft": 200, "hard": 200}]),
                            control_what="two different rlimits")


CAPSET = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"],
          "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
          "effective": ["CAP_CHOWN", "CAP_KILL"],
          "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
          "ambient": ["CAP_NET_BIND_SERVICE"]}
KEY = {"bounding": "cap_bnd", "permitted": "cap_prm", "effective": "cap_eff", "inheritable": "cap_inh",
       "ambient": "cap_amb"}


def _cap_test(which):
    @conformance_test(f"process-caps-{which}", "config.md#linux-process", "MUST",
                      f"capabilities.{which} is exactly the configured set (uid 0)")
    def t(ctx):
        caps = {k: list(v) for k, v in CAPSET.items()}
        f = ctx.facts(setp(capabilities=caps))
        got = int(f[KEY[which]], 16)
        want = capmask(caps[which])
        check_eq(hex(got), hex(want), f"{which} mask")
    return t


# bounding, inheritable and ambient survive execve as configured; permitted and
# effective do not (execve rebuilds them), so they get tests of their own below
for _w in ("bounding", "inheritable", "ambient"):
    _cap_test(_w)


@conformance_test("process-caps-permitted", "config.md#linux-process", "MUST",
                  "capabilities.permitted is the configured set (seen through ambient, uid 1000)")
def t_caps_permitted(ctx):
    # execve rebuilds permitted: for a non-root program without file caps it
    # becomes the ambient set, and the kernel only lets a capability be ambient
    # while it is permitted.  CAP_CHOWN is asked for in ambient (and is in
    # bounding and inheritable) but not in permitted, so it cannot be granted:
    # a runtime that applies permitted ends up with KILL+NET_BIND_SERVICE, one
    # that leaves permitted wider lets CHOWN through.
    caps = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "inheritable": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "ambient": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]}
    f = ctx.facts(setp(user={"uid": 1000, "gid": 1000}, capabilities=caps))
    want = capmask(caps["permitted"])
    check_eq((hex(int(f["cap_prm"], 16)), hex(int(f["cap_amb"], 16))), (hex(want), hex(want)),
             "permitted/ambient masks after exec (CAP_CHOWN is not permitted)")


@conformance_test("process-caps-effective", "config.md#linux-process", "MUST",
                  "capabilities.effective is in force when the program is exec'd (uid 0)")
def t_caps_effective(ctx):
    # execve rebuilds effective too, but the kernel checks the permission to
    # execute the program with the credentials from before the exec.  The
    # program is mode 0700 and owned by uid 5000, so uid 0 may run it only
    # with CAP_DAC_OVERRIDE in its effective set.
    def cfg(eff):
        def mut(c):
            c["process"]["args"] = ["/probe-x"]
            c["process"]["capabilities"] = {"bounding": list(DEFAULT_CAPS), "permitted": list(DEFAULT_CAPS),
                                            "effective": eff}
        return mut

    def attempt(eff) -> str:
        b = ctx.bundle(cfg(eff))
        import shutil
        dst = os.path.join(b.rootfs, "probe-x")
        shutil.copyfile(os.path.join(b.rootfs, "probe"), dst)  # a copy: the rootfs is hard-linked
        os.chown(dst, 5000, 5000)
        os.chmod(dst, 0o700)
        c = ctx.container(bundle=b)
        r = c.create()
        if not r.ok:  # runc and crun check that args[0] is executable at create
            return f"create failed: {r.brief()}"
        c.start()  # may fail: exec happens during start
        c.wait_exit(10)
        return c.stdout()
    with_dac = attempt(list(DEFAULT_CAPS))
    check("pid=" in with_dac, f"with CAP_DAC_OVERRIDE effective the program did not run: {with_dac.strip()[:160]!r}")
    without = attempt([x for x in DEFAULT_CAPS if x != "CAP_DAC_OVERRIDE"])
    check("pid=" not in without, "the program ran although CAP_DAC_OVERRIDE was not in the effective set "
                                 "(effective not applied before exec)")


@conformance_test("process-caps-nonroot-ambient", "config.md#linux-process", "MUST",
                  "a non-root process gets its ambient capabilities as effective")
def t_caps_ambient_user(ctx):
    caps = {k: ["CAP_NET_BIND_SERVICE"] for k in CAPSET}
    f = ctx.facts(setp(user={"uid": 1000, "gid": 1000}, capabilities=caps))
    m = capmask(["CAP_NET_BIND_SERVICE"])
    check_eq((int(f["cap_eff"], 16), int(f["cap_amb"], 16)), (m, m), "effective/ambient for uid 1000")


@conformance_test("process-caps-nonroot-none", "config.md#linux-process", "MUST",
                  "a non-root process with only bounding caps has no effective capabilities")
def t_caps_user_none(ctx):
    f = ctx.facts(setp(user={"uid": 1000, "gid": 1000}, capabilities={"bounding": ["CAP_KILL"]}))
    check_eq(int(f["cap_eff"], 16), 0, "effective mask")
    check_eq(int(f["cap_bnd"], 16), capmask(["CAP_KILL"]), "bounding mask")


@conformance_test("process-caps-empty", "config.md#linux-process", "SHOULD",
                  "an empty capabilities object leaves the process with no capabilities")
def t_caps_empty(ctx):
    f = ctx.facts(setp(capabilities={}))
    check_eq((int(f["cap_eff"], 16), int(f["cap_bnd"], 16)), (0, 0), "effective/bounding")


@conformance_test("process-caps-unknown-warns", "config.md#linux-process", "SHOULD",
                  "an unknown capability is a warning, not a failure")
def t_caps_unknown(ctx):
    caps = {k: list(v) + ["CAP_NOT_A_REAL_ONE"] for k, v in CAPSET.items()}
    f = ctx.facts(setp(capabilities=caps))
    check(int(f["cap_bnd"], 16) == capmask(CAPSET["bounding"]), f"bounding {f['cap_bnd']}")


@conformance_test("process-caps-ungrantable-warns", "config.md#linux-process", "SHOULD",
                  "a capability the runtime cannot grant is a warning, not a failure")
def t_caps_ungrantable(ctx):
    with open("/proc/self/status") as fh:
        eff = int([ln for ln in fh if ln.startswith("CapEff:")][0].split()[1], 16)
    missing = [f"CAP_{n}" for i, n in enumerate(CAPS) if not eff & (1 << i)]
    if not missing:
        raise Skip("the runtime's caller holds every capability; nothing is ungrantable here")
    caps = {k: ["CAP_KILL", missing[0]] for k in ("bounding", "permitted", "effective")}
    f = ctx.facts(setp(capabilities=caps))
    check(int(f["cap_eff"], 16) & capmask(["CAP_KILL"]), "CAP_KILL not granted")


@conformance_test("process-no-new-privs-true", "config.md#linux-process", "MUST",
                  "noNewPrivileges=true sets no_new_privs")
def t_nnp(ctx):
    check_eq(ctx.facts(setp(noNewPrivileges=True))["no_new_privs"], "1", "no_new_privs")


@conformance_test("process-no-new-privs-false", "config.md#linux-process", "SHOULD",
                  "noNewPrivileges=false leaves no_new_privs unset")
def t_nnp_false(ctx):
    check_eq(ctx.facts(setp(noNewPrivileges=False))["no_new_privs"], "0", "no_new_privs")


@conformance_test("process-oom-score-adj", "config.md#linux-process", "MUST",
                  "oomScoreAdj is written to the process's oom_score_adj")
def t_oom(ctx):
    check_eq(ctx.facts(setp(oomScoreAdj=523))["oom_score_adj"], "523", "oom_score_adj")


@conformance_test("process-oom-score-adj-unset", "config.md#linux-process", "MUST",
                  "without oomScoreAdj the runtime leaves oom_score_adj as inherited")
def t_oom_unset(ctx):
    with open("/proc/self/oom_score_adj") as f:
        mine = f.read().strip()
    check_eq(ctx.facts()["oom_score_adj"], mine, "oom_score_adj")


@conformance_test("process-fds-only-stdio", "runtime-linux.md#file-descriptors", "MUST",
                  "by default only fds 0, 1 and 2 are open in the program")
def t_fds(ctx):
    check_eq(ctx.facts()["fds"], "0,1,2", "open fds")


@conformance_test("process-fds-no-leak-from-caller", "runtime-linux.md#file-descriptors", "MUST",
                  "an fd the caller passes to the runtime (not preserved) is not open in the program")
def t_fds_leak(ctx):
    r, w = os.pipe()
    os.set_inheritable(r, True)
    ctx.finalizers.append(lambda: (os.close(r), os.close(w)))
    c = ctx.container(args=["/probe"])
    c.bundle.write()
    import subprocess
    with open(c.out_path, "ab") as out, open(c.err_path, "ab") as err:
        p = subprocess.run(ctx.rt.cmd("create", "--bundle", c.bundle.path, c.id), stdout=out, stderr=err,
                           stdin=subprocess.DEVNULL, pass_fds=(r,), timeout=20, env=ctx.rt.env)
    check(p.returncode == 0, f"create failed: {c.stderr()[-200:]}")
    st = c.state()
    c.pid = st.get("pid", 0) if isinstance(st, dict) else 0
    check(c.start().ok, "start failed")
    c.wait_exit(5)
    fds = dict(line.split("=", 1) for line in c.stdout().splitlines() if "=" in line).get("fds")
    check_eq(fds, "0,1,2", "open fds")


@conformance_test("process-stdio-inherited", "runtime-linux.md#file-descriptors", "SHOULD",
                  "without a terminal the program's stdout is the caller's (output reaches it)")
def t_stdio(ctx):
    _, out = ctx.run(args=["/bin/echo", "via-inherited-stdout"])
    check("via-inherited-stdout" in out, f"output {out!r}")


@conformance_test("process-terminal-false", "config.md#process", "MUST",
                  "terminal=false: the program's stdio is not a terminal")
def t_noterm(ctx):
    f = ctx.facts()
    check_eq((f["isatty0"], f["isatty1"], f["isatty2"]), ("0", "0", "0"), "isatty 0/1/2")


def _recv_master(sock: socket.socket, timeout: float = 10.0) -> int:
    sock.settimeout(timeout)
    conn, _ = sock.accept()
    fds = array.array("i")
    msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % 4])
    conn.close()
    if len(fds) != 1:
        raise Fail(f"console socket got {len(fds)} fds, want exactly 1")
    return fds[0]


def _term_run(ctx, args, mutate=None):
    sock_path = ctx.socket_path("console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    ctx.finalizers.append(srv.close)

    def mut(cfg):
        cfg["process"]["terminal"] = True
        if mutate:
            mutate(cfg)
    c = ctx.container(mutate=mut, args=args)
    r = c.create("--console-socket", sock_path)
    check(r.ok, f"create with terminal: {r.brief()}")
    master = _recv_master(srv)
    ctx.finalizers.append(lambda: os.close(master))
    check(c.start().ok, "start failed")
    buf = b""
    end = time.monotonic() + 10
    os.set_blocking(master, False)
    while time.monotonic() < end:
        try:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            buf += chunk
        except BlockingIOError:
            if not c.pid or not os.path.exists(f"/proc/{c.pid}"):
                break
            time.sleep(0.02)
        except OSError:  # EIO once the slave side is closed
            break
    return c, buf.decode(errors="replace").replace("\r", "")


@conformance_test("process-terminal-console-socket", "config.md#process", "MUST",
                  "terminal=true: stdio is a pty whose master is handed over the console socket")
def t_term(ctx):
    _, out = _term_run(ctx, ["/probe"])
    kv = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    check_eq((kv.get("isatty0"), kv.get("isatty1"), kv.get("isatty2")), ("1", "1", "1"), "isatty 0/1/2")


@conformance_test("process-terminal-dev-console", "config.md#process", "MUST",
                  "terminal=true: /dev/console is the container's pty")
def t_console(ctx):
    _, out = _term_run(ctx, ["/bin/sh", "-c", "stat -c 'console=%t:%T' /dev/console; "
                                              "stat -L -c 'stdin=%t:%T' /proc/self/fd/0"])
    kv = dict(line.split("=", 1) for line in out.split() if "=" in line)
    check(kv.get("console") and kv.get("console") == kv.get("stdin"),
          f"/dev/console {kv.get('console')} vs stdin {kv.get('stdin')}")


@conformance_test("process-terminal-console-size", "config.md#process", "MUST",
                  "terminal=true: consoleSize sets the pty window size")
def t_console_size(ctx):
    _, out = _term_run(ctx, ["/bin/stty", "size"],
                       lambda cfg: cfg["process"].update(consoleSize={"height": 33, "width": 111}))
    check("33 111" in out, f"stty size printed {out.strip()!r}")


@conformance_test("process-terminal-ctty", "config.md#process", "SHOULD",
                  "terminal=true: the pty is the controlling terminal (/dev/tty opens)")
def t_ctty(ctx):
    _, out = _term_run(ctx, ["/probe", "open", "/dev/tty"])
    check("errno=0" in out, f"opening /dev/tty: {out.strip()!r}")


@conformance_test("process-console-size-ignored", "config.md#process", "MUST",
                  "consoleSize is ignored when terminal is false: the program runs with non-tty stdio")
def t_console_size_ignored(ctx):
    f = ctx.facts(setp(terminal=False, consoleSize={"height": 33, "width": 111}))
    check_eq((f["isatty0"], f["isatty1"], f["isatty2"]), ("0", "0", "0"), "isatty 0/1/2")
