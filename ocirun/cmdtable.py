"""The command table: every command and flag of ocirun's command line, in one place.

One table drives the parser (cli.py), ``--help`` and ``ocirun help [CMD]``
(cmdhelp.py), the man pages (manpage.py) and shell completion (completion.py).
It holds every command, global flag and command flag of runc 1.1.5 (RUNC-CLI.md),
so callers written for runc parse the same way, and a command that is not built
yet is still known: its help and completion work, and running it is refused.

Ground floor: this module imports nothing, and it is plain tuples of constants,
so the parser pays almost nothing to load it.  Longer prose (DESCRIPTION,
examples) lives in cmdhelp.py and is loaded only when help is asked for.

A flag is ``(long, short, kind, value, default, description)``:
  - ``long`` without dashes; the parsed value is stored under
    ``long.replace("-", "_")``; ``short`` is a one-letter alias or "";
  - ``kind``: "bool" (no value; ``--f=true``/``--f=false`` also accepted), "str",
    "int", or "list" (repeatable: the values collect in a list);
  - ``value``: the value's name in help (``DIR``), or choices as ``a|b|c``;
    "" for a bool;
  - ``default``: shown as ``(default: X)``; "" for none;
  - ``description``: one line, lower case, no final period; "" hides the flag
    (accepted, but not shown in help, man pages or completion).

A command is ``(name, arguments, min, max, handler, summary, flags)``:
  - ``arguments``: the positional arguments as the usage line shows them;
  - ``min``/``max``: how many positional arguments it takes; ``max`` -1 means
    any number, and then flags end at the first argument (the rest, such as
    exec's command line or ps's options, is passed through untouched);
  - ``handler``: ``"module:function"``, called as ``function(global_opts,
    command_opts, args) -> exit status``; "" means not built yet: the command is
    refused with "`NAME` is not supported yet";
  - ``summary``: one line for the command list and the man page's NAME.

To enable a command (exec, ps, update, ...): write its handler (usually in
ocirun/commands.py), put ``"ocirun.commands:cmd_NAME"`` in its row, adjust its
flags' descriptions if they say "not supported yet", optionally add prose in
cmdhelp.DESCRIPTIONS, and regenerate the man pages
(``python3 tools/gen_manpages.py``; a unit test says when they are stale).
"""

from __future__ import annotations

TYPE_CHECKING = False  # avoids importing typing; mypy still honours it
if TYPE_CHECKING:
    Flag = tuple[str, str, str, str, str, str]
    Command = tuple[str, str, int, int, str, str, tuple[Flag, ...]]

DEFAULT_ROOT = "/run/ocirun"
PROG = "ocirun"

# Field positions, for readers of the tuples.
F_LONG, F_SHORT, F_KIND, F_VALUE, F_DEFAULT, F_DESC = range(6)
C_NAME, C_ARGS, C_MIN, C_MAX, C_HANDLER, C_SUMMARY, C_FLAGS = range(7)

HELP_FLAG: Flag = ("help", "h", "bool", "", "", "show help")

GLOBAL_FLAGS: tuple[Flag, ...] = (
    ("debug", "", "bool", "", "", "log debug messages, and print a traceback with an error"),
    ("log", "", "str", "FILE", "", "write log messages to FILE (default: stderr)"),
    ("log-format", "", "str", "text|json", "text", "format of the log messages"),
    ("trace", "", "str", "FILE", "",
     "append one JSON line per lifecycle step to FILE (also: OCIRUN_TRACE=FILE)"),
    ("root", "", "str", "DIR", DEFAULT_ROOT,
     "directory for the containers' state, best on a tmpfs ($XDG_RUNTIME_DIR/ocirun when not root)"),
    ("criu", "", "str", "PATH", "criu", "criu binary used by checkpoint and restore"),
    ("systemd-cgroup", "", "bool", "", "",
     "create cgroups through systemd, cgroupsPath as slice:prefix:name (not supported yet)"),
    ("rootless", "", "str", "true|false|auto", "auto",
     "use only cgroups delegated to the user, no device rules (auto: when not root)"),
    HELP_FLAG,
    ("version", "v", "bool", "", "", "print the version"),
)

