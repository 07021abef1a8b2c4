"""Structural validation of config.json against the project's own JSON Schema.

Implements the "valid values" rule of runtime-spec v1.3.0 ``config.md``
(``#valid-values``: an invalid value MUST be an error) for everything a JSON
Schema can express; ``checks.py`` covers what it cannot.

Two validators share one schema, ``specs/config-schema.json`` (shipped as the
package ``ocirun.specs``):

* the hot path runs ``_fastcheck.validate``, generated ahead of time by
  ``tools/gen_validator.py`` (imports in well under 1 ms from its .pyc);
* only when that fails is ``jsonschema`` imported (about 70 ms) to re-validate
  and report *every* violation with its JSON path, in one line.
"""

from __future__ import annotations

from ocirun import jsonio, posixpaths
from ocirun.errors import ConfigError

from . import _fastcheck

_SCHEMA_NAME = "config-schema.json"
# Loaded on first full validation only; the hot path never needs it.
_schema_cache: dict[str, object] = {}


def validate(doc: object) -> None:
    """Raise ConfigError listing every schema violation of ``doc``."""
    try:
        _fastcheck.validate(doc)  # type: ignore[no-untyped-call]  # generated code
    except _fastcheck.JsonSchemaValueException as e:
        problems = full_report(doc)
        if not problems:
            # The two validators disagree (they should not: a unit test checks
            # them on a corpus).  Never accept a config the fast path refused.
            problems = [f"{e} (fast validator)"]
        raise ConfigError("config.json: schema violation: " + "; ".join(problems)) from None


def full_report(doc: object) -> list[str]:
    """Every violation as ``"$.json.path: message"``, sorted by path; [] if valid."""
    import jsonschema  # type: ignore[import-untyped]

    validator = jsonschema.Draft4Validator(load_schema())
    found = []
    for error in validator.iter_errors(doc):
        found.append((_path_key(error.absolute_path), json_path(error.absolute_path),
                      error.message))
    found.sort(key=lambda item: (item[0], item[2]))
    return [f"{path}: {message}" for _, path, message in found]


def json_path(parts: object) -> str:
    """``["linux", "namespaces", 0, "type"]`` -> ``$.linux.namespaces[0].type``."""
    out = "$"
    for part in parts:  # type: ignore[attr-defined]
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += "." + part
        else:
            # Keys such as sysctl names or annotations contain dots.
            out += "[" + jsonio.dumps(part) + "]"
    return out


def _path_key(parts: object) -> tuple[tuple[int, str], ...]:
    # Sort integers and strings together without comparing int to str.
    return tuple((0, f"{p:012d}") if isinstance(p, int) else (1, str(p))
                 for p in parts)  # type: ignore[attr-defined]


def schema_path() -> str:
    """Filesystem path of the config schema: installed package data, else the checkout."""
    try:
        from importlib.resources import files

        candidate = files("ocirun.specs").joinpath(_SCHEMA_NAME)
        if candidate.is_file():
            return str(candidate)
    except (ModuleNotFoundError, TypeError):
        pass
    here = posixpaths.dirname(posixpaths.abspath(__file__))
    candidate_path = posixpaths.join(here, "..", "..", "specs", _SCHEMA_NAME)
    if posixpaths.isfile(candidate_path):
        return posixpaths.normpath(candidate_path)
    raise ConfigError(f"config schema `{_SCHEMA_NAME}` not found in package `ocirun.specs` "
                      f"nor in `{posixpaths.normpath(posixpaths.dirname(candidate_path))}`: "
                      "broken installation")


def load_schema() -> dict[str, object]:
    """The parsed schema (cached)."""
    schema = _schema_cache.get("config")
    if schema is None:
        with open(schema_path(), "rb") as f:
            schema = jsonio.loads(f.read())
        _schema_cache["config"] = schema
    assert isinstance(schema, dict)
    return schema
