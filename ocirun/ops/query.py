"""``state`` and ``list``: runtime.md "Query State" and runc's list."""

from __future__ import annotations

import os

from ocirun import jsonio
from ocirun.errors import NotFoundError
from ocirun.state import StateStore


def state_json(store: StateStore, cid: str) -> str:
    """runc prints it indented by two, with no trailing newline."""
    return jsonio.dumps(store.load(cid).oci_state(), indent=2)


def _owner(path: str) -> str:
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def list_states(store: StateStore) -> tuple[list[dict[str, object]], list[str]]:
    """(state objects, load errors); entries that fail to load are skipped."""
    out: list[dict[str, object]] = []
    errs: list[str] = []
    for cid in store.list_ids():
        try:
            st = store.load(cid)
        except NotFoundError:
            continue  # being created (no state.json yet): not a container yet
        except Exception as e:  # one broken entry must not hide the others
            errs.append(f"{cid}: {e}")
            continue
        doc = st.oci_state()
        doc["owner"] = _owner(st.dir)
        out.append(doc)
    return out, errs


def format_list(states: list[dict[str, object]], fmt: str, quiet: bool) -> str:
    if quiet:
        return "".join(f"{s['id']}\n" for s in states)
    if fmt == "json":
        return (jsonio.dumps(states) if states else "null") + "\n"
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(str(s["id"]), str(s["pid"]), str(s["status"]), str(s["bundle"]),
              str(s["created"]), str(s["owner"])) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)
