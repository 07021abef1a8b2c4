"""Runs last in the privileged tier (file order): nothing the suite started may be left.

runtime.md#delete: deleting a container MUST remove everything ``create`` made, and a failed
create must leave things "as if never attempted". Each test's finalizer force-deletes its
containers through the runtime and then records whatever was still there (``leak_log``);
this module fails if that log is not empty, and looks at the host once more for processes,
cgroups and mounts carrying the session's marks. ``tests/conftest.py`` repeats the host
scan when the session finishes, after every other finalizer has run.
"""

from __future__ import annotations

from typing import Any


def test_finalizers_found_no_leaks(leak_log: list[str]) -> None:
    assert leak_log == [], "the runtime left these behind:\n" + "\n".join(leak_log)


def test_no_processes_left(host_scan: Any, session_token: str) -> None:
    assert host_scan.pids_with_token(session_token) == []


def test_no_cgroups_left(host_scan: Any, session_token: str) -> None:
    assert host_scan.cgroups_named(session_token) == []


def test_no_mounts_left(host_scan: Any, tmp_path_factory: Any) -> None:
    assert host_scan.mounts_under(str(tmp_path_factory.getbasetemp())) == []
