"""The hand-written parser follows runc's grammar (RUNC-CLI.md §1)."""

import pytest

from ocirun import cli
from ocirun.errors import UsageError


def parse(argv, flags, stop=False):
    p = cli.Parsed()
    i = cli.parse_flags(argv, 0, flags, p, stop_at_positional=stop)
    return p, i


@pytest.mark.parametrize("argv", [
    ["--bundle", "/b", "id"], ["--bundle=/b", "id"], ["-bundle", "/b", "id"], ["-b", "/b", "id"],
    ["-b=/b", "id"],
])
def test_value_flag_forms(argv):
    p, _ = parse(argv, cli.COMMANDS["create"][0])
    assert p.opts["bundle"] == "/b" and p.args == ["id"]


@pytest.mark.parametrize("tok,val", [("--no-pivot", True), ("--no-pivot=true", True),
                                     ("--no-pivot=false", False), ("-no-pivot", True)])
def test_bool_flag_forms(tok, val):
    p, _ = parse([tok, "id"], cli.COMMANDS["create"][0])
    assert p.opts["no_pivot"] is val


def test_int_flag():
    p, _ = parse(["--preserve-fds", "2", "x"], cli.COMMANDS["create"][0])
    assert p.opts["preserve_fds"] == 2
    with pytest.raises(UsageError, match="parse error"):
        parse(["--preserve-fds", "two", "x"], cli.COMMANDS["create"][0])


def test_unknown_flag_message():
    with pytest.raises(UsageError, match="flag provided but not defined: -x"):
        parse(["-x", "id"], cli.COMMANDS["state"][0])


def test_globals_stop_at_command():
    p, i = parse(["--root", "/r", "--log-format=json", "-debug", "state", "--help"],
                 cli.GLOBAL_FLAGS, stop=True)
    assert p.opts == {"root": "/r", "log_format": "json", "debug": True}
    assert i == 4


def test_kill_positional_signal():
    p, _ = parse(["--all", "id", "KILL"], cli.COMMANDS["kill"][0])
    assert p.opts["all"] is True and p.args == ["id", "KILL"]


def test_wrong_arg_count(capfd):
    assert cli.main(["--root", "/nonexistent-root", "state"]) == 1
    out, err = capfd.readouterr()
    assert out.startswith("Incorrect Usage.")
    assert err.strip() == 'ocirun: "state" requires exactly 1 argument(s)'


def test_version(capfd):
    assert cli.main(["--version"]) == 0
    out, _ = capfd.readouterr()
    lines = out.splitlines()
    assert lines[0] == "ocirun version " + __import__("ocirun").__version__
    assert lines[1] == "spec: 1.3.0"


def test_not_yet_commands_refuse(capfd):
    assert cli.main(["exec", "x", "ls"]) == 1
    _, err = capfd.readouterr()
    assert "not supported yet" in err and "Traceback" not in err


def test_systemd_cgroup_refused(capfd, tmp_path):
    assert cli.main(["--root", str(tmp_path), "--systemd-cgroup", "create", "-b", str(tmp_path), "c1"]) == 1
    _, err = capfd.readouterr()
    assert "not supported yet" in err
    assert not (tmp_path / "c1").exists()


def test_json_log_line(tmp_path, capfd):
    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json",
                     "state", "nosuch"]) == 1
    import json
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert list(entry) == ["level", "msg", "time"]
    assert entry["level"] == "error" and entry["msg"] == "container does not exist"
    import datetime
    datetime.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    _, err = capfd.readouterr()
    assert err == "ocirun: container does not exist\n"
