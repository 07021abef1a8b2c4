"""capabilities.py: the pure computation and the ordered syscalls of apply_caps."""

from __future__ import annotations

import errno

import pytest

from ocirun import capabilities as caps
from ocirun.capabilities import KNOWN_CAPABILITIES, CapSets, apply_caps, compute_caps, names_of
from ocirun.errors import SyscallError
from ocirun.syscalls.api import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
)
from ocirun.syscalls.recording import RecordingSyscalls

RUNC_TEMPLATE = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
TEMPLATE_MASK = (1 << 29) | (1 << 5) | (1 << 10)
ALL = (1 << 41) - 1


def test_table_matches_kernel_header_numbers() -> None:
    assert len(KNOWN_CAPABILITIES) == 41
    assert sorted(KNOWN_CAPABILITIES.values()) == list(range(41))
    assert KNOWN_CAPABILITIES["CAP_CHOWN"] == 0
    assert KNOWN_CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert KNOWN_CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40


def test_last_cap_reads_proc_and_caches(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caps, "_last_cap_cache", [])
    p = tmp_path / "cap_last_cap"  # type: ignore[operator]
    p.write_text("38\n")
    assert caps.last_cap(str(p)) == 38
    p.write_text("40\n")
    assert caps.last_cap(str(p)) == 38  # cached
    monkeypatch.setattr(caps, "_last_cap_cache", [])
    assert caps.last_cap(str(tmp_path / "missing")) == 40  # type: ignore[operator]


def test_last_cap_of_this_kernel_is_plausible() -> None:
    assert 36 <= caps.last_cap() <= 63


def test_missing_object_means_no_capabilities() -> None:
    sets, warnings = compute_caps(None, last=40)
    assert sets == CapSets()
    assert warnings == []


def test_missing_set_means_empty() -> None:
    sets, warnings = compute_caps({"bounding": ["CAP_KILL"]}, last=40)
    assert sets == CapSets(bounding=1 << 5)
    assert warnings == []


def test_runc_template() -> None:
    tpl = {name: list(RUNC_TEMPLATE) for name in ("bounding", "effective", "permitted", "ambient")}
    sets, warnings = compute_caps(tpl, last=40)
    # The template has no inheritable set, so the kernel would refuse every
    # ambient raise: they are dropped with one warning.
    assert sets == CapSets(bounding=TEMPLATE_MASK, effective=TEMPLATE_MASK,
                           permitted=TEMPLATE_MASK, inheritable=0, ambient=0)
    assert len(warnings) == 1
    assert "ambient" in warnings[0] and "CAP_KILL" in warnings[0]


def test_full_template_with_inheritable_keeps_ambient() -> None:
    tpl = {name: list(RUNC_TEMPLATE) for name in caps.SET_NAMES}
    sets, warnings = compute_caps(tpl, last=40)
    assert sets.ambient == TEMPLATE_MASK
    assert sets.inheritable == TEMPLATE_MASK
    assert warnings == []


def test_unknown_capability_is_a_warning() -> None:
    sets, warnings = compute_caps({"bounding": ["CAP_KILL", "CAP_BOGUS"]}, last=40)
    assert sets.bounding == 1 << 5
    assert warnings == ["process.capabilities.bounding: unknown capability `CAP_BOGUS`, ignored"]


def test_capability_above_last_cap_is_a_warning() -> None:
    sets, warnings = compute_caps({"bounding": ["CAP_BPF", "CAP_CHECKPOINT_RESTORE", "CAP_KILL"]},
                                  last=38)
    assert sets.bounding == 1 << 5
    assert len(warnings) == 2
    assert all("not supported by this kernel" in w for w in warnings)


def test_effective_outside_permitted_is_pruned() -> None:
    sets, warnings = compute_caps({"effective": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL"]},
                                  last=40)
    assert sets.effective == 1 << 5
    assert warnings == ["process.capabilities.effective: CAP_CHOWN not in the permitted set, ignored"]


def test_inheritable_outside_bounding_is_pruned() -> None:
    sets, warnings = compute_caps({"inheritable": ["CAP_KILL"], "bounding": []}, last=40)
    assert sets.inheritable == 0
    assert "bounding" in warnings[0]


def test_names_of_round_trip() -> None:
    assert names_of(TEMPLATE_MASK) == ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]


def test_capsets_dict_round_trip() -> None:
    s = CapSets(1, 2, 3, 4, 5)
    assert CapSets.from_dict(s.as_dict()) == s
    assert "bounding=0x1" in repr(s)


