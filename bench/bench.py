"""Benchmark the installed ocirun against runc, in the same run, on the same busybox bundle.

Not part of the test suite and never asserts a time. What it measures is what users get:
it builds a wheel from this checkout's tracked files, installs it with its dependencies
into a venv of its own (cached in ``.cache/bench/`` and reused while the package's
sources are unchanged), and runs that venv's ``bin/ocirun``, never the working tree.

Runtimes A (ocirun) and B (runc) alternate: a pair is one round of each, A first in even
pairs and B first in odd ones, so drift in the machine (other work, page cache) hits both
alike. Each measure is the median over the pairs; the ratio is A's median over B's.

A round, wall clock around each runtime process:
  run            ``run`` of ``/bin/true`` in the foreground (create, start, wait, delete);
  create         ``create`` of a ``sleep`` container (with ``--pid-file``);
  init RssAnon   the waiting init's ``RssAnon`` (``/proc/PID/status``) after that create;
  state          ``state`` of it;
  start          ``start`` of it;
  exec           ``exec`` of ``/bin/true`` into it, in the foreground (issue 10);
  events         ``events --stats`` of it: one stats sample as a JSON line (issue 9);
  kill           ``kill ID KILL`` of the running container;
  delete         ``delete`` once it has stopped (waited for through a pidfd);
  create+start+delete  the sum of the three, per round;
  delete -f      ``delete --force`` of another container just created (its init waiting);
  list           ``list`` of a state root holding N created containers (made before the
                 first pair; N = 100 unless ``--short``);
  peak RSS, run  ``ru_maxrss`` of the ``run`` process (KiB), see below.

A second table gives the CPU time (user + sys, from ``wait4``) of each timed command and of
the processes it reaped: on a shared, busy machine wall times stretch with the load (a
Python start suffers more than a Go binary), CPU times much less.

Why a C helper for peak RSS: Linux keeps, in ``ru_maxrss``, the high-water mark of the
memory image a process had before its ``execve``, so a runtime spawned straight from this
Python process would report at least this process's RSS. ``run`` is therefore started
through a tiny static program, compiled once with the system's ``cc``, that forks, execs
the runtime and reports the child's ``ru_maxrss``. Without a C compiler that row reads
``-`` (the timings do not use the helper except for ``run``, where both runtimes pay it).

    python3 bench/bench.py                       # installed ocirun vs runc, 21 pairs
    python3 bench/bench.py --short               # 5 pairs, list of 20: a CI smoke run
    python3 bench/bench.py --pairs 51 --json     # tighter medians, machine-readable
    python3 bench/bench.py --runtime-a "python3 -m ocirun"   # the working tree instead
    python3 bench/bench.py --runtime-a crun --runtime-b runc
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, BENCH)

import bundle
import wheelenv

# key, row title, unit
METRICS = [
    ("run", "run /bin/true", "ms"),
    ("create", "create", "ms"),
    ("start", "start", "ms"),
    ("exec", "exec /bin/true", "ms"),
    ("events", "events --stats", "ms"),
    ("state", "state", "ms"),
    ("kill", "kill", "ms"),
    ("delete", "delete", "ms"),
    ("cycle", "create+start+delete", "ms"),
    ("list", "list, {n} containers", "ms"),
    ("delete_force", "delete -f, created", "ms"),
    ("init_rss_anon", "waiting init RssAnon", "KiB"),
    ("rss_run", "peak RSS, run", "KiB"),
]
# CPU time (user + sys) of each timed command, same keys with "_cpu".
CPU_KEYS = [k + "_cpu" for k, _, unit in METRICS if unit == "ms"]
ALL_KEYS = [k for k, _, _ in METRICS] + CPU_KEYS

# Started as `rss-helper OUT PROG ARGS...`: fork, exec PROG, wait4, write the child's
# ru_maxrss (KiB) to OUT, exit with the child's status.
RSS_HELPER_C = r"""
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 3) return 125;
    pid_t pid = fork();
    if (pid < 0) return 126;
    if (pid == 0) { execv(argv[2], argv + 2); _exit(127); }
    int st; struct rusage ru;
    if (wait4(pid, &st, 0, &ru) < 0) return 126;
    FILE *f = fopen(argv[1], "w");
    if (f) { fprintf(f, "%ld\n", ru.ru_maxrss); fclose(f); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
"""


class RuntimeFailed(Exception):
    pass


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- the installed artifact -------------------------------------------------------------

def installed_ocirun(rebuild: bool = False) -> str:
    """``bin/ocirun`` of a venv holding the wheel of this checkout (built when needed)."""
    digest = wheelenv.source_digest()
    top = os.path.join(wheelenv.CACHE, "bench")
    home = os.path.join(top, digest)
    exe = os.path.join(home, "venv", "bin", "ocirun")
    if not rebuild and os.path.exists(os.path.join(home, "ok")) and os.access(exe, os.X_OK):
        log(f"reusing {home} (package sources unchanged)")
        return exe
    if os.path.isdir(top):  # one cached venv is enough: drop those of older sources
        for old in os.listdir(top):
            if len(old) == len(digest):
                shutil.rmtree(os.path.join(top, old), ignore_errors=True)
    log(f"building the wheel and a venv in {home} ...")
    os.makedirs(home)
    src = wheelenv.copy_tracked(os.path.join(home, "src"))
    py = wheelenv.make_venv(os.path.join(home, "venv"), with_pip=True)
    wheel = wheelenv.build_wheel(src, os.path.join(home, "dist"), python=py)
    wheelenv.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel])
    shutil.rmtree(src)
    with open(os.path.join(home, "ok"), "w") as f:
        f.write(os.path.basename(wheel) + "\n")
    return exe


def build_rss_helper(workdir: str) -> str | None:
    """Compile the RSS helper; None when there is no working C compiler."""
    src = os.path.join(workdir, "rss-helper.c")
    exe = os.path.join(workdir, "rss-helper")
    with open(src, "w") as f:
        f.write(RSS_HELPER_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    for extra in (["-static"], []):  # static: a smaller pre-exec image, a lower floor
        r = subprocess.run([cc, "-O2", *extra, "-o", exe, src], capture_output=True, check=False)
        if r.returncode == 0:
            return exe
    return None


# --- one runtime --------------------------------------------------------------------------

class Runtime:
    """One runtime command with its own state roots; spawns it and records each measure."""

    made = 0

    def __init__(self, cmd: list[str], name: str, workdir: str, rss_helper: str | None) -> None:
        exe = cmd[0] if os.sep in cmd[0] else shutil.which(cmd[0])
        if exe is None or not os.access(exe, os.X_OK):
            raise SystemExit(f"bench: runtime `{cmd[0]}` not found")
        self.cmd = [exe, *cmd[1:]]
        self.name = name
        Runtime.made += 1  # two runtimes of one name (A/B of two ocirun builds) differ
        tag = f"{name}{Runtime.made}-{os.getpid()}"
        self.tag = tag
        self.root = os.path.join(workdir, f"root-{tag}")
        self.list_root = os.path.join(workdir, f"listroot-{tag}")
        self.err_path = os.path.join(workdir, f"stderr-{tag}")
        self.rss_path = os.path.join(workdir, f"rss-{tag}")
        self.workdir = workdir
        self.rss_helper = rss_helper
        self.env = dict(os.environ)
        if cmd[1:3] == ["-m", "ocirun"]:
            self.env["PYTHONPATH"] = REPO
        self.samples: dict[str, list[float]] = {k: [] for k in ALL_KEYS}
        self.last_cpu = 0.0
        self.live: dict[tuple[str, str], int | None] = {}  # (root, id) -> init pid

    def version(self) -> str:
        r = subprocess.run([*self.cmd, "--version"], capture_output=True, text=True,
                           env=self.env, check=False)
        return (r.stdout.strip().splitlines() or ["?"])[0]

    def call(self, *args: str, root: str | None = None,
             rss: bool = False) -> tuple[float, int, int | None]:
        """Run one command; return (milliseconds, exit status, ru_maxrss KiB or None)."""
        argv = [*self.cmd, "--root", root or self.root, *args]
        use_helper = rss and self.rss_helper is not None
        if use_helper:
            argv = [str(self.rss_helper), self.rss_path, *argv]
        # posix_spawn, not subprocess: no extra Python work inside the timed window.
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, self.err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=actions)
        _, status, ru = os.wait4(pid, 0)
        ms = (time.perf_counter_ns() - t0) / 1e6
        # CPU of the process and of what it reaped: far less sensitive than wall time
        # to other work on a shared machine.
        self.last_cpu = (ru.ru_utime + ru.ru_stime) * 1e3
        maxrss = None
        if use_helper:
            try:
                with open(self.rss_path) as f:
                    maxrss = int(f.read())
                os.unlink(self.rss_path)
            except (OSError, ValueError):
                pass
        return ms, os.waitstatus_to_exitcode(status), maxrss

    def must(self, *args: str, root: str | None = None, rss: bool = False) -> tuple[float, int | None]:
        ms, rc, maxrss = self.call(*args, root=root, rss=rss)
        if rc != 0:
            with open(self.err_path, errors="replace") as f:
                err = f.read().strip()
            cmdline = shlex.join([*self.cmd, "--root", root or self.root, *args])
            raise RuntimeFailed(f"{self.name}: `{cmdline}` exited {rc}: {err}")
        return ms, maxrss

    def create(self, bundle_dir: str, cid: str, root: str | None = None) -> tuple[float, int]:
        """Create ``cid``; return (milliseconds, init pid)."""
        pid_file = os.path.join(self.workdir, f"{cid}.pid")
        key = (root or self.root, cid)
        self.live[key] = None
        ms, _ = self.must("create", "--bundle", bundle_dir, "--pid-file", pid_file, cid, root=root)
        with open(pid_file) as f:
            pid = int(f.read())
        os.unlink(pid_file)
        self.live[key] = pid
        return ms, pid

    def round(self, n: int, true_bundle: str, sleep_bundle: str, record: bool = True) -> None:
        s: dict[str, float] = {}

        def timed(key: str, *args: str, root: str | None = None, rss: bool = False) -> None:
            s[key], maxrss = self.must(*args, root=root, rss=rss)
            s[key + "_cpu"] = self.last_cpu
            if maxrss is not None:
                s["rss_" + key] = maxrss

        base = f"b{self.tag}-{n}"
        timed("run", "run", "--bundle", true_bundle, f"{base}-run", rss=True)

        cid = f"{base}-life"
        s["create"], pid = self.create(sleep_bundle, cid)
        s["create_cpu"] = self.last_cpu
        rss_anon = rss_anon_kib(pid)
        if rss_anon is not None:
            s["init_rss_anon"] = rss_anon
        timed("state", "state", cid)
        pidfd = os.pidfd_open(pid)
        try:
            timed("start", "start", cid)
            timed("exec", "exec", cid, "/bin/true")
            timed("events", "events", "--stats", cid)
            timed("kill", "kill", cid, "KILL")
            if not select.select([pidfd], [], [], 10)[0]:
                raise RuntimeFailed(f"{self.name}: {cid} still running 10 s after kill")
        finally:
            os.close(pidfd)
        timed("delete", "delete", cid)
        del self.live[(self.root, cid)]
        for suffix in ("", "_cpu"):
            s["cycle" + suffix] = sum(s[k + suffix] for k in ("create", "start", "delete"))

        cid = f"{base}-force"
        self.create(sleep_bundle, cid)
        timed("delete_force", "delete", "--force", cid)
        del self.live[(self.root, cid)]

        timed("list", "list", root=self.list_root)
        if record:
            for k, v in s.items():
                self.samples[k].append(v)

    def start_target(self, sleep_bundle: str) -> str:
        """A running ``sleep`` container for ``--only`` rounds; its id."""
        cid = f"t{self.tag}"
        self.create(sleep_bundle, cid)
        self.must("start", cid)
        return cid

    def focused_round(self, cid: str, keys: list[str], record: bool = True) -> None:
        """Only the ``keys`` measures (exec, events, state), on the running ``cid``."""
        argv = {"exec": ("exec", cid, "/bin/true"), "events": ("events", "--stats", cid),
                "state": ("state", cid)}
        for key in keys:
            ms, _ = self.must(*argv[key])
            if record:
                self.samples[key].append(ms)
                self.samples[key + "_cpu"].append(self.last_cpu)

    def fill_list_root(self, sleep_bundle: str, count: int) -> None:
        for i in range(count):
            self.create(sleep_bundle, f"l{self.tag}-{i}", root=self.list_root)

    def cleanup(self) -> None:
        """Remove every container this run made: kill, wait, delete (delete -f as a fallback)."""
        for (root, cid), pid in list(self.live.items()):
            self.call("kill", cid, "KILL", root=root)
            if pid is not None:
                try:
                    fd = os.pidfd_open(pid)
                    select.select([fd], [], [], 5)
                    os.close(fd)
                except OSError:
                    pass
            if self.call("delete", cid, root=root)[1] != 0:
                self.call("delete", "--force", cid, root=root)
            del self.live[(root, cid)]
        for d in (self.root, self.list_root):
            shutil.rmtree(d, ignore_errors=True)

    def medians(self) -> dict[str, float | None]:
        return {k: (statistics.median(v) if v else None) for k, v in self.samples.items()}


def rss_anon_kib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


# --- report -------------------------------------------------------------------------------

def title(key: str, list_size: int) -> str:
    for k, t, unit in METRICS:
        if k == key:
            return f"{t.format(n=list_size)} ({unit})"
    raise KeyError(key)


def render(a: Runtime, b: Runtime, pairs: int, list_size: int, load: list[float],
           only: list[str] | None = None) -> str:
    ma, mb = a.medians(), b.medians()
    metrics = [m for m in METRICS if not only or m[0] in only]
    head = f"{'median of ' + str(pairs) + ' pairs':<30}{a.name:>10}{b.name:>10}{'ratio':>8}"
    lines = [head, "-" * len(head)]
    for key, _, unit in metrics:
        va, vb = ma[key], mb[key]
        fmt = "{:.1f}" if unit == "ms" else "{:.0f}"
        sa = fmt.format(va) if va is not None else "-"
        sb = fmt.format(vb) if vb is not None else "-"
        ratio = f"{va / vb:.2f}" if va is not None and vb else "-"
        lines.append(f"{title(key, list_size):<30}{sa:>10}{sb:>10}{ratio:>8}")
    lines.append("")
    lines.append(f"{'CPU time, user+sys (ms)':<30}{a.name:>10}{b.name:>10}{'ratio':>8}")
    lines.append("-" * len(head))
    for key, _, unit in metrics:
        if unit != "ms":
            continue
        va, vb = ma[key + "_cpu"], mb[key + "_cpu"]
        sa = f"{va:.1f}" if va is not None else "-"
        sb = f"{vb:.1f}" if vb is not None else "-"
        ratio = f"{va / vb:.2f}" if va is not None and vb else "-"
        lines.append(f"{title(key, list_size).rsplit(' (', 1)[0]:<30}{sa:>10}{sb:>10}{ratio:>8}")
    lines.append(f"load average (1 min) at start {load[0]:.2f}, at end {load[1]:.2f}")
    return "\n".join(lines)


def as_json(a: Runtime, b: Runtime, pairs: int, list_size: int,
            load: list[float]) -> dict[str, Any]:
    ma, mb = a.medians(), b.medians()
    return {
        "pairs": pairs,
        "list_size": list_size,
        "loadavg_start_end": load,
        "a": {"name": a.name, "command": a.cmd, "version": a.version(), "median": ma,
              "samples": a.samples},
        "b": {"name": b.name, "command": b.cmd, "version": b.version(), "median": mb,
              "samples": b.samples},
        "ratio": {k: (ma[k] / mb[k] if ma[k] is not None and mb[k] else None)  # type: ignore[operator]
                  for k in ma},
        "units": {**{k: unit for k, _, unit in METRICS}, **{k: "ms" for k in CPU_KEYS}},
    }


def step_table(cmd: list[str], bundle_dir: str, workdir: str) -> str:
    """One `run /bin/true` with --trace, as a table: where the milliseconds go."""
    trace = os.path.join(workdir, "steps.jsonl")
    root = os.path.join(workdir, "steps-root")
    subprocess.run([*cmd, "--root", root, "--trace", trace, "run", "--bundle", bundle_dir,
                    "bench-steps"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    try:
        with open(trace) as f:
            recs = [json.loads(line) for line in f if line.strip()]
    except OSError:
        return "(no trace written)"
    if not recs:
        return "(empty trace)"
    t0 = min(r["start_ns"] for r in recs)
    lines = [(f"{'at ms':>7} {'process':<12} {'step':<4} {'what':<44} {'ms':>6} {'cpu':>6} "
              f"{'runq':>6} {'blocked':>7}  kernel"), "-" * 110]
    for r in sorted(recs, key=lambda r: r["start_ns"]):
        lines.append(f"{(r['start_ns'] - t0) / 1e6:7.2f} {r['proc']:<12} {r['step']:<4} "
                     f"{r['name'][:44]:<44} {r['dur_ms']:6.2f} {r['cpu_ms']:6.2f} "
                     f"{r['runq_ms']:6.2f} {r['blocked_ms']:7.2f}  {r['kernel']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="The installed ocirun (a wheel of this checkout in a venv) vs runc, "
                    "alternating pairs, medians. Run as root.")
    ap.add_argument("--pairs", "-n", type=int, default=None, help="pairs of rounds (default 21)")
    ap.add_argument("--short", action="store_true",
                    help="a quick smoke run for CI: 5 pairs, 1 warm-up, list of 20")
    ap.add_argument("--list-size", type=int, default=None, help="containers for `list` (100)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed pairs first (default 2)")
    ap.add_argument("--runtime-a", help="command of runtime A instead of the installed wheel")
    ap.add_argument("--runtime-b", default="runc", help="command of runtime B (default: runc)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached wheel venv")
    ap.add_argument("--json", action="store_true", help="print JSON (with every sample)")
    ap.add_argument("--only", metavar="KEYS",
                    help="only these measures, comma-separated, of exec, events, state: "
                         "each on one running container per runtime, alternating pairs")
    ap.add_argument("--steps", action="store_true",
                    help="also print the step table of one traced `run` (ocirun's --trace)")
    opts = ap.parse_args(argv)
    only = [k for k in (opts.only or "").split(",") if k]
    if any(k not in ("exec", "events", "state") for k in only):
        ap.error("--only takes exec, events, state")
    pairs = opts.pairs or (5 if opts.short else 21)
    list_size = opts.list_size if opts.list_size is not None else (20 if opts.short else 100)
    warmup = opts.warmup if opts.warmup is not None else (1 if opts.short else 2)
    if os.geteuid() != 0:
        log("run as root (containers need it)")
        return 1

    try:
        if opts.runtime_a:
            cmd_a = shlex.split(opts.runtime_a)
            name_a = "ocirun" if cmd_a[1:3] == ["-m", "ocirun"] else os.path.basename(cmd_a[0])
        else:
            cmd_a, name_a = [installed_ocirun(opts.rebuild)], "ocirun"
    except wheelenv.BuildError as e:
        log(f"cannot build the installed ocirun: {e}")
        return 1
    cmd_b = shlex.split(opts.runtime_b)
    workdir = tempfile.mkdtemp(prefix="ocirun-bench-")
    runtimes: list[Runtime] = []
    try:
        rootfs = bundle.build_rootfs(os.path.join(workdir, "rootfs"))
        true_bundle = os.path.join(workdir, "bundle-true")
        sleep_bundle = os.path.join(workdir, "bundle-sleep")
        bundle.write_bundle(true_bundle, rootfs, ["/bin/true"])
        bundle.write_bundle(sleep_bundle, rootfs, ["sleep", "1000"])
        helper = build_rss_helper(workdir)
        if helper is None:
            log("no C compiler: peak RSS not measured")
        a = Runtime(cmd_a, name_a, workdir, helper)
        b = Runtime(cmd_b, os.path.basename(cmd_b[0]), workdir, helper)
        if a.name == b.name:
            a.name, b.name = a.name + "-A", b.name + "-B"
        runtimes = [a, b]
        log(f"A: {shlex.join(a.cmd)} ({a.version()})")
        log(f"B: {shlex.join(b.cmd)} ({b.version()})")
        load = [os.getloadavg()[0]]
        if only:
            targets = {rt.name: rt.start_target(sleep_bundle) for rt in runtimes}
            for i in range(warmup):
                for rt in runtimes:
                    rt.focused_round(targets[rt.name], only, record=False)
            for n in range(pairs):
                for rt in ((a, b) if n % 2 == 0 else (b, a)):
                    rt.focused_round(targets[rt.name], only)
            load.append(os.getloadavg()[0])
            if opts.json:
                print(json.dumps(as_json(a, b, pairs, list_size, load), indent=2))
            else:
                print(render(a, b, pairs, list_size, load, only))
            return 0
        for rt in runtimes:
            rt.fill_list_root(sleep_bundle, list_size)
        for i in range(warmup):
            for rt in runtimes:
                rt.round(-1 - i, true_bundle, sleep_bundle, record=False)
        for n in range(pairs):
            order = (a, b) if n % 2 == 0 else (b, a)
            for rt in order:
                rt.round(n, true_bundle, sleep_bundle)
        load.append(os.getloadavg()[0])
        if opts.json:
            print(json.dumps(as_json(a, b, pairs, list_size, load), indent=2))
        else:
            print(render(a, b, pairs, list_size, load))
        if opts.steps and name_a == "ocirun":
            print()
            print(step_table(cmd_a, true_bundle, workdir))
        return 0
    except RuntimeFailed as e:
        log(str(e))
        return 1
    finally:
        for rt in runtimes:
            rt.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
