"""pyauth-web: a browser-side auth runtime in Python, run in the page under Pyodide.

The modules directly under this package are the sans-I/O core (no browser imports);
``pyauth_web.browser`` binds them to browser APIs.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # ``await pyauth_web.fetch(url, **init)`` in the page; the core stays importable anywhere.
    if name == "fetch":
        from pyauth_web.browser.fetch import fetch

        return fetch
    raise AttributeError(f"module 'pyauth_web' has no attribute {name!r}")
