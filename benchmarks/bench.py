"""pyauth-web benchmark: headless Chromium, real bundle, loopback servers.

Prints one table; every figure is a median over repeated runs with min/max, and each comparison
(runtime vs bare Pyodide, Python vs JS handler) is measured side by side in the same run.
Sections (``--only``): see SECTIONS; ``network`` throttles in a proxy (benchmarks/throttle.py),
``host`` measures the host page's main thread, ``nonrealm`` what the worker costs other requests.

    make bench            # or: .venv/bin/python benchmarks/bench.py --runs 5 --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import psutil  # type: ignore[import-untyped]
from aiohttp import web
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from throttle import Budget, Profile, ThrottleProxy

from pyauth_web import assets, dpop
from pyauth_web.demo.browser import launch_chromium, load_playwright_config, stop_service_workers
from pyauth_web.demo.common import RealmLog, verify
from pyauth_web.demo.servers import DEMO_SECRET, Issuer, ServerThread, host_app, realm_app, svg
from pyauth_web.protocol import STATE_CACHE
from pyauth_web.tokens import DEFAULT_STORAGE_KEY

PAGES = Path(__file__).with_name("pages")
ENGINES_DIR = Path(__file__).parent.parent / "tests" / "e2e" / "engines"  # the thin drivers
STORAGE_KEY = DEFAULT_STORAGE_KEY


CONFIG = load_playwright_config()
SAVED = "() => performance.getEntriesByName('pyauth-web:snapshot-saved').length > 0"


class ShiftedClock:
    """The realm server's and issuer's clock, moved along with the pages' fake clock."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Bench:
    def __init__(
        self, browser: Browser, host: str, realm: str, issuer: Issuer, clock: ShiftedClock
    ) -> None:
        self.browser, self.host, self.realm, self.issuer = browser, host, realm, issuer
        self.clock = clock
        self.thread: ServerThread
        self.baseline: str | None = None  # a host serving another bundle (--baseline), if any
        self.bundle: Path  # the bundle the host serves (the network section serves it again)

    def context(self) -> BrowserContext:
        ctx = self.browser.new_context()
        ctx.set_default_timeout(CONFIG.BOOT_TIMEOUT_MS)
        return ctx

    def ready_ms(self, page: Page, timeout_ms: float = 120_000) -> float:
        """Navigation start -> pyauthWeb.ready (the loader's performance mark)."""
        page.wait_for_function("() => !!window.pyauthWeb", timeout=timeout_ms)
        awaited(page, "() => pyauthWeb.ready.then(() => true)", timeout_ms)
        return float(
            page.evaluate("() => performance.getEntriesByName('pyauth-web:ready')[0].startTime")
        )

    def boot(self) -> dict[str, float]:
        """Cold (new context) and warm (reload: HTTP cache warm) boots, runtime and bare."""
        out: dict[str, float] = {}
        ctx = self.context()
        page = ctx.new_page()
        page.goto(f"{self.host}/b/python-handler.html")
        out["runtime_cold"] = self.ready_ms(page)
        # warm: a later visit, once the first one has stored its snapshot (in the background)
        page.wait_for_function(SAVED, timeout=10_000)
        page.reload()
        out["runtime_warm"] = self.ready_ms(page)
        ctx.close()
        ctx = self.context()
        page = ctx.new_page()
        page.goto(f"{self.host}/b/bare-pyodide.html")
        out["bare_cold"] = float(page.evaluate("() => window.bareReady"))
        page.reload()
        out["bare_warm"] = float(page.evaluate("() => window.bareReady"))
        ctx.close()
        return out

    def _controlled(
        self,
        page: Page,
        url: str,
        token: str,
        extra: dict[str, str] | None = None,
        settle: bool = True,
    ) -> None:
        page.goto(url)
        session = {self.realm: token, **(extra or {})}
        page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, json.dumps(session)])
        page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
        # The loader's first visit stores its snapshot in the background: let it finish, so
        # that what is measured next is a later visit, not one competing with that write.
        if settle:  # (not under a fake clock, where counts matter, not latency)
            page.wait_for_function(f"() => !window.pyauthWeb || ({SAVED})()", timeout=20_000)
        page.reload()  # now controlled, with the token in storage
        page.wait_for_function("() => !!navigator.serviceWorker.controller")

    def roundtrips(self, n: int) -> dict[str, list[float]]:
        """SW -> page -> SW token round trips, timed inside the worker: Python vs JS with one
        realm, Python with 100 realms in storage ("python100"), and with ``--baseline`` the
        Python handler of the baseline bundle ("baseline"), each run in the same sequence."""
        token = self.issuer.mint(self.realm, ttl=3600)
        many = {f"{self.realm}r{i}/": token for i in range(99)}
        out: dict[str, list[float]] = {}
        cases = [
            ("python", self.host, "python-handler.html", {}),
            ("js", self.host, "js-handler.html", {}),
            ("python100", self.host, "python-handler.html", many),
        ]
        if self.baseline:
            cases.insert(1, ("baseline", self.baseline, "python-handler.html", {}))
        for name, host, path, extra in cases:
            ctx = self.context()
            page = ctx.new_page()
            self._controlled(page, f"{host}/b/{path}", token, extra)
            if name.startswith("python"):
                page.evaluate("() => pyauthWeb.ready.then(() => true)")
            out[name] = page.evaluate(
                """([n, url, app]) => new Promise((resolve) => {
                  navigator.serviceWorker.addEventListener('message', (e) => {
                    if (e.data && e.data.type === 'bench-result') resolve(e.data.times);
                  });
                  const msg = {type: 'bench-roundtrip', app, n, url};
                  navigator.serviceWorker.controller.postMessage(msg);
                })""",
                [n, f"{self.realm}img/rt-", STORAGE_KEY],
            )
            ctx.close()
        return out

    def first_paint(self, keep_worker_state: bool) -> int:
        """Images (of 50) that load on first paint with the token only in localStorage."""
        token = self.issuer.mint(self.realm, ttl=3600)
        ctx = self.context()
        page = ctx.new_page()
        self._controlled(page, f"{self.host}/b/python-handler.html", token)
        page.evaluate("() => pyauthWeb.ready.then(() => true)")
        if not keep_worker_state:  # a worker that knows nothing: every image needs the page
            forget_worker(ctx, page)
        page.goto(f"{self.host}/b/images.html?run={uuid.uuid4().hex[:8]}")
        page.wait_for_function(
            "() => [...document.images].every((i) => i.complete)", timeout=20_000
        )
        loaded = int(
            page.evaluate("() => [...document.images].filter((i) => i.naturalWidth > 0).length")
        )
        ctx.close()
        return loaded

    def refresh_across_expiry(self, tabs: int = 5) -> tuple[int, int]:
        """(refresh requests, images loaded of tabs*50) when every tab's token expires at once."""
        ctx = self.context()
        ctx.clock.install()
        first = ctx.new_page()
        self._controlled(
            first,
            f"{self.host}/b/python-handler.html",
            self.issuer.mint(self.realm, ttl=3600),
            settle=False,
        )
        run = uuid.uuid4().hex[:8]
        pages = [ctx.new_page() for _ in range(tabs)]
        for page in pages:
            page.goto(f"{self.host}/b/images.html?run={run}")
        for page in pages:
            page.evaluate("() => pyauthWeb.ready.then(() => true)")
        first.close()
        since = time.time()
        self.clock.offset = 3600.0
        ctx.clock.fast_forward("01:00:00")  # every tab's token is past its skew margin now
        for page in pages:  # each tab waits until it holds a fresh token again
            page.wait_for_function(
                "async () => (await pyauthWeb.state()).tokens.every((t) => t.fresh)"
            )
        loaded = sum(int(page.evaluate("() => loadImages(1)")) for page in pages)
        self.clock.offset = 0.0
        refreshes = len(self.issuer.refreshes(since))
        ctx.close()
        return refreshes, loaded

    def first_visit(self, n: int = 10) -> dict[str, float]:
        """A new profile, signed in on a page without the loader, then a first visit to a page
        with ``n`` realm images: ms from navigation to the first and to the last image, all
        authenticated (a request without the header gets a 401, not an image)."""
        token = self.issuer.mint(self.realm, ttl=3600)
        ctx = self.context()
        page = ctx.new_page()
        page.goto(f"{self.host}/pyauth/manifest.json")  # the host's login page, say
        session = json.dumps({self.realm: token})
        page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, session])
        page.goto(f"{self.host}/b/many.html?n={n}&run={uuid.uuid4().hex[:8]}")
        page.wait_for_function(f"() => loaded() === {n}", timeout=20_000)
        out = {
            "first": float(page.evaluate("() => window.__firstImage")),
            "last": float(page.evaluate("() => window.__lastImage")),
        }
        ctx.close()
        return out

    def many_images(self, n: int, keep_worker_state: bool) -> dict[str, float]:
        """A controlled page with ``n`` realm images in its HTML: how many load, in how long,
        and how many token requests the worker sent the page."""
        token = self.issuer.mint(self.realm, ttl=3600)
        ctx = self.context()
        page = ctx.new_page()
        self._controlled(page, f"{self.host}/b/python-handler.html", token)
        page.evaluate("() => pyauthWeb.ready.then(() => true)")
        if not keep_worker_state:
            forget_worker(ctx, page)
        page.goto(f"{self.host}/b/many.html?n={n}&run={uuid.uuid4().hex[:8]}")
        page.wait_for_function("() => settled()", timeout=60_000)
        out = {
            "loaded": float(page.evaluate("() => loaded()")),
            "ms": float(page.evaluate("() => window.__lastImage")),
            "asks": float(page.evaluate("() => window.__tokenRequests")),
        }
        ctx.close()
        return out

    def memory_per_tab(self, tabs: int) -> float:
        """MB of memory (unique set size of Chromium's processes) each of ``tabs`` more ready
        app tabs adds, next to a first one whose worker and snapshot are in place."""
        ctx = self.context()
        warm = ctx.new_page()
        warm.goto(f"{self.host}/b/python-handler.html")
        warm.evaluate("() => pyauthWeb.ready.then(() => true)")
        warm.wait_for_function(SAVED, timeout=10_000)
        before = chromium_uss()  # the browser, the worker and this first tab
        pages = [ctx.new_page() for _ in range(tabs)]
        for page in pages:
            page.goto(f"{self.host}/b/python-handler.html")
        for page in pages:
            page.evaluate("() => pyauthWeb.ready.then(() => true)")
        added = (chromium_uss() - before) / tabs
        ctx.close()
        return added

    def host_pyodide_memory(self, external: bool) -> float:
        """MB (USS) one tab adds whose host runs its own Pyodide, with the runtime attached to it
        (``external``) or in a second interpreter next to it."""
        ctx = self.context()
        warm = ctx.new_page()
        warm.goto(f"{self.host}/b/python-handler.html")
        warm.evaluate("() => pyauthWeb.ready.then(() => true)")
        warm.wait_for_function(SAVED, timeout=10_000)
        before = chromium_uss()
        page = ctx.new_page()
        mode = "external" if external else "own"
        page.goto(f"{self.host}/b/host-pyodide.html?pyodide={mode}")
        page.evaluate("() => window.hostReady")
        added = chromium_uss() - before
        ctx.close()
        return added

    def memory(self) -> dict[str, float]:
        """JS heap (CDP) and wasm memory of a page after ready, in MB."""
        ctx = self.context()
        page = ctx.new_page()
        page.goto(f"{self.host}/b/python-handler.html")
        page.evaluate("() => pyauthWeb.ready.then(() => true)")
        page.reload()  # the steady state: started from the snapshot
        page.evaluate("() => pyauthWeb.ready.then(() => true)")
        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        wasm = page.evaluate("() => pyauthWeb.pyodide._module.HEAP8.buffer.byteLength")
        ctx.close()
        return {"js_heap": metrics["JSHeapUsedSize"] / 1e6, "wasm": wasm / 1e6}


