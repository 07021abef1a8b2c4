"""``ocirun completion bash|zsh|fish``: shell completion scripts from the command table.

Each script knows the commands, their flags (long, short and Go's single-dash
long form are accepted by the parser; the long and short forms are offered),
what each flag's value is (a directory, a file, one of a few words, or free
text) and each command's positional arguments: the ID of an existing
container (asked of ``ocirun [--root DIR] list --quiet`` at completion time,
with the --root already typed), a signal, a command name or a shell.  exec
and ps stop completing at the container ID: the rest is passed through.

Imported only by the ``completion`` command, never on a container's path.
"""

from __future__ import annotations

import os

from ocirun import cmdtable
from ocirun.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.cmdtable import Command, Flag

SHELLS = ("bash", "zsh", "fish")
# Commands whose <container-id> names a container that does not exist yet.
NEW_ID = ("create", "run", "restore")
_HEADER = ("{c} {shell} completion for ocirun, generated from its command table by"
           " `ocirun completion {shell}`.\n")


def signals() -> list[str]:
    """Signal names as kill takes them (without SIG)."""
    import _signal
    return sorted(n[3:] for n in dir(_signal)
                  if n.startswith("SIG") and not n.startswith("SIG_") and n not in ("SIGRTMIN", "SIGRTMAX"))


def value_kind(f: Flag) -> str:
    """What a flag's value is: "" (a bool), "dir", "file", "words:a b", or "text"."""
    value = f[3]
    if not value:
        return ""
    if value == "DIR":
        return "dir"
    if value in ("FILE", "PATH"):
        return "file"
    if "|" in value and all(w.isalnum() for w in value.split("|")):
        return "words:" + value.replace("|", " ")
    return "text"


def arg_kinds(row: Command) -> list[str]:
    """Kind of each positional argument: ids, new, signals, commands, words:..., text, tail."""
    kinds = []
    for tok in row[1].split():
        name = tok.strip("<>[]")
        if name == "container-id":
            kinds.append("new" if row[0] in NEW_ID else "ids")
        elif name == "signal":
            kinds.append("signals")
        elif name == "command" and row[0] == "help":
            kinds.append("commands")
        elif "|" in name:
            kinds.append("words:" + name.replace("|", " "))
        elif name == "CONFIG":
            kinds.append("file")
        else:
            kinds.append("text")
    if row[3] < 0:  # flags end at the first argument; the rest is passed through
        kinds = kinds[:1] + ["tail"]
    return kinds


def _flags(row: Command | None) -> list[Flag]:
    flags = cmdtable.GLOBAL_FLAGS if row is None else row[6] + (cmdtable.HELP_FLAG,)
    return [f for f in flags if f[5]]


def _rows() -> list[Command]:
    return list(cmdtable.COMMANDS)


def _names(f: Flag) -> list[str]:
    """Every spelling the parser accepts for a flag."""
    out = [f"--{f[0]}", f"-{f[0]}"]
    if f[1]:
        out.append(f"-{f[1]}")
    return out


def _offered(f: Flag) -> list[str]:
    return [f"--{f[0]}"] + ([f"-{f[1]}"] if f[1] else [])


# -- bash --------------------------------------------------------------------------------

