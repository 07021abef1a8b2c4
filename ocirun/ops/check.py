"""``ocirun check``: would this bundle run here, and if not, why and what to change.

The same steps ``create`` takes before its first side effect, each allowed to
report everything it finds instead of stopping at the first problem:

1. read and parse config.json (bundle.md, glossary.md "JSON");
2. the project's JSON Schema, every violation (config.md "Valid values");
3. the meaning checks of config/checks.py, one check function at a time;
4. what ocirun does not implement yet (checks.NOT_YET);
5. the plan create builds (process/plan.py), which raises the first remaining
   config error, when 1-4 found none;
6. the host: namespaces, capabilities, cgroups, seccomp, LSMs, hooks, the
   program in the rootfs (hostcheck.py);
7. where runc 1.1.5, crun 1.8.1 and ocirun behave differently on this config
   (explain.DIFFERENCES): notes, never errors.

Every finding carries its JSON path, the spec section (a link), the level and
a fix (config/explain.py).  Nothing is created: no state, cgroup, mount or
process.  ``create`` does not import this module, so it costs create nothing.
"""

from __future__ import annotations

import os

from ocirun.config.explain import ERROR, MUST, NOTE, PORTABILITY, SHOULD, WARNING, Finding
from ocirun.errors import OciRunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _split(msg: str) -> tuple[str, str]:
    """``config.json: $.a.b: what`` -> (``$.a.b``, ``what``); ("$", msg) without a path."""
    msg = msg.removeprefix("config.json: ")
    if msg.startswith("$"):
        path, sep, rest = msg.partition(": ")
        if sep:
            return path, rest
    return "$", msg


def _parse(bundle: str, config: str) -> tuple[dict[str, Any] | None, list[Finding]]:
    from ocirun.config.bundle import parse_config
    from ocirun.config.explain import parse_fix
    if not os.path.isdir(bundle):
        why = "is not a directory" if os.path.exists(bundle) else "does not exist"
        return None, [Finding("$", f"bundle `{bundle}` {why}", severity=ERROR, level=MUST,
                              source="bundle", section="bundle.md#container-format",
                              fix="give the bundle directory with -b, or run check inside it")]
    try:
        with open(config, "rb") as f:
            raw = f.read()
    except OSError as e:
        return None, [Finding("$", f"read `{config}`: {e.strerror}", severity=ERROR, level=MUST,
                              source="bundle", section="bundle.md#container-format",
                              fix="put config.json in the bundle directory (ocirun spec writes one)")]
    try:
        return parse_config(raw, config), []
    except OciRunError as e:
        return None, [Finding("$", e.msg, severity=ERROR, level=MUST, source="parse",
                              section="config.md#configuration", fix=parse_fix(e.msg))]


def _schema(spec: dict[str, Any]) -> list[Finding]:
    from ocirun.config import _fastcheck
    try:
        _fastcheck.validate(spec)  # type: ignore[no-untyped-call]  # generated code
        return []
    except _fastcheck.JsonSchemaValueException:
        pass
    import jsonschema  # type: ignore[import-untyped]

    from ocirun.config.explain import schema_fix
    from ocirun.config.schema import json_path, load_schema
    out = []
    for e in jsonschema.Draft4Validator(load_schema()).iter_errors(spec):
        out.append(Finding(json_path(e.absolute_path), e.message, severity=ERROR, level=MUST,
                           source="schema", fix=schema_fix(str(e.validator), e.validator_value, e.instance)))
    out.sort(key=lambda f: f.path)
    return out or [Finding("$", "schema violation (fast validator)", severity=ERROR, level=MUST,
                           source="schema")]


def _meaning(spec: dict[str, Any], bundle: str) -> list[Finding]:
    from ocirun.config import checks
    from ocirun.config.explain import meaning_fix
    out: list[Finding] = []
    for one in checks.CHECKS:
        report = checks.Report()
        try:
            one(spec, bundle, report)
        except Exception:  # noqa: BLE001, S112 -- a check that trips on a schema-invalid value
            continue
        name = getattr(one, "__name__", "")
        for severity, level, items in ((ERROR, MUST, report.errors), (WARNING, SHOULD, report.warnings)):
            for item in items:
                path, what = _split(item)
                out.append(Finding(path, what, severity=severity, level=level, source="meaning",
                                   fix=meaning_fix(name, item)))
    return out


def _unsupported(spec: dict[str, Any]) -> list[Finding]:
    import re

    from ocirun.config import checks
    out = []
    for path in checks.unsupported(spec):
        pattern = re.sub(r"\[\d+\]", "[]", path.removeprefix("$."))
        what = checks.NOT_YET.get(pattern, "not implemented yet")
        out.append(Finding(path, f"ocirun does not support this yet: {what}", severity=ERROR,
                           level=PORTABILITY, source="ocirun",
                           fix="remove it to run the bundle with ocirun, or use runc or crun for it"))
    return out


