"""README.md's fixed points (issue 12): it starts with the two commands that work on a fresh
Debian machine as root, the test command is exactly the one CI runs, the status section is
delimited for others to edit, and nothing points outside the repository."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def first_block(text):
    m = re.search(r"```sh\n(.*?)```", text, re.S)
    assert m, "README has no sh block"
    return [line.split("#")[0].strip() for line in m.group(1).splitlines() if line.strip()]


def test_starts_with_the_two_commands():
    head = README.split("```sh", 1)[0]
    assert head.count("\n## ") == 0, "the two commands come before any section"
    setup, tests = first_block(README)
    assert setup == "bash examples/quickstart.sh"
    ci_test = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert tests == f"bash .ci/setup && {ci_test}"
    assert "sudo" not in setup + tests  # a fresh Debian root shell has no sudo


def test_status_section_is_delimited():
    assert README.count("<!-- status: begin") == 1 and README.count("<!-- status: end -->") == 1
    section = README.split("<!-- status: begin", 1)[1].split("<!-- status: end -->", 1)[0]
    assert "\n## Status\n" in section


def test_by_hand_block_is_marked_for_its_test():
    assert README.count("<!-- tests/privileged/test_readme.py runs this block") == 1


def test_no_reference_outside_the_repository():
    for path in [REPO / "README.md", *sorted((REPO / "specs").glob("*.md"))]:
        text = path.read_text()
        assert "../shared" not in text and "/work/" not in text, path.name
