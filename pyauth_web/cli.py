"""Command line: ``pyauth-web vendor | bundle OUT_DIR | demo``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import threading
from pathlib import Path

from . import assets


def _version() -> str:
    try:
        return importlib.metadata.version("pyauth-web")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        from . import __version__

        return __version__


def _cmd_vendor(args: argparse.Namespace) -> int:
    assets.vendor(args.cache)
    print(f"assets ready in {args.cache}")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    if not args.offline:
        assets.vendor(args.cache)  # fetches only what the cache lacks, one line per download
    result = assets.bundle(args.out, args.cache, args.wheel, snapshot=not args.no_snapshot)
    print(f"bundle written to {result.root} (serve it as-is; register its sw.js at your root)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo.common import RealmLog
    from .demo.servers import Issuer, ServerThread, host_app, realm_app

    assets.vendor(args.cache)
    out = args.cache / "demo-bundle"
    assets.bundle(out, args.cache, args.wheel)
    servers = ServerThread()
    log = RealmLog()
    realm_origin = servers.serve(realm_app(log=log), port=args.port + 1)
    host_origin = servers.serve(
        host_app(out, issuer=Issuer(ttl=args.ttl), page_vars={"REALM": realm_origin + "/"}),
        port=args.port,
    )
    print(
        f"pyauth-web demo: open {host_origin}/  (realm server {realm_origin}/, Ctrl-C to stop)",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        servers.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyauth-web", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyauth-web {_version()}")
    parser.add_argument(
        "--cache",
        type=Path,
        default=assets.default_cache(),
        help="where downloaded Pyodide/wheels are kept (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("vendor", help="download the pinned Pyodide npm package and wheels")
    p.set_defaults(func=_cmd_vendor)

    p = sub.add_parser(
        "bundle", help="write a static folder to serve (loader, sw.js, Pyodide, wheels)"
    )
    p.add_argument("out", type=Path)
    p.add_argument("--wheel", type=Path, help="pyauth_web wheel to ship (default: build it)")
    p.add_argument("--fetch", action="store_true", help="(the default now: kept for old scripts)")
    p.add_argument(
        "--offline", action="store_true", help="fetch nothing: fail, naming what is missing"
    )
    p.add_argument(
        "--no-snapshot",
        action="store_true",
        help="ship no prebuilt memory snapshot (the first visit in each browser makes one)",
    )
    p.set_defaults(func=_cmd_bundle)

    p = sub.add_parser("demo", help="run the demo: host page, realm server, token issuer")
    p.add_argument("--port", type=int, default=8765, help="host port; the realm uses port+1")
    p.add_argument("--ttl", type=float, default=120.0, help="lifetime of minted tokens (s)")
    p.add_argument("--wheel", type=Path)
    p.set_defaults(func=_cmd_demo)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except assets.AssetError as exc:
        print(f"pyauth-web: {exc}", file=sys.stderr)
        return 2
