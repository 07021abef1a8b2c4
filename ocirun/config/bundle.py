"""Loading a bundle's config.json (runtime-spec v1.3.0 ``bundle.md``, ``glossary.md#json``).

``load_bundle`` reads ``<bundle>/config.json`` exactly once: the raw bytes are
returned so the caller can keep its own copy in the state directory (edits to
the bundle after ``create`` MUST NOT affect the container, ``runtime.md#create``).

The glossary requires UTF-8 and forbids repeated object names; Python's json
module silently keeps the last duplicate and accepts ``NaN``/``Infinity``,
so both are caught here, before the schema sees the document.
"""

from __future__ import annotations

import _stat as stat  # the C module alone: `stat` adds its Python layer
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean create

from ocirun import jsonio, posixpaths
from ocirun.errors import BundleError, ConfigError, oserror_text

from .schema import json_path, validate

CONFIG_NAME = "config.json"


class _DuplicateKey(Exception):
    pass


def _strict_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey()
    return obj


class _Pairs(list):  # type: ignore[type-arg]
    """An object kept as its list of pairs, to locate duplicates (error path only)."""


def _duplicate_paths(text: str) -> list[str]:
    tree = jsonio.loads(text, pairs_hook=_Pairs)
    found: list[str] = []

    def walk(node: object, parts: list[str | int]) -> None:
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, value in node:
                if key in seen:
                    found.append(json_path(parts + [key]))
                seen.add(key)
                walk(value, parts + [key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, parts + [index])

    walk(tree, [])
    return found


def parse_config(raw: bytes, where: str) -> dict[str, object]:
    """Decode and parse config.json bytes; ``where`` names the file in messages."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"read `{where}`: not valid UTF-8 at byte {e.start} (line {line})") from None
    if text.startswith("\ufeff"):
        raise ConfigError(f"read `{where}`: starts with a byte order mark; JSON text must not")
    try:
        doc = jsonio.loads(text, pairs_hook=_strict_object)
    except jsonio.JSONError as e:
        raise ConfigError(f"parse `{where}`: malformed JSON at line {e.lineno} column {e.colno}: "
                          f"{e.msg}") from None
    except ValueError as e:
        raise ConfigError(f"parse `{where}`: {e}") from None
    except RecursionError:
        raise ConfigError(f"parse `{where}`: JSON nested too deeply") from None
    except _DuplicateKey:
        paths = ", ".join(_duplicate_paths(text))
        raise ConfigError(f"parse `{where}`: duplicate object key at {paths}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"parse `{where}`: top level must be a JSON object, "
                          f"got {type(doc).__name__}")
    return doc


def load_bundle(bundle_dir: str) -> tuple[dict[str, object], bytes]:
    """Read, parse and schema-validate ``<bundle_dir>/config.json``.

    Returns ``(spec, raw_bytes)``.  Raises BundleError when the bundle or the
    file cannot be read, ConfigError when its content is wrong.
    """
    try:
        info = os.stat(bundle_dir)
    except OSError as e:
        raise BundleError(f"bundle `{bundle_dir}`: {oserror_text(e)}", errno=e.errno) from e
    if not stat.S_ISDIR(info.st_mode):
        raise BundleError(f"bundle `{bundle_dir}`: not a directory")
    path = posixpaths.join(bundle_dir, CONFIG_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise BundleError(f"bundle `{bundle_dir}`: no {CONFIG_NAME} in it",
                          errno=e.errno) from e
    except OSError as e:
        raise BundleError(f"open `{path}`: {oserror_text(e)}", errno=e.errno) from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"open `{path}`: not a regular file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as e:
        raise BundleError(f"read `{path}`: {oserror_text(e)}", errno=e.errno) from e
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    spec = parse_config(raw, path)
    validate(spec)
    return spec, raw
