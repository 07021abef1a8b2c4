"""What a seccomp profile costs ``run`` (issue 8: within 1.2x of no profile).

Not part of the test suite; run as root. One runtime runs the same busybox bundle
(``/bin/true``) three ways, the order rotating every round: without ``linux.seccomp``;
with podman's default profile (``/usr/share/containers/seccomp.json``, converted the way
podman does, tests/podman_seccomp.py) and a warm program cache in the state root; and
with the same profile after the cache entries are removed before every command (the first
create of a profile: pyseccomp imported and the profile compiled). Each round times
``run`` and ``create`` (then ``delete``), wall clock around the runtime process; the
medians, their ratios to the runs without a profile, and the median of each round's own
ratio (paired: the load of a shared machine moves between rounds) are printed.

    python3 bench/seccomp_bench.py                  # the wheel of this checkout (bench.py's venv)
    python3 bench/seccomp_bench.py --runtime runc --rounds 50
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

import bundle
import podman_seccomp

VARIANTS = ("none", "podman", "podman-cold")


class Failed(Exception):
    pass


def spawn(argv: list[str], err_path: str) -> tuple[float, int]:
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions)
    _, status = os.waitpid(pid, 0)
    return (time.perf_counter_ns() - t0) / 1e6, os.waitstatus_to_exitcode(status)


class Variant:
    def __init__(self, name: str, cmd: list[str], bundle_dir: str, workdir: str) -> None:
        self.name = name
        self.cmd = cmd
        self.bundle = bundle_dir
        self.root = os.path.join(workdir, f"root-{name}")
        self.err = os.path.join(workdir, f"err-{name}")
        self.samples: dict[str, list[float]] = {"run": [], "create": []}

    def _uncache(self) -> None:
        if self.name == "podman-cold" and os.path.isdir(self.root):
            for n in os.listdir(self.root):
                if n.startswith("seccomp@"):
                    os.unlink(os.path.join(self.root, n))

    def must(self, *args: str) -> float:
        self._uncache()
        ms, rc = spawn([*self.cmd, "--root", self.root, *args], self.err)
        if rc != 0:
            with open(self.err, errors="replace") as f:
                raise Failed(f"{self.name}: {shlex.join(args)} exited {rc}: {f.read().strip()}")
        return ms

    def round(self, n: int, record: bool) -> None:
        cid = f"scb-{os.getpid()}-{self.name}-{n}"
        run_ms = self.must("run", "--bundle", self.bundle, cid + "r")
        create_ms = self.must("create", "--bundle", self.bundle, cid + "c")
        self.must("delete", "--force", cid + "c")
        if record:
            self.samples["run"].append(run_ms)
            self.samples["create"].append(create_ms)

    def cleanup(self) -> None:
        if os.path.isdir(self.root):
            for cid in os.listdir(self.root):
                if not cid.startswith("seccomp@"):
                    spawn([*self.cmd, "--root", self.root, "delete", "--force", cid], self.err)
        shutil.rmtree(self.root, ignore_errors=True)


def default_runtime() -> list[str]:
    try:
        import bench  # the wheel of this checkout in a fresh venv (bench.py's)
        return [bench.installed_ocirun()]
    except Exception as e:  # noqa: BLE001 - fall back to whatever ocirun is on PATH
        exe = shutil.which("ocirun")
        if exe is None:
            raise SystemExit(f"seccomp_bench: no ocirun ({e}); give --runtime") from None
        return [exe]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run with and without podman's seccomp profile")
    ap.add_argument("--rounds", "-n", type=int, default=30)
    ap.add_argument("--runtime", help="runtime command (default: the installed ocirun)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("seccomp_bench: run as root", file=sys.stderr)
        return 1
    cmd = shlex.split(opts.runtime) if opts.runtime else default_runtime()
    if os.sep not in cmd[0]:
        cmd[0] = shutil.which(cmd[0]) or cmd[0]
    is_ocirun = "ocirun" in os.path.basename(cmd[-1]) or cmd[1:3] == ["-m", "ocirun"]
    workdir = tempfile.mkdtemp(prefix="ocirun-seccomp-bench-")
    variants: list[Variant] = []
    try:
        plain = os.path.join(workdir, "plain")
        cfg = bundle.write_bundle(plain, None, ["/bin/true"])
        prof = podman_seccomp.oci_profile(cfg["process"]["capabilities"]["bounding"])
        profiled = os.path.join(workdir, "profiled")

        def add_profile(c: dict[str, object]) -> None:
            c["linux"]["seccomp"] = prof  # type: ignore[index]
        bundle.write_bundle(profiled, os.path.join(plain, "rootfs"), ["/bin/true"], add_profile)
        names = VARIANTS if is_ocirun else VARIANTS[:2]
        variants = [Variant(n, cmd, plain if n == "none" else profiled, workdir) for n in names]
        for i in range(opts.warmup):
            for v in variants:
                v.round(-1 - i, record=False)
        for n in range(opts.rounds):
            k = n % len(variants)
            for v in variants[k:] + variants[:k]:
                v.round(n, record=True)
        med = {v.name: {m: statistics.median(s) for m, s in v.samples.items()} for v in variants}
        # paired: each round's ratio to the run without a profile in that same round
        # (the load of the shared machine changes between rounds far more than within one)
        paired = {v.name: {m: statistics.median(a / b for a, b in zip(s, variants[0].samples[m]))
                           for m, s in v.samples.items()} for v in variants[1:]}
        if opts.json:
            print(json.dumps({"rounds": opts.rounds, "runtime": cmd, "median_ms": med,
                              "paired_ratio_median": paired}, indent=2))
            return 0
        head = f"{os.path.basename(cmd[0])}, {opts.rounds} rounds, median ms"
        print(f"{head:<34}" + "".join(f"{n:>13}" for n in names)
              + "".join(f"{n + '/none':>18}" for n in names[1:]))
        for m in ("run", "create"):
            vals = [med[n][m] for n in names]
            print(f"{m:<34}" + "".join(f"{v:>13.1f}" for v in vals)
                  + "".join(f"{v / vals[0]:>18.2f}" for v in vals[1:]))
        for m in ("run", "create"):
            label = f"{m}, median of per-round ratios"
            print(f"{label:<34}" + " " * 13 * len(names)
                  + "".join(f"{paired[n][m]:>18.2f}" for n in names[1:]))
        return 0
    except Failed as e:
        print(f"seccomp_bench: {e}", file=sys.stderr)
        return 1
    finally:
        for v in variants:
            v.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
