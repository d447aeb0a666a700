from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyauth_web import assets


def test_bundle_names_a_missing_asset(tmp_path: Path) -> None:
    with pytest.raises(assets.AssetError) as info:
        assets.bundle(tmp_path / "out", tmp_path / "empty-cache", own_wheel=tmp_path / "x.whl")
    assert "pyodide.asm.wasm" in str(info.value) and "pyauth-web vendor" in str(info.value)


def test_cli_reports_missing_assets_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyauth_web",
            "--cache",
            str(tmp_path / "empty"),
            "bundle",
            "--offline",
            str(tmp_path / "out"),
            "--wheel",
            str(tmp_path / "x.whl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith("pyauth-web: missing Pyodide") and "Traceback" not in result.stderr
    )
