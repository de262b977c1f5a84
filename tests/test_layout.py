"""The layout tells the truth: no import cycles, one wiring module, small modules.

Imports are read from the source (every ``import``, also those inside
functions; those under ``if TYPE_CHECKING:`` only name types and are left
out), so a cycle hidden in a function body is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wingman_gateway"
TESTS = Path(__file__).resolve().parent
WIRING = "wingman_gateway.service"
ENTRY = "wingman_gateway.tap"  # twistd's entry point: it runs the wiring
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``name`` imports (the module itself when a name is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node):
            skipped.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def _is_parent_package(a: str, b: str) -> bool:
    """Importing ``a.b`` runs ``a/__init__``: that edge is not a design dependency."""
    return b.startswith(a + ".")


def test_no_import_cycles() -> None:
    edges = {
        name: {target for target in targets if not _is_parent_package(target, name)}
        for name, targets in graph().items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(edges.get(name, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_only_the_entry_point_imports_the_wiring() -> None:
    importers = sorted(name for name, targets in graph().items() if WIRING in targets)
    assert importers == [ENTRY]


def test_the_router_and_rooms_never_import_a_transport_or_the_web() -> None:
    edges = graph()
    for core in ("wingman_gateway.router", "wingman_gateway.rooms", "wingman_gateway.state"):
        outward = {t for t in edges[core] if t.startswith(("wingman_gateway.transports", "wingman_gateway.web"))}
        assert outward == set(), f"{core} imports {outward}"


def test_library_code_never_imports_the_command_line() -> None:
    edges = graph()
    def command_line(name: str) -> bool:
        return name == "wingman_gateway.cli" or name.startswith("wingman_gateway.cli.")

    offenders = {
        name: sorted(t for t in targets if command_line(t))
        for name, targets in edges.items()
        if not command_line(name) and name != "wingman_gateway.__main__"
    }
    assert {name: t for name, t in offenders.items() if t} == {}


def test_no_module_passes_the_size_limit() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_transports_live_under_one_package() -> None:
    top = {path.stem for path in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    assert top & {"websocket", "bridge", "ssh"} == set()
    assert (PACKAGE / "transports").is_dir() and (PACKAGE / "web").is_dir()


def test_test_helpers_live_in_the_harness_package() -> None:
    loose = sorted(
        path.name for path in TESTS.glob("*.py")
        if not path.name.startswith("test_") and path.name != "conftest.py"
    )
    assert loose == []


def test_the_readme_layout_names_every_module() -> None:
    """The README's layout section tells the truth about the tree."""
    readme = (PACKAGE.parent / "README.rst").read_text(encoding="utf-8")
    layout = readme[readme.index("\nLayout\n"):readme.index("Where to start for:")]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        if f"``{path.name}``" not in layout and f"{path.parent.name}/{path.name}" not in layout:
            missing.append(str(path.relative_to(PACKAGE)))
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        if f"``{folder.name}/``" not in layout:
            missing.append(folder.name + "/")
    assert missing == []


def test_setup_cfg_lists_every_package() -> None:
    """A package missing from ``packages`` is missing from the wheel (and from the image)."""
    setup = (PACKAGE.parent / "setup.cfg").read_text(encoding="utf-8")
    listed = setup[setup.index("packages ="):setup.index("install_requires")]
    packages = {module_name(path) for path in PACKAGE.rglob("__init__.py")}
    assert {name for name in packages if f"    {name}\n" not in listed} == set()
