"""Helpers of the security tests (issue 8: user namespaces, rootless, attacks).

- :func:`wide_dir`: a directory any uid can traverse.  A container with a
  user namespace reaches its rootfs as the mapped root (host uid 100000, say),
  exactly like runc: pytest's own tmp dirs (``/tmp/pytest-of-root``, 0700)
  are out of its reach.
- :func:`build_static`: a static binary from ``tests/fixtures/*.c``.
- :class:`PlainUser`: a throwaway unprivileged user (``useradd``; removed
  with its /etc/subuid and /etc/subgid lines by ``close``).
- :func:`runtime_for`: a command line of the runtime under test that such a
  user can run (the suite's own venv may live where only root reaches, as a
  pyenv interpreter under /root: then the checkout is installed into a venv
  of Debian's /usr/bin/python3 in a wide directory).

Standard library only; every helper cleans up what it made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")


def wide_dir(prefix: str) -> str:
    """A fresh directory in /tmp that every uid can traverse and read (0755)."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    return d


def build_static(name: str, out_dir: str) -> str | None:
    """``tests/fixtures/<name>.c`` built with ``gcc -static``; None when there is no
    static toolchain (callers skip, saying so)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    out = os.path.join(out_dir, name)
    r = subprocess.run([gcc, "-static", "-O2", "-o", out, os.path.join(FIXTURES, name + ".c")],
                       capture_output=True, text=True, check=False)
    return out if r.returncode == 0 else None


def sub_range(path: str, name: str) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] == name:
                    return int(parts[1]), int(parts[2])
    except FileNotFoundError:
        pass
    return None


class PlainUser:
    """A throwaway user for the rootless tests.

    ``subids``: give it 65536 subordinate uids and gids (useradd allocates
    them on Debian; ``usermod --add-subuids`` does where it does not)."""

    def __init__(self, subids: bool = True) -> None:
        self.name = "ocisec" + uuid.uuid4().hex[:8]
        argv = ["useradd", "--no-create-home", "--shell", "/bin/sh", "--user-group"]
        if not subids:
            argv.append("--system")  # system accounts get no subordinate ids
        subprocess.run([*argv, self.name], check=True, capture_output=True)
        out = subprocess.run(["id", "-u", self.name], check=True, capture_output=True, text=True)
        self.uid = int(out.stdout)
        out = subprocess.run(["id", "-g", self.name], check=True, capture_output=True, text=True)
        self.gid = int(out.stdout)
        self.subuid = sub_range("/etc/subuid", self.name)
        self.subgid = sub_range("/etc/subgid", self.name)
        if subids and (self.subuid is None or self.subgid is None):
            base = 1_000_000_000 + (self.uid % 1000) * 65536
            rng = f"{base}-{base + 65535}"
            subprocess.run(["usermod", "--add-subuids", rng, "--add-subgids", rng, self.name],
                           check=True, capture_output=True)
            self.subuid = sub_range("/etc/subuid", self.name)
            self.subgid = sub_range("/etc/subgid", self.name)
        if not subids:
            for f, opt in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
                r = sub_range(f, self.name)
                if r is not None:
                    subprocess.run(["usermod", opt, f"{r[0]}-{r[0] + r[1] - 1}", self.name],
                                   check=True, capture_output=True)
            self.subuid = self.subgid = None

    def close(self) -> None:
        for f, opt in (("/etc/subuid", "--del-subuids"), ("/etc/subgid", "--del-subgids")):
            r = sub_range(f, self.name)
            if r is not None:
                subprocess.run(["usermod", opt, f"{r[0]}-{r[0] + r[1] - 1}", self.name],
                               check=False, capture_output=True)
        subprocess.run(["userdel", self.name], check=False, capture_output=True)

    def argv(self, *cmd: str, env: dict[str, str] | None = None) -> list[str]:
        """``cmd`` run as this user with exactly ``env`` (runuser keeps no environment
        of ours: env -i)."""
        pairs = [f"{k}={v}" for k, v in (env or {}).items()]
        return ["runuser", "-u", self.name, "--", "env", "-i", *pairs, *cmd]

    def chown_tree(self, path: str) -> None:
        subprocess.run(["chown", "-R", f"{self.uid}:{self.gid}", path], check=True)


def _reachable(user: PlainUser, cmd: list[str]) -> bool:
    r = subprocess.run(user.argv(*cmd, "--version", env={"PATH": "/usr/bin:/bin"}),
                       capture_output=True, text=True, check=False)
    return r.returncode == 0 and "ocirun" in r.stdout


def runtime_for(user: PlainUser, cmd: list[str], where: str) -> list[str] | None:
    """A command line of the runtime ``cmd`` that ``user`` can run, else None.

    When the user cannot run ``cmd`` itself, the checkout is installed into a
    new venv of /usr/bin/python3 under ``where`` (a wide directory)."""
    if _reachable(user, cmd):
        return cmd
    if os.path.basename(cmd[0]) != "ocirun":
        return None  # another runtime (runc): not ours to reinstall
    py = "/usr/bin/python3"
    if not os.access(py, os.X_OK):
        return None
    venv = os.path.join(where, "venv")
    r = subprocess.run([py, "-m", "venv", venv], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None
    src = os.path.join(where, "src")
    # the checkout as it is (tracked and new files, not what git ignores)
    for rel in subprocess.run(["git", "-C", REPO, "ls-files", "-co", "--exclude-standard"],
                              check=True, capture_output=True, text=True).stdout.splitlines():
        path = os.path.join(REPO, rel)
        if os.path.isfile(path):
            os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
            shutil.copy2(path, os.path.join(src, rel))
    r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", src],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None
    os.chmod(where, 0o755)
    launcher = [os.path.join(venv, "bin", "ocirun")]
    return launcher if _reachable(user, launcher) else None
