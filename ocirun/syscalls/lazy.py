"""The real syscall seam, loaded when a call first needs it.

Loading ``linux`` (cffi's backend, the generated module, libc) costs about
1 ms.  ``create`` on most configs makes no call through the seam until its
init is already forked (the subreaper prctl of P1 is the first), so the
command line hands it this stand-in and the load happens while the init
builds its rootfs instead of before the fork.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.syscalls.api import Syscalls


class LazySyscalls:
    """Forwards every attribute to a LinuxSyscalls made on first use."""

    def __init__(self) -> None:
        self._real: Syscalls | None = None

    def __getattr__(self, name: str) -> object:  # only names not set on self
        real = self._real
        if real is None:
            from ocirun.syscalls.linux import LinuxSyscalls
            real = self._real = LinuxSyscalls()
        value = getattr(real, name)
        setattr(self, name, value)  # found directly from now on: exec calls it often
        return value

    def loaded(self) -> bool:
        return self._real is not None


def lazy_syscalls() -> Syscalls:
    """A :class:`LazySyscalls`, typed as the seam it stands for."""
    return LazySyscalls()  # type: ignore[return-value]