def awaited(page: Page, fn: str, timeout_ms: float, arg: Any = None) -> Any:
    """The value of the page's (async) function ``fn`` (JS source) called with ``arg``; an error
    if it has not settled within ``timeout_ms`` (``page.evaluate`` alone waits forever)."""
    return page.evaluate(
        f"""(arg) => Promise.race([
          Promise.resolve(({fn})(arg)),
          new Promise((_, no) => setTimeout(
            () => no(new Error('timed out after {timeout_ms:.0f} ms')), {timeout_ms:.0f})),
        ])""",
        arg,
    )


def forget_worker(ctx: BrowserContext, page: Page) -> None:
    """Delete the worker's saved state and stop it: its next start knows nothing."""
    page.evaluate("(c) => caches.delete(c)", STATE_CACHE)
    stop_service_workers(ctx, page)


def chromium_uss() -> float:
    """MB: the unique set size of every Chromium process this benchmark started (psutil)."""
    total = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name():
                total += proc.memory_full_info().uss
        except psutil.Error:  # a process that ended meanwhile
            continue
    return total / 1e6


def summary(values: list[float], digits: int = 1) -> str:
    """Median (min–max); ratios get two decimals (a target of 0.25 is not read off 0.3)."""
    low, high = min(values), max(values)
    return f"{statistics.median(values):8.{digits}f}  ({low:.{digits}f}–{high:.{digits}f})"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Row = tuple[str, str, str]


