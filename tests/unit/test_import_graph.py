"""The import structure of both packages (issue 12, "No import cycles").

* every module of ``pytest_orbstack`` and ``orbsim`` imports on its own, in a fresh interpreter;
* the package-internal import graph, read from the source (module-level *and* function-level
  imports; ``if TYPE_CHECKING:`` blocks excluded, since they never run), has no cycle;
* no simulator module is over ~500 lines without a stated reason;
* the plugin and the simulator never import each other (they meet only at the ``orbctl`` command
  line);
* within the plugin only ``orbctl.py`` starts child processes (others on an explicit allow-list,
  each with its reason), and nothing imports pyinfra's CLI.

Modules are discovered by walking the package directories, so the test follows modules being
added, split or removed.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN, SIMULATOR = "pytest_orbstack", "orbsim"

#: Third-party modules that are optional extras: a module that needs one is skipped (not failed)
#: by the fresh-import test when the extra is not installed.
OPTIONAL = {"testinfra": "the [testinfra] extra (pytest-testinfra) is not installed"}

#: Cycles tolerated in the plugin's import graph: none.  Each entry would have to match a strongly
#: connected component *exactly*, so a new module joining a cycle, or any other cycle, fails.
TOLERATED_PLUGIN_CYCLES: list[frozenset[str]] = []

#: Modules of the plugin, besides ``orbctl.py``, that may start child processes, and why.
SPAWN_ALLOWED = {
    f"{PLUGIN}.cleanup": "starts the detached cleanup watchdog (a Python process, not orbctl) "
    "with os.posix_spawn in its own process group, so it outlives a SIGKILLed run",
    f"{PLUGIN}.deploy.runner": "runs each deploy file in its own Python process (pyinfra's "
    "global state is not thread-safe; the CLI's way), which runs orbctl through orbctl.py",
}
#: Modules that may import pyinfra_cli: only the deploy process's entry point, which the test
#: process never imports (``python -m pytest_orbstack.deploy``).
PYINFRA_CLI_ALLOWED = {f"{PLUGIN}.deploy.__main__"}
#: Modules whose import means running child processes.
PROCESS_MODULES = {
    "subprocess", "multiprocessing", "asyncio.subprocess", "pty", "concurrent.futures.process",
}  # fmt: skip
#: ``os`` functions that start or replace processes.
OS_SPAWN = {
    "system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp",
    "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
    "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
}  # fmt: skip


# -- reading the source ------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to an absolute dotted name."""

    source: str  # the importing module
    target: str  # what it imports (a module, or for ``from X import name``, X or X.name)
    line: int
    in_function: bool
    text: str

    def where(self) -> str:
        scope = "in a function" if self.in_function else "module level"
        return f"{self.source} line {self.line} ({scope}): {self.text}"


@dataclass(frozen=True)
class Call:
    """A call of ``os.<name>(...)`` (or of a name imported from ``os``)."""

    source: str
    name: str
    line: int


