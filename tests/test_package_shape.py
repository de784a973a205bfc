"""The package's shape (issue 17): no import cycle, no module over 600 lines, help texts that say what they say.

The import graph counts every `import apirl...` of a module, at the top or inside a function: an import moved
into a function to dodge a cycle is still the cycle. `from apirl.pkg import submodule` depends on the submodule,
not on the package's `__init__` (Python imports a parent package first for every submodule anyway).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / "apirl").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the apirl modules it imports anywhere in its text."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
                targets |= submodules
                if len(submodules) < len(node.names):
                    targets.add(node.module)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    package = tmp_path / "apirl"
    package.mkdir()
    (package / "a.py").write_text("import apirl.b\n")
    (package / "b.py").write_text("def f():\n    from apirl.c import g\n")
    (package / "c.py").write_text("from apirl import a\n")
    modules = {f"apirl.{p.stem}": p for p in package.glob("*.py")}
    assert cycles(import_graph(modules)) == [["apirl.a", "apirl.b", "apirl.c"]]


def test_no_import_cycle_in_the_package() -> None:
    assert cycles(import_graph(_modules())) == []


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _commands(group, prefix=()):  # the CLI's groups and commands, with their command paths
    for name, command in getattr(group, "commands", {}).items():
        yield (*prefix, name), command
        yield from _commands(command, (*prefix, name))


def test_every_help_text_keeps_its_bracketed_table_names() -> None:
    """Rich markup would swallow `[rl]` in "against the reward of [rl]": every command's help keeps them."""
    import typer.main
    from typer.testing import CliRunner

    from apirl.cli import app

    runner = CliRunner()
    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) > 10
    checked = 0
    for path, command in commands:
        tables = re.findall(r"\[[a-z_.]+\]", command.help or "")
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        text = " ".join(result.output.split())
        for table in tables:
            assert table in text, (path, table)
            checked += 1
    assert checked > 0
