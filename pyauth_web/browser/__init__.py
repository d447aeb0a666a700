"""The Pyodide adapter: the only package that imports ``js`` / ``pyodide``."""
