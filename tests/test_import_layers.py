"""The package's import graph has no circles and no arrow from a lower floor to a higher one.

Why: a module that imports "up" (the HAL importing a task, the data package importing the
task layer) ties the lower floor to everything above it, and a circle makes every module in
it load, test and change together. The graph is read from the source with ``ast``, without
importing anything, and counts every import: at module level and inside functions alike,
since a lazy import is a dependency all the same.

The floors, bottom to top (a module may import its own floor and any floor below it):

0. ground: ``robolearn`` (the package itself), ``config``, ``paths``, ``tempfiles``,
   ``errors``, ``geometry`` (rotation maths), ``sim_compat`` (importing robosuite/MuJoCo);
1. data and models: ``data``, ``models``, ``video``, ``launch``, ``inspect_report``;
2. hal and the episode runtime: ``hal`` (the Arm protocol, the shield, the backends, the
   factory's registry), ``runtime`` (episode seeds, the episode loop, the worker pool: the
   HAL's control loop starts its episodes with it), ``calibration`` (camera intrinsics and
   hand-eye extrinsics, the calibration file the HAL's camera views name);
3. tasks and their peers: ``tasks`` (task scenes over an arm, operators, the task arm),
   ``algos``, ``teleop``;
4. runtime: ``policy``, ``train``, ``evaluate``, ``collect``, ``deploy``, ``selection``;
5. commands: ``commands``, ``quickstart``;
6. entry points: ``cli``, ``__main__``.

A module that is on no floor fails the test: a new module gets a floor when it is written.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robolearn"

FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("robolearn", "robolearn.config", "robolearn.paths", "robolearn.tempfiles", "robolearn.errors",
                "robolearn.geometry", "robolearn.sim_compat")),
    ("data", ("robolearn.data", "robolearn.models", "robolearn.video", "robolearn.launch", "robolearn.inspect_report")),
    ("hal", ("robolearn.hal", "robolearn.runtime", "robolearn.calibration", "robolearn.perception")),
    ("tasks", ("robolearn.tasks", "robolearn.algos", "robolearn.teleop")),
    ("runtime", ("robolearn.policy", "robolearn.train", "robolearn.evaluate", "robolearn.collect", "robolearn.deploy",
                 "robolearn.selection", "robolearn.distributed", "robolearn.perceived")),
    ("commands", ("robolearn.commands", "robolearn.quickstart")),
    ("entry", ("robolearn.cli", "robolearn.__main__")),
]


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported_names(node: ast.AST, package: str) -> list[str]:
    """The dotted names an import statement may load: ``from a import b`` may load ``a.b``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(parent + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_edges(modules: dict[str, Path]) -> dict[tuple[str, str], int]:
    """(importer, imported) -> the first line where the importer imports it."""
    edges: dict[tuple[str, str], int] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _imported_names(node, package):
                if target in modules and target != name:
                    edges.setdefault((name, target), node.lineno)
    return edges


def floor_of(module: str) -> int | None:
    """The floor whose longest prefix names the module (``robolearn`` itself only exactly)."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "robolearn" and module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def find_cycles(nodes: list[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in sorted(edges):
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for n in nodes:
        if n not in index:
            visit(n)
    return out


def test_every_module_is_on_a_floor():
    unplaced = [m for m in module_files() if floor_of(m) is None]
    assert not unplaced, f"modules on no floor of FLOORS in {Path(__file__).name}: {unplaced}"


def test_no_import_circles():
    modules = module_files()
    edges = import_edges(modules)
    cycles = find_cycles(sorted(modules), set(edges))
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{a} -> {b} (line {edges[a, b]})" for a, b in sorted(edges)
                                                if a in c and b in c) for c in cycles]
    assert not cycles, "import circles:\n" + "\n".join(detail)


def test_no_import_runs_back_up_a_floor():
    modules = module_files()
    upward = []
    for (a, b), line in sorted(import_edges(modules).items()):
        fa, fb = floor_of(a), floor_of(b)
        if fa is not None and fb is not None and fb > fa:
            upward.append(f"{modules[a].relative_to(PACKAGE.parent)}:{line}: {a} ({FLOORS[fa][0]}) imports "
                          f"{b} ({FLOORS[fb][0]})")
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def test_the_checker_sees_a_circle_and_an_upward_import():
    """The checks above can fail: a made-up circle is found and a made-up upward arrow is placed."""
    assert find_cycles(["a", "b", "c"], {("a", "b"), ("b", "a"), ("b", "c")}) == [["a", "b"]]
    assert floor_of("robolearn.hal.factory") < floor_of("robolearn.tasks.base") < floor_of("robolearn.commands.deploy")
    assert floor_of("robolearn") == 0 and floor_of("robolearn.sim_compat") == 0
