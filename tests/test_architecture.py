"""The house's shape: no import cycle in harness/, layers that only point down, features wired in one place.

``lint-imports`` (run by .ci/run, contracts in pyproject.toml) checks the layers; this test
builds the import graph itself with ``ast`` — imports inside functions and under
``TYPE_CHECKING`` included — so a cycle cannot hide in a function body.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "harness"

# The registry of transports imports each transport lazily; no cycle is allowed, not even there.
LARGEST_CYCLE_ALLOWED = 1


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in HARNESS.rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The harness modules ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package.
            targets = submodules + ([base] if len(submodules) < len(node.names) else [])
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imports_of(name, path, known)) for name, path in known.items()}


def test_harness_has_no_import_cycle() -> None:
    cycles = [c for c in strongly_connected(graph()) if len(c) > LARGEST_CYCLE_ALLOWED]
    assert cycles == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The test above means something only if a cycle would be found.
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"], ["d"]]


LAYERS = [
    "harness.core",
    "harness.transports",
    "harness.runtime",
    "harness.load",
    "harness.monitors",
    "harness.outputs",
]


def test_every_module_lives_in_a_layer_or_is_an_entry_point() -> None:
    entry_points = {
        "harness",  # the public facade (lazy)
        "harness.plugin",
        "harness.help",
        "harness.prompts",
        "harness.conversation",
        "harness.request",
        "harness.catalog",
        "harness.report",
        "harness.report.__main__",
        "harness.study",
        "harness.study.__main__",
    }
    homeless = [
        name
        for name in modules()
        if name not in entry_points
        and not name.startswith("harness.simulator")
        and not any(name == layer or name.startswith(layer + ".") for layer in LAYERS)
    ]
    assert homeless == []


def test_only_the_plugin_registers_listeners_on_locusts_global_events() -> None:
    # A feature installs itself when the plugin asks, not on import.
    offenders = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if name != "harness.plugin" and ("@events." in text or "from locust import events" in text):
            offenders.append(name)
    assert offenders == []