def boot_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    boots = [bench.boot() for _ in range(args.runs)]
    col = {k: [b[k] for b in boots] for k in boots[0]}
    rows: list[Row] = []
    for temp in ("cold", "warm"):
        rt, bare = col[f"runtime_{temp}"], col[f"bare_{temp}"]
        ratios = [r / b for r, b in zip(rt, bare, strict=True)]
        rows.append(
            (f"boot-to-ready, {temp} (ms)", summary(rt), f"bare loadPyodide {summary(bare)}")
        )
        target = "target ≤ 1.0" if temp == "cold" else "target ≤ 0.25"
        rows.append((f"  ratio runtime/bare, {temp}", summary(ratios, 2), target))
    return rows


def roundtrip_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    p50s: dict[str, list[float]] = {"python": [], "js": [], "python100": [], "baseline": []}
    p99s: dict[str, list[float]] = {"python": [], "js": [], "python100": [], "baseline": []}
    for _ in range(args.runs):
        for name, values in bench.roundtrips(args.requests).items():
            p50s[name].append(percentile(values, 0.50))
            p99s[name].append(percentile(values, 0.99))
    rows: list[Row] = []
    if bench.baseline:
        for q, data in (("p50", p50s), ("p99", p99s)):
            ratios = [p / b for p, b in zip(data["python"], data["baseline"], strict=True)]
            rows.append((f"token answer {q} (ms), Python, baseline bundle",
                         summary(data["baseline"]), str(args.baseline)))
            rows.append((f"  ratio this bundle/baseline {q}", summary(ratios, 2),
                         "target p99 ≤ 1.1" if q == "p99" else ""))
    for q, data in (("p50", p50s), ("p99", p99s)):
        js_note = f"JS handler {summary(data['js'])}"
        rows.append((f"token answer {q} (ms), Python", summary(data["python"]), js_note))
        ratios = [p / j for p, j in zip(data["python"], data["js"], strict=True)]
        rows.append((f"  ratio Python/JS {q}", summary(ratios, 2), "target p99 ≤ 1.2, < 10 ms"))
    many = p99s["python100"]
    ratios = [m / one for m, one in zip(many, p99s["python"], strict=True)]
    rows.append(("token answer p99 (ms), 100 realms stored", summary(many), "1 realm: above"))
    rows.append(("  ratio 100 realms/1 realm p99", summary(ratios, 2), ""))
    return rows


def first_visit_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    visits = [bench.first_visit() for _ in range(args.runs)]
    note = "signed in, new profile, 10 realm <img>"
    return [
        ("first visit: navigation -> 1st authenticated image (ms)",
         summary([v["first"] for v in visits]), note),
        ("first visit: navigation -> all 10 images (ms)", summary([v["last"] for v in visits]),
         ""),
    ]


def scale_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for keep, label in ((False, "worker knows nothing"), (True, "worker state kept")):
        runs = [bench.many_images(500, keep) for _ in range(args.runs)]
        rows.append((f"500 realm images ({label}): loaded", summary([r["loaded"] for r in runs]),
                     "target 500"))
        rows.append(("  worker -> page token requests", summary([r["asks"] for r in runs]), ""))
        rows.append(("  navigation -> last image (ms)", summary([r["ms"] for r in runs]), ""))
    expiry = [bench.refresh_across_expiry(tabs=20) for _ in range(args.runs)]
    rows.append(("refresh requests, 20 tabs x 50 images, one expiry",
                 summary([float(r) for r, _ in expiry]), "target 1"))
    rows.append(("  images loaded after the expiry (of 1000)",
                 summary([float(n) for _, n in expiry]), "target 1000"))
    return rows