# Warnings the plan logs (capability sets that cannot hold what they list): message
# fragment -> fix.  Those about the kernel or the bounding set come from hostcheck instead.
PLAN_WARNING_FIXES = (
    ("not in the permitted set", "add them to permitted too, or remove them from effective"),
    ("not in the bounding set", "add them to bounding too, or remove them from inheritable"),
    ("permitted and inheritable", ("add them to inheritable (and permitted), or remove the ambient set: "
                                  "the kernel raises an ambient capability only if it is in both")),
)


def _plan(spec: dict[str, Any], bundle: str) -> list[Finding]:
    """The plan create would build; its warnings become findings instead of log lines."""
    from ocirun import log
    from ocirun.ops.create import CreateOptions, make_plan, plan_host_side
    logged: list[str] = []
    saved = log.warning
    log.warning = logged.append  # type: ignore[assignment]  # single-threaded CLI
    try:
        make_plan("check", spec, bundle, CreateOptions(bundle=bundle))
        plan_host_side("check", spec)  # intelRdt (resctrl here?), netDevices (devices here?)
    except OciRunError as e:
        path, what = _split(e.msg)
        return [Finding(path, what, severity=ERROR, level=MUST, source="plan")]
    finally:
        log.warning = saved
    out = []
    for text in logged:
        fix = next((f for frag, f in PLAN_WARNING_FIXES if frag in text), "")
        if fix:
            path, what = _split("$." + text)
            out.append(Finding(path, what, severity=WARNING, level=SHOULD, source="plan", fix=fix))
    return out


def _lookup(node: object, parts: list[str]) -> list[object]:
    """Values at a path like ``linux.namespaces[].type`` (``[]``: every entry)."""
    values = [node]
    for part in parts:
        key, each = (part[:-2], True) if part.endswith("[]") else (part, False)
        found: list[object] = []
        for v in values:
            if isinstance(v, dict) and key in v:
                child = v[key]
                found.extend(child if each and isinstance(child, list) else [] if each else [child])
        values = found
    return values


def _differences(spec: dict[str, Any]) -> list[Finding]:
    from ocirun.config.explain import DIFFERENCES
    out = []
    for path, test, what, fix in DIFFERENCES:
        values = [v for v in _lookup(spec, path.removeprefix("$.").split(".")) if v not in (None, [], {}, "")]
        if test.startswith("VALUE="):
            hit = test[6:] in values
        elif test.startswith("VALUE>="):
            want = tuple(int(x) for x in test[7:].split("."))
            hit = any(isinstance(v, str) and _version(v) >= want for v in values)
        else:
            hit = bool(values)
        if hit:
            out.append(Finding(path.replace("[]", ""), what, severity=NOTE, level=PORTABILITY,
                               source="runtimes", fix=fix))
    return out


def _version(text: str) -> tuple[int, ...]:
    core = text.split("+", 1)[0].split("-", 1)[0]
    try:
        return tuple(int(x) for x in core.split("."))
    except ValueError:
        return ()


def check_bundle(bundle: str, config: str | None = None) -> list[Finding]:
    """Every finding for the bundle (config.json inside it unless ``config`` is given)."""
    from ocirun.ops.hostcheck import host_findings
    bundle = os.path.abspath(bundle)
    spec, found = _parse(bundle, config or os.path.join(bundle, "config.json"))
    if spec is None:
        return found
    found += _schema(spec)
    found += _meaning(spec, bundle)
    found += _unsupported(spec)
    if not any(f.severity == ERROR for f in found):
        found += _plan(spec, bundle)
    found += host_findings(spec, bundle)
    found += _differences(spec)
    return found


# -- output --------------------------------------------------------------------------------

def counts(found: list[Finding]) -> dict[str, int]:
    return {k: sum(1 for f in found if f.severity == k) for k in (ERROR, WARNING, NOTE)}


def verdict(found: list[Finding]) -> str:
    c = counts(found)
    head = "would run here" if not c[ERROR] else "would NOT run here"
    return f"{head}: {c[ERROR]} error(s), {c[WARNING]} warning(s), {c[NOTE]} note(s)"


def render_text(bundle: str, config: str, found: list[Finding]) -> str:
    order = {ERROR: 0, WARNING: 1, NOTE: 2}
    lines = [f"bundle {bundle}, config {config}"]
    for f in sorted(found, key=lambda f: order[f.severity]):
        lines.append(f"{f.severity}: {f.path}: {f.message}")
        lines.append(f"    spec: {f.level}, {f.section} ({f.link})")
        lines.append(f"    fix:  {f.fix}")
    lines.append(verdict(found))
    return "\n".join(lines) + "\n"


def render_json(bundle: str, config: str, found: list[Finding]) -> str:
    from ocirun import jsonio
    doc = {"bundle": bundle, "config": config, "runs": not counts(found)[ERROR], **counts(found),
           "findings": [f.as_dict() for f in found]}
    return jsonio.dumps(doc, indent=2) + "\n"
