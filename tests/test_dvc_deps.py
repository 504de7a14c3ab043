"""Every stage's code deps in dvc.yaml are exactly the files its script imports.

A module a stage imports but does not list means an edit to it does not rerun the stage
(a stale result DVC calls up to date); a listed module it never imports reruns it for
nothing. Imports are followed transitively through ``ssiuu``, function-level ones included,
and a package's ``__init__`` counts as imported with any of its modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "ssiuu"}


def imported_files(script: Path) -> set[Path]:
    """Every file of ``src/ssiuu`` that running ``script`` can import."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for module in _imported_modules(todo.pop()):
            parts = module.split(".")
            for end in range(1, len(parts) + 1):  # packages on the way are imported too
                file = _module_file(".".join(parts[:end]))
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return seen


def _declared(deps: list[str]) -> set[Path]:
    files: set[Path] = set()
    for dep in deps:
        path = ROOT / dep
        if dep.startswith("src/") and path.is_dir():
            files.update(path.rglob("*.py"))
        elif dep.startswith(("src/", "stages/")) and path.suffix == ".py":
            files.add(path)
    return files


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_code_deps_match_the_imports(name: str) -> None:
    stage = _stages()[name]
    body = stage.get("do", stage)
    script = ROOT / body["cmd"].split()[1]
    expected = {script} | imported_files(script)
    declared = _declared(body["deps"])
    missing = sorted(str(p.relative_to(ROOT)) for p in expected - declared)
    extra = sorted(str(p.relative_to(ROOT)) for p in declared - expected)
    assert not missing, f"dvc.yaml stage {name}: imported but not a dep: {missing}"
    assert not extra, f"dvc.yaml stage {name}: a dep it never imports: {extra}"


@pytest.mark.parametrize("stage", ["base", "oracle", "tokenizer", "attribute"])
def test_the_shared_expensive_stages_can_be_served_by_dvc_s_run_cache(stage):
    """DVC saves a stage to its run cache only when every output it caches is cached or a
    metric or plot: one plain ``cache: false`` output switches it off, and then every sweep
    point retrains the base and oracle models (dvc/stage/__init__.py, ``no_cache_outs``)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    uncached = [next(iter(out)) for out in spec.get("outs", [])
                if isinstance(out, dict) and next(iter(out.values())).get("cache") is False]
    assert uncached == []