_BUNDLE: Flag = ("bundle", "b", "str", "DIR", "",
                 "bundle directory holding config.json (default: the current directory)")
_CONSOLE_SOCKET: Flag = ("console-socket", "", "str", "PATH", "",
                         "AF_UNIX socket to receive the pseudoterminal's master fd")
_PID_FILE: Flag = ("pid-file", "", "str", "FILE", "", "write the process's host PID to FILE")
_NO_PIVOT: Flag = ("no-pivot", "", "bool", "", "",
                   "enter the rootfs with MS_MOVE and chroot, not pivot_root (rootfs on a ramdisk)")
_NO_NEW_KEYRING: Flag = ("no-new-keyring", "", "bool", "", "",
                         "keep the caller's session keyring instead of a new one for the container")
_PRESERVE_FDS: Flag = ("preserve-fds", "", "int", "N", "0",
                       "pass N more fds to the container, from fd 3 (after $LISTEN_FDS)")
_DETACH: Flag = ("detach", "d", "bool", "", "",
                 "return once the process has started, instead of waiting for it")
_NO_SUBREAPER: Flag = ("no-subreaper", "", "bool", "", "",
                       "do not become a subreaper for the container's orphaned processes")
_FORMAT: Flag = ("format", "f", "str", "table|json", "table", "output format")
# criu's options, shared by checkpoint and restore
_IMAGE_PATH: Flag = ("image-path", "", "str", "DIR", "", "directory of the criu image files")
_WORK_PATH: Flag = ("work-path", "", "str", "DIR", "", "directory for criu's work files and logs")
_TCP: Flag = ("tcp-established", "", "bool", "", "", "allow open TCP connections")
_EXT_UNIX: Flag = ("ext-unix-sk", "", "bool", "", "", "allow external unix sockets")
_SHELL_JOB: Flag = ("shell-job", "", "bool", "", "", "allow a process attached to a shell job")
_LAZY_PAGES: Flag = ("lazy-pages", "", "bool", "", "", "restore memory pages lazily, with userfaultfd")
_FILE_LOCKS: Flag = ("file-locks", "", "bool", "", "", "checkpoint and restore file locks")
_CGROUPS_MODE: Flag = ("manage-cgroups-mode", "", "str", "soft|full|strict", "soft",
                       "how criu handles the container's cgroups")
_EMPTY_NS: Flag = ("empty-ns", "", "list", "NS", "",
                   "make namespace NS but restore none of its properties (repeatable)")
_AUTO_DEDUP: Flag = ("auto-dedup", "", "bool", "", "", "deduplicate memory images as they are written")

_ID = "<container-id>"

