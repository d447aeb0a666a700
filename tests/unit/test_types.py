"""Issue 12 item 2: the shipped TypeScript declarations (web/pyauth-web.d.ts) type a host page.
A sample host compiles against them with TypeScript's own checker (npm typescript, pinned in
tools/jscheck); a file that misuses the API fails with one error per misuse. The run-time check
(the declared members are exactly the real object's) is tests/e2e/test_declared_members.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / "tools" / "jscheck" / "node_modules" / ".bin" / "tsc"
FLAGS = ["--noEmit", "--strict", "--target", "es2022", "--lib", "es2022,dom,dom.iterable"]


def tsc(*files: Path) -> subprocess.CompletedProcess[str]:
    assert TSC.exists(), f"{TSC} missing: run `make setup`"
    return subprocess.run(
        [str(TSC), *FLAGS, *map(str, files)], capture_output=True, text=True, timeout=120
    )


def test_a_typescript_host_compiles_against_the_declarations() -> None:
    result = tsc(ROOT / "tests" / "types" / "host.ts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_misuses_are_type_errors() -> None:
    result = tsc(ROOT / "tests" / "types" / "wrong.ts")
    errors = re.findall(r"wrong\.ts\((\d+),\d+\): error TS\d+", result.stdout)
    assert sorted({int(line) for line in errors}) == [4, 5, 6, 7, 8], result.stdout
