"""Browser settings for the end-to-end tests (read by tests/e2e/conftest.py and benchmarks/).

Debian's chromium is used (``playwright install`` cannot download browsers on this network).
"""

import os
import shutil

BROWSER_PATH = (
    os.environ.get("PYAUTH_WEB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
HEADLESS = os.environ.get("PYAUTH_WEB_HEADED") != "1"
HOST = "127.0.0.1"  # every server the tests start binds here; nothing leaves loopback
# Timeouts (milliseconds) for Playwright waits; the per-test wall clock is pytest-timeout's.
DEFAULT_TIMEOUT_MS = 15_000
BOOT_TIMEOUT_MS = 30_000
TEST_TIMEOUT_S = 90
