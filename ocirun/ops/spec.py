"""``spec``: write a starter config.json (runc's template, spec 1.3.0)."""

from __future__ import annotations

import os

from ocirun import jsonio
from ocirun.errors import OciRunError


def write_spec(bundle: str, rootless: bool) -> str:
    from ocirun.config.template import template
    path = os.path.join(bundle or ".", "config.json")
    if os.path.lexists(path):
        raise OciRunError("File config.json exists. Remove it first")
    doc = template(rootless=rootless)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, jsonio.dumps(doc, indent=2).encode() + b"\n")
        finally:
            os.close(fd)
    except OSError as e:
        raise OciRunError(f"write `{path}`: {e.strerror}", errno=e.errno) from e
    return path
