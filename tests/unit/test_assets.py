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


def test_precompress_writes_copies_that_unpack_to_the_file_and_skips_what_does_not_shrink(
    tmp_path: Path,
) -> None:
    import gzip
    import os

    import brotli

    text = (b"pyauth-web " * 5000)
    noise = os.urandom(50_000)  # does not shrink: no copies
    (tmp_path / "a.js").write_bytes(text)
    (tmp_path / "b.zip").write_bytes(noise)
    (tmp_path / "small.json").write_bytes(b"{}")  # under MIN_BYTES
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "w.zip").write_bytes(text)  # wheels are not fetched by browsers
    sizes = assets.precompress(tmp_path, tmp_path / "cache")
    assert set(sizes) == {"a.js", "b.zip"}
    assert sizes["b.zip"] == {"identity": len(noise)}
    assert not (tmp_path / "b.zip.gz").exists() and not (tmp_path / "b.zip.br").exists()
    assert gzip.decompress((tmp_path / "a.js.gz").read_bytes()) == text
    assert brotli.decompress((tmp_path / "a.js.br").read_bytes()) == text
    assert sizes["a.js"]["br"] == (tmp_path / "a.js.br").stat().st_size < len(text) * 0.9
    assert not (tmp_path / "small.json.gz").exists() and not (tmp_path / "wheels/w.zip.gz").exists()
    again = assets.precompress(tmp_path, tmp_path / "cache")  # copies are not compressed again
    assert again == sizes