def bash() -> str:
    kinds: list[str] = []
    for scope, row in [("", None)] + [(r[0], r) for r in _rows()]:
        for f in _flags(row):
            kind = value_kind(f)
            if kind:
                pats = "|".join(f'"{scope} {n}"' for n in _names(f))
                kinds.append(f"        {pats}) echo '{kind}' ;;\n")
    flag_words = "".join(
        f"        {row[0]}) echo '{' '.join(w for f in _flags(row) for w in _offered(f))}' ;;\n"
        for row in _rows())
    arg_cases = ""
    for row in _rows():
        for i, kind in enumerate(arg_kinds(row)):
            arg_cases += f"        '{row[0]} {i}') echo '{kind}' ;;\n"
            if kind == "tail":
                arg_cases += f"        '{row[0]} '*) echo tail ;;\n"
    global_words = " ".join(w for f in _flags(None) for w in _offered(f))
    commands = " ".join(r[0] for r in _rows())
    return (_HEADER.format(c="#", shell="bash")
            + "#   source <(ocirun completion bash)    or save it in /etc/bash_completion.d/ocirun\n\n"
            "_ocirun_value_kind() {  # COMMAND ('' before the command) FLAG -> what its value is\n"
            '    case "$1 $2" in\n' + "".join(kinds) + "    esac\n}\n\n"
            "_ocirun_flags() {  # COMMAND -> the flags to offer\n"
            "    case $1 in\n"
            f"        '') echo '{global_words}' ;;\n" + flag_words + "    esac\n}\n\n"
            "_ocirun_arg_kind() {  # COMMAND N -> what its N-th positional argument is\n"
            '    case "$1 $2" in\n' + arg_cases + "    esac\n}\n\n"
            + _BASH_MAIN.replace("@COMMANDS@", commands).replace("@SIGNALS@", " ".join(signals())))


_BASH_MAIN = r"""_ocirun() {
    local prog=$1 cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local root= cmd= pos=0 i=1 w kind
    while [ "$i" -lt "$COMP_CWORD" ]; do
        w=${COMP_WORDS[i]}
        case $w in
            --root=*|-root=*) [ -z "$cmd" ] && root=${w#*=} ;;
            -*=*) ;;
            -*) if [ -n "$(_ocirun_value_kind "$cmd" "$w")" ]; then
                    case "$cmd $w" in " --root"|" -root") root=${COMP_WORDS[i+1]} ;; esac
                    i=$((i + 1))
                fi ;;
            *) if [ -z "$cmd" ]; then cmd=$w; else pos=$((pos + 1)); fi ;;
        esac
        [ -n "$cmd" ] && [ "$(_ocirun_arg_kind "$cmd" "$pos")" = tail ] && return 0
        i=$((i + 1))
    done
    COMPREPLY=()
    kind=
    case $prev in
        -*=*) ;;
        -*) [ "$COMP_CWORD" -gt 1 ] && kind=$(_ocirun_value_kind "$cmd" "$prev") ;;
    esac
    if [ -z "$kind" ]; then
        case $cur in
            -*) COMPREPLY=($(compgen -W "$(_ocirun_flags "$cmd")" -- "$cur")); return 0 ;;
        esac
        if [ -z "$cmd" ]; then kind='words:@COMMANDS@'; else kind=$(_ocirun_arg_kind "$cmd" "$pos"); fi
    fi
    case $kind in
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        words:*) COMPREPLY=($(compgen -W "${kind#words:}" -- "$cur")) ;;
        commands) COMPREPLY=($(compgen -W '@COMMANDS@' -- "$cur")) ;;
        signals) COMPREPLY=($(compgen -W '@SIGNALS@' -- "$cur")) ;;
        ids) COMPREPLY=($(compgen -W "$("$prog" ${root:+--root "$root"} list --quiet 2>/dev/null)" -- "$cur")) ;;
    esac
    return 0
}

complete -F _ocirun ocirun
"""


# -- zsh ---------------------------------------------------------------------------------

def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_action(kind: str) -> str:
    if kind == "dir":
        return "_files -/"
    if kind == "file":
        return "_files"
    if kind.startswith("words:"):
        return f"({kind[6:]})"
    if kind == "ids":
        return "_ocirun_ids"
    if kind == "signals":
        return "_ocirun_signals"
    if kind == "commands":
        return "_ocirun_commands"
    return " "


