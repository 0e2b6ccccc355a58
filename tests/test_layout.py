"""The package's shape, as docs/development.md draws it: layers you can see, imports one way.

Every import between the package's modules is read from the source (imports deferred into
functions included; only those under `if TYPE_CHECKING:` are left out, as they never run),
so a cycle cannot hide in a function body.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "jobs"
# Lower layers never import higher ones. A module's layer is its first dotted part under
# `jobs` (a subpackage, or a top-level module); `jobs` itself states the public API.
LAYERS = [
    # settings, states, errors and the small things everything uses
    {"conf", "errors", "states", "signals", "identity", "validation",
     "durations", "backoff", "joblog", "tracing"},
    {"db"},  # what differs per database
    {"timesource", "lease", "execution"},  # the database's time; one attempt
    {"models"},
    {"cron", "monitoring"},
    {"runtime"},
    # entry points, and what wires the app together
    {"admin", "views", "cli", "management", "templatetags", "testing", "contrib", "urls",
     "apps", "checks"},
    # the package's root states the public API: it loads nothing itself, and hands out a
    # name from below (`from jobs import batch`) when first asked for it
    {"jobs"},
]  # fmt: skip
MAX_LINES = 500
MAX_TOP_LEVEL_MODULES = 15


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for statement in branch.body
        for node in ast.walk(statement)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from jobs.models import batch` imports the module `jobs.models.batch`; the
            # package itself counts only when a name of its own is imported from it.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found |= {target for target in targets if target in known and target != name}
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else module
    return next(rank for rank, names in enumerate(LAYERS) if part in names)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_its_way_back_to_itself_not_even_from_a_function():
    assert cycles(graph()) == []


def test_imports_point_down_the_layers():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in graph().items()
        for target in targets
        if layer(target) > layer(source)
    )
    assert upward == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_holds_two_ideas_by_its_length(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_the_top_of_the_package_is_a_short_list_and_the_rest_are_named_subpackages():
    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_module_belongs_to_a_layer():
    unplaced = defaultdict(list)
    for name in modules():
        try:
            layer(name)
        except StopIteration:
            unplaced[name.split(".")[1]].append(name)
    assert dict(unplaced) == {}
