"""Launching Debian's Chromium with the settings in ``playwright.config.py`` (tests, benchmarks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pyauth_web.assets import SOURCE_ROOT

if TYPE_CHECKING:  # playwright is a test dependency, not the package's
    from playwright.sync_api import Browser, Playwright


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
