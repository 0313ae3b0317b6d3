"""The package's layout (ARCHITECTURE.md, "The package, by stage"): no import cycle between
modal_iac modules, imports flowing one way down the rooms, no module over 600 lines.

Every import counts, wherever it stands: at the top of a module, inside a function (an import
there still ties the two modules together: a reader following one goes into the other) and
under ``TYPE_CHECKING``. Importing one's own package (``from .. import __version__``) is not an
edge: Python imports a package with any of its modules anyway. Each failure names the modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "modal_iac"
MAX_LINES = 600
# The rooms, lowest first: a module imports from its own room or from rooms below it. The
# package's __init__ is the public face (the api room); a top-level module not named here is
# in the cli room, and so is a subpackage not named here (name its room to place it lower).
ROOMS = (
    "top",
    "spec",
    "review",
    "loading",
    "render",
    "state",
    "plan",
    "modal",
    "commands",
    "api",
    "cli",
    "local_api",
)
TOP = ("errors", "files", "tokens", "deferred")  # the top-level modules every room stands on


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its text."""
    me = module_name(path, package)
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            names = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules and name != me)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports, without the edges to its own enclosing packages."""
    paths = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    packages = {m for m, p in paths.items() if p.name == "__init__.py"}
    graph = {}
    for module, path in paths.items():
        found = imports(path, package, set(paths))
        graph[module] = {d for d in found if not (d in packages and module.startswith(d + "."))}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def room(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return ROOMS.index("api")
    if parts[1] in TOP:
        return ROOMS.index("top")
    return ROOMS.index(parts[1]) if parts[1] in ROOMS else ROOMS.index("cli")


def cycle_findings(graph: dict[str, set[str]]) -> list[str]:
    lines = []
    for group in cycles(graph):
        lines.append("cycle: " + " ".join(group))
        lines += [f"    {m} -> {' '.join(sorted(graph[m] & set(group)))}" for m in group]
    return lines


def upward_findings(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"upward: {m} ({ROOMS[room(m)]}) imports {d} ({ROOMS[room(d)]})"
        for m in sorted(graph)
        for d in sorted(graph[m])
        if room(d) > room(m)
    ]


def length_findings(package: Path, limit: int = MAX_LINES) -> list[str]:
    lines = []
    for path in sorted(package.rglob("*.py")):
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            lines.append(f"too long: {module_name(path, package)} {count} lines (over {limit})")
    return lines


def report(found: list[str]) -> str:
    print("\n".join(found))  # in the captured output too, whatever the assertion shows
    return "\n" + "\n".join(found)


# -- modal_iac itself -------------------------------------------------------------------------


def test_no_import_cycle_between_modules() -> None:
    found = cycle_findings(import_graph(PACKAGE))
    assert not found, report(found)


def test_imports_flow_down_the_rooms() -> None:
    found = upward_findings(import_graph(PACKAGE))
    assert not found, report(found)


def test_no_module_is_over_600_lines() -> None:
    found = length_findings(PACKAGE)
    assert not found, report(found)


# -- the checks themselves, on a small package ------------------------------------------------


def package(root: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under ``root`` holding ``files`` (path -> text); every folder gets
    an ``__init__.py``."""
    top = root / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return top


CLEAN = {
    "__init__.py": '"""The public face."""\n__version__ = "1"\n',
    "errors.py": "class Error(Exception): ...\n",
    "spec/models.py": "from ..errors import Error\n",
    "render/app.py": (
        "from .. import __version__\n"  # its own package: not an edge
        "from ..spec import models\n"
        "from . import shared\n"
    ),
    "render/shared.py": "import pkg.spec.models\n",
    "plan/plan.py": "def later():\n    from ..render.app import __name__\n",
    "cli.py": "from .plan import plan\nfrom .errors import Error\n",
}


def test_a_clean_package_passes(tmp_path: Path) -> None:
    top = package(tmp_path, CLEAN)
    graph = import_graph(top)
    assert graph["pkg.render.app"] == {"pkg.spec", "pkg.spec.models", "pkg.render.shared"}
    assert graph["pkg.plan.plan"] == {"pkg.render.app"}  # an import inside a function counts
    assert cycle_findings(graph) == upward_findings(graph) == length_findings(top) == []


def test_a_cycle_through_a_function_and_type_checking_is_found(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "render/shared.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .app import X\n"
        ),
        "render/app.py": "def build():\n    from .shared import helper\n",
    }
    found = cycle_findings(import_graph(package(tmp_path, files)))
    assert found == [
        "cycle: pkg.render.app pkg.render.shared",
        "    pkg.render.app -> pkg.render.shared",
        "    pkg.render.shared -> pkg.render.app",
    ]


def test_a_longer_cycle_names_every_module_in_it(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "plan/a.py": "from . import b\n",
        "plan/b.py": "from .c import x\n",
        "plan/c.py": "import pkg.plan.a\n",
    }
    found = cycle_findings(import_graph(package(tmp_path, files)))
    assert found[0] == "cycle: pkg.plan.a pkg.plan.b pkg.plan.c"
    assert len(found) == 4


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "spec/models.py": "def later():\n    from ..commands.fmt import main\n",
        "commands/fmt.py": "",
        "state/store.py": "from ..plan.plan import later\n",
        "render/shared.py": "from ..extras import tool\n",  # a room not named: the cli's
        "extras/__init__.py": "",
    }
    graph = import_graph(package(tmp_path, files))
    assert cycle_findings(graph) == []
    assert upward_findings(graph) == [
        "upward: pkg.render.shared (render) imports pkg.extras (cli)",
        "upward: pkg.spec.models (spec) imports pkg.commands.fmt (commands)",
        "upward: pkg.state.store (state) imports pkg.plan.plan (plan)",
    ]


def test_a_long_module_is_found(tmp_path: Path) -> None:
    top = package(tmp_path, {**CLEAN, "plan/plan.py": "x = 1\n" * (MAX_LINES + 1)})
    assert length_findings(top) == [f"too long: pkg.plan.plan {MAX_LINES + 1} lines (over 600)"]
    assert length_findings(package(tmp_path, {"plan/plan.py": "x = 1\n" * MAX_LINES})) == []


@pytest.mark.parametrize("module", ["pkg", "pkg.errors", "pkg.api", "pkg.cli", "pkg.other"])
def test_the_rooms_of_top_level_modules(module: str) -> None:
    expected = {"pkg": "api", "pkg.errors": "top", "pkg.api": "api", "pkg.cli": "cli"}
    assert ROOMS[room(module)] == expected.get(module, "cli")
