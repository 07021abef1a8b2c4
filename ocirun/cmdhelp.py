"""Help text: ``ocirun --help``, ``ocirun help [CMD]``, ``CMD --help``.

Laid out as runc's help is (NAME, USAGE, DESCRIPTION, OPTIONS, with
``--flag VALUE, -f VALUE   description``), from the command table
(cmdtable.py) plus the longer prose below.  Imported only when help is
asked for or a usage error prints it: never on a command's hot path.

Prose format (shared with manpage.py): paragraphs separated by blank lines;
a line indented by four spaces is an example, shown verbatim.
"""

from __future__ import annotations

from ocirun import SPEC_VERSION, __version__, cmdtable
from ocirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.cmdtable import Command, Flag

NOT_YET = "not supported yet"

# The program's own description; the key "" in DESCRIPTIONS is the program.
DESCRIPTIONS: dict[str, str] = {
    "": """\
ocirun runs containers from OCI bundles, as the Open Container Initiative
runtime specification describes them, and takes runc's command line, so that
containerd, podman and scripts written for runc can drive it.

A bundle is a directory holding config.json and, usually, the container's
root filesystem in rootfs/. To run a container from the bundle in the
current directory, in the foreground:

    ocirun run mycontainer

State lives under --root (default /run/ocirun), one directory per container.
Errors are one line on stderr; --debug adds details and a traceback, and
--log FILE --log-format json writes them as JSON lines for containerd.""",
    "checkpoint": """\
Saves the processes of a running container into criu image files, so that
restore can bring them back later, here or on another host. ocirun drives
CRIU over its RPC (criu swrk) as runc does, telling it the container's root,
bind mounts, cgroup and joined namespaces. Once saved, the container is
stopped and deleted, unless --leave-running or --pre-dump is given.""",
    "create": """\
Creates a container from the bundle (--bundle, or the current directory):
validates config.json, sets up the namespaces, mounts, cgroups and the root
filesystem, runs the prestart, createRuntime and createContainer hooks, and
leaves the container's process waiting before it runs process.args. The
container is then "created"; start runs its process, delete removes it.

The container's process inherits ocirun's standard input, output and error.
When config.json is invalid, nothing is left behind: no state directory,
mount, cgroup or process.

    ocirun create --bundle /tmp/bundle --pid-file /tmp/c1.pid c1""",
    "delete": """\
Deletes a stopped container: its cgroup, its state directory, then runs the
poststop hooks. A container that is created or still running is refused
unless --force is given, which kills it with SIGKILL first. Deleting an
unknown container fails, except with --force.

    ocirun delete --force c1""",
    "events": """\
Prints the container's events as JSON lines on stdout: resource statistics
every --interval, and an event each time the kernel's OOM killer acts in
the container.""",
    "exec": """\
Runs a new process inside a running container: in its namespaces, its
cgroup and with its security settings. The process is the command line
given after the container ID, or the JSON object of --process; the other
flags change single fields of config.json's process. In the foreground
the exit status is the process's own; a failure of ocirun itself exits 255.

    ocirun exec c1 ps""",
    "kill": """\
Sends a signal to the container's init process, or with --all to every
process in the container's cgroup. The signal is a number (9) or a name with
or without SIG, in any case (KILL, SIGKILL, sigkill); signal 0 only checks
that the process is alive.

    ocirun kill c1 KILL""",
    "list": """\
Lists the containers whose state is under --root: ID, init PID, status,
bundle, creation time and owner. --format json prints a JSON array of their
states (null when there are none); --quiet prints their IDs only.""",
    "pause": """\
Freezes every process of the container in its cgroup (the v1 freezer, or
cgroup.freeze on cgroup v2); the container's status becomes "paused".""",
    "ps": """\
Shows the processes in the container's cgroup: by default as the host's ps
shows them (ps-options are passed on to ps, default -ef), with --format json
as a JSON array of their host PIDs.""",
    "restore": """\
Restores a container from the criu images that checkpoint wrote, and runs it
as run does (in the foreground, or with --detach in the background).""",
    "resume": """\
Thaws a paused container: its processes run again and its status becomes
"running".""",
    "run": """\
Creates a container from the bundle and starts it, as create and start do
one after the other. In the foreground, ocirun forwards the signals it gets
to the container, waits for the container's process, deletes the container
(unless --keep) and exits with the process's exit status, or 128 plus the
signal number when a signal killed it. With --detach it returns as soon as
the process has started; kill and delete finish the container later.

    ocirun run --bundle /tmp/bundle c1
    ocirun run --detach --bundle /tmp/bundle c2""",
    "spec": """\
Writes a starter config.json in the bundle directory (--bundle, or the
current directory): runtime-spec 1.3.0, process.args ["sh"], terminal off,
the usual /proc, /dev, /sys mounts, and new pid, network, ipc, uts and mount
namespaces. An existing config.json is never overwritten. Edit it (at least
process.args), put a root filesystem in rootfs/, and run the bundle.

    mkdir -p bundle/rootfs && cd bundle && ocirun spec""",
    "start": """\
Runs process.args in a created container. It returns once the program has
been executed and the poststart hooks have run; it does not wait for the
program to exit.""",
    "state": """\
Prints the container's state (runtime.md "State") as JSON: ociVersion, id,
status (created, running, paused or stopped), pid, bundle, annotations.""",
    "update": """\
Changes the resource limits of a running container, from a linux.resources
JSON object (--resources FILE, or - for stdin) or from the single-value
flags. The new limits are applied to the container's cgroup and kept in its
state.""",
    "features": """\
Prints the runtime's features document (features.md) as JSON: spec versions,
hooks, mount options, namespaces, capabilities, cgroup, seccomp and LSM
support.""",
    "help": """\
Without a command, shows the list of commands and the global options; with
one, shows that command's help (as COMMAND --help does).""",
    "check": """\
Checks a bundle without creating anything and explains every finding: the
JSON path, what is wrong, the runtime-spec section it falls under (a link to
the spec's text), the level (MUST, SHOULD, or portability) and a fix. Beyond
the schema and the meaning checks that create runs, it reports what this
host cannot do (a namespace the kernel lacks, a capability outside the
bounding set, a missing cgroup controller, a seccomp architecture, an LSM
that is off, a hook or program that is not there) and where runc 1.1.5,
crun 1.8.1 and ocirun would behave differently on this config.

Exit status: 0 when the bundle would run here (warnings and notes allowed),
1 when it would not, 2 on bad usage.

    ocirun check -b /tmp/bundle
    ocirun check --format json /tmp/bundle/config.json""",
    "completion": """\
Prints a completion script for bash, zsh or fish, made from the same command
table as this help: commands, flags and their values, signals, and the IDs
of the containers under --root. Load it in the running shell, or save it
where the shell looks for completions:

    source <(ocirun completion bash)
    ocirun completion zsh > "${fpath[1]}/_ocirun"
    ocirun completion fish > ~/.config/fish/completions/ocirun.fish""",
}