def first_paint_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for keep, label in ((False, "worker knows nothing"), (True, "worker state kept")):
        counts = [float(bench.first_paint(keep)) for _ in range(args.runs)]
        rows.append((f"first-paint images of 50 ({label})", summary(counts), "target 50"))
    return rows


def expiry_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    expiry = [bench.refresh_across_expiry() for _ in range(args.runs)]
    refreshes = summary([float(r) for r, _ in expiry])
    loaded = summary([float(n) for _, n in expiry])
    return [
        ("refresh requests, 5 tabs x 50 images, one expiry", refreshes, "target 1"),
        ("  images loaded after the expiry (of 250)", loaded, "target 250"),
    ]


def memory_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    mem = [bench.memory() for _ in range(args.runs)]
    rows: list[Row] = [
        ("memory after ready: JS heap (MB)", summary([m["js_heap"] for m in mem]), ""),
        ("memory after ready: wasm (MB)", summary([m["wasm"] for m in mem]), ""),
    ]
    attached = [bench.host_pyodide_memory(True) for _ in range(args.runs)]
    separate = [bench.host_pyodide_memory(False) for _ in range(args.runs)]
    rows.append(("host runs Pyodide: tab memory, attached (MB, USS)", summary(attached),
                 f"separate interpreter {summary(separate)}"))
    for tabs in (1, 3, 5):
        added = [bench.memory_per_tab(tabs) for _ in range(args.runs)]
        rows.append((f"memory added per extra tab, {tabs} more (MB, USS)", summary(added), ""))
    return rows


def latency_realm() -> web.Application:
    """A realm that answers every image at once (the client's cost of DPoP, apart from a server's
    checks): Bearer under /b/, DPoP (with a proof) under /d/, same origin; anything else 401s,
    so a request that went without its header shows as a failed image."""

    async def image(request: web.Request) -> web.Response:
        scheme = (request.headers.get("Authorization") or "none").split(" ")[0]
        expected = "DPoP" if request.match_info["realm"] == "d" else "Bearer"
        ok = request.method == "OPTIONS" or (scheme == expected) == ("DPoP" in request.headers)
        return web.Response(
            text='<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>',
            content_type="image/svg+xml",
            status=200 if ok and (request.method == "OPTIONS" or scheme == expected) else 401,
            headers={
                "Access-Control-Allow-Origin": request.headers.get("Origin") or "*",
                "Access-Control-Allow-Headers": "Authorization, DPoP",
                "Access-Control-Max-Age": "600",
                "Cache-Control": "no-store",
            },
        )

    app = web.Application()
    app.router.add_route("*", "/{realm}/img/{name}", image)
    return app


IMAGE_MS = """async ([urls, n]) => {
  // n images from each URL prefix, alternating one by one: both see the same machine state.
  const out = urls.map(() => []);
  for (let i = 0; i < n; i++) {
    for (const [k, url] of urls.entries()) {
      const t0 = performance.now();
      const ok = await new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve(true);
        img.onerror = () => resolve(false);
        img.src = `${url}${i}-${Math.random()}`;
      });
      if (!ok) throw new Error(`image failed: ${url}`);  // measured only when authenticated
      out[k].push(performance.now() - t0);
    }
  }
  return out;
}"""


WORKER_PROOF_MS = """async ([app, token, url, n]) => {
  // Inside the service worker: its own proofFor() with the app's key from IndexedDB (keyOf),
  // as for every image request once the key is read.
  const key = await keyOf(app);
  if (!key) throw new Error('no DPoP key in the worker');
  const entry = { token };
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await proofFor(key, entry, 'GET', `${url}${i}`);
    out.push(performance.now() - t0);
  }
  return out;
}"""