def _zsh_spec(f: Flag) -> str:
    desc = f[5].replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    kind = value_kind(f)
    value = f":{f[3].replace(':', '_')}:{_zsh_action(kind)}" if kind else ""
    eq = "=" if kind else ""
    names = _offered(f)
    repeat = "*" if f[2] == "list" else ""
    excl = "" if repeat else "(" + " ".join(names) + ")"
    if len(names) == 1:
        return _sq(f"{repeat}{names[0]}{eq}[{desc}]{value}")
    return _sq(excl + repeat) + "{" + ",".join(names) + "}" + _sq(f"{eq}[{desc}]{value}")


def _zsh_args(row: Command) -> list[str]:
    specs = [_zsh_spec(f) for f in _flags(row)]
    for i, kind in enumerate(arg_kinds(row)):
        if kind == "tail":
            specs.append(_sq("*::argument: "))
        else:
            label = row[1].split()[i].strip("<>[].") if i < len(row[1].split()) else "argument"
            specs.append(_sq(f"{i + 1}:{label}:{_zsh_action(kind)}"))
    return specs


def zsh() -> str:
    cmds = "".join(f"    {_sq(r[0] + ':' + r[5])}\n" for r in _rows())
    cases = ""
    for row in _rows():
        opt = "-A '-*' " if row[3] < 0 else ""
        args = " \\\n        ".join(_zsh_args(row))
        cases += f"      {row[0]})\n        _arguments -s {opt}\\\n        {args} && ret=0 ;;\n"
    globals_ = " \\\n    ".join(_zsh_spec(f) for f in _flags(None))
    return ("#compdef ocirun\n" + _HEADER.format(c="#", shell="zsh")
            + "#   source <(ocirun completion zsh)    or save it as _ocirun in a directory of $fpath\n\n"
            "_ocirun_commands() {\n  local -a commands=(\n" + cmds + "  )\n"
            "  _describe -t commands 'ocirun command' commands\n}\n\n"
            f"_ocirun_signals() {{\n  compadd -- {' '.join(signals())}\n}}\n\n"
            "_ocirun_ids() {\n  local -a ids\n"
            '  ids=(${(f)"$(${_ocirun_prog:-ocirun} ${_ocirun_root:+--root} $_ocirun_root'
            ' list --quiet 2>/dev/null)"})\n'
            "  _describe -t containers 'container' ids\n}\n\n"
            "_ocirun() {\n  local curcontext=$curcontext state line ret=1\n  typeset -A opt_args\n"
            "  local _ocirun_prog=$words[1] _ocirun_root\n"
            "  _arguments -C \\\n    " + globals_ + " \\\n"
            "    '1: :_ocirun_commands' \\\n    '*:: :->args' && ret=0\n"
            "  if [[ $state == args ]]; then\n"
            "    _ocirun_root=${opt_args[--root]}\n"
            "    curcontext=${curcontext%:*:*}:ocirun-$words[1]:\n"
            "    case $words[1] in\n" + cases + "    esac\n  fi\n  return ret\n}\n\n"
            'if [[ $funcstack[1] == _ocirun ]]; then\n  _ocirun "$@"\nelse\n'
            "  compdef _ocirun ocirun\nfi\n")


# -- fish --------------------------------------------------------------------------------

def _fish_q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_value(kind: str) -> str:
    if kind == "dir":
        return " -x -a '(__fish_complete_directories (commandline -ct))'"
    if kind == "file":
        return " -r -F"
    if kind.startswith("words:"):
        return f" -x -a {_fish_q(kind[6:])}"
    return " -x" if kind else ""


def _fish_flag(cond: str, f: Flag) -> str:
    short = f" -s {f[1]}" if f[1] else ""
    return (f"complete -c ocirun -n {_fish_q(cond)} -l {f[0]}{short}{_fish_value(value_kind(f))}"
            f" -d {_fish_q(f[5])}\n")