def flag_spec(f: Flag) -> str:
    """``--bundle DIR, -b DIR`` (``--debug`` for a bool)."""
    value = f" {f[3]}" if f[3] else ""
    text = f"--{f[0]}{value}"
    if f[1]:
        text += f", -{f[1]}{value}"
    return text


def flag_text(f: Flag) -> str:
    """The description, with the default when there is one."""
    return f"{f[5]} (default: {f[4]})" if f[4] else f[5]


def shown(flags: tuple[Flag, ...]) -> list[Flag]:
    """The flags help shows: all but the hidden ones (empty description)."""
    return [f for f in flags if f[5]]


def usage_line(row: Command) -> str:
    opts = " [command options]" if shown(row[6]) else ""
    args = f" {row[1]}" if row[1] else ""
    return f"{cmdtable.PROG} {row[0]}{opts}{args}"


def summary(row: Command) -> str:
    return row[5] if row[4] else f"{row[5]} ({NOT_YET})"


def description(name: str, row: Command | None = None) -> str:
    text = DESCRIPTIONS.get(name, "")
    if row is not None and not row[4]:
        note = "Not supported yet: ocirun refuses this command with an error."
        text = f"{note}\n\n{text}" if text else note
    return text


def _indent(text: str) -> str:
    return "".join(f"   {line}\n" if line else "\n" for line in text.split("\n"))


def _options(flags: list[Flag]) -> str:
    width = max(len(flag_spec(f)) for f in flags) + 3
    return "".join(f"   {flag_spec(f).ljust(width)}{flag_text(f)}\n" for f in flags)


def main_help() -> str:
    names = [row[0] + "".join(f", {a}" for a, n in cmdtable.ALIASES.items() if n == row[0])
             for row in cmdtable.COMMANDS]
    width = max(len(n) for n in names) + 2
    cmds = "".join(f"   {n.ljust(width)}{summary(row)}\n"
                   for n, row in zip(names, cmdtable.COMMANDS))
    return (f"NAME:\n   {cmdtable.PROG} - run containers from OCI bundles, with runc's command line\n\n"
            f"USAGE:\n   {cmdtable.PROG} [global options] command [command options] [arguments...]\n\n"
            f"VERSION:\n   {__version__} (runtime-spec {SPEC_VERSION})\n\n"
            f"DESCRIPTION:\n{_indent(DESCRIPTIONS[''])}\n"
            f"COMMANDS:\n{cmds}\n"
            f"GLOBAL OPTIONS:\n{_options(shown(cmdtable.GLOBAL_FLAGS))}")


def command_help(row: Command) -> str:
    text = (f"NAME:\n   {cmdtable.PROG} {row[0]} - {row[5]}\n\n"
            f"USAGE:\n   {usage_line(row)}\n")
    desc = description(row[0], row)
    if desc:
        text += f"\nDESCRIPTION:\n{_indent(desc)}"
    flags = shown(row[6])
    if flags:
        text += f"\nOPTIONS:\n{_options(flags)}"
    return text


def render(topic: str | None) -> str:
    """The help of command ``topic``, or of the program when None."""
    if topic is None:
        return main_help()
    row = cmdtable.find(topic)
    if row is None:
        raise UsageError(f"No help topic for '{topic}'")
    return command_help(row)


def cmd_help(g: dict[str, object], o: dict[str, object], a: list[str]) -> int:
    """``ocirun help [COMMAND]``."""
    import os
    os.write(1, render(a[0] if a else None).encode())
    return 0
