"""The hand-written parser follows runc's grammar (RUNC-CLI.md §1), driven by the command table."""

import json
import re
import shutil
import subprocess

import pytest

from ocirun import cli, cmdhelp, cmdtable
from ocirun.errors import UsageError


def flags_of(cmd):
    row = cmdtable.find(cmd)
    return cli.flag_index(row[cmdtable.C_FLAGS] + (cmdtable.HELP_FLAG,))


def parse(argv, flags, stop=False):
    p = cli.Parsed()
    i = cli.parse_flags(argv, 0, flags, p, stop_at_positional=stop)
    return p, i


@pytest.mark.parametrize("argv", [
    ["--bundle", "/b", "id"], ["--bundle=/b", "id"], ["-bundle", "/b", "id"], ["-b", "/b", "id"],
    ["-b=/b", "id"], ["id", "-b", "/b"],
])
def test_value_flag_forms(argv):
    p, _ = parse(argv, flags_of("create"))
    assert p.opts["bundle"] == "/b" and p.args == ["id"]


@pytest.mark.parametrize("tok,val", [("--no-pivot", True), ("--no-pivot=true", True),
                                     ("--no-pivot=false", False), ("-no-pivot", True)])
def test_bool_flag_forms(tok, val):
    p, _ = parse([tok, "id"], flags_of("create"))
    assert p.opts["no_pivot"] is val


def test_bad_bool_value():
    with pytest.raises(UsageError, match='invalid boolean value "maybe" for flag -no-pivot'):
        parse(["--no-pivot=maybe", "id"], flags_of("create"))


def test_int_flag():
    p, _ = parse(["--preserve-fds", "2", "x"], flags_of("create"))
    assert p.opts["preserve_fds"] == 2
    with pytest.raises(UsageError, match="parse error"):
        parse(["--preserve-fds", "two", "x"], flags_of("create"))


def test_missing_value():
    with pytest.raises(UsageError, match="flag needs an argument: -pid-file"):
        parse(["id", "--pid-file"], flags_of("create"))


def test_repeatable_flag_collects_values():
    p, _ = parse(["-e", "A=1", "--env=B=2", "--cap", "CAP_KILL", "id", "sh"], flags_of("exec"), stop=True)
    assert p.opts["env"] == ["A=1", "B=2"] and p.opts["cap"] == ["CAP_KILL"]


def test_unknown_flag_message():
    with pytest.raises(UsageError, match="flag provided but not defined: -x"):
        parse(["-x", "id"], flags_of("state"))


def test_double_dash_ends_flags():
    p, _ = parse(["--all", "--", "-id", "-9"], flags_of("kill"))
    assert p.opts == {"all": True} and p.args == ["-id", "-9"]


def test_globals_stop_at_command():
    p, i = parse(["--root", "/r", "--log-format=json", "-debug", "state", "--help"],
                 cli.flag_index(cmdtable.GLOBAL_FLAGS), stop=True)
    assert p.opts == {"root": "/r", "log_format": "json", "debug": True}
    assert i == 4


def test_kill_positional_signal():
    p, _ = parse(["--all", "id", "KILL"], flags_of("kill"))
    assert p.opts["all"] is True and p.args == ["id", "KILL"]


def test_exec_and_ps_pass_the_tail_through():
    """Flags end at the container ID: the rest is the command (runc's SkipArgReorder)."""
    p, i = parse(["-t", "--cwd", "/w", "id", "ls", "-l", "--all"], flags_of("exec"), stop=True)
    assert p.opts == {"tty": True, "cwd": "/w"} and i == 3
    p, i = parse(["-f", "json", "id", "-o", "pid"], flags_of("ps"), stop=True)
    assert p.opts == {"format": "json"} and i == 2


def test_wrong_arg_count(capfd):
    assert cli.main(["--root", "/nonexistent-root", "state"]) == 1
    out, err = capfd.readouterr()
    assert out.startswith("Incorrect Usage.\n\nNAME:\n   ocirun state - ")
    assert err.strip() == 'ocirun: "state" requires exactly 1 argument(s)'


@pytest.mark.parametrize("argv,msg", [
    (["kill"], '"kill" requires a minimum of 1 argument(s)'),
    (["kill", "a", "b", "c"], '"kill" requires a maximum of 2 argument(s)'),
    (["list", "x"], '"list" requires exactly 0 argument(s)'),
])
def test_arity_messages(argv, msg, capfd):
    assert cli.main(["--root", "/nonexistent-root"] + argv) == 1
    out, err = capfd.readouterr()
    assert out.startswith("Incorrect Usage.") and err.strip() == f"ocirun: {msg}"


