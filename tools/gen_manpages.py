"""Write the man pages (``man/man8/*.8``) from the command table.

ocirun/manpage.py renders ocirun(8) and one ocirun-COMMAND(8) per command from
ocirun/cmdtable.py and the prose in ocirun/cmdhelp.py; the pages are committed
and installed with the package (setup.cfg ``data_files``: share/man/man8).

Usage::

    python3 tools/gen_manpages.py            # rewrite man/man8/
    python3 tools/gen_manpages.py --check    # exit 1 if a page is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "man" / "man8"
sys.path.insert(0, str(REPO))

from ocirun import manpage


def main(argv: list[str]) -> int:
    check = "--check" in argv
    pages = manpage.pages()
    stale = sorted(p.name for p in TARGET.glob("*.8") if p.name not in pages) if TARGET.is_dir() else []
    changed = [name for name, text in pages.items()
               if not (TARGET / name).is_file() or (TARGET / name).read_text() != text]
    if check:
        for name in changed + stale:
            print(f"out of date: man/man8/{name}", file=sys.stderr)
        return 1 if changed or stale else 0
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (TARGET / name).unlink()
    for name in changed:
        (TARGET / name).write_text(pages[name])
    print(f"man/man8: {len(changed)} written, {len(stale)} removed, {len(pages)} pages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