def discover(package: str, root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: path}`` for every ``.py`` file under ``root/package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Reader(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: Iterable[str], source: str) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.known = set(known)
        self.lines = source.splitlines()
        self.depth = 0
        self.imports: list[Import] = []
        self.calls: list[Call] = []
        self.from_os: dict[str, str] = {}  # local name -> os function

    def _add(self, node: ast.stmt | ast.expr, target: str) -> None:
        text = self.lines[node.lineno - 1].strip() if node.lineno <= len(self.lines) else ""
        self.imports.append(Import(self.module, target, node.lineno, self.depth > 0, text))

    def _scoped(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped
    visit_Lambda = _scoped

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # never runs: only the else branch counts
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base_parts = self.package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(node, sub if sub in self.known else base)
            if base == "os":
                self.from_os[alias.asname or alias.name] = alias.name

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id == "os" and func.attr in OS_SPAWN:
                self.calls.append(Call(self.module, func.attr, node.lineno))
            if func.value.id == "importlib" and func.attr == "import_module":
                self._dynamic(node)
        elif isinstance(func, ast.Name):
            if self.from_os.get(func.id) in OS_SPAWN:
                self.calls.append(Call(self.module, self.from_os[func.id], node.lineno))
            if func.id in ("__import__", "import_module"):
                self._dynamic(node)
        self.generic_visit(node)

    def _dynamic(self, node: ast.Call) -> None:
        """``importlib.import_module("literal")``: an import all the same."""
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            self._add(node, first.value)


def read_module(module: str, path: Path, known: Iterable[str]) -> _Reader:
    source = path.read_text()
    reader = _Reader(module, path.name == "__init__.py", known, source)
    reader.visit(ast.parse(source, filename=str(path)))
    return reader


def read_package(package: str, root: Path = ROOT) -> dict[str, _Reader]:
    modules = discover(package, root)
    return {name: read_module(name, path, modules) for name, path in modules.items()}


# -- the graph ---------------------------------------------------------------------------------


def internal_node(target: str, modules: Iterable[str]) -> str | None:
    """The package module an import target lands in (longest matching module), if any."""
    names = set(modules)
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in names:
            return candidate
    return None


def import_graph(readers: dict[str, _Reader]) -> dict[str, dict[str, list[Import]]]:
    """``{module: {imported module: [the imports making that edge]}}`` within one package."""
    graph: dict[str, dict[str, list[Import]]] = {name: {} for name in readers}
    for name, reader in readers.items():
        for imp in reader.imports:
            node = internal_node(imp.target, readers)
            if node is not None and node != name:
                edge = graph[name].setdefault(node, [])
                if all(imp.line != seen.line for seen in edge):  # one line per statement
                    edge.append(imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[Import]]]) -> list[frozenset[str]]:
    """Tarjan: every component of more than one module (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe_cycle(graph: dict[str, dict[str, list[Import]]], component: frozenset[str]) -> str:
    """A readable cycle through ``component``: the path, then the imports making each step."""
    start = min(component)
    # breadth-first search for the shortest way back to start inside the component
    paths = {start: [start]}
    queue = [start]
    cycle: list[str] = []
    while queue and not cycle:
        v = queue.pop(0)
        for w in sorted(graph[v]):
            if w == start:
                cycle = [*paths[v], start]
                break
            if w in component and w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    lines = [" -> ".join(cycle) + f"   (component: {', '.join(sorted(component))})"]
    for a, b in zip(cycle, cycle[1:], strict=False):
        for imp in graph[a][b]:
            lines.append(f"    {imp.where()}")
    return "\n".join(lines)


def cycles_report(graph: dict[str, dict[str, list[Import]]], cycles: list[frozenset[str]]) -> str:
    return "import cycles found:\n" + "\n".join(describe_cycle(graph, c) for c in cycles)


# -- the graph builder itself (so that the checks below can fail) ------------------------------


def test_graph_reader_on_a_sample_package(tmp_path: Path) -> None:
    pkg = tmp_path / "samplepkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": """
            from typing import TYPE_CHECKING
            from samplepkg import b
            if TYPE_CHECKING:
                from samplepkg.c import Thing
            else:
                import json
            """,
        "b.py": """
            def later():
                from .c import thing
                return thing
            """,
        "c.py": """
            import importlib
            import typing
            if typing.TYPE_CHECKING:
                from samplepkg import a
            def load():
                return importlib.import_module("samplepkg.a")
            """,
        "d.py": "from .sub.e import f\nimport os\nos.posix_spawn('x', ['x'], {})\n",
        "sub/__init__.py": "from .. import d\n",
        "sub/e.py": "from . import f as g\nfrom ..d import name\nf = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    readers = read_package("samplepkg", tmp_path)
    assert set(readers) == {
        "samplepkg",
        "samplepkg.a",
        "samplepkg.b",
        "samplepkg.c",
        "samplepkg.d",
        "samplepkg.sub",
        "samplepkg.sub.e",
    }
    graph = import_graph(readers)
    edges = {(a, b) for a, targets in graph.items() for b in targets}
    assert edges == {
        ("samplepkg.a", "samplepkg.b"),  # `from pkg import module` is the module
        ("samplepkg.b", "samplepkg.c"),  # function level, relative
        ("samplepkg.c", "samplepkg.a"),  # importlib.import_module("literal")
        ("samplepkg.d", "samplepkg.sub.e"),
        ("samplepkg.sub", "samplepkg.d"),  # `from .. import d` in a package __init__
        ("samplepkg.sub.e", "samplepkg.sub"),  # `from . import f`: not a module, so the package
        ("samplepkg.sub.e", "samplepkg.d"),
    }  # and nothing from either TYPE_CHECKING block
    a_targets = {i.target for i in readers["samplepkg.a"].imports}
    assert "json" in a_targets  # the else branch of `if TYPE_CHECKING:` runs
    assert "samplepkg.c" not in a_targets
    [b_to_c] = graph["samplepkg.b"]["samplepkg.c"]
    assert b_to_c.in_function
    assert [c.name for c in readers["samplepkg.d"].calls] == ["posix_spawn"]
    cycles = strongly_connected(graph)
    assert sorted(map(sorted, cycles)) == [
        ["samplepkg.a", "samplepkg.b", "samplepkg.c"],
        ["samplepkg.d", "samplepkg.sub", "samplepkg.sub.e"],
    ]
    report = cycles_report(graph, cycles)
    assert "samplepkg.a -> samplepkg.b -> samplepkg.c -> samplepkg.a" in report
    assert "samplepkg.b line 3 (in a function): from .c import thing" in report


def test_both_packages_are_found() -> None:
    for package in (PLUGIN, SIMULATOR):
        modules = discover(package)
        assert package in modules and len(modules) > 5, modules


# -- each module imports on its own ------------------------------------------------------------

IMPORTABLE = sorted(
    name
    for package in (PLUGIN, SIMULATOR)
    for name in discover(package)
    if not name.endswith(".__main__")  # running it is its purpose: `python -m orbsim` runs main()
)

FRESH_IMPORT = """
import importlib, sys
module = importlib.import_module(sys.argv[1])
print(module.__file__)
"""


@pytest.mark.parametrize("module", IMPORTABLE)
def test_module_imports_in_a_fresh_interpreter(module: str) -> None:
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_IMPORT, module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        for missing, why in OPTIONAL.items():
            if (
                f"No module named '{missing}'" in proc.stderr
                and importlib.util.find_spec(missing) is None
            ):
                pytest.skip(f"{module} needs {missing}: {why}")
    assert proc.returncode == 0, f"import {module} failed on its own:\n{proc.stderr}"
    assert Path(proc.stdout.strip()).resolve().is_relative_to(ROOT), proc.stdout


# -- no cycles ---------------------------------------------------------------------------------


def test_no_import_cycle_in_the_plugin() -> None:
    graph = import_graph(read_package(PLUGIN))
    cycles = [c for c in strongly_connected(graph) if c not in TOLERATED_PLUGIN_CYCLES]
    assert not cycles, cycles_report(graph, cycles)


def test_no_import_cycle_in_the_simulator() -> None:
    graph = import_graph(read_package(SIMULATOR))
    cycles = strongly_connected(graph)
    assert not cycles, cycles_report(graph, cycles)


# -- module size -------------------------------------------------------------------------------

#: Lines above which a simulator module must say why it is one module (CONTRIBUTING.md: "one
#: module per concern; ~500 lines is a smell").
SIM_MODULE_LIMIT = 500
#: Simulator modules allowed over the limit, each with its reason.
SIM_OVERSIZE_REASONS: dict[str, str] = {}


def test_no_simulator_module_over_the_size_limit() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in discover(SIMULATOR).items()}
    over = {m: n for m, n in sizes.items() if n > SIM_MODULE_LIMIT}
    unexplained = {m: n for m, n in over.items() if m not in SIM_OVERSIZE_REASONS}
    assert not unexplained, f"orbsim modules over {SIM_MODULE_LIMIT} lines: {unexplained}"
    stale = set(SIM_OVERSIZE_REASONS) - set(over)
    assert not stale, f"no longer over the limit (drop their reason): {stale}"


#: The plugin's hard limit (the project's before-stop check flags modules over 600 lines).
#: Between 500 and 600 today: connector.py (the pyinfra connector class: commands and file
#: transfer), lifecycle.py (MachineManager), plugin.py (hooks and fixtures), orbctl.py (the one
#: client), report.py (recorder and summary) - each one concern, candidates for the next cut.
PLUGIN_MODULE_LIMIT = 600


def test_no_plugin_module_over_the_size_limit() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in discover(PLUGIN).items()}
    over = {m: n for m, n in sizes.items() if n > PLUGIN_MODULE_LIMIT}
    assert not over, f"plugin modules over {PLUGIN_MODULE_LIMIT} lines (cut by concern): {over}"


# -- boundaries --------------------------------------------------------------------------------


@pytest.mark.parametrize(("package", "forbidden"), [(PLUGIN, SIMULATOR), (SIMULATOR, PLUGIN)])
def test_plugin_and_simulator_never_import_each_other(package: str, forbidden: str) -> None:
    """They meet only at the orbctl command line; tests may use both."""
    bad = [
        imp.where()
        for reader in read_package(package).values()
        for imp in reader.imports
        if imp.target.split(".")[0] == forbidden
    ]
    assert not bad, f"{package} imports {forbidden}:\n" + "\n".join(bad)


def test_only_orbctl_starts_processes_in_the_plugin() -> None:
    """One module runs orbctl; other child processes only where the allow-list says why."""
    readers = read_package(PLUGIN)
    bad = [
        f"{imp.where()}  [imports {imp.target}]"
        for reader in readers.values()
        for imp in reader.imports
        if any(imp.target == m or imp.target.startswith(m + ".") for m in PROCESS_MODULES)
        and reader.module != f"{PLUGIN}.orbctl"
        and reader.module not in SPAWN_ALLOWED
    ]
    bad += [
        f"{call.source} line {call.line}: os.{call.name}(...)"
        for reader in readers.values()
        for call in reader.calls
        if call.source not in SPAWN_ALLOWED
    ]
    assert not bad, "child processes started outside orbctl.py:\n" + "\n".join(bad)


def test_spawn_allow_list_is_current() -> None:
    """Every allow-listed module still exists and still spawns (no stale exemptions)."""
    readers = read_package(PLUGIN)
    for module in SPAWN_ALLOWED:
        assert module in readers, f"{module} is allow-listed but does not exist"
        spawns = readers[module].calls or [
            imp for imp in readers[module].imports if imp.target in PROCESS_MODULES
        ]
        assert spawns, f"{module} is allow-listed but starts no process"


def test_plugin_never_imports_pyinfra_cli() -> None:
    bad = [
        imp.where()
        for reader in read_package(PLUGIN).values()
        for imp in reader.imports
        if imp.target.split(".")[0] == "pyinfra_cli" and reader.module not in PYINFRA_CLI_ALLOWED
    ]
    assert not bad, "pyinfra's CLI is not an API:\n" + "\n".join(bad)
