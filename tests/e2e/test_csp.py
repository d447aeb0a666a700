"""Issue 10 item 2: a host with a strict Content-Security-Policy, and one that enforces Trusted
Types, can run pyauth-web: the runtime boots, registers the worker and loads realm images, with
zero ``securitypolicyviolation`` events. The loader's one Trusted Types policy yields only its own
bundle's script URLs and the configured worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import (
    LOAD_IMAGE,
    PAGES,
    TRUSTED_TYPES,
    Servers,
    auth_seen,
    open_app,
    strict_csp,
)

from pyauth_web.demo.servers import host_app

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(
  `${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));
"""


@pytest.mark.parametrize("policy", ["strict", "trusted-types"])
def test_the_runtime_works_under_a_strict_csp(
    page: Any, servers: Servers, bundle_dir: Path, run_id: str, page_errors: list[str],
    policy: str,
) -> None:
    csp = strict_csp(servers.realm) + (TRUSTED_TYPES if policy == "trusted-types" else "")
    host = servers.thread.serve(
        host_app(bundle_dir, issuer=servers.issuer, page_vars={"REALM": servers.realm},
                 extra_dirs={"t": PAGES}, headers={"Content-Security-Policy": csp})
    )
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.add_init_script(RECORD_VIOLATIONS)
    open_app(page, servers, host=host)  # boots, registers the worker, is controlled by it
    token = servers.token()
    page.evaluate("([r, t]) => pyauthWeb.setToken(r, t)", [servers.realm, token])
    path = f"/img/csp-{policy}-{run_id}"
    assert page.evaluate(LOAD_IMAGE, servers.realm + path[1:]) is True
    assert auth_seen(servers.realm_log, path) == [f"Bearer {token}"]
    assert page.evaluate("() => window.__violations") == []  # the first visit
    page.reload()  # a second visit (memory snapshot, worker already there) under the same CSP
    open_app(page, servers, host=host)
    assert page.evaluate("() => window.__violations") == []
    assert [c for c in console if "Content Security Policy" in c or "Trusted" in c] == []
    assert page_errors == []
    if policy == "trusted-types":
        assert page.evaluate("() => window.trustedTypes !== undefined")
        # Any other sink use is refused by the page's policy (the loader created the only one).
        refused = page.evaluate("""() => { try {
            document.createElement('script').src = '/pyauth/pyauth-web.js'; return 'assigned';
          } catch (e) { return e.name; } }""")
        assert refused == "TypeError"
        # Nor can other script take the loader's policy name (no 'allow-duplicates').
        taken = page.evaluate("""() => { try {
            trustedTypes.createPolicy('pyauth-web', { createScriptURL: (u) => u }); return 'created';
          } catch (e) { return e.name; } }""")
        assert taken == "TypeError"
