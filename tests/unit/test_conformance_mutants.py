"""The conformance suite can fail: every mutant runtime of conformance/mutants.py
(runc, or ocirun where ``BASE`` says so, plus one dropped or refused feature,
or one leak) is killed by the conformance tests named for it in ``KILLERS``.

Runs the suite in-process, as root, against Debian's runc; a few seconds per
mutant because only the named tests run (``--id``).  First a baseline: every
killer passes on the wrapped runtime through the wrapper with no mutation
(``identity``), so a kill means the mutation was seen.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import sys

import pytest

from conformance import mutants, runner

RUNC = shutil.which("runc")
# the poststart mutants wrap ocirun (mutants.BASE): this venv's, as installed
OCIRUN = os.path.join(os.path.dirname(sys.executable), "ocirun")
MUTANTS_PY = os.path.abspath(mutants.__file__)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the conformance suite runs real containers: needs root"),
    pytest.mark.skipif(RUNC is None, reason="needs runc (apt-get install runc)"),
]


@pytest.fixture
def workdir():
    """Bundles go below /tmp, not pytest's 0700 tmp_path: user-namespace tests
    run as a mapped root that must traverse down to the rootfs."""
    import tempfile
    d = tempfile.mkdtemp(prefix="oci-conf-mutants-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _run(runtime: str, ids: list[str], tmp_path, workdir: str, expected: str | None = None) -> dict[str, dict]:
    results = tmp_path / f"results-{len(os.listdir(tmp_path))}.json"
    argv = ["--runtime", runtime, "--json", str(results), "--workdir", workdir,
            "--expected", expected or os.devnull]
    for t in ids:
        argv += ["--id", t]
    out = io.StringIO()
    rc = runner.main(argv, out=out)
    assert results.exists(), f"suite did not run (exit {rc}):\n{out.getvalue()}"
    return {r["id"]: r for r in map(json.loads, results.read_text().splitlines())}


def test_every_mutant_has_killers_that_exist() -> None:
    known = {t.id for t in runner.load_tests()}
    assert set(mutants.KILLERS) == set(mutants.MUTATIONS) | set(mutants.BEHAVIOURS)
    for name, ids in mutants.KILLERS.items():
        assert ids, name
        assert not set(ids) - known, f"{name}: unknown test ids {sorted(set(ids) - known)}"


def _base(name: str) -> str:
    base = mutants.BASE.get(name, "runc")
    if base == "runc":
        return str(RUNC)
    if not os.access(OCIRUN, os.X_OK):
        pytest.skip(f"mutant {name} wraps ocirun: no {OCIRUN} (pip install . in this venv)")
    return OCIRUN


@pytest.mark.parametrize("base", ["runc", "ocirun"])
def test_killers_pass_on_the_real_runtime(base: str, tmp_path, workdir) -> None:
    ids = sorted({t for name, ids in mutants.KILLERS.items() for t in ids if mutants.BASE.get(name, "runc") == base})
    rt = _base(next(n for n in mutants.KILLERS if mutants.BASE.get(n, "runc") == base))
    # through the wrapper with no mutation: the wrapper itself kills nothing
    res = _run(f"{sys.executable} {MUTANTS_PY} {mutants.IDENTITY} {rt}", ids, tmp_path, workdir)
    bad = {t: f"{r['result']}: {r['reason'][:200]}" for t, r in res.items() if r["result"] != runner.PASS}
    assert not bad, f"killers that do not pass on {base} through the identity wrapper (so a kill would prove nothing): {bad}"


@pytest.mark.parametrize("name", sorted(mutants.KILLERS))
def test_mutant_is_killed(name: str, tmp_path, workdir) -> None:
    runtime = f"{sys.executable} {MUTANTS_PY} {name} {_base(name)}"
    res = _run(runtime, list(mutants.KILLERS[name]), tmp_path, workdir)
    survived = {t: r["result"] for t, r in res.items() if r["result"] != runner.FAIL}
    assert not survived, f"mutant {name} survived these tests (they did not fail): {survived}"


@pytest.mark.parametrize("name", sorted(mutants.ORACLES))
def test_oracle_passes(name: str, tmp_path, workdir) -> None:
    """The other direction: tests of a feature runc lacks pass on runc plus a
    wrapper that implements the feature as the spec says, so they are not
    tests that can only fail."""
    runtime = f"{sys.executable} {MUTANTS_PY} {name} {RUNC}"
    res = _run(runtime, list(mutants.ORACLE_TESTS[name]), tmp_path, workdir)
    bad = {t: f"{r['result']}: {r['reason'][:200]}" for t, r in res.items() if r["result"] != runner.PASS}
    assert not bad, f"with the {name} oracle these tests still do not pass: {bad}"
