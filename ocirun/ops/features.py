"""``features``: what this runtime implements (features.md, features-linux.md).

Built from the tables the validator and the mechanisms themselves use, so
it cannot drift from what ``create`` accepts: the hook kinds the meaning
checks know, ``mount_options.KNOWN_MOUNT_OPTIONS``, the namespace types of
``namespaces.TYPE_FLAGS``, ``capabilities.KNOWN_CAPABILITIES``, seccomp's
action/operator/architecture/flag tables once the seccomp module is there,
and ``checks.NOT_YET`` for everything refused so far (a feature in NOT_YET
is reported as not enabled).  The document describes the implementation,
not the host (features.md: "not the host's capabilities"), so nothing here
probes the machine, with three exceptions where the host decides whether a
feature can work at all (issue 13): id-mapped mounts need Linux >= 5.12
(mount_setattr), netDevices needs pyroute2 beside ocirun, and checkpoint
needs a criu binary.  Printed with 4-space indents, as runc does.
"""

from __future__ import annotations

import importlib.util

from ocirun import SPEC_VERSION, __version__, jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The oldest config version whose fields mean the same to us.
OCI_VERSION_MIN = "1.0.0"
# Mount options that exist only with id-mapped mounts.
IDMAP_OPTIONS = ("idmap", "ridmap")


def _seccomp(refused: bool) -> dict[str, Any]:
    # ocirun.seccomp is its own issue: until it exists (and while NOT_YET
    # refuses linux.seccomp) the document says so instead of guessing.
    if refused or importlib.util.find_spec("ocirun.seccomp") is None:
        return {"enabled": False}
    seccomp: Any = importlib.import_module("ocirun.seccomp")
    flags = sorted(getattr(seccomp, "FLAGS", {}))
    return {"enabled": True, "actions": sorted(seccomp.ACTIONS), "operators": sorted(seccomp.OPS),
            "archs": sorted(seccomp.ARCHES), "knownFlags": flags, "supportedFlags": flags}


def features() -> dict[str, Any]:
    from ocirun.capabilities import KNOWN_CAPABILITIES
    from ocirun.config.checks import NOT_YET
    from ocirun.plantypes import HOOK_KINDS
    from ocirun.mount_options import KNOWN_MOUNT_OPTIONS
    from ocirun.namespaces import TYPE_FLAGS

    def built(key: str) -> bool:
        return key not in NOT_YET

    from ocirun import criu, mempolicy, netdev, resctrl
    from ocirun.process import idmap as idmapped

    idmap = built("mounts[].uidMappings") and idmapped.features()["idmap"]["enabled"]
    options = [o for o in KNOWN_MOUNT_OPTIONS if idmap or o not in IDMAP_OPTIONS]
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": options,
        "linux": {
            "namespaces": sorted(TYPE_FLAGS),
            "capabilities": list(KNOWN_CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": built("linux.resources.rdma")},
            "seccomp": _seccomp(not built("linux.seccomp")),
            "apparmor": {"enabled": built("process.apparmorProfile")},
            "selinux": {"enabled": built("process.selinuxLabel")},
            "intelRdt": resctrl.features() if built("linux.intelRdt") else {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": idmap}},
            "netDevices": {"enabled": built("linux.netDevices")
                           and netdev.features()["enabled"]},
            "memoryPolicy": mempolicy.features(),
        },
        "annotations": {
            # runc's key, read by callers deciding whether checkpoints work
            **criu.features_annotations(),
            "io.github.ocirun.version": __version__,
        },
    }


def features_json() -> str:
    return jsonio.dumps(features(), indent=4) + "\n"
