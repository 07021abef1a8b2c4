"""``ps``: the processes of a container (runc's command).

``--format json`` prints the host pids of every process in the container's
cgroup (sub-cgroups included) as a JSON array, ``null`` when there are none,
as runc's Go encoder does.  ``table`` runs ``ps`` (``-ef`` unless other
options follow the id) and keeps its header and the lines whose PID column
is one of those pids.
"""

from __future__ import annotations

from ocirun.errors import OciRunError
from ocirun.state import StateStore


def container_pids(store: StateStore, cid: str) -> list[int]:
    st = store.load(cid)
    if not st.cgroup_paths:
        return [st.pid] if st.alive() else []
    from ocirun.cgroups import load_manager
    return load_manager(st.cgroup_paths).pids(recursive=True)


def format_json(pids: list[int]) -> str:
    return ("[" + ",".join(map(str, pids)) + "]" if pids else "null") + "\n"


def format_table(pids: list[int], ps_args: list[str]) -> str:
    import subprocess
    argv = ["ps", *(ps_args or ["-ef"])]
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, check=False)
    except OSError as e:
        raise OciRunError(f"run `{' '.join(argv)}`: {e.strerror}") from e
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0:
        raise OciRunError(f"exit status {r.returncode}: {out.strip()}")
    lines = out.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise OciRunError("couldn't find PID field in ps output")
    col = titles.index("PID")
    keep = set(pids)
    rows = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            pid = int(fields[col])
        except (IndexError, ValueError):
            raise OciRunError(f"unable to parse pid: {line!r}") from None
        if pid in keep:
            rows.append(line)
    return "\n".join(rows) + "\n"
