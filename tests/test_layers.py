"""The library's packages import one way, down the order data flows (``ssiuu/__init__``).

A module may import its own package and the packages before it, never one after it:
``config`` is read by everything and reads nothing, the report reads everything and is
read by nothing but the CLI. Function-level imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ssiuu"
LAYERS = ("config", "data", "model", "scoring", "unlearning", "attack", "records", "release",
          "report")
TOP = ("cli", "workspace")  # may import any layer
MAX_PACKAGE_LINES = 1600  # about 1,500: a package a reader can hold


def _room(module: str) -> str:
    """The package (or top-level module) a dotted ``ssiuu`` module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import; write ssiuu.… in full"
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "ssiuu"}


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(("ssiuu", *path.relative_to(SRC).with_suffix("").parts)), path)
            for path in sorted(SRC.rglob("*.py"))]


def test_every_module_is_in_a_layer_or_on_top() -> None:
    rooms = {_room(name) for name, _ in _modules()} - {"__init__"}
    assert rooms == set(LAYERS) | set(TOP)


@pytest.mark.parametrize(("name", "path"), _modules(), ids=lambda v: str(v))
def test_imports_run_down_the_layers(name: str, path: Path) -> None:
    room = _room(name)
    if room in TOP or room == "__init__":
        return
    level = LAYERS.index(room)
    upward = sorted(target for target in _imports(path)
                    if _room(target) in TOP or LAYERS.index(_room(target)) > level)
    assert not upward, f"{name} ({room}) imports from a later layer: {upward}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ssiuu.report.document import x\n")
    assert _imports(bad) == {"ssiuu.report.document"}
    assert LAYERS.index(_room("ssiuu.report.document")) > LAYERS.index("config")


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_is_a_house_of_its_own(package: str) -> None:
    lines = sum(len(path.read_text().splitlines()) for path in (SRC / package).rglob("*.py"))
    assert lines <= MAX_PACKAGE_LINES, f"ssiuu.{package}: {lines} lines"


MAX_MODULE_LINES = 420  # about 400
# Modules over it, each one job that would only be scattered by a split:
LONG_MODULES = {
    "config/params.py": "the one typed schema of params.yaml: every section, its checks and "
                        "the messages that name a wrong field",
    "release/registry.py": "the one conversation with MLflow: a registration's writes under "
                           "one lock, and the reads the audit makes of what they wrote",
}


@pytest.mark.parametrize(("name", "path"), _modules(), ids=lambda v: str(v))
def test_no_module_is_longer_than_a_reader_holds_unless_named(name: str, path: Path) -> None:
    relative = path.relative_to(SRC).as_posix()
    lines = len(path.read_text().splitlines())
    if relative in LONG_MODULES:
        assert lines > MAX_MODULE_LINES, f"{relative} is short now: drop it from LONG_MODULES"
    else:
        assert lines <= MAX_MODULE_LINES, f"{relative}: {lines} lines"