def dpop_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    """Image latency through the worker, DPoP vs Bearer, interleaved in one page and run."""
    origin = bench.thread.serve(latency_realm())
    bearer_realm, dpop_realm = f"{origin}/b/", f"{origin}/d/"
    # "bearer2": a second Bearer realm, the A/A control: how far two identical sides differ
    p50: dict[str, list[float]] = {"bearer": [], "dpop": [], "bearer2": []}
    p99: dict[str, list[float]] = {"bearer": [], "dpop": [], "bearer2": []}
    held50: dict[str, list[float]] = {"bearer": [], "dpop": []}
    held99: dict[str, list[float]] = {"bearer": [], "dpop": []}
    sign50: list[float] = []
    sign99: list[float] = []
    n = max(100, args.requests // 2)
    for _ in range(args.runs):
        ctx = bench.context()
        page = ctx.new_page()
        page.goto(f"{bench.host}/b/python-handler.html")
        bench.ready_ms(page)
        proof = page.evaluate("(u) => pyauthWeb.dpopProof('GET', u)", dpop_realm)
        jwk = jwt.get_unverified_header(proof)["jwk"]
        jkt = dpop.thumbprint(jwk)
        bound = jwt.encode(
            {"exp": int(time.time()) + 3600, "cnf": {"jkt": jkt}}, "k" * 32, algorithm="HS256"
        )
        plain = jwt.encode({"exp": int(time.time()) + 3600}, "k" * 32, algorithm="HS256")
        page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [bearer_realm, plain])
        page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [dpop_realm, bound])
        page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [f"{origin}/c/", plain])
        prefixes = [f"{bearer_realm}img/", f"{dpop_realm}img/", f"{origin}/c/img/"]
        page.evaluate(IMAGE_MS, [prefixes, 20])  # warm-up: keys read, nonces, connections
        worker = ctx.service_workers[0]  # bench-sw.js: the real sw.js (importScripts) + hooks
        worker.evaluate("() => { held.length = 0; }")
        bearer, bound, bearer2 = page.evaluate(IMAGE_MS, [prefixes, n])
        kept: list[list[object]] = worker.evaluate("() => held")
        values = {"bearer": bearer, "dpop": bound, "bearer2": bearer2}
        for name in values:
            p50[name].append(percentile(values[name], 0.50))
            p99[name].append(percentile(values[name], 0.99))
        for name, prefix in (("bearer", prefixes[0]), ("dpop", prefixes[1])):
            times = [float(str(ms)) for url, ms in kept if str(url).startswith(prefix)]
            if len(times) != n:
                raise SystemExit(f"bench: the worker sent {len(times)} of {n} {name} images")
            held50[name].append(percentile(times, 0.50))
            held99[name].append(percentile(times, 0.99))
        signing = worker.evaluate(WORKER_PROOF_MS, [STORAGE_KEY, bound, prefixes[1], args.requests])
        sign50.append(percentile(signing, 0.50))
        sign99.append(percentile(signing, 0.99))
        ctx.close()
    rows: list[Row] = []
    for q, data in (("p50", p50), ("p99", p99)):
        added = [d - b for d, b in zip(data["dpop"], data["bearer"], strict=True)]
        rows.append((f"image via worker {q} (ms), DPoP", summary(data["dpop"]),
                     f"Bearer {summary(data['bearer'])}"))
        rows.append((f"  DPoP added {q} (ms)", summary(added),
                     "target p99 ≤ 2 ms" if q == "p99" else f"{n} images per run"))
        control = [c - b for c, b in zip(data["bearer2"], data["bearer"], strict=True)]
        rows.append((f"  A/A control: Bearer - Bearer {q} (ms)", summary(control),
                     "two identical sides: the noise floor of the row above"))
    for q, data in (("p50", held50), ("p99", held99)):
        added = [d - b for d, b in zip(data["dpop"], data["bearer"], strict=True)]
        rows.append((f"worker holds an image {q} (ms), DPoP", summary(data["dpop"]),
                     f"Bearer {summary(data['bearer'])} (fetch event -> its fetch())"))
        rows.append((f"  DPoP added in the worker {q} (ms)", summary(added),
                     "target p99 ≤ 2 ms" if q == "p99" else ""))
    rows.append(("worker: proof per request p50 (ms)", f"{statistics.median(sign50):8.2f}",
                 f"p99 {statistics.median(sign99):.2f} ms (sw.js proofFor, in the worker)"))
    return rows


def snapshot_rows(bundle: Path) -> list[Row]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    shipped = manifest["snapshot"]
    if shipped is None:
        return [("snapshot", "    none", "bundle made without Node")]
    sent = manifest.get("sizes", {}).get(shipped.get("plain"), {})
    brotli = f"brotli {sent['br'] / 1e6:.1f} MB" if "br" in sent else ""
    return [
        ("snapshot: shipped, gzip (MB)", f"{shipped['stored'] / 1e6:8.1f}",
         f"downloaded once, when the link makes it pay; {brotli}"),
        ("snapshot: kept in Cache Storage (MB)", f"{shipped['bytes'] / 1e6:8.1f}", "unpacked"),
    ]


def engine_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    """Per engine (Chromium, Firefox, WebKit), through the cross-engine drivers: boot-to-ready
    cold and warm against a bare loadPyodide() in the same engine, the first visit to the first
    authenticated image, and the token answer p99 against the hand-written JS handler. Ratios
    are taken within each engine, run by run."""
    sys.path.insert(0, str(ENGINES_DIR))
    from drivers import (  # type: ignore[import-not-found]
        ENGINES,
        Chromium,
        Engine,
        Firefox,
        WebKit,
    )

    rows: list[Row] = []
    token = bench.issuer.mint(bench.realm, ttl=3600)
    session = json.dumps({bench.realm: token})
    for name in ENGINES:
        engine: Engine = (Chromium(bench.browser) if name == "chromium"
                          else Firefox() if name == "firefox" else WebKit())
        col: dict[str, list[float]] = {}
        try:
            for _ in range(args.runs):
                for key, value in engine_run(engine, bench, args, session).items():
                    col.setdefault(key, []).append(value)
        finally:
            engine.quit()
        rows.append((f"{name} {engine.version}", "", ""))
        for temp in ("cold", "warm"):
            rt, bare = col[f"runtime_{temp}"], col[f"bare_{temp}"]
            rows.append((f"  boot-to-ready, {temp} (ms)", summary(rt),
                         f"bare loadPyodide {summary(bare)}"))
            rows.append((f"    ratio runtime/bare, {temp}",
                         summary([r / b for r, b in zip(rt, bare, strict=True)], 2), ""))
        rows.append(("  first visit -> 1st authenticated image (ms)", summary(col["first_image"]),
                     "signed in, new profile, 10 realm <img>"))
        py, js = col["python_p99"], col["js_p99"]
        rows.append(("  token answer p99 (ms), Python", summary(py), f"JS handler {summary(js)}"))
        ratios = [p / j for p, j in zip(py, js, strict=True)]
        rows.append(("    ratio Python/JS p99", summary(ratios, 2), ""))
    return rows


