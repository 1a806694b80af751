"""The package's layers, as the tree shows them, checked on every module's imports.

From the bottom: ``errors``; ``config``; ``contracts``; ``maths`` (pure: no Spark); ``platform`` (the lakehouse
platform); ``segmentation`` (the model the stages share); ``stages.<stage>``, each importing no other stage; and
at the top the CLI, the stage order and console output, which may import anything.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "segspark"

BASE = {"segspark", "segspark.errors"}
ALLOWED = {
    "errors": set(),
    "config": {"config"},
    "contracts": {"contracts", "config"},
    "maths": {"maths", "config"},
    "platform": {"platform", "config", "contracts", "maths"},
    "segmentation": {"segmentation", "platform", "config", "contracts", "maths"},
    "stages": {"segmentation", "platform", "config", "contracts", "maths"},  # plus the stage's own subpackage
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    """The layer a module belongs to: ``stages.<stage>`` for a stage's modules, None for the top."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in ALLOWED:
        return None
    if parts[1] == "stages" and len(parts) > 2:
        return f"stages.{parts[2]}"
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every segspark module a file imports, at any depth (including imports inside functions)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "segspark"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "segspark":
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _allowed(layer: str, target: str) -> bool:
    if target in BASE or any(target.startswith(b + ".") for b in BASE - {"segspark"}):
        return True
    if target == "segspark.__version__":
        return True
    target_parts = target.split(".")
    if len(target_parts) < 2:
        return False
    own = ALLOWED["stages"] if layer.startswith("stages.") else ALLOWED[layer]
    if layer.startswith("stages.") and target.startswith(f"segspark.{layer}"):
        return True
    return target_parts[1] in own


def test_every_module_imports_only_its_own_layer_and_those_below():
    wrong = []
    for path in _modules():
        layer = _layer(_name(path))
        if layer is None:
            continue
        for line, target in _imports(path):
            if not _allowed(layer, target):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {layer} imports {target}")
    assert not wrong, "imports across layers:\n" + "\n".join(wrong)


def test_the_rule_catches_a_stage_importing_another_stage_and_the_platform_importing_a_stage():
    assert not _allowed("stages.score", "segspark.stages.train.tables.write_segments")
    assert not _allowed("platform", "segspark.stages.ingest.stage.run_ingest")
    assert not _allowed("maths", "segspark.platform.lakehouse")
    assert _allowed("stages.score", "segspark.stages.score.stage.run_score")
    assert _allowed("stages.score", "segspark.segmentation.scoring.write_segments")


def test_every_stage_is_a_subpackage_with_its_stage_module():
    stages = sorted(p.name for p in (PACKAGE / "stages").iterdir() if (p / "__init__.py").exists())
    assert stages == ["export", "features", "ingest", "maintain", "monitor", "profile", "report", "score", "train"]
    for stage in stages:
        assert (PACKAGE / "stages" / stage / "stage.py").is_file(), stage


@pytest.mark.parametrize("layer", ["maths", "config"])
def test_the_pure_layers_import_no_spark(layer):
    modules = [_name(p) for p in _modules() if _name(p).startswith(f"segspark.{layer}")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j', 'delta'))\n"
        "print(' '.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "", f"segspark.{layer} loads {result.stdout.strip()}"


def test_a_module_others_import_from_names_its_public_surface_in_all():
    modules = {_name(p): p for p in _modules()}
    wrong = []
    for path in _modules():
        importer = _name(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules):
                continue
            if node.module == importer or modules[node.module].name == "__init__.py":
                continue
            exported = _all_of(modules[node.module])
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    continue  # a submodule
                if exported is None or alias.name not in exported:
                    wrong.append(f"{importer} imports {alias.name} from {node.module}, whose __all__ lacks it")
    assert not wrong, "\n".join(sorted(set(wrong)))


def _all_of(path: Path) -> set[str] | None:
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {ast.literal_eval(e) for e in node.value.elts}  # type: ignore[attr-defined]
    return None
