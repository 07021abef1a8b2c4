"""Suite-wide pytest configuration: markers, the runtime under test, and the leak check.

Markers (registered here so ``--strict-markers`` works):
- ``privileged``: needs root and runs real containers; every test under ``tests/privileged``
  gets it automatically and is skipped when the suite does not run as root.
- ``runc_differs``: ocirun follows runtime-spec v1.3.0 where runc 1.1.5 does something else;
  skipped when the runtime under test is runc.
- ``requires_runc``: needs Debian's ``runc`` (differential tests); skipped when it is absent.

The runtime under test is a command line: ``$OCIRUN_TEST_RUNTIME`` (shlex-split), else
the ``ocirun`` launcher installed beside the running interpreter (the venv), else
``ocirun`` on PATH, else ``python3 -m ocirun`` run from this repository.

Leak check (issue 2, point 11): every process a test starts carries a session token in its
environment (``OCITEST=<token>-<n>``), every container id starts with the token, and every
file lives under pytest's base temp dir. At the end of the session we look for processes,
cgroups and mounts carrying those marks; anything found fails the run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import uuid
from typing import Any

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
# Lets test modules and conftests `import bundle` whatever pytest's import mode is.
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

# Short, unique per session, and made of characters every runtime accepts in an id.
SESSION_TOKEN = "ot" + uuid.uuid4().hex[:8]
LEAKS_KEY = pytest.StashKey[list]()
CGROUP_ROOT = "/sys/fs/cgroup"


def runtime_command() -> list[str]:
    """The command line of the runtime under test (see the module docstring)."""
    env = os.environ.get("OCIRUN_TEST_RUNTIME", "").strip()
    if env:
        return shlex.split(env)
    # the launcher installed beside this interpreter (the venv .ci/setup made)
    beside = os.path.join(os.path.dirname(sys.executable), "ocirun")
    if os.access(beside, os.X_OK):
        return [beside]
    exe = shutil.which("ocirun")
    if exe:
        return [exe]
    return [sys.executable, "-m", "ocirun"]


def runtime_env(cmd: list[str], token: str) -> dict[str, str]:
    """Environment for one runtime invocation: ours, the test token, and the repo on the
    import path when we fall back to ``python3 -m ocirun``."""
    env = dict(os.environ)
    env["OCITEST"] = token
    if cmd[1:3] == ["-m", "ocirun"]:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = REPO + os.pathsep + old if old else REPO
    return env


def is_runc(cmd: list[str]) -> bool:
    return os.path.basename(cmd[0]) == "runc"


class HostScan:
    """Read-only looks at the host: mounts, cgroups and processes a test may have left."""

    @staticmethod
    def mountinfo() -> list[list[str]]:
        with open("/proc/self/mountinfo") as f:
            return [line.split() for line in f]

    @staticmethod
    def mounts_under(prefix: str) -> list[str]:
        """Mount points (host view) at or under ``prefix``."""
        prefix = prefix.rstrip("/")
        found = []
        for fields in HostScan.mountinfo():
            # Field 5 is the mount point, octal-escaped by the kernel.
            point = fields[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
        return found

    @staticmethod
    def cgroup_parents() -> list[str]:
        """Directories under which a runtime would put a cgroup named after a container:
        each hierarchy's root and our own cgroup in that hierarchy (cgroupfs drivers name
        a container's cgroup relative to the caller's when no cgroupsPath is given)."""
        parents = set()
        own: dict[str, str] = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls or "unified").split(","):
                    own[c.replace("name=", "")] = path
        if not os.path.isdir(CGROUP_ROOT):
            return []
        for entry in os.listdir(CGROUP_ROOT):
            base = os.path.join(CGROUP_ROOT, entry)
            if not os.path.isdir(base) or os.path.islink(base):
                continue
            parents.add(base)
            rel = own.get(entry, "/").lstrip("/")
            if rel:
                parents.add(os.path.join(base, rel))
        if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            # Pure cgroup v2: the hierarchy root is /sys/fs/cgroup itself.
            parents.add(CGROUP_ROOT)
            rel = own.get("unified", "/").lstrip("/")
            if rel:
                parents.add(os.path.join(CGROUP_ROOT, rel))
        return sorted(p for p in parents if os.path.isdir(p))

    @staticmethod
    def cgroups_named(prefix: str, exact: bool = False) -> list[str]:
        found = []
        for parent in HostScan.cgroup_parents():
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for n in names:
                if (n == prefix) if exact else n.startswith(prefix):
                    p = os.path.join(parent, n)
                    if os.path.isdir(p):
                        found.append(p)
        return found

    @staticmethod
    def pids_with_token(token: str, exact: bool = False) -> list[int]:
        """Live processes marked with ``token``: ``OCITEST=<token>`` in their environment
        (the runtime's own processes, and the container once it exec'd), or a cgroup
        named after a container id made from the token (a parked init whose runtime
        cleared its environment, as runc's does). ``exact`` matches one test's token;
        otherwise any token that starts with it (the whole session)."""
        env_needle = b"OCITEST=" + token.encode()
        me = os.getpid()
        pids = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                # A zombie has released everything but its pid and is not a leak by itself.
                if stat.rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                with open(f"/proc/{name}/cgroup") as f:
                    cgroups = f.read()
            except OSError:
                continue
            if exact:
                marked = env_needle in env
            else:
                marked = any(v.startswith(env_needle) for v in env)
            if not marked:
                for line in cgroups.splitlines():
                    for part in line.split(":", 2)[-1].split("/"):
                        if part.startswith(token + "-" if exact else token):
                            marked = True
            if marked:
                pids.append(int(name))
        return pids


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "privileged: needs root; runs real containers")
    config.addinivalue_line(
        "markers", "runc_differs: ocirun follows the spec where runc 1.1.5 does not; skipped for runc"
    )
    config.addinivalue_line("markers", "requires_runc: needs Debian's runc (differential tests)")
    config.stash[LEAKS_KEY] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    priv_dir = os.path.join(TESTS_DIR, "privileged") + os.sep
    root = os.geteuid() == 0
    runc_under_test = is_runc(runtime_command())
    have_runc = shutil.which("runc") is not None
    for item in items:
        if str(item.fspath).startswith(priv_dir):
            item.add_marker(pytest.mark.privileged)
        if item.get_closest_marker("privileged") and not root:
            item.add_marker(pytest.mark.skip(reason="privileged test: run as root"))
        if item.get_closest_marker("runc_differs") and runc_under_test:
            item.add_marker(pytest.mark.skip(reason="runc 1.1.5 departs from the spec here"))
        if item.get_closest_marker("requires_runc") and not have_runc:
            item.add_marker(pytest.mark.skip(reason="runc is not installed"))


@pytest.fixture(scope="session")
def runtime_cmd() -> list[str]:
    return runtime_command()


@pytest.fixture(scope="session")
def runtime_is_runc(runtime_cmd: list[str]) -> bool:
    return is_runc(runtime_cmd)


@pytest.fixture(scope="session")
def session_token() -> str:
    return SESSION_TOKEN


@pytest.fixture(scope="session")
def host_scan() -> type[HostScan]:
    return HostScan


@pytest.fixture(scope="session")
def runtime_env_for() -> Any:
    return runtime_env


@pytest.fixture(scope="session")
def leak_log(request: pytest.FixtureRequest) -> list[Any]:
    """Leaks that test finalizers had to clean up themselves; test_zz_leaks asserts it is empty."""
    return request.config.stash[LEAKS_KEY]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not any(item.get_closest_marker("privileged") for item in getattr(session, "items", [])):
        return
    if os.geteuid() != 0:
        return
    problems = []
    pids = HostScan.pids_with_token(SESSION_TOKEN)
    if pids:
        problems.append(f"processes still running: {pids}")
    cgs = HostScan.cgroups_named(SESSION_TOKEN)
    if cgs:
        problems.append(f"cgroups left: {cgs}")
    try:
        base = str(config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]
        mnts = HostScan.mounts_under(base)
    except (AttributeError, OSError):
        mnts = []
    if mnts:
        problems.append(f"mounts left: {mnts}")
    if problems:
        tr = config.pluginmanager.get_plugin("terminalreporter")
        msg = "LEAK CHECK FAILED after the session: " + "; ".join(problems)
        if tr is not None:
            tr.write_line(msg, red=True)
        else:
            print(msg, file=sys.stderr)
        session.exitstatus = 1
