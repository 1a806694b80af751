"""Where the project and the real data are, and the configs the tests run on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from segspark.config.settings import Config, load_config

__all__ = ["FAST_MODEL", "REAL_DATA", "RETAIL_LAYOUT", "ROOT", "make_config", "requires_real_data", "retail_config"]

ROOT = Path(__file__).resolve().parents[2]
#: The source layout of the UCI Online Retail files, as a user names it with ``--layout online_retail``.
RETAIL_LAYOUT = ROOT / "conf" / "layouts" / "online_retail.yaml"
#: The real UCI Online Retail files, beside the project root; absent on a user's fresh clone.
REAL_DATA = ROOT.parent / "shared" / "data" / "online_retail" / "by-day"
requires_real_data = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real Online Retail data not found at {REAL_DATA} (only in the dev workspace)"
)

#: A quick sweep for tests: K 2..6, one repeat for stability.
FAST_MODEL = {"k_min": 2, "k_max": 6, "restarts": 5, "stability_runs": 1}


def make_config(lakehouse: Path | str, **overrides: Any) -> Config:
    """A config on the repository's base.yaml with the given nested overrides (no env overlay)."""
    flags = {"lakehouse": str(lakehouse)}
    flags.update(overrides)
    return load_config(env=None, flags=flags)


def retail_config(
    lake: Path | str, input_path: Path | str | None = None, *, source: dict[str, Any] | None = None, **overrides: Any
) -> Config:
    """A config on base.yaml and ``conf/layouts/online_retail.yaml`` (no env overlay), for Online Retail input.

    ``input_path`` sets ``source.path`` (a file, folder, glob or table name), ``source`` sets other source keys
    over the layout's, and ``overrides`` are nested top-level keys (``model={...}``, ``seed=...``).
    """
    source_keys = dict(source or {})
    if input_path is not None:
        source_keys["path"] = str(input_path)
    flags: dict[str, Any] = {"lakehouse": str(lake), **overrides}
    if source_keys:
        flags["source"] = source_keys
    return load_config([RETAIL_LAYOUT], env=None, flags=flags)
