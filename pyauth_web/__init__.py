"""pyauth-web: a browser-side auth runtime in Python, run in the page under Pyodide.

The modules directly under this package are the sans-I/O core (no browser imports);
``pyauth_web.browser`` binds them to browser APIs.
"""

__version__ = "0.1.0"