def _expected_calls(sets: CapSets, last: int, raise_first: bool) -> list[tuple[object, ...]]:
    calls: list[tuple[object, ...]] = [("capget",)]
    if raise_first:
        calls.append(("capset", ALL, ALL, 0))
    calls += [("prctl", PR_CAPBSET_DROP, b, 0, 0, 0) for b in range(last + 1)
              if not sets.bounding >> b & 1]
    calls.append(("capset", sets.effective, sets.permitted, sets.inheritable))
    calls.append(("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
    calls += [("prctl", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, b, 0, 0) for b in range(last + 1)
              if sets.ambient >> b & 1]
    return calls


def test_apply_order_with_full_effective_set() -> None:
    tpl = {name: list(RUNC_TEMPLATE) for name in caps.SET_NAMES}
    sets, _ = compute_caps(tpl, last=40)
    rec = RecordingSyscalls(caps=(ALL, ALL, 0))
    apply_caps(sets, rec, last=40)
    assert rec.calls == _expected_calls(sets, 40, raise_first=False)
    # 38 of 41 are dropped, the three template caps are kept
    assert sum(1 for c in rec.calls if c[:2] == ("prctl", PR_CAPBSET_DROP)) == 38
    assert rec.caps == (TEMPLATE_MASK, TEMPLATE_MASK, TEMPLATE_MASK)


def test_apply_after_setresuid_raises_effective_first() -> None:
    # After setresuid(1000) with KEEPCAPS the effective set is empty but the
    # permitted set is intact; CAPBSET_DROP needs CAP_SETPCAP effective.
    sets, _ = compute_caps({n: list(RUNC_TEMPLATE) for n in ("bounding", "effective", "permitted")},
                           last=40)
    rec = RecordingSyscalls(caps=(0, ALL, 0))
    apply_caps(sets, rec, last=40)
    assert rec.calls == _expected_calls(sets, 40, raise_first=True)


def test_apply_respects_last_cap() -> None:
    rec = RecordingSyscalls()
    apply_caps(CapSets(), rec, last=37)
    drops = [c[2] for c in rec.calls if c[:2] == ("prctl", PR_CAPBSET_DROP)]
    assert drops == list(range(38))


def test_apply_capset_failure_names_the_sets() -> None:
    rec = RecordingSyscalls(fail={"capset": errno.EPERM})
    with pytest.raises(SyscallError) as ei:
        apply_caps(CapSets(effective=1 << 5, permitted=1 << 5), rec, last=40)
    msg = str(ei.value)
    assert msg == "capset effective=0x20 permitted=0x20 inheritable=0x0: Operation not permitted"
    assert ei.value.errno == errno.EPERM
    assert isinstance(ei.value.__cause__, OSError)


def test_apply_bounding_failure_names_the_capability() -> None:
    rec = RecordingSyscalls(fail=lambda name, args: errno.EPERM if args[:2] == (PR_CAPBSET_DROP, 21) else None)
    with pytest.raises(SyscallError, match=r"drop `CAP_SYS_ADMIN` from the bounding set: Operation not permitted"):
        apply_caps(CapSets(), rec, last=40)


def test_apply_ambient_failure() -> None:
    rec = RecordingSyscalls(fail=lambda name, args: errno.EPERM if name == "prctl" and args[:2] == (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE) else None)
    with pytest.raises(SyscallError, match=r"raise ambient capability `CAP_KILL`"):
        apply_caps(CapSets(bounding=32, effective=32, permitted=32, inheritable=32, ambient=32), rec, last=40)


def test_limit_to_grantable_warns_and_drops() -> None:
    from ocirun.capabilities import KNOWN_CAPABILITIES as K
    from ocirun.capabilities import CapSets, limit_to_grantable
    kill, admin = 1 << K["CAP_KILL"], 1 << K["CAP_SYS_ADMIN"]
    sets = CapSets(bounding=kill | admin, effective=kill | admin, permitted=kill)
    warnings = limit_to_grantable(sets, grantable=kill)
    assert sets.bounding == kill and sets.effective == kill and sets.permitted == kill
    assert len(warnings) == 2 and all("CAP_SYS_ADMIN cannot be granted" in w for w in warnings)


def test_own_bounding_set(tmp_path) -> None:
    from ocirun.capabilities import own_bounding_set
    p = tmp_path / "status"
    p.write_text("Name:\tx\nCapBnd:\t000001ffffffffff\n")
    assert own_bounding_set(str(p)) == 0x1FFFFFFFFFF
    assert own_bounding_set(str(tmp_path / "nope")) is None
