"""Thin drivers: one per engine, each only opens tabs, navigates, reloads, closes, hides and
shows a tab, and calls a step of the scenario page (``window.scenario[fn](...args)``, awaited).

Everything a scenario decides lives in its page (``tests/e2e/pages/engines/``) and in the
engine-independent test (``test_stories.py``), the way web-platform-tests' pages run behind
thin drivers. Chromium is driven by Playwright, Firefox ESR by puppeteer-core over WebDriver
BiDi (``firefox/driver.mjs``), WebKitGTK by selenium's ``WebKitWebDriver`` under Xvfb
(``../shared/notes/cross-engine.md`` says why these and not others). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).parent
CALL_TIMEOUT_S = 30.0  # one scenario step (boot of a cold engine included)
LAUNCH_TIMEOUT_S = 40.0
ENGINES = ("chromium", "firefox", "webkit")


class EngineError(RuntimeError):
    """A driver could not do what it was asked (launch, open, a step) within its bound."""


class Profile(Protocol):
    """A fresh browser profile (cookies, storage, service workers) and its tabs."""

    def open(self, url: str) -> Any: ...
    def goto(self, tab: Any, url: str) -> None: ...
    def reload(self, tab: Any) -> None: ...
    def close(self, tab: Any) -> None: ...
    def hide(self, tab: Any) -> None: ...
    def show(self, tab: Any) -> None: ...
    def call(self, tab: Any, fn: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any: ...
    def drop(self) -> None: ...


class Engine(Protocol):
    name: str
    version: str

    def profile(self) -> Profile: ...
    def quit(self) -> None: ...


def missing(name: str, what: str) -> EngineError:
    return EngineError(f"{name}: {what} is not installed; `make test` installs it (see Makefile)")


# A step, bounded in the page (a stuck step rejects; the driver stays usable).
BOUNDED_STEP = """([name, list, ms]) => Promise.race([
  Promise.resolve().then(() => window.scenario[name](...list)),
  new Promise((_, reject) => setTimeout(() => reject(new Error(`step ${name}: no result in ${ms} ms`)), ms)),
])"""
EMULATE_VISIBILITY = """(state) => {
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
  Object.defineProperty(document, 'hidden', { configurable: true, get: () => state === 'hidden' });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


# -- Chromium: Playwright ----------------------------------------------------------------------
class ChromiumProfile:
    def __init__(self, context: Any) -> None:
        self.context = context

    def open(self, url: str) -> Any:
        page = self.context.new_page()
        page.goto(url)
        return page

    def goto(self, tab: Any, url: str) -> None:
        tab.goto(url)

    def reload(self, tab: Any) -> None:
        tab.reload()

    def close(self, tab: Any) -> None:
        tab.close()

    # Headless Chromium keeps every page visible (a minimized window, a background target or
    # another page in front change nothing): its driver emulates the Page Visibility API in the
    # page, as the Chromium suite does. Firefox and WebKit hide tabs for real.
    def hide(self, tab: Any) -> None:
        tab.evaluate(EMULATE_VISIBILITY, "hidden")

    def show(self, tab: Any) -> None:
        tab.evaluate(EMULATE_VISIBILITY, "visible")

    def call(self, tab: Any, fn: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        return tab.evaluate(BOUNDED_STEP, [fn, list(args), timeout * 1000])

    def drop(self) -> None:
        self.context.close()


class Chromium:
    name = "chromium"

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.version = str(browser.version)

    def profile(self) -> Profile:
        return ChromiumProfile(self.browser.new_context())

    def quit(self) -> None:  # the e2e suite's session browser: its fixture closes it
        pass


# -- Firefox ESR: puppeteer-core over WebDriver BiDi, in a Node process ----------------------------
class FirefoxProfile:
    def __init__(self, engine: Firefox, profile_id: str) -> None:
        self.engine, self.id = engine, profile_id

    def open(self, url: str) -> Any:
        return self.engine.send("open", profile=self.id, url=url)

    def goto(self, tab: Any, url: str) -> None:
        self.engine.send("goto", tab=tab, url=url)

    def reload(self, tab: Any) -> None:
        self.engine.send("reload", tab=tab)

    def close(self, tab: Any) -> None:
        self.engine.send("close", tab=tab)

    def hide(self, tab: Any) -> None:  # its window minimized
        self.engine.send("hide", tab=tab)

    def show(self, tab: Any) -> None:
        self.engine.send("show", tab=tab)

    def call(self, tab: Any, fn: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        return self.engine.send("call", timeout=timeout + 5, tab=tab, fn=fn, args=list(args),
                                ms=timeout * 1000)

    def drop(self) -> None:
        self.engine.send("dropProfile", profile=self.id)


class Firefox:
    name = "firefox"

    def __init__(self) -> None:
        binary = shutil.which("firefox-esr")
        if binary is None:
            raise missing("firefox", "firefox-esr (apt)")
        script = HERE / "firefox" / "driver.mjs"
        if not (HERE / "firefox" / "node_modules" / "puppeteer-core").is_dir():
            raise missing("firefox", "puppeteer-core (npm, tests/e2e/engines/firefox)")
        # its own process group: quitting ends Firefox with the driver that launched it
        self.proc = subprocess.Popen(
            ["node", str(script), binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True,
        )
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()
        self.next_id = 1
        try:
            self.version = str(self._reply(0, LAUNCH_TIMEOUT_S))
        except EngineError:
            self.quit()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.replies.put(json.loads(line))
            except ValueError:  # not a reply (something else wrote to stdout)
                self.log.append(line.rstrip())
        self.replies.put({"id": None, "error": f"the Firefox driver exited: {self.log[-5:]}"})

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())

    def _reply(self, want: int, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise EngineError(f"firefox: no answer in {timeout:.0f} s") from None
            if reply["id"] is None or reply["id"] == want:
                if "error" in reply:
                    raise EngineError(f"firefox: {reply['error']}")
                return reply["ok"]

    def send(self, op: str, timeout: float = CALL_TIMEOUT_S, **fields: Any) -> Any:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise EngineError(f"firefox: the driver exited ({self.proc.returncode}): {self.log[-5:]}")
        ident, self.next_id = self.next_id, self.next_id + 1
        self.proc.stdin.write(json.dumps({"id": ident, "op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._reply(ident, timeout)

    def profile(self) -> Profile:
        return FirefoxProfile(self, self.send("profile"))

    def quit(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


# -- WebKitGTK: selenium + WebKitWebDriver (MiniBrowser) under Xvfb -------------------------------
CALL_STEP = """
const done = arguments[arguments.length - 1];
Promise.resolve().then(() => window.scenario[arguments[0]](...arguments[1])).then(
  (ok) => done({ ok: ok === undefined ? null : ok }), (e) => done({ error: String(e && e.stack || e) }));
"""


class WebKitProfile:
    """One WebDriver session: a fresh, ephemeral MiniBrowser profile. A tab is a window of its
    own (a MiniBrowser tab opened behind another stays hidden, unlike the other engines' new
    tabs); hiding one minimizes its window."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.first = True

    def _switch(self, tab: Any) -> None:
        if self.driver.current_window_handle != tab:
            self.driver.switch_to.window(tab)

    def open(self, url: str) -> Any:
        if self.first:  # the session's own first window
            self.first = False
        else:
            self.driver.switch_to.new_window("window")
        self.driver.get(url)
        return self.driver.current_window_handle

    def goto(self, tab: Any, url: str) -> None:
        self._switch(tab)
        self.driver.get(url)

    def reload(self, tab: Any) -> None:
        self._switch(tab)
        self.driver.refresh()

    def close(self, tab: Any) -> None:
        self._switch(tab)
        self.driver.close()
        rest = self.driver.window_handles
        if rest:
            self.driver.switch_to.window(rest[0])

    def hide(self, tab: Any) -> None:
        self._switch(tab)
        self.driver.minimize_window()

    def show(self, tab: Any) -> None:
        self._switch(tab)
        self.driver.maximize_window()

    def call(self, tab: Any, fn: str, *args: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        self._switch(tab)
        self.driver.set_script_timeout(timeout)
        try:
            reply = self.driver.execute_async_script(CALL_STEP, fn, list(args))
        except Exception as error:  # selenium's timeout and script errors
            raise EngineError(f"webkit: {fn}: {error}") from None
        if "error" in reply:
            raise EngineError(f"webkit: {fn}: {reply['error']}")
        return reply["ok"]

    def drop(self) -> None:
        self.driver.quit()


class WebKit:
    name = "webkit"

    def __init__(self) -> None:
        for tool, package in (("WebKitWebDriver", "webkit2gtk-driver"), ("Xvfb", "xvfb")):
            if shutil.which(tool) is None:
                raise missing("webkit", f"{tool} ({package}, apt)")
        try:
            from selenium import webdriver  # noqa: F401
        except ImportError:
            raise missing("webkit", "selenium (PyPI, the test extra)") from None
        read, write = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
            pass_fds=(write,), stderr=subprocess.DEVNULL,
        )
        os.close(write)
        ready = threading.Event()
        display: list[str] = []

        def read_display() -> None:
            display.append(os.read(read, 64).decode().strip())
            ready.set()

        threading.Thread(target=read_display, daemon=True).start()
        if not ready.wait(10) or not display[0]:
            self.xvfb.kill()
            raise EngineError("webkit: Xvfb did not start in 10 s")
        os.close(read)
        self.display = f":{display[0]}"
        self.version = "WebKitGTK"
        try:
            probe = self.profile()
        except EngineError:
            self.quit()
            raise
        self.version = str(probe.driver.capabilities.get("browserVersion", "?"))  # type: ignore[attr-defined]
        probe.drop()

    def profile(self) -> Profile:
        """A new session (a new profile); a session that does not come is tried once more (seen
        once in a run: WebKitWebDriver never answered the first request)."""
        try:
            return self._session()
        except EngineError:
            return self._session()

    def _session(self) -> Profile:
        from selenium import webdriver
        from selenium.webdriver.webkitgtk.service import Service

        service = Service(executable_path=shutil.which("WebKitWebDriver"),
                          env={**os.environ, "DISPLAY": self.display})
        options = webdriver.WebKitGTKOptions()
        result: list[Any] = []
        given_up = threading.Event()

        def start() -> None:  # MiniBrowser without a display hangs with no error: bound it
            try:
                driver = webdriver.WebKitGTK(options=options, service=service)
            except Exception as error:  # reported below
                result.append(error)
                return
            if given_up.is_set():  # too late: nobody will use it
                driver.quit()
            else:
                result.append(driver)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        thread.join(LAUNCH_TIMEOUT_S)
        if not result or isinstance(result[0], Exception):
            given_up.set()
            with contextlib.suppress(Exception):
                service.stop()  # the driver process too, not only the session it never made
            raise EngineError(f"webkit: no session in {LAUNCH_TIMEOUT_S:.0f} s: {result}")
        driver = result[0]
        driver.set_page_load_timeout(CALL_TIMEOUT_S)
        return WebKitProfile(driver)

    def quit(self) -> None:
        self.xvfb.terminate()
        try:
            self.xvfb.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.xvfb.kill()
