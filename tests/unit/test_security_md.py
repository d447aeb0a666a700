"""SECURITY.md names the test behind each promise: every reference must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`((?:e2e|unit)/[\w*]+\.py)((?:::\w+)?)`|`::(\w+)`")


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