COMMANDS: tuple[Command, ...] = (
    ("checkpoint", _ID, 1, 1, "ocirun.commands:cmd_checkpoint",
     "save a running container to disk with criu", (
        _IMAGE_PATH, _WORK_PATH,
        ("parent-path", "", "str", "DIR", "", "criu images of a previous pre-dump"),
        ("leave-running", "", "bool", "", "", "keep the container running after the checkpoint"),
        _TCP, _EXT_UNIX, _SHELL_JOB, _LAZY_PAGES,
        ("status-fd", "", "int", "FD", "-1", "fd on which criu writes \\0 when lazy pages are ready"),
        ("page-server", "", "str", "ADDRESS:PORT", "", "criu page server to send the pages to"),
        _FILE_LOCKS,
        ("pre-dump", "", "bool", "", "", "dump only the memory and leave the container running"),
        _CGROUPS_MODE, _EMPTY_NS, _AUTO_DEDUP,
    )),
    ("create", _ID, 1, 1, "ocirun.commands:cmd_create",
     "create a container from a bundle; its process waits for start", (
         _BUNDLE, _CONSOLE_SOCKET, _PID_FILE, _NO_PIVOT, _NO_NEW_KEYRING, _PRESERVE_FDS,
     )),
    ("delete", _ID, 1, 1, "ocirun.commands:cmd_delete",
     "delete a stopped container and everything it holds", (
         ("force", "f", "bool", "", "", "kill the container with SIGKILL first if it still runs"),
     )),
    ("events", _ID, 1, 1, "ocirun.commands:cmd_events", "print a container's OOM events and resource statistics", (
        ("interval", "", "str", "DURATION", "5s", "time between two statistics reports"),
        ("stats", "", "bool", "", "", "print the statistics once and exit"),
    )),
    ("exec", f"{_ID} <command> [args...]", 1, -1, "ocirun.commands:cmd_exec",
     "run a new process in a running container", (
        _CONSOLE_SOCKET,
        ("cwd", "", "str", "DIR", "", "working directory of the process in the container"),
        ("env", "e", "list", "KEY=VALUE", "", "add an environment variable (repeatable)"),
        ("tty", "t", "bool", "", "", "give the process a pseudoterminal"),
        ("user", "u", "str", "UID[:GID]", "", "numeric user and group to run the process as"),
        ("additional-gids", "g", "list", "GID", "", "add a supplementary group (repeatable)"),
        ("process", "p", "str", "FILE", "",
         "read the whole process (config.md#process) from a JSON file"),
        _DETACH, _PID_FILE,
        ("process-label", "", "str", "LABEL", "", "SELinux label of the process"),
        ("apparmor", "", "str", "PROFILE", "", "AppArmor profile of the process"),
        ("no-new-privs", "", "bool", "", "", "set no_new_privs for the process"),
        ("cap", "c", "list", "CAP", "", "add a capability to the process (repeatable)"),
        _PRESERVE_FDS,
        ("cgroup", "", "list", "[CONTROLLER:]PATH", "",
         "run the process in an existing sub-cgroup of the container (repeatable)"),
        ("ignore-paused", "", "bool", "", "", "allow exec into a paused container"),
    )),
    ("kill", f"{_ID} [signal]", 1, 2, "ocirun.commands:cmd_kill",
     "send a signal to the container's init process (default: SIGTERM)", (
         ("all", "a", "bool", "", "", "send the signal to every process in the container's cgroup"),
     )),
    ("list", "", 0, 0, "ocirun.commands:cmd_list", "list the containers under --root", (
        _FORMAT,
        ("quiet", "q", "bool", "", "", "print the container IDs only"),
    )),
    ("pause", _ID, 1, 1, "ocirun.commands:cmd_pause", "freeze every process of a container", ()),
    ("ps", f"{_ID} [ps-options...]", 1, -1, "ocirun.commands:cmd_ps", "show the processes running in a container", (
        _FORMAT,
    )),
    ("restore", _ID, 1, 1, "ocirun.commands:cmd_restore",
     "restore a container from a criu checkpoint", (
        _CONSOLE_SOCKET, _IMAGE_PATH, _WORK_PATH, _TCP, _EXT_UNIX, _SHELL_JOB, _FILE_LOCKS,
        _CGROUPS_MODE, _BUNDLE, _DETACH, _PID_FILE, _NO_SUBREAPER, _NO_PIVOT, _EMPTY_NS,
        _AUTO_DEDUP, _LAZY_PAGES,
        ("lsm-profile", "", "str", "TYPE:NAME", "", "LSM profile to restore the container with"),
        ("lsm-mount-context", "", "str", "CONTEXT", "", "LSM mount context to restore with"),
    )),
    ("resume", _ID, 1, 1, "ocirun.commands:cmd_resume", "thaw a paused container", ()),
    ("run", _ID, 1, 1, "ocirun.commands:cmd_run",
     "create and start a container, wait for it to exit, then delete it", (
         _BUNDLE, _CONSOLE_SOCKET, _DETACH,
         ("keep", "", "bool", "", "", "do not delete the container after it exits"),
         _PID_FILE, _NO_SUBREAPER, _NO_PIVOT, _NO_NEW_KEYRING, _PRESERVE_FDS,
     )),
    ("spec", "", 0, 0, "ocirun.commands:cmd_spec", "write a starter config.json", (
        ("bundle", "b", "str", "DIR", "", "where to write config.json (default: the current directory)"),
        ("rootless", "", "bool", "", "", "write a config for a rootless container"),
    )),
    ("start", _ID, 1, 1, "ocirun.commands:cmd_start", "run the user process of a created container", ()),
    ("state", _ID, 1, 1, "ocirun.commands:cmd_state", "print the state of a container as JSON", ()),
    ("update", _ID, 1, 1, "ocirun.commands:cmd_update", "change the resource limits of a running container", (
        ("resources", "r", "str", "FILE", "",
         "linux.resources JSON to apply, from FILE or - for stdin (other flags are then ignored)"),
        ("blkio-weight", "", "int", "WEIGHT", "", "block IO weight, 10 to 1000"),
        ("cpu-period", "", "str", "USEC", "", "CPU CFS period in microseconds (0: the default)"),
        ("cpu-quota", "", "str", "USEC", "", "CPU CFS quota in microseconds per period"),
        ("cpu-share", "", "str", "SHARES", "", "CPU shares, a weight relative to other containers"),
        # accepted but hidden: runc 1.1.5 lacks them (cpu-burst and cpu-idle came later)
        ("cpu-shares", "", "str", "SHARES", "", ""),
        ("cpu-burst", "", "str", "USEC", "", ""),
        ("cpu-idle", "", "str", "0|1", "", ""),
        ("cpu-rt-period", "", "str", "USEC", "", "realtime CPU period in microseconds"),
        ("cpu-rt-runtime", "", "str", "USEC", "", "realtime CPU runtime in microseconds per period"),
        ("cpuset-cpus", "", "str", "CPUS", "", "CPUs the container may use (0-3,7)"),
        ("cpuset-mems", "", "str", "NODES", "", "memory nodes the container may use"),
        ("memory", "", "str", "BYTES", "", "memory limit (512m, 1g; -1: unlimited)"),
        ("memory-reservation", "", "str", "BYTES", "", "memory soft limit"),
        ("memory-swap", "", "str", "BYTES", "", "memory plus swap limit (-1: unlimited swap)"),
        ("pids-limit", "", "int", "N", "", "maximum number of processes"),
        ("l3-cache-schema", "", "str", "SCHEMA", "", "Intel RDT L3 cache schema"),
        ("mem-bw-schema", "", "str", "SCHEMA", "", "Intel RDT memory bandwidth schema"),
        ("kernel-memory", "", "str", "BYTES", "", ""),
        ("kernel-memory-tcp", "", "str", "BYTES", "", ""),
    )),
    ("features", "", 0, 0, "ocirun.commands:cmd_features",
     "print what this runtime supports, as JSON", ()),
    ("help", "[command]", 0, 1, "ocirun.cmdhelp:cmd_help",
     "show the list of commands, or the help of one command", ()),
    ("completion", "bash|zsh|fish", 1, 1, "ocirun.completion:cmd_completion",
     "print a shell completion script", ()),
    ("check", "[CONFIG]", 0, 1, "ocirun.commands:cmd_check",
     "explain what keeps a bundle from running here, without creating anything", (
         ("bundle", "b", "str", "DIR", "",
          "bundle directory (default: CONFIG's directory, else the current directory)"),
         ("format", "f", "str", "text|json", "text", "output format"),
     )),
)

# Other names of a command, as runc's `h` for help.
ALIASES = {"h": "help"}

# Exit status of a usage error where it is not runc's 1 (commands runc does not have).
USAGE_STATUS = {"check": 2}


def find(name: str) -> Command | None:
    """The row of command ``name`` (or of its alias), None if there is none."""
    name = ALIASES.get(name, name)
    for row in COMMANDS:
        if row[0] == name:
            return row
    return None
