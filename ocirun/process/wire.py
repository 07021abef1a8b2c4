"""Plans across a process boundary: the frozen plan objects as ``marshal`` bytes.

The nursery (process/nursery.py) is forked before the runtime reads the
config, so it cannot inherit the container plan the way a child forked
later does: the plan is sent to it.  Plans are trees of slotted records
(plantypes.py and the types they hold: CapSets, MountOptions, NamespacePlan,
SeccompProgram...) over tuples, lists, dicts, sets and scalars.  Each
container and record is written as a tagged tuple, then ``marshal`` (a
builtin: no ``pickle``, whose import costs more than the plan) makes bytes.
Records are rebuilt without calling ``__init__`` (the parent already checked
every value), from classes of the ``ocirun`` package only.
"""

from __future__ import annotations

import marshal
import sys

_SCALARS = (type(None), bool, int, float, str, bytes)


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for c in reversed(cls.__mro__):
        s = c.__dict__.get("__slots__", ())
        for n in (s,) if isinstance(s, str) else s:
            if n not in ("__weakref__", "__dict__") and n not in names:
                names.append(n)
    return names


def _enc(x: object) -> object:
    t = type(x)
    if t in _SCALARS:
        return x
    if t is tuple:
        return ("t", *(_enc(v) for v in x))  # type: ignore[attr-defined]
    if t is list:
        return ("l", *(_enc(v) for v in x))  # type: ignore[attr-defined]
    if t is dict:
        flat: list[object] = ["d"]
        for k, v in x.items():  # type: ignore[attr-defined]
            flat += (_enc(k), _enc(v))
        return tuple(flat)
    if t is frozenset or t is set:
        return ("f" if t is frozenset else "s", *(_enc(v) for v in x))  # type: ignore[attr-defined]
    if t.__module__.split(".")[0] != "ocirun":
        raise TypeError(f"plan wire: cannot send a {t.__module__}.{t.__qualname__}")
    fields: list[object] = ["o", f"{t.__module__}:{t.__qualname__}"]
    for name in _slots(t):
        try:
            value = object.__getattribute__(x, name)
        except AttributeError:
            continue  # an unset slot stays unset
        fields += (name, _enc(value))
    extra = getattr(x, "__dict__", None)
    if extra:
        for name, value in extra.items():
            fields += (name, _enc(value))
    return tuple(fields)


def _class(name: str) -> type:
    module, _, qual = name.partition(":")
    if module.split(".")[0] != "ocirun":
        raise TypeError(f"plan wire: refusing class {name}")
    obj: object = sys.modules.get(module) or __import__(module, fromlist=["_"])
    for part in qual.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"plan wire: {name} is not a class")
    return obj


def _dec(x: object) -> object:
    if type(x) is not tuple:
        return x
    tag = x[0]
    if tag == "t":
        return tuple(_dec(v) for v in x[1:])
    if tag == "l":
        return [_dec(v) for v in x[1:]]
    if tag == "d":
        return {_dec(x[i]): _dec(x[i + 1]) for i in range(1, len(x), 2)}
    if tag == "f":
        return frozenset(_dec(v) for v in x[1:])
    if tag == "s":
        return {_dec(v) for v in x[1:]}
    if tag == "o":
        cls = _class(x[1])
        obj: object = object.__new__(cls)
        for i in range(2, len(x), 2):
            object.__setattr__(obj, x[i], _dec(x[i + 1]))
        return obj
    raise ValueError(f"plan wire: unknown tag {tag!r}")


def dumps(obj: object) -> bytes:
    """Bytes for :func:`loads` (in a process running the same ocirun)."""
    return marshal.dumps(_enc(obj))  # type: ignore[arg-type]  # tuples of scalars


def loads(data: bytes) -> object:
    return _dec(marshal.loads(data))
