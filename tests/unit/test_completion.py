"""``ocirun completion bash|zsh|fish``: each script is loaded in its real shell and asked
for completions, the way a user's TAB asks (zsh through a pseudo-terminal)."""

import os
import shutil
import subprocess
import sys

import pytest

from ocirun import cli, cmdtable, completion

# (command line before the cursor, candidates); the fake ocirun below lists, for
# `[--root R] list --quiet`, two containers named after R.
CASES = [
    ("ocirun cr", {"create"}),
    ("ocirun --log-format ", {"text", "json"}),
    ("ocirun --ro", {"--root", "--rootless"}),
    ("ocirun kill ", {"c1-default", "c2-default"}),
    ("ocirun --root /x kill ", {"c1-/x", "c2-/x"}),
    ("ocirun --root=/y state ", {"c1-/y", "c2-/y"}),
    ("ocirun kill c1 K", {"KILL"}),
    ("ocirun kill c1 --", {"--all", "--help"}),
    ("ocirun create --bu", {"--bundle"}),
    ("ocirun list -f ", {"table", "json"}),
    ("ocirun help sta", {"start", "state"}),
    ("ocirun completion ", {"bash", "zsh", "fish"}),
    ("ocirun exec -e A=1 ", {"c1-default", "c2-default"}),
    ("ocirun exec c1 ", set()),         # the rest is the command: passed through
    ("ocirun exec c1 ls --", set()),
    ("ocirun run ", set()),             # a new container's ID: nothing to offer
]

FAKE = """#!/bin/sh
root=default
[ "$1" = --root ] && root=$2
shift 2 2>/dev/null
echo "c1-$root"; echo "c2-$root"
"""


@pytest.fixture
def env(tmp_path):
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "ocirun"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    for shell in completion.SHELLS:
        (tmp_path / f"script.{shell}").write_text(completion.script(shell))
    return tmp_path, dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", HOME=str(tmp_path))


def test_command_prints_the_script(capfd):
    for shell in completion.SHELLS:
        assert cli.main(["completion", shell]) == 0
        assert capfd.readouterr().out == completion.script(shell)
    assert cli.main(["completion", "tcsh"]) == 1
    assert "unknown shell 'tcsh'" in capfd.readouterr().err


def test_scripts_know_every_command_and_flag():
    for shell in completion.SHELLS:
        text = completion.script(shell)
        for row in cmdtable.COMMANDS:
            assert row[0] in text
            for f in row[cmdtable.C_FLAGS]:
                assert (f[0] in text) == bool(f[cmdtable.F_DESC]), (shell, row[0], f[0])


BASH_HARNESS = r"""
source "$1"; shift
for line in "$@"; do
    read -ra COMP_WORDS <<< "$line"
    [[ $line == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _ocirun ocirun "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "${COMPREPLY[*]}"
done
"""


def test_bash(env):
    tmp, e = env
    r = subprocess.run(["bash", "-c", BASH_HARNESS, "bash", str(tmp / "script.bash")] + [c[0] for c in CASES],
                       capture_output=True, text=True, env=e, timeout=60, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    got = r.stdout.split("\n")
    for (line, want), out in zip(CASES, got):
        assert set(out.split()) == want, line


def test_bash_registers_with_process_substitution(tmp_path):
    """What the README shows: `source <(ocirun completion bash)`."""
    ocirun = f"{sys.executable} -m ocirun"
    r = subprocess.run(["bash", "-c", f"source <({ocirun} completion bash); complete -p ocirun"],
                       capture_output=True, text=True, timeout=60, check=False,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cli.__file__))))
    assert r.stdout == "complete -F _ocirun ocirun\n", r.stderr


def test_bash_directory_values(env, tmp_path):
    tmp, e = env
    (tmp_path / "bundle-dir").mkdir()
    (tmp_path / "bundle-file").write_text("")
    r = subprocess.run(["bash", "-c", BASH_HARNESS, "bash", str(tmp / "script.bash"),
                        f"ocirun create --bundle {tmp_path}/bundle-", f"ocirun --log {tmp_path}/bundle-"],
                       capture_output=True, text=True, env=e, timeout=60, check=False)
    dirs, files = r.stdout.split("\n")[:2]
    assert dirs.split() == [f"{tmp_path}/bundle-dir"]
    assert sorted(files.split()) == [f"{tmp_path}/bundle-dir", f"{tmp_path}/bundle-file"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish(env):
    tmp, e = env
    script = f"source {tmp / 'script.fish'}\n" + "".join(
        f"complete -C '{line}' | string replace -r '\\t.*' '' | string join ' '; echo '|'\n"
        for line, _ in CASES)
    r = subprocess.run(["fish", "--no-config", "-c", script], capture_output=True, text=True, env=e,
                       timeout=60, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    got = r.stdout.split("|\n")
    for (line, want), out in zip(CASES, got):
        assert set(out.split()) == want, line


ZSH_HARNESS = r"""
zmodload zsh/zpty
fake=$1 script=$2; shift 2
zpty z zsh -f -i
zpty -w z "PS1='' RPS1=''; PATH=$fake:\$PATH; autoload -U compinit && compinit -u -D; source $script"
zpty -w z 'typeset -gA _zc_seen; compadd() { local -a __m; builtin compadd -O __m "$@"; local x; for x in $__m; do _zc_seen[$x]=1; done; builtin compadd "$@"; }'
zpty -w z '_zc_dump() { local a="<" b=">"; print -rn -- "$a$a${(j: :)${(k)_zc_seen}}$b$b"; _zc_seen=(); }'
for line in "$@"; do
  zpty -w z 'comppostfuncs=(_zc_dump)'
  zpty -n -w z "$line"$'\t'
  zpty -r z out '*<<*>>*' || { print TIMEOUT; break; }
  print -r -- "${${out##*<<}%%>>*}"
  zpty -n -w z $'\C-u'
done
zpty -d z
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh(env):
    tmp, e = env
    r = subprocess.run(["zsh", "-f", "-c", ZSH_HARNESS, "zsh", str(tmp / "bin"), str(tmp / "script.zsh")]
                       + [c[0] for c in CASES], capture_output=True, text=True, env=e, timeout=60,
                       check=False)
    got = r.stdout.split("\n")
    assert "TIMEOUT" not in got, r.stdout
    for (line, want), out in zip(CASES, got):
        if not want and "exec" not in line:
            # where no argument can be offered, _arguments offers the flags instead
            assert all(w.startswith("-") for w in out.split()), line
            continue
        assert set(out.split()) == want, line


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_autoload_form(env):
    """Saved as _ocirun in $fpath, compinit picks it up by its #compdef line."""
    tmp, e = env
    (tmp / "fpath").mkdir()
    (tmp / "fpath" / "_ocirun").write_text(completion.script("zsh"))
    r = subprocess.run(["zsh", "-f", "-c", f"fpath=({tmp / 'fpath'} $fpath); autoload -U compinit; "
                        "compinit -u -D; print -r -- $_comps[ocirun]"],
                       capture_output=True, text=True, env=e, timeout=60, check=False)
    assert r.stdout == "_ocirun\n", r.stderr
