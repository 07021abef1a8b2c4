import os

import pytest

from ocirun import state
from ocirun.errors import ExistsError, NotFoundError, OciRunError


@pytest.mark.parametrize("cid", ["a", "abc-1.2_3+x,y", "A" * 100])
def test_valid_ids(cid):
    state.validate_id(cid)


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "../x", "a b", "é", "a\n", "A" * 1025])
def test_invalid_ids(cid):
    with pytest.raises(OciRunError, match="invalid container ID format"):
        state.validate_id(cid)


def test_create_save_load_remove(tmp_path):
    store = state.StateStore(str(tmp_path / "root"))
    path, fd = store.create_dir("c1")
    os.close(fd)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o711)
    assert oct(os.stat(store.root).st_mode & 0o777) == oct(0o700)
    with pytest.raises(ExistsError, match="already exists"):
        store.create_dir("c1")
    st = state.ContainerState("c1", pid=os.getpid(), pid_start=0, bundle="/b", rootfs="/b/rootfs",
                              created="2026-01-01T00:00:00.000000000Z", oci_version="1.3.0",
                              annotations={"k": "v"}, dir=path)
    store.save(st)
    assert oct(os.stat(os.path.join(path, "state.json")).st_mode & 0o777) == oct(0o600)
    got = store.load("c1")
    assert got.bundle == "/b" and got.annotations == {"k": "v"}
    # pid_start 0 never matches a live process: a reused pid is not ours
    assert got.status() == state.STOPPED
    doc = got.oci_state()
    assert doc["pid"] == 0 and doc["status"] == "stopped"
    assert list(doc) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                         "annotations", "owner"]
    assert store.list_ids() == ["c1"]
    store.remove("c1")
    with pytest.raises(NotFoundError, match="does not exist"):
        store.load("c1")


def test_status_derived_from_pid_and_fifo(tmp_path):
    from ocirun import procfs
    store = state.StateStore(str(tmp_path))
    path, fd = store.create_dir("c2")
    os.close(fd)
    me = os.getpid()
    st = state.ContainerState("c2", pid=me, pid_start=procfs.pid_start_time(me), dir=path)
    assert st.status() == state.RUNNING
    os.mkfifo(os.path.join(path, state.FIFO))
    assert st.status() == state.CREATED
    st.pid_start += 1
    assert st.status() == state.STOPPED


def test_annotations_omitted_when_empty():
    doc = state.ContainerState("x").oci_state("stopped")
    assert "annotations" not in doc


def test_rfc3339_nano():
    assert state.rfc3339_nano(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
