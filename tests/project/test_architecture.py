"""The README's architecture table is true: layers, where CASA and casacore are used, sizes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

ROOT = REPO_ROOT
PACKAGE = ROOT / "src" / "dsa110_contimg"
LAYERS = ["foundation", "pure kernels and plans (numpy)", "graphs and I/O", "drivers",
          "command line"]  # fmt: skip
MAX_LINES = 450
HEAVY = ("dask", "distributed", "daskms", "casacore", "casatools", "casatasks")


def _readme_layers() -> dict[str, int]:
    """Module path (relative to the package) -> layer index, from the README table."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Architecture") : text.index("## Benchmarks")]
    layers = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] not in LAYERS:
            continue
        for module in re.findall(r"`([\w/]+\.py)`", cells[1]):
            assert module not in layers, f"{module} is listed twice"
            layers[module] = LAYERS.index(cells[0])
    return layers


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "egg-info" not in str(p))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.fixture(scope="module")
def layers():
    return _readme_layers()


def _layer_of(module: str, by_name: dict, cache: dict) -> int | None:
    """A module's layer; a package's is the highest of what its ``__init__`` imports."""
    if module in cache:
        return cache[module]
    path = by_name.get(module)
    if path is None:
        return None
    if path.name != "__init__.py":
        cache[module] = LAYER_OF_PATH[path]
        return cache[module]
    cache[module] = 0
    inner = [_layer_of(m, by_name, cache) for m in _imports(path) if m in by_name and m != module]
    cache[module] = max([x for x in inner if x is not None], default=0)
    return cache[module]


LAYER_OF_PATH: dict = {}


def test_every_module_is_in_the_table_once(layers):
    listed = set(layers)
    present = {str(p.relative_to(PACKAGE)) for p in _modules() if p.name != "__init__.py"}
    assert present - listed == set(), "modules missing from the README's architecture table"
    assert listed - present == set(), "the README lists modules that do not exist"


def test_imports_only_go_down(layers):
    LAYER_OF_PATH.update({PACKAGE / m: layer for m, layer in layers.items()})
    by_name = {_name(p): p for p in _modules()}
    cache: dict = {}
    upward = []
    for path in _modules():
        if path.name == "__init__.py":
            continue
        own = LAYER_OF_PATH[path]
        for module in _imports(path):
            target = _layer_of(module, by_name, cache)
            if target is not None and target > own:
                upward.append(f"{path.relative_to(PACKAGE)} ({LAYERS[own]}) imports "
                              f"{module} ({LAYERS[target]})")  # fmt: skip
    assert upward == []


def test_kernels_are_pure(layers):
    for module, layer in layers.items():
        if layer == 1:
            heavy = {m for m in _imports(PACKAGE / module) if m.split(".")[0] in HEAVY}
            assert heavy == set(), f"{module} imports {heavy}"


def test_casacore_only_in_ms_and_casa_only_in_casa():
    for path in _modules():
        where = str(path.relative_to(PACKAGE))
        imported = {m.split(".")[0] for m in _imports(path)}
        text = path.read_text()
        if where.startswith(("ms/", "casa/")):
            continue
        assert "casacore" not in imported, f"{where} opens tables itself (use ms/)"
        if where != "casa_env.py":
            assert not imported & {"casatools", "casatasks"}, f"{where} calls CASA (use casa/)"
            assert "casa_env.casatools()" not in text and "casa_env.casatasks()" not in text, (
                f"{where} calls CASA tools (use casa/)"
            )


def test_no_module_is_too_long():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
