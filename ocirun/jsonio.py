"""JSON in and out for the hot path.

``import json`` costs about 6 ms because its Python layer imports ``re``; the
C scanner and encoder in ``_json`` do the real work.  This module drives
``_json`` directly for the small documents the runtime handles (state files,
sync messages, the hook state) and keeps ``json``'s exact output format.
Config files go through :func:`loads` too; duplicate-key detection lives in
``config/bundle.py`` (it needs ``object_pairs_hook``).
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~7 ms at import; annotations only
    from typing import Any

_WS = " \t\n\r"


class _ScanContext:
    __slots__ = (
        "memo",
        "object_hook",
        "object_pairs_hook",
        "parse_constant",
        "parse_float",
        "parse_int",
        "strict",
    )

    def __init__(self, pairs_hook: Any = None) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = pairs_hook
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = _bad_constant
        self.memo: dict[str, str] = {}


def _bad_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not valid JSON")


_scanner = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]  # duck-typed context


class JSONError(ValueError):
    """Malformed JSON; ``lineno``/``colno`` point at the problem."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        self.msg = msg
        self.lineno = doc.count("\n", 0, pos) + 1
        self.colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg} at line {self.lineno} column {self.colno}")


def loads(text: str | bytes, pairs_hook: Any = None) -> Any:
    """Parse one JSON document (strict: no NaN/Infinity, no trailing data)."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    scan = _scanner if pairs_hook is None else _json.make_scanner(_ScanContext(pairs_hook))  # type: ignore[arg-type]
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    try:
        try:
            value, end = scan(text, i)
        except SystemError:
            # CPython 3.11's scanner builds its error from json.decoder's
            # JSONDecodeError but only finds that class in sys.modules; when
            # nothing imported json yet it returns NULL with no exception set.
            # Malformed input is the error path, so import it and scan again.
            import json.decoder  # noqa: F401
            value, end = scan(text, i)
    except StopIteration as e:
        raise JSONError("expecting a value", text, e.value) from None
    except ValueError as e:
        pos = getattr(e, "pos", i)
        raise JSONError(getattr(e, "msg", str(e)), text, pos) from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise JSONError("extra data after the document", text, end)
    return value


def _default(o: Any) -> Any:
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


# (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
#  skipkeys, allow_nan): the C encoder only does the compact form.
_compact = _json.make_encoder(None, _default, _json.encode_basestring_ascii, None,
                              ":", ",", False, False, False)


def _pretty(obj: Any, pad: str, step: str, out: list[str]) -> None:
    if isinstance(obj, dict) and obj:
        inner = pad + step
        out.append("{")
        first = True
        for k, v in obj.items():
            out.append("\n" + inner if first else ",\n" + inner)
            first = False
            out.append(_json.encode_basestring_ascii(str(k)) + ": ")
            _pretty(v, inner, step, out)
        out.append("\n" + pad + "}")
    elif isinstance(obj, (list, tuple)) and obj:
        inner = pad + step
        out.append("[")
        for i, v in enumerate(obj):
            out.append(("\n" if i == 0 else ",\n") + inner)
            _pretty(v, inner, step, out)
        out.append("\n" + pad + "]")
    else:
        out.append("".join(_compact(obj, 0)))


def dumps(obj: Any, indent: int | None = None) -> str:
    """Compact JSON, or pretty with ``indent`` spaces (same text as json.dumps)."""
    if indent is None:
        return "".join(_compact(obj, 0))
    out: list[str] = []
    _pretty(obj, "", " " * indent, out)
    return "".join(out)