def engine_run(
    engine: Any, bench: Bench, args: argparse.Namespace, session: str
) -> dict[str, float]:
    out: dict[str, float] = {}
    host = bench.host
    profile = engine.profile()
    tab = profile.open(f"{host}/b/python-handler.html")
    out["runtime_cold"] = profile.call(tab, "readyMs")
    profile.call(tab, "settle")
    profile.reload(tab)
    out["runtime_warm"] = profile.call(tab, "readyMs")
    profile.drop()
    profile = engine.profile()
    tab = profile.open(f"{host}/b/bare-pyodide.html")
    out["bare_cold"] = profile.call(tab, "bareMs")
    profile.reload(tab)
    out["bare_warm"] = profile.call(tab, "bareMs")
    profile.drop()
    profile = engine.profile()
    tab = profile.open(f"{host}/b/plain.html")
    profile.call(tab, "signIn", STORAGE_KEY, session)
    profile.goto(tab, f"{host}/b/many.html?n=10&run={uuid.uuid4().hex[:8]}")
    out["first_image"] = profile.call(tab, "images", 10, 30_000)["first"]
    profile.drop()
    for handler in ("python", "js"):
        profile = engine.profile()
        tab = profile.open(f"{host}/b/{handler}-handler.html")
        profile.call(tab, "signIn", STORAGE_KEY, session)
        profile.call(tab, "settle")
        profile.reload(tab)
        profile.call(tab, "controlled")
        times = profile.call(tab, "roundtrips", args.requests, f"{bench.realm}img/rt-", STORAGE_KEY,
                             timeout=120)
        out[f"{handler}_p99"] = percentile(times, 0.99)
        profile.drop()
    return out


# -- network: a first visit through server-side throttling ------------------------------------
NETWORK_PROFILES = {
    "fast": Profile("fast", mbit=10, rtt_ms=40),
    "slow": Profile("slow", mbit=1.6, rtt_ms=150),
}
NETWORK_TIMEOUT_MS = {"fast": 180_000, "slow": 420_000}  # one visit, every wait in it


class Network:
    """A second host (the same bundle and pages) and the realm, each behind a throttling proxy
    (benchmarks/throttle.py) on a loop of their own; both proxies share one byte budget."""

    def __init__(self, bench: Bench) -> None:
        self.proxies = ServerThread()  # only its loop: the proxies run there
        self.budget = Budget(mbit=10, rtt_ms=40)
        self._started: list[ThrottleProxy] = []
        realm = self._proxy(bench.realm) + "/"
        upstream = bench.thread.serve(
            host_app(bench.bundle, issuer=bench.issuer, page_vars={"REALM": realm},
                     extra_dirs={"b": PAGES})
        )
        self.host, self.realm = self._proxy(upstream), realm

    def _proxy(self, origin: str) -> str:
        host, _, port = origin.rstrip("/").removeprefix("http://").partition(":")
        proxy = ThrottleProxy(self.budget, (host, int(port)))
        self._started.append(proxy)
        return str(self.call(proxy.start))

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the proxies' loop (a coroutine function is awaited there)."""

        async def run() -> Any:
            value = fn(*args)
            return await value if asyncio.iscoroutine(value) else value

        return asyncio.run_coroutine_threadsafe(run(), self.proxies.loop).result(timeout=30)

    def sent(self) -> int:
        return int(self.call(lambda: self.budget.sent))

    def close(self) -> None:
        for proxy in self._started:
            self.call(proxy.stop)
        self.proxies.close()


def network_visit(bench: Bench, net: Network, profile: str) -> dict[str, float]:
    """One run of a profile: a signed-in first visit of the runtime (new profile: no HTTP
    cache, snapshot or worker) to a page with 10 realm images, and a first visit of a bare
    loadPyodide() page; each visit's bytes to the browser counted by the proxies."""
    timeout = NETWORK_TIMEOUT_MS[profile]
    out: dict[str, float] = {}
    ctx = bench.browser.new_context()
    ctx.set_default_timeout(timeout)
    page = ctx.new_page()
    page.goto(f"{net.host}/pyauth/manifest.json")  # the host's login page, say
    session = json.dumps({net.realm: bench.issuer.mint(net.realm, ttl=3600)})
    page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, session])
    net.call(net.budget.reset_count)
    page.goto(f"{net.host}/b/many.html?n=10&run={uuid.uuid4().hex[:8]}", wait_until="commit")
    out["runtime"] = bench.ready_ms(page, timeout)
    page.wait_for_function("() => window.loaded && loaded() === 10", timeout=timeout, polling=100)
    out["first"] = float(page.evaluate("() => window.__firstImage"))
    out["runtime_mb"] = net.sent() / 1e6
    ctx.close()
    ctx = bench.browser.new_context()
    ctx.set_default_timeout(timeout)
    page = ctx.new_page()
    net.call(net.budget.reset_count)
    page.goto(f"{net.host}/b/bare-pyodide.html", wait_until="commit")
    page.wait_for_function("() => !!window.bareReady", timeout=timeout, polling=100)
    out["bare"] = float(awaited(page, "() => window.bareReady", timeout))
    out["bare_mb"] = net.sent() / 1e6
    ctx.close()
    return out


def network_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    runs = args.network_runs if args.network_runs is not None else min(args.runs, 3)
    net = Network(bench)
    rows: list[Row] = []
    try:
        for name in args.network_profiles:
            profile = NETWORK_PROFILES[name]
            net.call(net.budget.configure, profile.mbit, profile.rtt_ms)
            visits = [network_visit(bench, net, name) for _ in range(runs)]
            col = {k: [v[k] for v in visits] for k in visits[0]}
            ratios = [r / b for r, b in zip(col["runtime"], col["bare"], strict=True)]
            rows += [
                (f"first visit, {profile.label}: runtime ready (ms)", summary(col["runtime"]),
                 f"bare loadPyodide {summary(col['bare'])}"),
                ("  ratio runtime/bare", summary(ratios, 2),
                 f"target ≤ 1.0; server-side throttle, {runs} runs"),
                ("  navigation -> 1st authenticated image (ms)", summary(col["first"]),
                 "signed in, new profile, 10 realm <img>"),
                ("  MB to the browser, runtime", summary(col["runtime_mb"], 2),
                 f"bare {summary(col['bare_mb'], 2)}"),
            ]
    finally:
        net.close()
    return rows


