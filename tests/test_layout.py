"""The package's one direction of dependence: data/nn/plot -> models -> infer -> evaluate/train ->
cli, with no import cycle (type-only imports included) and nothing below the CLI importing it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pyrogen"
#: Layer of each top-level package: a module may import its own package or a lower layer only.
LAYERS = {"data": 0, "nn": 0, "plot": 0, "models": 1, "infer": 2, "evaluate": 3, "train": 3}
LAYERS["cli"] = 4
LAYERS[""] = 5  # the package root re-exports the public entry points (pyrogen.load_run)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every pyrogen module imported by ``path``, at any depth (functions, TYPE_CHECKING)."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pyrogen")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("pyrogen"):
                if module != "pyrogen":  # `from pyrogen import plot` imports pyrogen.plot
                    found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}
    modules = {_module_name(p) for p in ROOT.rglob("*.py")}
    return {m for m in found if m in modules}


GRAPH = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return top, LAYERS.get(top, -1)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_layers(module):
    top, layer = _layer(module)
    if module == "pyrogen.__main__":
        return
    for imported in GRAPH[module]:
        other, other_layer = _layer(imported)
        assert other == top or other_layer < layer, (
            f"{module} (layer {top}) imports {imported} (layer {other}): dependencies go"
            f" data/nn/plot -> models -> infer -> evaluate/train -> cli only."
        )


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import cycle: " + " -> ".join(path + [module])
        state[module] = 1
        for imported in sorted(GRAPH.get(module, ())):
            if imported != module and not module.startswith(imported + "."):
                visit(imported, path + [module])
        state[module] = 2

    for module in sorted(GRAPH):
        visit(module, [])


def test_the_layer_check_sees_a_violation():
    assert "pyrogen.train.presets" in GRAPH["pyrogen.cli.gan"]
    assert _layer("pyrogen.cli.gan")[1] > _layer("pyrogen.train.presets")[1]
