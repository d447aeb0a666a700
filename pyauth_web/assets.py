"""Offline assets: fetch the pinned Pyodide and wheels into a cache, and write a bundle.

Nothing here runs in the browser. ``vendor`` uses the ordinary clients (``npm pack`` for the
npm package ``pyodide``, ``pip download`` for wheels); ``bundle`` copies from that cache and
never touches the network.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import brotli

PYODIDE_VERSION = "314.0.7"
PYODIDE_PYTHON = "3.14"
PYODIDE_FILES = (
    "pyodide.js",
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
    "package.json",
)
# Wheels shipped in the bundle. micropip is shipped for host apps that want it; the loader
# itself installs wheels with pyodide.unpackArchive (faster, and no lock-file hash clash).
VENDORED_WHEELS = {"micropip": "micropip==0.7.2", "pyjwt": "pyjwt==2.15.1"}
INSTALLED_AT_BOOT = ("pyjwt", "pyauth_web")

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent


class AssetError(RuntimeError):
    """A bundle input is missing; the message names it and how to get it."""


def default_cache() -> Path:
    env = os.environ.get("PYAUTH_WEB_CACHE")
    if env:
        return Path(env)
    if (SOURCE_ROOT / "pyproject.toml").exists():
        return SOURCE_ROOT / ".cache" / "pyauth-web"
    return Path.home() / ".cache" / "pyauth-web"


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssetError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )


def vendor(cache: Path) -> None:
    """Download the pinned Pyodide npm package and wheels into ``cache`` (idempotent)."""
    pyodide_dir = cache / f"pyodide-{PYODIDE_VERSION}"
    if not (pyodide_dir / "pyodide.asm.wasm").exists():
        cache.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if npm is None:
            raise AssetError(
                f"npm is needed to fetch Pyodide: install Node.js/npm, or run "
                f"`npm pack pyodide@{PYODIDE_VERSION}` elsewhere and unpack its package/ "
                f"folder as {pyodide_dir}"
            )
        print(f"pyauth-web: fetching pyodide@{PYODIDE_VERSION} (npm) into {cache}", flush=True)
        _run([npm, "pack", f"pyodide@{PYODIDE_VERSION}", "--silent"], cwd=cache)
        tgz = cache / f"pyodide-{PYODIDE_VERSION}.tgz"
        tmp = cache / "pyodide-extract"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        shutil.rmtree(pyodide_dir, ignore_errors=True)
        (tmp / "package").rename(pyodide_dir)
        shutil.rmtree(tmp)
        tgz.unlink()
    wheels = cache / "wheels"
    for name, spec in VENDORED_WHEELS.items():
        if not list(wheels.glob(f"{name}-*.whl")):
            print(f"pyauth-web: fetching {spec} (PyPI) into {wheels}", flush=True)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--python-version",
                    PYODIDE_PYTHON,
                    "-d",
                    str(wheels),
                    spec,
                ]
            )


def build_own_wheel(out: Path) -> Path:
    """The pyauth_web wheel to ship: built from the source tree (``python -m build``) in a
    checkout, else packed from the installed package itself (:func:`pack_installed`)."""
    if not (SOURCE_ROOT / "pyproject.toml").exists():
        return pack_installed(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("pyauth_web-*.whl"):
        old.unlink()
    _run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(SOURCE_ROOT),
        ]
    )
    return next(out.glob("pyauth_web-*.whl"))


def pack_installed(out: Path) -> Path:
    """A wheel of the installed pyauth-web distribution (its files as installed, ``.pyc``
    left out, with a new RECORD): what an installed package ships in the bundles it makes."""
    dist = importlib.metadata.distribution("pyauth-web")
    name = f"pyauth_web-{dist.version}-py3-none-any.whl"
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record: list[str] = []
    dist_info = ""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or []:
            parts = file.parts
            if "__pycache__" in parts or file.suffix == ".pyc" or parts[0].startswith(".."):
                continue
            if parts[0].endswith(".dist-info"):
                dist_info = parts[0]
                if file.name in skip:
                    continue
            elif parts[0] != "pyauth_web":
                continue  # e.g. the console script, installed elsewhere
            data = Path(str(dist.locate_file(file))).read_bytes()
            wheel.writestr(file.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{file.as_posix()},sha256={digest.decode()},{len(data)}")
        if not dist_info:
            raise AssetError("the installed pyauth-web has no .dist-info: reinstall it")
        record.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return target


def static_file(name: str) -> Path:
    """The loader or service worker: from the installed package, else from the source tree."""
    for candidate in (
        PACKAGE_DIR / "_static" / name,
        SOURCE_ROOT / ("sw" if name == "sw.js" else "web") / name,
    ):
        if candidate.exists():
            return candidate
    raise AssetError(f"missing {name}: neither pyauth_web/_static/ nor the source tree has it")


class WheelEntry(TypedDict):
    name: str
    file: str


class SnapshotEntry(TypedDict):
    """The memory snapshot made at bundle time: what the loader restores on a first visit
    instead of booting Pyodide, when the link is fast enough (see README, Performance)."""

    file: str  # the memory, gzip-compressed in the file: what a host that serves files as they
    # are sends (the loader unpacks it); not ``*.gz``, or a server would label it gzip-encoded
    plain: str  # the memory as is, with precompressed ``.br``/``.gz`` siblings: what a host
    # serving those sends compressed (the browser unpacks it on the way, off the main thread)
    bytes: int  # the interpreter's memory, uncompressed
    stored: int  # the size of ``file``
    bytecode: str  # site-packages with the wheels installed and compiled (.pyc), one zip
    sysPath: str  # where the loader writes that zip in Pyodide's file system: the snapshot
    # imported the runtime from it (zipimport), so it is on sys.path there already


class Encoded(TypedDict, total=False):
    """A file's size as served: as is, and as each precompressed sibling the bundle has."""

    identity: int
    gzip: int
    br: int


