"""Typed errors of ocirun.

Every failure the user can see is an :class:`OciRunError`.  Errors raised in a
child process (intermediate or init) travel to the parent over the sync
channel as ``{"type": "error", "code", "errno", "msg", "stage"}`` and are
rebuilt through :data:`CODES`, never through builtins.
"""

from __future__ import annotations


class OciRunError(Exception):
    """Base error: ``msg`` is one line, ``stage`` names the lifecycle step."""

    code = "error"
    exit_code = 1

    def __init__(self, msg: str, *, errno: int | None = None, stage: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.errno = errno
        self.stage = stage

    def __str__(self) -> str:
        return self.msg

    def to_message(self) -> dict[str, object]:
        return {"type": "error", "code": self.code, "errno": self.errno,
                "msg": self.msg, "stage": self.stage}


class UsageError(OciRunError):
    """Bad command line (unknown flag, wrong number of arguments)."""
    code = "usage"


class ConfigError(OciRunError):
    """config.json is malformed, violates the schema or a meaning check."""
    code = "config"


class BundleError(OciRunError):
    """The bundle directory or its config.json cannot be read."""
    code = "bundle"


class StateError(OciRunError):
    """The container is not in a status that allows the operation."""
    code = "state"


class NotFoundError(OciRunError):
    """No such container.  containerd and podman match "does not exist"."""
    code = "not_found"


class ExistsError(OciRunError):
    code = "exists"


class SyscallError(OciRunError):
    """A kernel call failed during set-up (mount, pivot_root, setns, ...)."""
    code = "syscall"


class ExecError(OciRunError):
    """The user program could not be exec'd (not found, permission denied)."""
    code = "exec"


class HookError(OciRunError):
    code = "hook"


class CgroupError(OciRunError):
    code = "cgroup"


class ChildDiedError(OciRunError):
    """A child process exited before sending the message the parent expected."""
    code = "child_died"


class NotSupportedError(OciRunError):
    """A feature ocirun does not implement yet: refused, never faked."""
    code = "not_supported"


CODES: dict[str, type[OciRunError]] = {
    cls.code: cls
    for cls in (OciRunError, UsageError, ConfigError, BundleError, StateError, NotFoundError,
                ExistsError, SyscallError, ExecError, HookError, CgroupError, ChildDiedError,
                NotSupportedError)
}


def from_message(msg: dict[str, object]) -> OciRunError:
    """Rebuild an error sent by a child process."""
    cls = CODES.get(str(msg.get("code")), OciRunError)
    errno = msg.get("errno")
    stage = msg.get("stage")
    return cls(str(msg.get("msg", "unknown error")),
               errno=errno if isinstance(errno, int) else None,
               stage=stage if isinstance(stage, str) else None)


def oserror_text(e: OSError) -> str:
    """``strerror`` of an OSError, falling back to its str()."""
    return e.strerror or str(e)
