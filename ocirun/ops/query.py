"""``state`` and ``list``: runtime.md "Query State" and runc's list."""

from __future__ import annotations

from ocirun import jsonio
from ocirun.errors import NotFoundError
from ocirun.ground import format_list, owner_name
from ocirun.state import StateStore

__all__ = ["format_list", "list_states", "state_json"]


def state_json(store: StateStore, cid: str) -> str:
    """runc prints it indented by two, with no trailing newline."""
    return jsonio.dumps(store.load(cid).oci_state(), indent=2)


def list_states(store: StateStore) -> tuple[list[dict[str, object]], list[str]]:
    """(state objects, load errors); entries that fail to load are skipped."""
    out: list[dict[str, object]] = []
    errs: list[str] = []
    owners: dict[int, str] = {}
    for cid in store.list_ids():
        try:
            st = store.load(cid)
        except NotFoundError:
            continue  # being created (no state.json yet): not a container yet
        except Exception as e:  # one broken entry must not hide the others
            errs.append(f"{cid}: {e}")
            continue
        doc = st.oci_state()
        doc["owner"] = owner_name(st.dir, owners)
        out.append(doc)
    return out, errs