class Manifest(TypedDict):
    """``manifest.json`` of a bundle (read by the loader)."""

    pyodide: str
    snapshotKey: str
    wheels: list[WheelEntry]
    install: list[str]
    snapshot: SnapshotEntry | None
    sizes: dict[str, Encoded]  # the files the loader times and chooses by (paths in the bundle)


@dataclass
class Bundle:
    root: Path
    manifest: Manifest


SNAPSHOT_FILE = "pyodide-snapshot.gz.bin"
"""Not ``*.gz``: static servers would label it ``Content-Encoding: gzip`` and the browser would
unpack it on the way (the loader accepts either, by the gzip magic bytes)."""
SNAPSHOT_PLAIN = "pyodide-snapshot.bin"
BYTECODE_FILE = "site-packages.zip"
SYS_PATH = "/lib/pyauth-web/site-packages.zip"
"""The zip's path inside Pyodide (not the page's URL): the same at bundle time and in the page."""


def make_snapshot(root: Path, wheels: list[Path]) -> SnapshotEntry | None:
    """Make the bundle's memory snapshot with Node (``make-snapshot.mjs``); ``None``, with one
    line on stderr, when Node is missing (the loader then makes one in the browser)."""
    node = shutil.which("node")
    if node is None:
        print(
            "pyauth-web: node not found: the bundle has no prebuilt memory snapshot "
            "(first visits boot Pyodide; install Node.js >= 18 for a faster first visit)",
            file=sys.stderr,
        )
        return None
    script = static_file("make-snapshot.mjs")
    root = root.resolve()
    cmd = [node, str(script), str(root), str(root / SNAPSHOT_PLAIN), str(root / BYTECODE_FILE)]
    cmd.append(SYS_PATH)
    proc = subprocess.run(
        cmd + [str(w) for w in wheels], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise AssetError(f"making the memory snapshot failed: {proc.stderr.strip()[-2000:]}")
    made = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "file": SNAPSHOT_FILE,
        "plain": SNAPSHOT_PLAIN,
        "bytes": int(made["bytes"]),
        "stored": 0,  # known once compressed (bundle)
        "bytecode": BYTECODE_FILE,
        "sysPath": SYS_PATH,
    }


# -- precompressed files ----------------------------------------------------------------------
# Beside each file a browser fetches from the bundle and that compresses well, the bundle writes
# ``X.br`` and ``X.gz``: a server with precompressed files switched on (nginx gzip_static and
# brotli_static, Caddy's ``file_server { precompressed br gzip }``, aiohttp) sends them with
# ``Content-Encoding`` and the browser unpacks them on the way. Measured on this bundle (README,
# Performance): brotli 11 beats gzip 9 by 22 % on the wasm and 33 % on the snapshot; brotli 11
# on the 31 MB snapshot takes ~70 s, 9 takes ~10 s for 16 % more bytes than 11, so files above
# BIG use 9 (the snapshot differs per bundle; Pyodide's own files are compressed once and kept
# in the cache by their digest).
COMPRESSED_SUFFIXES = (".wasm", ".mjs", ".js", ".zip", ".json", ".bin")
MIN_BYTES = 1024
MAX_RATIO = 0.9  # a sibling that saves less than 10 % is not written (python_stdlib.zip: 2 %)
BIG = 16_000_000


def _compressed(data: bytes, encoding: str, cache: Path | None) -> bytes:
    big = len(data) > BIG
    tag = f"br{9 if big else 11}" if encoding == "br" else f"gz{6 if big else 9}"
    kept = cache / f"{hashlib.sha256(data).hexdigest()}.{tag}" if cache else None
    if kept is not None and kept.exists():
        return kept.read_bytes()
    out: bytes
    if encoding == "br":
        out = brotli.compress(data, quality=9 if big else 11, lgwin=24)
    else:
        out = gzip.compress(data, compresslevel=6 if big else 9, mtime=0)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(out)
        tmp.replace(kept)
    return out