# -- host: the host page's main thread ---------------------------------------------------------
HOST_VARIANTS = [  # (label, loader, data-boot)
    ("no loader", "0", ""),
    ("loader", "1", ""),
    ("loader, data-boot=idle", "1", "idle"),
]
HOST_WINDOW_MS = 8_000  # the first 8 s after navigation, or until ready + 1 s if later
HOST_BOUND_MS = 60_000


def host_report(page: Page, loader: bool) -> dict[str, float]:
    """Long tasks and the 10 ms timer in host-page.html from navigation to the window's end."""
    ready = "performance.getEntriesByName('pyauth-web:ready')[0]"
    end = f"Math.max({HOST_WINDOW_MS}, {ready}.startTime + 1000)" if loader else str(HOST_WINDOW_MS)
    has_ready = f"!!{ready} && " if loader else ""
    until = f"() => window.hostReport && {has_ready}performance.now() >= {end}"
    page.wait_for_function(until, timeout=HOST_BOUND_MS, polling=250)
    report: dict[str, float] = page.evaluate(f"() => hostReport({end})")
    if page.evaluate("() => window.__longTasksUnsupported || null"):
        raise SystemExit("bench: this browser reports no long tasks")
    return report


def host_run(bench: Bench, loader: str, boot: str) -> dict[str, dict[str, float]]:
    """Cold (new context) and warm (reload once the snapshot is saved) host page."""
    ctx = bench.context()
    page = ctx.new_page()
    url = f"{bench.host}/b/host-page.html?loader={loader}&boot={boot}&run={uuid.uuid4().hex[:8]}"
    page.goto(url, wait_until="commit")
    cold = host_report(page, loader == "1")
    if loader == "1":
        page.wait_for_function(SAVED, timeout=HOST_BOUND_MS, polling=250)
    page.reload(wait_until="commit")
    warm = host_report(page, loader == "1")
    ctx.close()
    return {"cold": cold, "warm": warm}


def host_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    results: dict[str, list[dict[str, dict[str, float]]]] = {v[0]: [] for v in HOST_VARIANTS}
    for _ in range(args.runs):  # the variants one after another within each run
        for label, loader, boot in HOST_VARIANTS:
            results[label].append(host_run(bench, loader, boot))
    rows: list[Row] = []
    for label, loader, _ in HOST_VARIANTS:
        for temp in ("cold", "warm"):
            col = {k: [r[temp][k] for r in results[label]]
                   for k in ("tbt", "longest", "late", "tasks")}
            ref = loader == "0"
            tbt_target = "" if ref else ("target ≤ 200" if temp == "cold" else "")
            longest_target = "" if ref else ("target ≤ 200" if temp == "cold" else "target ≤ 100")
            tasks = f"long tasks {summary(col['tasks'], 0).strip()}"
            rows += [
                (f"host main thread, {label}, {temp}: TBT (ms)", summary(col["tbt"]),
                 "; ".join(filter(None, [tbt_target, tasks]))),
                ("  longest task (ms)", summary(col["longest"]), longest_target),
                ("  10 ms timer: latest (ms)", summary(col["late"]), ""),
            ]
    return rows


# -- nonrealm: what the worker costs requests that are not for a realm -------------------------
async def asset(request: web.Request) -> web.Response:
    """``/b/asset/NAME``: a small generated image, stylesheet or script (same origin as the
    pages, inside the worker's scope)."""
    name = request.match_info["name"]
    stem, _, ext = name.rpartition(".")
    if ext == "svg":
        body, kind = svg(stem), "image/svg+xml"
    elif ext == "css":
        body, kind = f".asset-{stem} {{ color: #{sum(stem.encode()) % 0xFFF:03x}; }}\n", "text/css"
    elif ext == "js":
        body, kind = f"window.__asset_{stem} = {len(stem)};\n", "text/javascript"
    else:
        raise web.HTTPNotFound()
    return web.Response(text=body, content_type=kind, headers={"Cache-Control": "no-cache"})


def url_token_route(clock: ShiftedClock) -> Any:
    """``/urltoken/img/NAME?access_token=T`` on the realm: the control for realm images without
    the worker; the same check (``verify``) and image as the realm's ``/img/NAME``."""

    async def image(request: web.Request) -> web.Response:
        ok, reason = verify(DEMO_SECRET, f"Bearer {request.query.get('access_token', '')}", clock())
        if not ok:
            return web.json_response({"error": "unauthorized", "reason": reason}, status=401)
        return web.Response(text=svg(request.match_info["name"]), content_type="image/svg+xml")

    return image


NONREALM_REPEATS = 3  # measured visits per context; a run's figure is their median