def fish() -> str:
    value_flags = " ".join(n for f in _flags(None) if value_kind(f) for n in _names(f))
    per_cmd = "".join(
        f"        case {row[0]}\n            set vf {' '.join(n for f in _flags(row) if value_kind(f) for n in _names(f))}\n"
        for row in _rows() if any(value_kind(f) for f in _flags(row)))
    out = (_HEADER.format(c="#", shell="fish")
           + "#   ocirun completion fish | source    or save it in ~/.config/fish/completions/ocirun.fish\n\n"
           + _FISH_MAIN.replace("@GLOBAL_VALUE_FLAGS@", value_flags).replace("@PER_CMD@", per_cmd)
           + "\ncomplete -c ocirun -f\n")
    for f in _flags(None):
        out += _fish_flag("__ocirun_no_command", f)
    for row in _rows():
        out += f"complete -c ocirun -n __ocirun_no_command -a {row[0]} -d {_fish_q(row[5])}\n"
    for row in _rows():
        cond = f"__ocirun_is {row[0]}"
        tail = row[3] < 0
        for f in _flags(row):
            out += _fish_flag(f"{cond}; and __ocirun_before_tail" if tail else cond, f)
        for i, kind in enumerate(arg_kinds(row)):
            if kind in ("text", "new", "tail"):
                continue
            if kind == "file":
                out += f"complete -c ocirun -n {_fish_q(f'{cond}; and __ocirun_arg {i}')} -F\n"
                continue
            words = {"ids": "(__ocirun_ids)", "signals": " ".join(signals()),
                     "commands": " ".join(r[0] for r in _rows())}.get(kind, kind[6:])
            out += (f"complete -c ocirun -n {_fish_q(f'{cond}; and __ocirun_arg {i}')}"
                    f" -a {_fish_q(words)}\n")
    return out


_FISH_MAIN = r"""# __ocirun_parse: sets __ocirun_cmd, __ocirun_root and __ocirun_npos (positional
# arguments typed after the command) from the command line before the cursor.
function __ocirun_parse
    set -g __ocirun_cmd ''
    set -g __ocirun_root ''
    set -g __ocirun_npos 0
    set -l toks (commandline -opc)
    set -l i 2
    set -l vf @GLOBAL_VALUE_FLAGS@
    while test $i -le (count $toks)
        set -l t $toks[$i]
        if string match -q -- '-*=*' $t
            if test -z "$__ocirun_cmd"; and string match -qr -- '^--?root=' $t
                set -g __ocirun_root (string replace -r -- '^--?root=' '' $t)
            end
        else if string match -q -- '-*' $t
            if contains -- $t $vf
                set i (math $i + 1)
                if test -z "$__ocirun_cmd"; and contains -- $t --root -root
                    set -g __ocirun_root $toks[$i]
                end
            end
        else if test -z "$__ocirun_cmd"
            set -g __ocirun_cmd $t
            set vf
            switch $t
@PER_CMD@            end
        else
            set -g __ocirun_npos (math $__ocirun_npos + 1)
        end
        set i (math $i + 1)
    end
end

function __ocirun_no_command
    __ocirun_parse
    test -z "$__ocirun_cmd"
end

function __ocirun_is
    __ocirun_parse
    test "$__ocirun_cmd" = $argv[1]
end

function __ocirun_arg
    test "$__ocirun_npos" = $argv[1]
end

function __ocirun_before_tail
    test "$__ocirun_npos" = 0
end

function __ocirun_ids
    set -l prog (commandline -opc)[1]
    if test -n "$__ocirun_root"
        $prog --root $__ocirun_root list --quiet 2>/dev/null
    else
        $prog list --quiet 2>/dev/null
    end
end
"""


def script(shell: str) -> str:
    if shell == "bash":
        return bash()
    if shell == "zsh":
        return zsh()
    if shell == "fish":
        return fish()
    raise UsageError(f"completion: unknown shell {shell!r} (bash, zsh or fish)")


def cmd_completion(g: dict[str, object], o: dict[str, object], a: list[str]) -> int:
    """``ocirun completion bash|zsh|fish``."""
    os.write(1, script(a[0]).encode())
    return 0
