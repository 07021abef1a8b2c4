"""config-linux.md#network-devices and #namespace-lifecycle-and-container-termination:
moving network devices of the runtime's namespace into the container (with
netdev-moved-renamed and netdev-missing-error of linux_more.py: the name
clash, the %d template and the device's fate at deletion).

The links are made in a network namespace of the test's own (a sleeping holder
process), and the runtime is run inside that namespace (``nsenter --net``), so
that the runtime's namespace is the test's and the host's network is untouched.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import time

from conformance.context import MARK
from conformance.registry import Fail, Skip, check, check_eq, conformance_test
from conformance.runtime import Container, Runtime


class NetNs:
    """A network namespace held by a sleeping process of the test."""

    def __init__(self, ctx):
        env = {k: v for k, v in os.environ.items() if k != MARK}
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "300"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ctx.finalizers.append(self.close)
        mine = os.readlink("/proc/self/ns/net")
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                if os.readlink(f"/proc/{self.proc.pid}/ns/net") != mine:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise Skip("cannot make a network namespace here (unshare --net)")
        self.enter = ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net"]
        self.ctx = ctx

    def ip(self, *args: str, check_ok: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.enter, "ip", *args], capture_output=True, text=True)
        if check_ok and r.returncode != 0:
            raise Fail(f"test set-up: ip {' '.join(args)}: {r.stderr.strip()}")
        return r

    def veth(self, name: str) -> None:
        r = self.ip("link", "add", name, "type", "veth", "peer", "name", name + "p", check_ok=False)
        if r.returncode != 0:
            raise Skip(f"this kernel cannot make a veth pair: {r.stderr.strip()}")

    def has(self, name: str) -> bool:
        return self.ip("link", "show", name, check_ok=False).returncode == 0

    def container(self, bundle) -> Container:
        """A container whose runtime runs inside this namespace."""
        rt = Runtime(shlex.join([*self.enter, *self.ctx.rt.argv]), self.ctx.rt.root, env={MARK: self.ctx.dir})
        c = Container(rt, self.ctx.new_id(), bundle)
        self.ctx.containers.append(c)
        return c

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


SHOW = ("for f in mtu flags; do echo $f=$(cat /sys/class/net/{dev}/$f 2>/dev/null); done; "
        "echo addr=$(busybox ip -o -4 addr show dev {dev} 2>/dev/null | busybox awk '{{print $4}}'); "
        "echo links=$(ls /sys/class/net | busybox tr '\\n' ,)")


def _run(ns, ctx, devices, dev):
    b = ctx.bundle(lambda c: c["linux"].update(netDevices=devices), ["/bin/sh", "-c", SHOW.format(dev=dev)])
    c = ns.container(b)
    r = c.create()
    if not r.ok:
        raise Fail(f"create failed: {r.brief()}")
    check(c.start().ok, "start failed")
    c.wait_exit(10)
    return c, dict(ln.split("=", 1) for ln in c.stdout().splitlines() if "=" in ln)


@conformance_test("net-device-not-returned", "config-linux.md#namespace-lifecycle-and-container-termination",
                  "MUST", "a moved link is not moved back to the runtime's namespace when the container goes "
                  "(a veth end dies with the container's namespace); the move itself is checked on the way")
def t_moved(ctx):
    ns = NetNs(ctx)
    ns.veth("confdev0")
    ns.ip("link", "set", "confdev0", "mtu", "1400")
    ns.ip("addr", "add", "10.123.0.1/24", "dev", "confdev0")
    c, kv = _run(ns, ctx, {"confdev0": {"name": "eth9"}}, "eth9")
    check("eth9" in kv.get("links", "").split(","), f"no eth9 in the container: links {kv.get('links')}")
    check_eq(kv.get("mtu"), "1400", "MTU inside")
    check_eq(kv.get("addr"), "10.123.0.1/24", "IPv4 address inside")
    check(kv.get("flags", "").startswith("0x") and int(kv["flags"], 16) & 1, f"eth9 is not up (flags {kv.get('flags')})")
    check(not ns.has("confdev0"), "confdev0 is still in the runtime's namespace")
    c.wait_status("stopped", 5)
    check(c.delete().ok, "delete failed")
    check(not ns.has("confdev0") and not ns.has("eth9"), "the device came back to the runtime's namespace")


@conformance_test("net-device-name-clash", "config-linux.md#network-devices", "MUST",
                  "moving a link under a name the container namespace already has (lo) is an error")
def t_clash(ctx):
    ns = NetNs(ctx)
    ns.veth("confok0")
    ns.veth("confbad0")
    ok = ns.container(ctx.bundle(lambda c: c["linux"].update(netDevices={"confok0": {"name": "eth9"}}), ["/bin/true"]))
    r = ok.create()
    check(r.ok, f"positive control: moving confok0 as eth9 was refused ({r.brief()})")
    bad = ns.container(ctx.bundle(lambda c: c["linux"].update(netDevices={"confbad0": {"name": "lo"}})))
    check(not bad.create().ok, "create accepted moving confbad0 in as lo")
    check(not bad.state_raw().ok, "the refused container still exists")


@conformance_test("net-device-name-template", "config-linux.md#network-devices", "MUST",
                  "a %d template name lets the kernel pick the device's name in the container")
def t_template(ctx):
    ns = NetNs(ctx)
    ns.veth("conftpl0")
    _, kv = _run(ns, ctx, {"conftpl0": {"name": "ctr%d"}}, "ctr0")
    links = kv.get("links", "").split(",")
    check(any(x.startswith("ctr") and x[3:].isdigit() for x in links), f"no ctrN link in the container: {links}")
