"""What a seccomp profile costs ``run`` (issue 8: within 1.2x of no profile).

Not part of the test suite; run as root. The same runtime runs the same busybox bundle
(``/bin/true``) three ways, alternating every round like bench.py: without
``linux.seccomp``; with podman's default profile (``/usr/share/containers/seccomp.json``,
converted the way podman does, tests/podman_seccomp.py) and a warm program cache in the
state root; and with the same profile after the cache entry is removed before every round
(the first create of a profile: pyseccomp imported and the profile compiled). It prints
the median of each measure (bench.py's: run, create, start, delete, state, peak RSS) and
the ratios to the run without a profile.

    python3 bench/seccomp_bench.py                   # the installed ocirun, 30 rounds
    python3 bench/seccomp_bench.py --runtime runc --rounds 50
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

import bundle
import podman_seccomp

import bench


class ColdCache(bench.Runtime):
    """Removes ocirun's cached programs from its state root before every call."""

    def call(self, *args: str, stdout: str = os.devnull) -> tuple[float, int, int | None]:
        if args and args[0] in ("run", "create") and os.path.isdir(self.root):
            for name in os.listdir(self.root):
                if name.startswith("seccomp@"):
                    os.unlink(os.path.join(self.root, name))
        return super().call(*args, stdout=stdout)


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
    cmd = shlex.split(opts.runtime) if opts.runtime else bench.default_ocirun()
    workdir = tempfile.mkdtemp(prefix="ocirun-seccomp-bench-")
    runtimes: list[bench.Runtime] = []
    try:
        plain = os.path.join(workdir, "plain")
        cfg = bundle.write_bundle(plain, None, ["/bin/true"])
        prof = podman_seccomp.oci_profile(cfg["process"]["capabilities"]["bounding"])
        profiled = os.path.join(workdir, "profiled")

        def add_profile(c: dict[str, object]) -> None:
            c["linux"]["seccomp"] = prof  # type: ignore[index]
        bundle.write_bundle(profiled, os.path.join(plain, "rootfs"), ["/bin/true"], add_profile)
        helper = bench.build_rss_helper(workdir)
        variants = [("none", bench.Runtime(cmd, workdir, helper), plain),
                    ("podman", bench.Runtime(cmd, workdir, helper), profiled)]
        if bench.label(cmd) == "ocirun":
            variants.append(("podman-cold", ColdCache(cmd, workdir, helper), profiled))
        runtimes = [rt for _, rt, _ in variants]
        for i in range(opts.warmup):
            for _, rt, b in variants:
                rt.round(b, -1 - i, workdir)
        for rt in runtimes:
            rt.samples = {k: [] for k in rt.samples}
        for n in range(opts.rounds):
            order = variants if n % 2 == 0 else variants[::-1]
            for _, rt, b in order:
                rt.round(b, n, workdir)
        med = {name: rt.medians() for name, rt, _ in variants}
        if opts.json:
            print(json.dumps({"rounds": opts.rounds, "runtime": cmd, "median": med}, indent=2))
            return 0
        names = [name for name, _, _ in variants]
        head = f"{bench.label(cmd) + ', ' + str(opts.rounds) + ' rounds':<24}" + \
            "".join(f"{n:>13}" for n in names) + "".join(f"{n + '/none':>18}" for n in names[1:])
        print(head)
        print("-" * len(head))
        for key, title, unit in bench.METRICS:
            vals = [med[n][key] for n in names]
            fmt = "{:.1f}" if unit == "ms" else "{:.0f}"
            cells = "".join(f"{fmt.format(v) if v is not None else '-':>13}" for v in vals)
            base = vals[0]
            ratios = "".join(f"{(v / base if v is not None and base else 0):>18.2f}" for v in vals[1:])
            print(f"{title + ' (' + unit + ')':<24}{cells}{ratios}")
        return 0
    except bench.RuntimeFailed as e:
        print(f"seccomp_bench: {e}", file=sys.stderr)
        return 1
    finally:
        for rt in runtimes:
            rt.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
