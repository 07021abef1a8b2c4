"""Build the plans of ocirun/process/plan.py from config fragments, for tests.

rootfs.prepare_rootfs and finish_rootfs take a ContainerPlan.  Many tests
describe a mount table as a config fragment; these wrappers keep that form:
they plan the fragment the way the runtime's planner does (the same
functions) and call the real rootfs code.
"""

from __future__ import annotations

from typing import Any

from ocirun import rootfs
from ocirun.devices import device_list
from ocirun.namespaces import NamespacePlan
from ocirun.plantypes import ContainerPlan, ProcessPlan
from ocirun.process.plan import build_mounts


def container_plan(spec: dict[str, Any], bundle: str, root: str, *, in_userns: bool = False,
                   no_pivot: bool = False) -> ContainerPlan:
    linux = spec.get("linux") or {}
    namespaces = list(linux.get("namespaces") or [])
    if in_userns and not any(n.get("type") == "user" for n in namespaces):
        namespaces.append({"type": "user"})
    ns = NamespacePlan(namespaces)
    own_netns = any(n.get("type") == "network" and not n.get("path") for n in namespaces)
    mounts = build_mounts(list(spec.get("mounts") or []), bundle, in_userns=ns.in_userns,
                          own_netns=own_netns)
    return ContainerPlan(
        cid="test", bundle=bundle, rootfs=root, oci_version="1.3.0", annotations={}, ns=ns,
        uid_map=b"", gid_map=b"", time_offsets=b"", mounts=mounts,
        devices=tuple(device_list(spec)),
        dev_is_bind=any(m.destination == "/dev" and m.kind == "bind" for m in mounts),
        private_devpts=any(m.destination == "/dev/pts" and m.fstype == "devpts" for m in mounts),
        masked_paths=tuple(linux.get("maskedPaths") or ()),
        readonly_paths=tuple(linux.get("readonlyPaths") or ()), sysctl=(), hostname=None,
        domainname=None, rootfs_propagation=linux.get("rootfsPropagation"),
        root_readonly=bool((spec.get("root") or {}).get("readonly")), no_pivot=no_pivot,
        hooks={}, process=ProcessPlan(args=("true",), env=()))


def prepare_rootfs(spec: dict[str, Any], bundle: str, root: str, sys: Any, *, in_userns: bool,
                   before_cgroup: Any = None, mount_fds: dict[int, int] | None = None) -> None:
    plan = container_plan(spec, bundle, root, in_userns=in_userns)
    rootfs.prepare_rootfs(plan, sys, mount_fds=mount_fds, before_cgroup=before_cgroup)


def finish_rootfs(spec: dict[str, Any], root: str, sys: Any, *, no_pivot: bool) -> None:
    rootfs.finish_rootfs(container_plan(spec, "/", root, no_pivot=no_pivot), sys)
