"""The package's shape: no import cycles, no module over 400 lines, no long functions outside the training
loop, and no algorithm or problem named in the generic layers (config, runner, engine)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from distclip.algorithms import ALGORITHMS
from distclip.problems.kinds import MODULES as PROBLEM_KINDS

SRC = Path(__file__).parents[1] / "src" / "distclip"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """distclip modules imported by ``path`` at module level (imports inside functions are lazy by design)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks are not imports at run time
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if target.startswith("distclip"):
                subs = {f"{target}.{a.name}" for a in node.names}
                # `from . import claims` imports the submodule; `from .x import name` imports module x
                out |= subs & modules if subs <= modules else {target} | (subs & modules)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("distclip")}
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in SRC.rglob("*.py")}
    return {m: {t for t in _imports(p, set(files)) if t in files and t != m} for m, p in files.items()}


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = trail[trail.index(t):] + [t] if t in trail else [m, t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, [*trail, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_generic_layers_name_no_component() -> None:
    names = set(ALGORITHMS) | set(PROBLEM_KINDS)
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    pattern = re.compile(r"""["'](""" + alternatives + r""")["']""")
    for path in [SRC / "config.py", SRC / "runner.py", *sorted((SRC / "engine").glob("*.py"))]:
        text = path.read_text(encoding="utf-8").replace('"torch": torch.__version__', "")  # the version, not the kind
        hits = pattern.findall(text)
        assert not hits, f"{path.name} names components {sorted(set(hits))}"
    assert "problems.awd_lstm" not in _graph()["distclip.config"] and not any(
        t.startswith("distclip.data") and t != "distclip.data.partition" for t in _graph()["distclip.config"])


def test_module_and_function_sizes() -> None:
    for path in SRC.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) <= 400, f"{path.relative_to(SRC)} has {len(lines)} lines"
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef) and node.name != "train":
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f"{path.relative_to(SRC)}:{node.lineno} {node.name} has {length} lines"
