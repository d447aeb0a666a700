# Type stubs for the parts of Pyodide (https://pyodide.org) that pyauth_web.browser uses.
