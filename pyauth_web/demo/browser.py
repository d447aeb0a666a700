"""Launching Debian's Chromium with the settings in ``playwright.config.py`` (tests, benchmarks)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pyauth_web.assets import SOURCE_ROOT

if TYPE_CHECKING:  # playwright is a test dependency, not the package's
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright


def load_playwright_config(root: Path = SOURCE_ROOT) -> ModuleType:
    """``playwright.config.py`` (not importable by name: ``playwright`` is the package)."""
    spec = importlib.util.spec_from_file_location(
        "playwright_config", root / "playwright.config.py"
    )
    if spec is None or spec.loader is None:
        raise FileNotFoundError(root / "playwright.config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_chromium(playwright: Playwright, config: ModuleType) -> Browser:
    return playwright.chromium.launch(
        executable_path=config.BROWSER_PATH, args=config.LAUNCH_ARGS, headless=config.HEADLESS
    )


def stop_service_workers(context: BrowserContext, page: Page, timeout: float = 10.0) -> None:
    """Stop every service worker of ``context`` as Chromium stops idle ones (their in-memory
    state is lost) and wait, at most ``timeout`` seconds, until they have stopped."""
    cdp = context.new_cdp_session(page)
    status: dict[str, str] = {}

    def updated(event: dict[str, list[dict[str, str]]]) -> None:
        status.update({v["versionId"]: v["runningStatus"] for v in event["versions"]})

    cdp.on("ServiceWorker.workerVersionUpdated", updated)
    cdp.send("ServiceWorker.enable")
    cdp.send("ServiceWorker.stopAllWorkers")
    deadline = time.monotonic() + timeout
    while any(s != "stopped" for s in status.values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service workers did not stop within {timeout:g} s")
        page.wait_for_timeout(20)  # lets Playwright deliver the CDP events
    cdp.detach()
