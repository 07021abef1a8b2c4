"""InitPlan: everything the children need, computed in the parent.

ARCHITECTURE rule 1: every config-caused failure happens before the first
fork, and the children never parse JSON.  The plan holds the validated config
dict (read-only by convention), the namespace plan, the computed capability
sets and the fds the children inherit (namespace paths, the exec FIFO).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.capabilities import CapSets
    from ocirun.namespaces import NamespacePlan
    from ocirun.seccomp import SeccompProgram


class InitPlan:
    __slots__ = (
        "bundle",
        "caps",
        "cid",
        "detached_stdio",
        "env",
        "fifo_fd",
        "has_create_hooks",
        "hook_base",
        "join_fds",
        "keep_fds",
        "no_new_keyring",
        "no_pivot",
        "ns",
        "rootfs",
        "seccomp",
        "spec",
    )

    def __init__(self, *, cid: str, spec: dict, bundle: str, rootfs: str,  # type: ignore[type-arg]
                 ns: NamespacePlan, caps: CapSets | None, env: list[str],
                 no_pivot: bool = False, no_new_keyring: bool = False, keep_fds: int = 0,
                 hook_base: dict[str, object] | None = None) -> None:
        self.cid = cid
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.ns = ns
        self.join_fds: list[tuple[int, int]] = []
        self.fifo_fd = -1
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.keep_fds = keep_fds  # fds 3 .. 3+keep_fds-1 pass into the container
        self.caps = caps
        self.env = env
        self.hook_base = hook_base or {}
        hooks = spec.get("hooks") or {}
        self.has_create_hooks = bool(hooks.get("prestart") or hooks.get("createRuntime"))
        self.detached_stdio = False
        # [sec] the compiled linux.seccomp (ocirun.seccomp.SeccompProgram), set by create
        self.seccomp: SeccompProgram | None = None

    def hook_state(self, status: str, pid: int) -> dict[str, object]:
        doc = dict(self.hook_base)
        doc["status"] = status
        doc["pid"] = pid
        return doc
