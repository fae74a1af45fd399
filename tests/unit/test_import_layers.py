"""The project's layers, read from the source (AST; nothing is imported, no Pulumi needed).

Dependencies run one way: tools and tests build on the program, the program on its components,
and the command users install (cli/) stands alone but for the contract (contract/: what the
program promises it, e.g. the stack outputs), which sits beneath everything and imports nothing
but the standard library. Within tools/, the build inputs (build.py, image/) sit beneath the
dev-cluster runtime (devcluster/), which sits beneath the test helpers (testing/). Each rule names
the import that breaks it as file:line; any cycle among the project's modules fails too, because a
cycle is two layers that cannot be understood (or moved) apart.
"""

from __future__ import annotations

import ast
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "cli", "components", "contract", "infra", "policy", "tests", "tools")
# Not Python of this project: Go wrapper modules and the scanner's own environment.
SKIPPED = {ROOT / "tools" / "go", ROOT / "tools" / "testing" / "scanner"}

FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("components", "infra", "components are built from plain inputs; the program composes them"),
    ("infra.settings", "infra.clouds", "each cloud extends the settings, not the other way"),
    ("cli", "infra", "the installed command reads stack outputs, not the program"),
    ("cli", "components", "the installed command reads stack outputs, not the program"),
    ("cli", "tools", "the installed command ships alone (the wheel holds cli/ and contract/ only)"),
    ("tools", "tests", "tests use tools; the tiers' shared helpers live in tools/testing/"),
    (
        "tools.devcluster",
        "tools.testing",
        "the dev-cluster runtime (tools/up) runs without the test helpers; they build on it",
    ),
    *(
        (
            build_input,
            layer,
            "the build inputs make binaries and images before any cluster or test runs; the "
            "dev-cluster runtime and the test helpers use them, never the other way",
        )
        for build_input in ("tools.build", "tools.image")
        for layer in ("tools.devcluster", "tools.testing")
    ),
    *(
        (
            "contract",
            layer,
            "the contract is the bottom layer: the program and the command both import "
            "it, and the command's wheel ships it without the rest of the project",
        )
        for layer in PACKAGES
        if layer != "contract"
    ),
)
"""(importer, imported, why): a module in or under the first may not import the second."""


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    where: str
    """file:line, relative to the checkout."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> Iterator[Path]:
    yield ROOT / "__main__.py"
    for package in PACKAGES:
        for directory, subdirs, files in os.walk(ROOT / package):
            here = Path(directory)
            subdirs[:] = sorted(
                d for d in subdirs if not d.startswith(".") and here / d not in SKIPPED
            )
            yield from (here / f for f in sorted(files) if f.endswith(".py"))


def imports(modules: set[str], files: list[Path]) -> list[Import]:
    """Every import of a project module, as the most specific module it names (a name imported
    from a package that is a submodule counts as that submodule)."""
    found = []
    for path in files:
        importer = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: resolved against the importer's package
                    package = importer.split(".")
                    if path.name != "__init__.py":
                        package = package[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, base] if base else package)
                names = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            for name in names:
                # `import a.b.c` of a name that is not a module: its nearest module.
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != importer:
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.append(Import(importer, name, where))
    return found


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    files = list(project_files())
    return imports({_module_name(f) for f in files}, files)


def test_the_graph_sees_the_program(graph: list[Import]) -> None:
    """A guard on the guard: a walker that found nothing would pass every rule."""
    pairs = {(i.importer, i.imported) for i in graph}
    assert ("__main__", "infra.platform") in pairs
    assert any(_within(i.importer, "infra") and _within(i.imported, "components") for i in graph)


def test_every_rule_names_modules_that_exist() -> None:
    """A guard on the rules: one naming a package that was moved or renamed would pass forever."""
    modules = {_module_name(f) for f in project_files()}
    missing = sorted(
        {
            layer
            for importer, imported, _ in FORBIDDEN
            for layer in (importer, imported)
            if not any(_within(m, layer) for m in modules)
        }
    )
    assert not missing, f"rules name no module of the project: {missing}"


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN)
def test_layers_run_one_way(graph: list[Import], importer: str, imported: str, why: str) -> None:
    bad = [
        f"{i.where}: {i.importer} imports {i.imported}"
        for i in graph
        if _within(i.importer, importer) and _within(i.imported, imported)
    ]
    if bad:
        pytest.fail(f"{importer} must not import {imported} ({why}):\n" + "\n".join(bad), False)


def _cycle(edges: dict[str, dict[str, str]]) -> list[str] | None:
    """One cycle of the graph (as its modules, first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(edges.get(node, {})):
            if state.get(succ) == 1:
                return [*path[path.index(succ) :], succ]
            if succ not in state and (found := visit(succ)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles(graph: list[Import]) -> None:
    edges: dict[str, dict[str, str]] = {}
    for i in graph:
        edges.setdefault(i.importer, {}).setdefault(i.imported, i.where)
    cycle = _cycle(edges)
    if cycle:
        steps = [f"{edges[a][b]}: {a} imports {b}" for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle:\n" + "\n".join(steps), False)


def test_the_contract_needs_only_the_standard_library() -> None:
    """The command imports the contract, so a third-party import there (Pulumi, pydantic) would
    become the command's, unseen by the rules above (which know only the project's modules)."""
    import sys

    bad = []
    for path in sorted((ROOT / "contract").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "contract":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not bad, "contract/ imports beyond the standard library:\n" + "\n".join(bad)


def test_the_wheel_holds_what_the_command_imports(graph: list[Import]) -> None:
    """The wheel ships only the packages pyproject.toml lists: every project package cli/ needs,
    directly or through them, must be one of them, or the installed command fails to import."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    needed, todo = set(), ["cli"]
    while todo:
        layer = todo.pop()
        for i in graph:
            top = i.imported.partition(".")[0]
            if _within(i.importer, layer) and top not in needed:
                needed.add(top)
                todo.append(top)
    assert "contract" in needed  # the walk sees the command's imports
    assert needed <= shipped, f"cli/ needs {sorted(needed - shipped)}, not in the wheel"
