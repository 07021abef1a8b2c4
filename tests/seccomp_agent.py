"""A small seccomp agent for the tests (config-linux.md "listenerPath").

    python3 seccomp_agent.py SOCKET OUT.json [NAME=ERRNO ...]

Listens on the unix socket SOCKET, takes ONE connection from the runtime: the
container process state as JSON plus the listener fd (SCM_RIGHTS). It then answers the
filter's notifications: a ``mkdir``/``mkdirat`` whose last path component is NAME gets
``-ERRNO``, every other call is let through (SECCOMP_USER_NOTIF_FLAG_CONTINUE). When
every process under the filter has gone (POLLHUP on the listener), it writes
``{"state": <what the runtime sent>, "fds": n, "calls": [[syscall nr, path, answer]...]}``
to OUT.json and exits. It prints ``listening`` once the socket is ready.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import socket
import struct
import sys

# linux/seccomp.h ioctls: _IOWR('!', 0, struct seccomp_notif) etc.
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
NOTIF_ID_VALID = 0x40082102
FLAG_CONTINUE = 1
NOTIF = struct.Struct("=QII iIQ6Q")  # id, pid, flags, data{nr, arch, ip, args[6]}
RESP = struct.Struct("=QqiI")  # id, val, error, flags
MKDIR = {"x86_64": (83, 258), "aarch64": (-1, 34)}.get(os.uname().machine, (-1, -1))


def read_path(pid: int, addr: int) -> str:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(addr)
        raw = mem.read(4096)
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def main(sock_path: str, out_path: str, rules: list[str]) -> None:
    deny = {name: int(e) for name, _, e in (r.partition("=") for r in rules)}
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    print("listening", flush=True)
    conn, _ = srv.accept()
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 4)
    data = msg
    # Read up to the end of the JSON document, not to EOF: runc 1.1.5 leaves the
    # connection open (the spec says it MUST close it) while `runc run` lives.
    while True:
        try:
            state = json.loads(data)
            break
        except ValueError:
            chunk = conn.recv(1 << 16)
            if not chunk:
                raise
            data += chunk
    conn.close()
    srv.close()
    listener = fds[state["fds"].index("seccompFd")]
    calls = []
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    while True:
        events = dict(poller.poll(30000))
        if not events:
            break
        if events[listener] & select.POLLIN:
            buf = bytearray(NOTIF.size)
            try:
                fcntl.ioctl(listener, NOTIF_RECV, buf, True)
            except OSError as e:
                if e.errno == errno.ENOENT:  # the caller died meanwhile
                    continue
                raise
            nid, pid, _flags, nr, _arch, _ip, *args = NOTIF.unpack(buf)
            path = ""
            if nr in MKDIR:
                path = read_path(pid, args[0] if nr == MKDIR[0] else args[1])
            # the process may have died and its pid been reused while we read
            fcntl.ioctl(listener, NOTIF_ID_VALID, struct.pack("=Q", nid))
            err = deny.get(os.path.basename(path.rstrip("/")))
            if err is not None:
                resp, answer = RESP.pack(nid, 0, -err, 0), f"errno {err}"
            else:
                resp, answer = RESP.pack(nid, 0, 0, FLAG_CONTINUE), "continue"
            try:
                fcntl.ioctl(listener, NOTIF_SEND, resp)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
            calls.append([nr, path, answer])
        elif events[listener] & (select.POLLHUP | select.POLLERR):
            break
    with open(out_path, "w") as f:
        json.dump({"state": state, "fds": len(fds), "calls": calls}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