def test_unknown_command_flag_prints_help(capfd):
    assert cli.main(["state", "-x", "id"]) == 1
    out, err = capfd.readouterr()
    assert out.startswith("Incorrect Usage: flag provided but not defined: -x\n\nNAME:\n   ocirun state")
    assert err == "ocirun: flag provided but not defined: -x\n"


def test_unknown_global_flag_prints_main_help(capfd):
    assert cli.main(["--nosuch", "state", "id"]) == 1
    out, err = capfd.readouterr()
    assert out.startswith("Incorrect Usage. flag provided but not defined: -nosuch\n\nNAME:\n   ocirun - ")
    assert err == "ocirun: flag provided but not defined: -nosuch\n"


def test_unknown_command(capfd):
    assert cli.main(["nosuch"]) == 1
    assert capfd.readouterr().err == "ocirun: No help topic for 'nosuch'\n"
    assert cli.main(["help", "nosuch"]) == 1
    assert capfd.readouterr().err == "ocirun: No help topic for 'nosuch'\n"


def test_version(capfd):
    assert cli.main(["--version"]) == 0
    out, _ = capfd.readouterr()
    lines = out.splitlines()
    assert lines[0] == "ocirun version " + __import__("ocirun").__version__
    assert lines[1] == "spec: 1.3.0"


NOT_BUILT = [row[0] for row in cmdtable.COMMANDS if not row[cmdtable.C_HANDLER]]


@pytest.mark.parametrize("cmd", NOT_BUILT)
def test_not_yet_commands_refuse(cmd, capfd, tmp_path):
    # with the arguments a caller would send, and with a flag that command lacks
    for argv in ([cmd, "x", "ls"], [cmd, "--no-such-flag", "x"], [cmd]):
        assert cli.main(["--root", str(tmp_path)] + argv) == 1
        out, err = capfd.readouterr()
        assert err == f"ocirun: `{cmd}` is not supported yet\n", argv
        assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_exec_failure_is_255_with_one_json_error(capfd, tmp_path):
    # containerd's shim: exec --process F --detach --pid-file P ID; a runtime
    # failure of exec exits 255 (runc), and the log holds exactly one error line.
    (tmp_path / "p.json").write_text('{"args": ["true"], "cwd": "/"}')
    argv = ["--root", str(tmp_path), "--log", str(tmp_path / "log.json"), "--log-format", "json",
            "exec", "--process", str(tmp_path / "p.json"), "--detach", "--pid-file",
            str(tmp_path / "x.pid"), "c1"]
    assert cli.main(argv) == 255
    lines = (tmp_path / "log.json").read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "does not exist" in entry["msg"]
    assert "does not exist" in capfd.readouterr().err
    assert not (tmp_path / "x.pid").exists()


def test_systemd_cgroup_refused(capfd, tmp_path):
    assert cli.main(["--root", str(tmp_path), "--systemd-cgroup", "create", "-b", str(tmp_path), "c1"]) == 1
    _, err = capfd.readouterr()
    assert "not supported yet" in err
    assert not (tmp_path / "c1").exists()


def test_json_log_line(tmp_path, capfd):
    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json",
                     "state", "nosuch"]) == 1
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert list(entry) == ["level", "msg", "time"]
    assert entry["level"] == "error" and entry["msg"] == "container does not exist"
    import datetime
    datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    _, err = capfd.readouterr()
    assert err == "ocirun: container does not exist\n"


# -- the table itself --------------------------------------------------------------------

def test_table_is_well_formed():
    names = set()
    for row in cmdtable.COMMANDS:
        name, _, lo, hi, _, summary, flags = row
        assert name not in names
        names.add(name)
        assert summary and summary[0].islower() and not summary.endswith(".")
        assert 0 <= lo and (hi == -1 or lo <= hi)
        seen = {"help", "h"}
        for f in flags + cmdtable.GLOBAL_FLAGS:
            assert len(f) == 6 and f[2] in ("bool", "str", "int", "list"), f
            assert (f[2] == "bool") == (f[3] == ""), f"{name}: {f[0]}: value name iff not a bool"
            assert not f[5].endswith("."), f
        for f in flags:
            for n in (f[0], f[1]):
                assert n == "" or n not in seen, f"{name}: flag {n} defined twice"
                seen.add(n)
    for alias, target in cmdtable.ALIASES.items():
        assert target in names and alias not in names


def test_handlers_resolve():
    import importlib
    for row in cmdtable.COMMANDS:
        handler = row[cmdtable.C_HANDLER]
        if handler:
            module, _, func = handler.partition(":")
            assert callable(getattr(importlib.import_module(module), func)), handler


