"""The import rules, checked on the source: which module imports which (``ast``, nothing run).

- no cycles among dgagent's modules (TYPE_CHECKING imports count: they are a cycle too, only
  hidden from the interpreter);
- the agent never imports the CLI;
- the protocol package (dgagent.rpc) imports neither the agent nor the CLI nor the TUI;
- the TUI imports from dgagent only the protocol package, the error hierarchy and the version
  (its formatting helpers are its own, dgagent_tui.format).

``python -m tests.test_imports`` prints the graph, one line a module.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dgagent", "dgagent_tui")
TUI = "dgagent_tui"
TUI_MAY_IMPORT = ("dgagent.rpc", "dgagent.errors", "dgagent.version")
Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from pkg import mod`` counts as pkg.mod)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                # ``from pkg import mod`` imports the module; ``from pkg import name`` the package.
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return {m for m in found if m in known and m != name}


def import_graph(packages: Iterable[str] = PACKAGES) -> Graph:
    files = {
        module_name(p): p
        for package in packages
        for p in sorted((ROOT / package).rglob("*.py"))
        if ".venv" not in p.parts
    }
    known = set(files)
    return {name: _imports(path, name, known) for name, path in files.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_cycles_in_dgagent() -> None:
    graph = {k: v for k, v in import_graph().items() if _in(k, "dgagent")}
    assert cycles(graph) == []


def test_the_agent_never_imports_the_cli() -> None:
    graph = import_graph()
    bad = {m: sorted(i for i in v if _in(i, "dgagent.cli")) for m, v in graph.items()}
    assert {m: v for m, v in bad.items() if _in(m, "dgagent.agent") and v} == {}


def test_the_protocol_package_stands_alone() -> None:
    graph = import_graph()
    outside = ("dgagent.agent", "dgagent.cli", "dgagent.engine", "dgagent.storage", TUI)
    bad = {
        m: sorted(i for i in v if any(_in(i, o) for o in outside))
        for m, v in graph.items()
        if _in(m, "dgagent.rpc")
    }
    assert {m: v for m, v in bad.items() if v} == {}


def _tui_imports_from_dgagent() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / TUI).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[tuple[str, str | None]]
            if isinstance(node, ast.Import):
                names = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [(node.module, a.name) for a in node.names]
            else:
                continue
            for module, member in names:
                allowed = any(_in(module, ok) for ok in TUI_MAY_IMPORT)
                if _in(module, "dgagent") and not allowed:
                    found.setdefault(module_name(path), set()).add(f"{module}:{member}")
    return found


def test_the_tui_imports_only_the_protocol_from_dgagent() -> None:
    assert _tui_imports_from_dgagent() == {}


def test_the_checks_see_imports() -> None:
    """The helpers find real edges, so the rules above cannot pass by seeing nothing."""
    graph = import_graph()
    assert "dgagent.rpc.protocol" in graph["dgagent.rpc.client"]
    assert any(_in(i, "dgagent.rpc") for i in graph[f"{TUI}.agent.client"])
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def summary(graph: Graph, prefix: str = "") -> str:
    return "\n".join(
        f"{m} -> {', '.join(sorted(v))}"
        for m, v in sorted(graph.items())
        if v and (not prefix or _in(m, prefix))
    )


if __name__ == "__main__":
    g = import_graph(sys.argv[1:] or PACKAGES)
    print(summary(g, ""))
    print("cycles:", cycles(g))