def precompress(
    root: Path, cache: Path | None = None, skip: frozenset[Path] = frozenset()
) -> dict[str, Encoded]:
    """Write ``.br`` and ``.gz`` beside the bundle's large files (those that shrink enough, but
    not ``skip``); returns each file's sizes as served, by its path in the bundle."""
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix in COMPRESSED_SUFFIXES and p.stat().st_size >= MIN_BYTES
        and not p.name.endswith((".gz.bin", ".br", ".gz")) and p.parent.name != "wheels"
        and p not in skip
    )

    def one(path: Path) -> tuple[str, Encoded]:
        data = path.read_bytes()
        sizes: Encoded = {"identity": len(data)}
        for encoding, suffix in (("br", ".br"), ("gzip", ".gz")):
            packed = _compressed(data, encoding, cache)
            if len(packed) <= MAX_RATIO * len(data):
                path.with_name(path.name + suffix).write_bytes(packed)
                sizes[encoding] = len(packed)  # type: ignore[literal-required]
        return path.relative_to(root).as_posix(), sizes

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(one, files))


def bundle(
    out: Path, cache: Path, own_wheel: Path | None = None, snapshot: bool = True
) -> Bundle:
    """Write a static folder a host can serve as-is (no network access). With ``snapshot``
    (and Node), it includes a memory snapshot made now, so first visits skip booting."""
    pyodide_dir = cache / f"pyodide-{PYODIDE_VERSION}"
    missing = [f for f in PYODIDE_FILES if not (pyodide_dir / f).exists()]
    if missing:
        raise AssetError(
            f"missing Pyodide {PYODIDE_VERSION} files in {pyodide_dir}: {', '.join(missing)} "
            "(run `pyauth-web vendor` first)"
        )
    wheel_files: dict[str, Path] = {}
    for name in VENDORED_WHEELS:
        found = sorted((cache / "wheels").glob(f"{name}-*.whl"))
        if not found:
            raise AssetError(
                f"missing wheel {name} in {cache / 'wheels'} (run `pyauth-web vendor`)"
            )
        wheel_files[name] = found[-1]
    wheel_files["pyauth_web"] = own_wheel or build_own_wheel(cache / "dist")
    if not wheel_files["pyauth_web"].exists():
        raise AssetError(f"missing wheel {wheel_files['pyauth_web']}")

    shutil.rmtree(out, ignore_errors=True)
    (out / "pyodide").mkdir(parents=True)
    (out / "wheels").mkdir()
    for f in PYODIDE_FILES:
        shutil.copy2(pyodide_dir / f, out / "pyodide" / f)
    for path in wheel_files.values():
        shutil.copy2(path, out / "wheels" / path.name)
    shutil.copy2(static_file("pyauth-web.js"), out / "pyauth-web.js")
    shutil.copy2(static_file("sw.js"), out / "sw.js")
    shutil.copy2(static_file("pyauth-web.d.ts"), out / "pyauth-web.d.ts")
    digest = hashlib.sha256(PYODIDE_VERSION.encode())
    for path in sorted(wheel_files.values()):
        digest.update(path.name.encode() + path.read_bytes())
    manifest: Manifest = {
        "pyodide": PYODIDE_VERSION,
        # Names the memory snapshot the loader caches: a new bundle never uses an old one.
        "snapshotKey": digest.hexdigest()[:16],
        "wheels": [{"name": n, "file": p.name} for n, p in wheel_files.items()],
        "install": list(INSTALLED_AT_BOOT),
        "snapshot": None,
        "sizes": {},
    }
    # The files there are now are compressed while Node makes the snapshot (two processes).
    made_now = frozenset({out / SNAPSHOT_PLAIN, out / BYTECODE_FILE})
    with ThreadPoolExecutor(max_workers=1) as background:
        early = background.submit(precompress, out, cache / "compressed", made_now)
        if snapshot:
            at_boot = [wheel_files[name] for name in INSTALLED_AT_BOOT]
            manifest["snapshot"] = make_snapshot(out, [out / "wheels" / w.name for w in at_boot])
        sizes = early.result()
    sizes.update(precompress(out, cache / "compressed", frozenset(out / p for p in sizes)))
    if manifest["snapshot"] is not None:
        made = manifest["snapshot"]
        # The gzip sibling doubles as the copy for hosts that serve files as they are.
        shutil.copyfile(out / f"{made['plain']}.gz", out / made["file"])
        made["stored"] = (out / made["file"]).stat().st_size
        manifest["sizes"] = {p: sizes[p] for p in (made["plain"], made["bytecode"]) if p in sizes}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Bundle(out, manifest)
