"""The package's structure, checked: no import cycle, the rings kept apart, small adapter modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pyauth_web"
MAX_ADAPTER_LINES = 250


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every pyauth_web module ``path`` imports, anywhere in it (functions and
    ``TYPE_CHECKING`` blocks included: a cycle hidden in a function is still a cycle)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import module` needs the module, not pkg's body
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_sees_imports() -> None:
    assert "pyauth_web.browser.source" in GRAPH["pyauth_web.browser.fetch"]
    assert "pyauth_web.tokens" in GRAPH["pyauth_web.protocol"]  # relative: from .tokens import


def test_no_import_cycle() -> None:
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_the_checker_finds_a_cycle() -> None:
    GRAPH["pyauth_web.tokens"].add("pyauth_web.protocol")
    try:
        assert find_cycle() is not None
    finally:
        GRAPH["pyauth_web.tokens"].discard("pyauth_web.protocol")


def test_the_core_never_imports_the_adapter() -> None:
    for name, deps in GRAPH.items():
        if not name.startswith("pyauth_web.browser") and name != "pyauth_web":
            assert not {d for d in deps if d.startswith("pyauth_web.browser")}, name


def test_transports_depend_on_the_narrow_interface_only() -> None:
    """fetch, SSE and WebSocket see ``source.TokenSource``, never the runtime or the session."""
    allowed = {"pyauth_web.browser", "pyauth_web.browser.source", "pyauth_web.browser.urls",
               "pyauth_web.browser.states"}
    for transport in ("fetch", "sse", "ws"):
        deps = {d for d in GRAPH[f"pyauth_web.browser.{transport}"] if ".browser" in d}
        assert deps <= allowed, (transport, deps - allowed)


def test_only_the_loader_starts_the_runtime() -> None:
    """``runtime`` is the composition root: no module of the package imports it."""
    assert not [n for n, deps in GRAPH.items() if "pyauth_web.browser.runtime" in deps]


def test_adapter_modules_are_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "browser").glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_ADAPTER_LINES} == {}


def test_test_file_basenames_are_unique() -> None:
    """pytest imports test files by basename (rootdir-relative packages are not used here): two
    files of one name in tests/unit and tests/e2e fail the whole collection."""
    tests = Path(__file__).resolve().parents[1]
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_snapshot_preloads_every_core_module_the_runtime_uses() -> None:
    """A core module missing from ``preload`` is imported at every start instead of being in
    the memory snapshot (slower warm starts, and nothing fails to say so)."""
    tooling = {"pyauth_web.__main__", "pyauth_web.cli", "pyauth_web.assets", "pyauth_web.preload"}
    core = {module_name(p) for p in PACKAGE.glob("*.py") if p.name != "__init__.py"} - tooling
    preloaded = imports(PACKAGE / "preload.py")
    closure = set(preloaded)
    for name in preloaded:
        closure |= imports(ROOT / (name.replace(".", "/") + ".py"))
    assert core - closure == set()
