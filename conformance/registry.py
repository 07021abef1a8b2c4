"""Test registration for the conformance suite.

Every test carries the spec sentence it checks: an id, the spec file and
section (``config-linux.md#devices``), the RFC 2119 level of the sentence
(MUST / SHOULD / MAY, spec.md#notational-conventions) and a one-line summary.
"""
from __future__ import annotations

from typing import Callable

LEVELS = ("MUST", "SHOULD", "MAY")


class Skip(Exception):
    """The host (not the runtime) lacks what the test needs."""


class Fail(AssertionError):
    """The runtime did not do what the spec sentence asks."""


class TestCase:
    __test__ = False  # not a pytest class
    __slots__ = ("id", "ref", "level", "summary", "func", "module")

    def __init__(self, tid: str, ref: str, level: str, summary: str, func: Callable) -> None:
        self.id, self.ref, self.level, self.summary, self.func = tid, ref, level, summary, func
        self.module = func.__module__.rsplit(".", 1)[-1]


TESTS: list[TestCase] = []
_IDS: set[str] = set()


def conformance_test(tid: str, ref: str, level: str, summary: str) -> Callable:
    """Register ``func(ctx)`` as test ``tid``; duplicate ids are a programming error."""
    if level not in LEVELS:
        raise ValueError(f"test {tid}: level must be one of {LEVELS}, not {level!r}")
    if "#" not in ref or not ref.split("#")[0].endswith(".md"):
        raise ValueError(f"test {tid}: ref must look like file.md#section, not {ref!r}")

    def deco(func: Callable) -> Callable:
        if tid in _IDS:
            raise ValueError(f"duplicate conformance test id {tid}")
        _IDS.add(tid)
        TESTS.append(TestCase(tid, ref, level, summary, func))
        return func
    return deco


def check(cond: object, msg: str) -> None:
    if not cond:
        raise Fail(msg)


def check_eq(got: object, want: object, what: str) -> None:
    if got != want:
        raise Fail(f"{what}: got {got!r}, want {want!r}")