def test_default_root_is_the_ground_floors():
    from ocirun import commands
    assert commands.DEFAULT_ROOT is cmdtable.DEFAULT_ROOT
    row = next(f for f in cmdtable.GLOBAL_FLAGS if f[0] == "root")
    assert ("root", "", "str", "DIR", cmdtable.DEFAULT_ROOT) == row[:5]


# -- help ------------------------------------------------------------------------------

def _help(argv, capfd):
    assert cli.main(argv) == 0
    out, err = capfd.readouterr()
    assert err == ""
    return out


@pytest.mark.parametrize("cmd", [row[0] for row in cmdtable.COMMANDS])
def test_help_of_every_command(cmd, capfd):
    row = cmdtable.find(cmd)
    text = _help(["help", cmd], capfd)
    assert _help([cmd, "--help"], capfd) == text
    assert _help([cmd, "-h"], capfd) == text
    assert _help(["h", cmd], capfd) == text
    assert text.startswith(f"NAME:\n   ocirun {cmd} - {row[cmdtable.C_SUMMARY]}\n\nUSAGE:\n   ocirun {cmd}")
    for f in row[cmdtable.C_FLAGS]:
        if not f[cmdtable.F_DESC]:
            assert f"--{f[0]}" not in text  # hidden
            continue
        line = next((ln for ln in text.splitlines() if ln.startswith(f"   --{f[0]}")), None)
        assert line, f"{cmd}: --{f[0]} missing from help"
        spec = cmdhelp.flag_spec(f)
        assert re.match(rf"   {re.escape(spec)}\s{{3,}}{re.escape(f[5])}", line), line
        if f[1]:
            assert f", -{f[1]}" in spec
        if f[3]:
            assert f"--{f[0]} {f[3]}" in spec
    if not row[cmdtable.C_HANDLER]:
        assert "Not supported yet" in text


def test_main_help_lists_every_command_and_global_flag(capfd):
    text = _help(["--help"], capfd)
    assert _help([], capfd) == text
    assert _help(["help"], capfd) == text
    for name in ("NAME:", "USAGE:", "VERSION:", "DESCRIPTION:", "COMMANDS:", "GLOBAL OPTIONS:"):
        assert f"\n{name}\n" in "\n" + text
    for row in cmdtable.COMMANDS:
        assert re.search(rf"^   {row[0]}(, \w+)?\s+{re.escape(row[5])}", text, re.MULTILINE), row[0]
    for f in cmdtable.GLOBAL_FLAGS:
        assert re.search(rf"^   {re.escape(cmdhelp.flag_spec(f))}\s+{re.escape(f[5])}", text, re.MULTILINE)
    assert "--root DIR" in text and "(default: /run/ocirun)" in text


def test_every_command_has_prose():
    names = {row[0] for row in cmdtable.COMMANDS}
    assert set(cmdhelp.DESCRIPTIONS) == names | {""}


# -- against runc's own help (the table must know every runc command and flag) ----------

RUNC = shutil.which("runc")


def _runc_help(*argv):
    return subprocess.run([RUNC, *argv], capture_output=True, text=True, timeout=30).stdout


def _runc_flags(text):
    """{long: (short, takes value)} from runc's OPTIONS lines."""
    out = {}
    for m in re.finditer(r"^   --([\w-]+)( value)?(?:, -(\w)( value)?)?\s", text, re.MULTILINE):
        out[m.group(1)] = (m.group(3) or "", bool(m.group(2)))
    return out


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_table_covers_runc_help():
    main = _runc_help("--help")
    cmds = re.findall(r"^   (\w+)(?:, \w+)?\s+\S", main.split("COMMANDS:")[1].split("GLOBAL OPTIONS:")[0], re.MULTILINE)
    assert "exec" in cmds and "features" in cmds
    for name in cmds:
        assert cmdtable.find(name), f"runc command {name} missing from the table"
    ours = {f[0]: (f[1], f[2] != "bool") for f in cmdtable.GLOBAL_FLAGS}
    for long, spec in _runc_flags(main.split("GLOBAL OPTIONS:")[1]).items():
        assert ours.get(long) == spec, f"global --{long}: runc {spec}, ocirun {ours.get(long)}"
    for name in cmds:
        if name == "help":
            continue
        row = cmdtable.find(name)
        ours = {f[0]: (f[1], f[2] != "bool") for f in row[cmdtable.C_FLAGS]}
        theirs = _runc_flags(_runc_help(name, "--help"))
        for long, spec in theirs.items():
            assert ours.get(long) == spec, f"{name} --{long}: runc {spec}, ocirun {ours.get(long)}"
        visible = {f[0] for f in row[cmdtable.C_FLAGS] if f[cmdtable.F_DESC]}
        assert visible <= set(theirs), f"{name}: flags runc lacks: {visible - set(theirs)}"
