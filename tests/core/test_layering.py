"""The core reads top-down: its modules form layers, each importing only from the layers below it (or its own), and
no import cycle exists. Imports inside functions count (deferring an import hides a dependency from Python, not from
the reader); imports under ``TYPE_CHECKING`` do not."""

from __future__ import annotations

import ast
from pathlib import Path

import peft

SOURCE = Path(peft.__file__).parent

# bottom to top; a module is in the layer of the longest prefix (a whole dotted segment) it matches
LAYERS = (
    # leaf helpers: names and enums, files, constants, module-tree helpers; the host and version lookups
    ("peft._version", "peft.hosts", "peft.import_utils", "peft.utils"),
    # which methods exist (their configs, tuners, prefixes)
    ("peft.registry",),
    ("peft.config", "peft.quantization"),
    # an adapter's folder (weights and config) as one unit
    ("peft.adapter_files",),
    # targeting rules and small helpers of the tuners (peft.tuners itself only lists the methods), the lock that
    # keeps adapter switches apart from forward passes
    (
        "peft.tuners",
        "peft.tuners._targeting",
        "peft.tuners._validation",
        "peft.tuners._buffer_dict",
        "peft.tuners._adapter_lock",
    ),
    # the adapter layer base class
    ("peft.tuners.tuners_layer",),
    # the bound on the memory a new adapter may take
    ("peft.tuners._memory_bound",),
    # modules_to_save, trainable tokens, weight tying
    ("peft.auxiliary",),
    # the lifecycle loops over a model's adapters, and where their tensors are
    ("peft.lifecycle", "peft.adapter_keys"),
    # the tuner base class
    ("peft.tuners.tuners_utils",),
    # adapter state dicts in the checkpoint format
    ("peft.state_dict",),
    # the methods and their families
    ("peft.tuners.",),
    # functions on whole models
    ("peft.status", "peft.mapping", "peft.functional", "peft.helpers", "peft.kappatune"),
    ("peft.peft_model", "peft.mixed_model"),
    # what builds or reads whole PeftModels: get_peft_model, Arrow's model, optimizers, the command line
    (
        "peft",
        "peft.mapping_func",
        "peft.arrow_model",
        "peft.auto",
        "peft.optimizers",
        "peft.capabilities",
        "peft.commands",
        "peft.cli",
    ),
)


def _layer(module: str) -> int:
    best, best_length = None, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix if prefix.endswith(".") else prefix + ".")
            if matches and len(prefix) > best_length:
                best, best_length = rank, len(prefix)
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SOURCE.rglob("*.py"):
        parts = ("peft", *path.relative_to(SOURCE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.extend((alias.name, []) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                found.append((base, [alias.name for alias in node.names]))
            else:
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for base, names in _imports(tree, name, path.name == "__init__.py"):
            # "from pkg import sub" imports the module pkg.sub
            for candidate in [f"{base}.{n}" for n in names] + [base]:
                if candidate in modules and candidate != name:
                    graph[name].add(candidate)
                    break
    return graph


def test_every_import_goes_down_the_layers():
    graph = _graph()
    climbs = sorted(
        f"{source} (layer {_layer(source)}) imports {target} (layer {_layer(target)})"
        for source, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(source)
    )
    assert climbs == []


def test_no_import_cycle():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_layer_check_sees_deferred_imports():
    tree = ast.parse("def f():\n    from peft.peft_model import PeftModel\n")
    assert _imports(tree, "peft.utils.other", False) == [("peft.peft_model", ["PeftModel"])]
    assert _layer("peft.utils.other") < _layer("peft.peft_model")
