"""SECURITY.md names the test behind each promise: every reference must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`((?:e2e|unit)/[\w*/]+\.py)((?:::\w+)?)`|`::(\w+)`")


def test_every_test_security_md_names_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    checked, current = 0, None
    for path, func, sibling in REFERENCE.findall(text):
        if sibling:  # `::name` after a full reference: the same file
            assert current is not None, sibling
            func, files = "::" + sibling, [current]
        else:
            files = sorted((ROOT / "tests").glob(path))
            assert files, f"SECURITY.md names {path}, which does not exist"
            current = files[0]
        if func:
            name = func[2:]
            assert any(re.search(rf"^def {name}\(", f.read_text(), re.M) for f in files), (
                f"SECURITY.md names {path or current}::{name}, which does not exist"
            )
        checked += 1
    assert checked >= 25


def test_every_promise_names_a_test_in_full() -> None:
    """Each row of the promises table names at least one test, and every test name in the file
    is written with its path (so the check above covers it)."""
    text = (ROOT / "SECURITY.md").read_text()
    table = text.split("## Promises, each with its test", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    rows = rows[1:]  # the header
    assert len(rows) >= 20
    for row in rows:
        promise, tests = row.strip("| ").rsplit(" | ", 1)
        assert REFERENCE.search(tests), f"no test named for: {promise}"
    referenced = {m.span() for m in REFERENCE.finditer(text)}
    for m in re.finditer(r"`(test_\w+)`", text):
        assert any(a <= m.start() < b for a, b in referenced), f"{m.group(1)} without its path"
