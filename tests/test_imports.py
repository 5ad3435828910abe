"""The package's import graph has no circle of any size (imports inside functions count), its top level holds only
the modules docs/architecture.md names, and its public face (`mf.__all__`, the CLI's command tree) loses nothing.

The layering itself is import-linter's contract in pyproject.toml (`lint-imports`, run by `make test` and below).
"""

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import typer.main

import medflow

ROOT = Path(medflow.__file__).parent
TOP_LEVEL = {"__init__", "__main__", "errors", "registry", "artifacts", "runs"}  # and the config/ package


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` depends on the module; `from mod import name` on the module that holds it
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets = subs + ([node.module] if len(subs) < len(node.names) else [])
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))
    return out


def test_strongly_connected_finds_a_circle_of_three():
    comps = strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(map(len, comps)) == [1, 3]


def test_no_import_circle_of_any_size():
    circles = [c for c in strongly_connected(_graph()) if len(c) > 1]
    assert circles == [], f"import circles: {circles}"


def test_top_level_holds_only_the_named_modules():
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert modules == TOP_LEVEL, f"top-level modules beyond docs/architecture.md's map: {sorted(modules - TOP_LEVEL)}"


def test_layers_contract_holds():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency: pip install -e '.[dev]'"
    res = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT.parents[1])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def _cli_tree(cmd: click.Command, prefix: str = "") -> dict[str, list[str]]:
    out = {prefix or "medflow": sorted(p.name for p in cmd.params)}
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            out.update(_cli_tree(sub, f"{prefix} {name}".strip()))
    return out


def test_no_public_name_or_command_lost():
    """`mf.__all__` and every CLI command with its options, against the record taken before the package was
    reorganized (tests/public_api.json): a name may be added (then record it), never lost."""
    from medflow.cli import app

    recorded = json.loads((Path(__file__).parent / "public_api.json").read_text())
    assert set(recorded["all"]) <= set(medflow.__all__)
    for name in medflow.__all__:
        assert getattr(medflow, name) is not None
    tree = _cli_tree(typer.main.get_command(app))
    for command, params in recorded["cli"].items():
        assert command in tree, f"CLI command lost: medflow {command}"
        assert set(params) <= set(tree[command]), f"medflow {command}: options lost {set(params) - set(tree[command])}"


def test_a_files_tests_share_one_xdist_worker(request):
    """`make test` runs two workers with --dist loadgroup (conftest.py groups each file's tests, so its module
    fixtures are built once); pytest-xdist groups by a suffix on the test id, which some pytest versions drop."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        assert request.node.nodeid.endswith("@tests/test_imports.py"), request.node.nodeid
