"""The imports documented before the package moved into subpackages keep working for one release, and warn."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from segspark import synthetic
from segspark.segmentation import model


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("segspark.model", model, ["load_model", "assign_segments", "save_model", "FEATURES_COL"]),
        ("segspark.generator", synthetic, ["generate", "main", "GeneratorArgumentError"]),
    ],
)
def test_an_old_import_warns_and_gives_the_same_objects(old, new, names, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .* import from {new.__name__} instead"):
        alias = importlib.import_module(old)
    for name in names:
        assert getattr(alias, name) is getattr(new, name)
    with pytest.raises(AttributeError):
        alias.no_such_name  # noqa: B018


def test_the_old_generator_module_still_runs_as_a_script(tmp_path):
    out = tmp_path / "tx"
    result = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-m", "segspark.generator"]
        + ["--rows", "1000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "segspark.generator is deprecated" in result.stderr
    assert any(out.rglob("*.csv*"))
