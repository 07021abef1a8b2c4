"""Benchmark ocirun against runc on the same busybox bundle (issue 2, point 12).

Not part of the test suite. Both runtimes run the same bundle, alternating every round (A
then B, then B then A) so that drift in the machine's state hits both alike. Per round and
per runtime it times, wall clock around the runtime process:

- ``run`` of ``/bin/true`` (create + start + wait + delete in one command);
- ``create``, ``start`` and ``delete`` separately, and their sum; ``delete`` is timed only
  after the container's process has exited (waited on through a pidfd), so it measures the
  runtime, not the container;
- ``state`` of a created container;
- the peak RSS of the runtime process for ``run`` and ``create`` (``ru_maxrss`` from
  ``wait4``, KiB).

Why a C helper for RSS: Linux keeps, in ``ru_maxrss``, the high-water mark of the memory
image a process had *before* its ``execve``. A runtime spawned straight from this Python
process would report at least this process's own RSS (~16 MiB, whatever the runtime
used). So each runtime is started through a tiny static program, compiled once with the
system's ``cc``, that forks, execs the runtime, and reports the child's ``ru_maxrss``.
Without a C compiler the RSS rows read ``-``; timings are unaffected either way (the helper
costs both runtimes the same fork).

It prints the median of each measure per runtime and the ratio A/B. Run it as root:

    python3 bench/bench.py                  # ocirun vs runc, 30 rounds
    python3 bench/bench.py --rounds 100 --json
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

import bundle

METRICS = [
    ("run", "run /bin/true", "ms"),
    ("create", "create", "ms"),
    ("start", "start", "ms"),
    ("delete", "delete", "ms"),
    ("cycle", "create+start+delete", "ms"),
    ("state", "state", "ms"),
    ("rss_run", "peak RSS, run", "KiB"),
    ("rss_create", "peak RSS, create", "KiB"),
]


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


def build_rss_helper(workdir: str) -> str | None:
    """Compile the RSS helper; None when there is no working C compiler."""
    src = os.path.join(workdir, "rss-helper.c")
    exe = os.path.join(workdir, "rss-helper")
    with open(src, "w") as f:
        f.write(RSS_HELPER_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    # Static when possible: a smaller pre-exec image, hence a lower floor.
    for extra in (["-static"], []):
        r = subprocess.run([cc, "-O2", *extra, "-o", exe, src], capture_output=True, check=False)
        if r.returncode == 0:
            return exe
    return None


def default_ocirun() -> list[str]:
    exe = shutil.which("ocirun")
    return [exe] if exe else [sys.executable, "-m", "ocirun"]


def label(cmd: list[str]) -> str:
    if cmd[1:3] == ["-m", "ocirun"]:
        return "ocirun"
    return os.path.basename(cmd[0])


class Runtime:
    """One runtime command with its own state root; spawns it and measures each call."""

    def __init__(self, cmd: list[str], workdir: str, rss_helper: str | None) -> None:
        exe = shutil.which(cmd[0])
        if exe is None:
            raise SystemExit(f"bench: runtime `{cmd[0]}` not found on PATH")
        self.cmd = [exe, *cmd[1:]]
        self.name = label(cmd)
        self.root = os.path.join(workdir, f"root-{self.name}-{id(self)}")
        self.err_path = os.path.join(workdir, f"stderr-{id(self)}")
        self.rss_path = os.path.join(workdir, f"rss-{id(self)}")
        self.rss_helper = rss_helper
        self.env = dict(os.environ)
        if cmd[1:3] == ["-m", "ocirun"]:
            self.env["PYTHONPATH"] = REPO
        self.samples: dict[str, list[float]] = {k: [] for k, _, _ in METRICS}
        self.ids: set[str] = set()

    def call(self, *args: str, stdout: str = os.devnull) -> tuple[float, int, int | None]:
        """Run one command; return (milliseconds, exit status, ru_maxrss KiB or None)."""
        argv = [*self.cmd, "--root", self.root, *args]
        if self.rss_helper:
            argv = [self.rss_helper, self.rss_path, *argv]
        # posix_spawn, not subprocess: no extra Python work inside the timed window.
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, self.err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=actions)
        _, status, _ = os.wait4(pid, 0)
        ms = (time.perf_counter_ns() - t0) / 1e6
        rss = None
        if self.rss_helper:
            try:
                with open(self.rss_path) as f:
                    rss = int(f.read())
                os.unlink(self.rss_path)
            except (OSError, ValueError):
                pass
        return ms, os.waitstatus_to_exitcode(status), rss

    def must(self, *args: str, stdout: str = os.devnull) -> tuple[float, int | None]:
        ms, rc, rss = self.call(*args, stdout=stdout)
        if rc != 0:
            with open(self.err_path, errors="replace") as f:
                err = f.read().strip()
            raise RuntimeFailed(f"{self.name}: `{shlex.join([*self.cmd, '--root', self.root, *args])}`"
                                f" exited {rc}: {err}")
        return ms, rss

    def round(self, bundle_dir: str, n: int, workdir: str) -> None:
        cid = f"bench-{self.name}-{os.getpid()}-{n}"
        self.ids.add(cid)
        ms, rss = self.must("run", "--bundle", bundle_dir, cid)
        self.samples["run"].append(ms)
        if rss is not None:
            self.samples["rss_run"].append(rss)

        pid_file = os.path.join(workdir, f"{cid}.pid")
        c_ms, c_rss = self.must("create", "--bundle", bundle_dir, "--pid-file", pid_file, cid)
        self.samples["create"].append(c_ms)
        if c_rss is not None:
            self.samples["rss_create"].append(c_rss)
        st_ms, _ = self.must("state", cid)
        self.samples["state"].append(st_ms)
        with open(pid_file) as f:
            pid = int(f.read())
        pidfd = os.pidfd_open(pid)
        try:
            s_ms, _ = self.must("start", cid)
            # Wait for /bin/true to exit, so delete finds a stopped container.
            select.select([pidfd], [], [], 10)
        finally:
            os.close(pidfd)
        d_ms, _ = self.must("delete", cid)
        self.samples["start"].append(s_ms)
        self.samples["delete"].append(d_ms)
        self.samples["cycle"].append(c_ms + s_ms + d_ms)
        self.ids.discard(cid)

    def cleanup(self) -> None:
        for cid in list(self.ids):
            self.call("delete", "--force", cid)
        shutil.rmtree(self.root, ignore_errors=True)

    def medians(self) -> dict[str, float | None]:
        return {k: (statistics.median(v) if v else None) for k, v in self.samples.items()}


def render(a: Runtime, b: Runtime, rounds: int) -> str:
    ma, mb = a.medians(), b.medians()
    head = f"{'median of ' + str(rounds) + ' rounds':<24}{a.name:>12}{b.name:>12}{'ratio':>8}"
    lines = [head, "-" * len(head)]
    for key, title, unit in METRICS:
        va, vb = ma[key], mb[key]
        fmt = "{:.1f}" if unit == "ms" else "{:.0f}"
        sa = fmt.format(va) if va is not None else "-"
        sb = fmt.format(vb) if vb is not None else "-"
        ratio = f"{va / vb:.2f}" if va is not None and vb else "-"
        lines.append(f"{title + ' (' + unit + ')':<24}{sa:>12}{sb:>12}{ratio:>8}")
    return "\n".join(lines)


def as_json(a: Runtime, b: Runtime, rounds: int) -> dict[str, Any]:
    ma, mb = a.medians(), b.medians()
    return {
        "rounds": rounds,
        "a": {"name": a.name, "command": a.cmd, "median": ma},
        "b": {"name": b.name, "command": b.cmd, "median": mb},
        "ratio": {k: (ma[k] / mb[k] if ma[k] is not None and mb[k] else None) for k in ma},
        "units": {k: unit for k, _, unit in METRICS},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ocirun vs runc on a busybox bundle (run as root)")
    ap.add_argument("--rounds", "-n", type=int, default=30)
    ap.add_argument("--runtime-a", help="command of runtime A (default: ocirun)")
    ap.add_argument("--runtime-b", default="runc", help="command of runtime B (default: runc)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first (page cache)")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 1

    cmd_a = shlex.split(opts.runtime_a) if opts.runtime_a else default_ocirun()
    cmd_b = shlex.split(opts.runtime_b)
    workdir = tempfile.mkdtemp(prefix="ocirun-bench-")
    runtimes: list[Runtime] = []
    try:
        bundle_dir = os.path.join(workdir, "bundle")
        bundle.write_bundle(bundle_dir, None, ["/bin/true"])
        helper = build_rss_helper(workdir)
        if helper is None:
            print("bench: no C compiler, peak RSS not measured", file=sys.stderr)
        a, b = Runtime(cmd_a, workdir, helper), Runtime(cmd_b, workdir, helper)
        runtimes = [a, b]
        for i in range(opts.warmup):
            for rt in runtimes:
                rt.round(bundle_dir, -1 - i, workdir)
        for rt in runtimes:
            rt.samples = {k: [] for k in rt.samples}
        for n in range(opts.rounds):
            # Alternate who goes first, so neither always runs on a warmer machine.
            order = (a, b) if n % 2 == 0 else (b, a)
            for rt in order:
                rt.round(bundle_dir, n, workdir)
        if opts.json:
            print(json.dumps(as_json(a, b, opts.rounds), indent=2))
        else:
            print(render(a, b, opts.rounds))
        return 0
    except RuntimeFailed as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        for rt in runtimes:
            rt.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