def nonrealm_side(bench: Bench, page_name: str, worker: bool, query: str, done: str) -> float:
    """A new context; two visits to settle (the worker registered and controlling, or none ever;
    the snapshot saved), then the median of NONREALM_REPEATS visits of ``page_name``: ms from
    navigation until ``done`` (a JS expression: {loaded, failed, last}) has them all."""
    token = bench.issuer.mint(bench.realm, ttl=3600)
    ctx = bench.context()
    page = ctx.new_page()
    sw = "/sw.js" if worker else ""
    setup = f"{bench.host}/b/{page_name}?sw={sw}&n=0&run=setup&token="
    if worker:
        bench._controlled(page, setup, token)
    else:
        page.goto(setup)
        session = json.dumps({bench.realm: token})
        page.evaluate("([k, v]) => localStorage.setItem(k, v)", [STORAGE_KEY, session])
        page.wait_for_function(SAVED, timeout=60_000, polling=100)
        page.reload()
    bench.ready_ms(page, 60_000)  # the worker knows the token now (with a worker)
    times: list[float] = []
    for _ in range(NONREALM_REPEATS):
        page.close()  # a new tab each time: the last visit's interpreter is not torn down meanwhile
        page = ctx.new_page()
        run = uuid.uuid4().hex[:8]
        page.goto(f"{bench.host}/b/{page_name}?sw={sw}&run={run}&{query}", wait_until="commit")
        page.wait_for_function(
            f"() => {done} && {done}.loaded + {done}.failed >= Number(window.__n)",
            timeout=60_000, polling=50,
        )
        got = page.evaluate(
            f"() => ({{...{done}, controlled: !!navigator.serviceWorker.controller}})"
        )
        if got["failed"] or got["controlled"] != worker:
            raise SystemExit(f"bench: {page_name} {query} worker={worker}: {got}")
        times.append(float(got["last"]))
    ctx.close()
    return statistics.median(times)


def nonrealm_rows(bench: Bench, args: argparse.Namespace) -> list[Row]:
    n_assets, n_images = 200, 100
    col: dict[str, list[float]] = {"assets_sw": [], "assets": [], "images_sw": [], "images": []}
    token = bench.issuer.mint(bench.realm, ttl=3 * 3600)
    for _ in range(args.runs):  # the two sides of each comparison one after the other
        for worker in (True, False):
            key = "assets_sw" if worker else "assets"
            col[key].append(nonrealm_side(bench, "assets.html", worker, f"n={n_assets}&token=",
                                          "window.__assets"))
        for worker in (True, False):
            key = "images_sw" if worker else "images"
            query = f"n={n_images}&token={'' if worker else token}"
            col[key].append(nonrealm_side(bench, "realm-images.html", worker, query,
                                          "window.__images"))
    a = [w / o for w, o in zip(col["assets_sw"], col["assets"], strict=True)]
    b = [w / o for w, o in zip(col["images_sw"], col["images"], strict=True)]
    return [
        (f"{n_assets} same-origin assets: navigation -> last (ms), worker",
         summary(col["assets_sw"]),
         f"no worker {summary(col['assets'])}"),
        ("  ratio worker/no worker", summary(a, 2), "target ≤ 1.05"),
        (f"{n_images} realm images: navigation -> last (ms), via worker", summary(col["images_sw"]),
         f"no worker, token in URL {summary(col['images'])}"),
        ("  ratio worker/URL token", summary(b, 2), "target ≤ 1.10 (median); worker state warm"),
    ]


SECTIONS = {
    "boot": boot_rows,
    "firstvisit": first_visit_rows,
    "roundtrip": roundtrip_rows,
    "firstpaint": first_paint_rows,
    "expiry": expiry_rows,
    "scale": scale_rows,
    "memory": memory_rows,
    "dpop": dpop_rows,
    "engines": engine_rows,
    "network": network_rows,
    "host": host_rows,
    "nonrealm": nonrealm_rows,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another bundle (e.g. the previous release's) whose Python handler the roundtrip "
        "section measures too, side by side with this one",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        default=list(SECTIONS),
        help="run these sections only (default: all)",
    )
    parser.add_argument(
        "--network-runs",
        type=int,
        help="runs of the network section (default: min(--runs, 3); a slow run is long)",
    )
    parser.add_argument(
        "--network-profiles",
        nargs="+",
        choices=list(NETWORK_PROFILES),
        default=list(NETWORK_PROFILES),
        help="the network section's profiles (default: all)",
    )
    args = parser.parse_args()

    cache = assets.default_cache()
    assets.vendor(cache)
    bundle = assets.bundle(Path(tempfile.mkdtemp(prefix="pyauth-bench-")), cache).root
    thread = ServerThread()
    clock = ShiftedClock()
    issuer = Issuer(clock=clock)
    realm_server = realm_app(log=RealmLog(), clock=clock)
    realm_server.router.add_get("/urltoken/img/{name}", url_token_route(clock))  # nonrealm
    realm = thread.serve(realm_server) + "/"
    host_server = host_app(bundle, issuer=issuer, page_vars={"REALM": realm},
                           extra_dirs={"b": PAGES})
    host_server.router.add_get("/b/asset/{name}", asset)  # nonrealm
    host = thread.serve(host_server)
    rows: list[Row] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw, CONFIG)
        bench = Bench(browser, host, realm, issuer, clock)
        bench.thread = thread
        bench.bundle = bundle
        if args.baseline:
            bench.baseline = thread.serve(
                host_app(args.baseline, issuer=issuer, page_vars={"REALM": realm},
                         extra_dirs={"b": PAGES})
            )
        t0 = time.time()
        for section in args.only:
            rows.extend(SECTIONS[section](bench, args))
        if "boot" in args.only:
            rows.extend(snapshot_rows(bundle))
        browser.close()
    thread.close()
    width = max(len(r[0]) for r in rows)
    print(
        f"\npyauth-web benchmark — {args.runs} runs, {args.requests} round trips per run, "
        f"{time.time() - t0:.0f} s; median (min–max)\n"
    )
    for name, value, note in rows:
        print(f"{name:<{width}}  {value}   {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
