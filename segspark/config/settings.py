"""Typed, layered configuration.

Each config key's meaning is written in one place, ``conf/base.yaml``, beside its default; this module holds
the keys' types, defaults and validation (and says why where the code needs it).

Layers, later wins: the model's defaults (which ``conf/base.yaml`` states in full), ``conf/base.yaml``,
``conf/<env>.yaml`` (an environment overlay), ``conf/layouts/<name>.yaml`` (a source layout, ``--layout``), each
``--config FILE`` in order, each ``--set dotted.key=value``, then the explicit CLI
flags (``--input``, ``--lakehouse``, ``--as-of``). The result is validated once; any unknown key, wrong type or
bad value raises :class:`~segspark.errors.ConfigError` naming the dotted key and what was expected.

One :class:`Config` object flows from the CLI to every stage; no stage reads files or the environment itself.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from segspark.config.paths import absolute_uri, default_fs_is_local, local_path
from segspark.errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ACTION_RULES",
    "DEFAULT_MODEL_FEATURES",
    "DEFAULT_NAME_RULES",
    "DEFAULT_RFM_RULES",
    "LAYOUTS_SUBDIR",
    "REPO_CONF_DIR",
    "ActionRule",
    "AlertThresholds",
    "Algorithm",
    "AttributeSource",
    "CampaignSettings",
    "CatalogSettings",
    "Config",
    "CrossSellSettings",
    "DriftThresholds",
    "FeatureSettings",
    "IngestSettings",
    "Level",
    "MaintainSettings",
    "ModelSettings",
    "MonitorSettings",
    "NameRule",
    "PcaSettings",
    "Play",
    "PrivacySettings",
    "ProfileSettings",
    "RejectReason",
    "ReportSettings",
    "RetrainWhen",
    "RfmRule",
    "RunSettings",
    "ScoreSettings",
    "SourceColumns",
    "SourceSettings",
    "SparkSettings",
    "TableNames",
    "WinsorizeSettings",
    "load_config",
    "parse_override",
    "read_yaml",
    "validate",
]

#: Where the repository's ``conf/`` folder is when segspark runs from a checkout (editable install).
REPO_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
#: Sub-folder of the conf folder holding source layouts (``--layout NAME``); the YAML files directly in the
#: conf folder, other than ``base.yaml``, are the environment overlays (``--env NAME``).
LAYOUTS_SUBDIR = "layouts"


def _local_fs(info: ValidationInfo) -> bool:
    """Whether scheme-less paths are local, as :func:`load_config` found (validation context); default yes."""
    return bool((info.context or {}).get("local_default_fs", True))


def _with_path_as_uri(data: Any, info: ValidationInfo, default_format: str) -> Any:
    """A source section's raw mapping with its ``path`` made an absolute URI (not for catalog tables)."""
    if isinstance(data, dict) and isinstance(data.get("path"), str) and data.get("format", default_format) != "table":
        return {**data, "path": absolute_uri(data["path"], _local_fs(info))}
    return data


def _as_text_map(value: Any) -> Any:
    """Spark options are text: YAML's true/4/0.5 become "true"/"4"/"0.5" (booleans lower-case, as Spark wants)."""
    if isinstance(value, dict):
        return {str(k): ("true" if v is True else "false" if v is False else str(v)) for k, v in value.items()}
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Section):
    """How the SparkSession is built.

    Each key's meaning: conf/base.yaml, section ``spark``.
    """

    master: str = "local[*]"
    app_name: str = "segspark"
    jars_cache_dir: str = "~/.cache/segspark/ivy"
    resolve_delta_jars: bool = True
    conf: dict[str, str] = Field(default_factory=dict)
    log_level: str = "WARN"

    _text_values = field_validator("conf", mode="before")(lambda value: _as_text_map(value))


class SourceColumns(_Section):
    """Source column name for each canonical column.

    Each key's meaning: conf/base.yaml, section ``source.columns``.
    """

    customer_id: str = "customer_id"
    invoice_ts: str = "invoice_ts"
    quantity: str | None = "quantity"
    price: str = "unit_price"
    invoice_id: str | None = "invoice_id"
    product_id: str | None = "product_id"
    description: str | None = "description"
    country: str | None = "country"


class SourceSettings(_Section):
    """Where the raw transactions are and how their layout maps onto the canonical columns.

    Each key's meaning: conf/base.yaml, section ``source``.
    """

    format: Literal["csv", "parquet", "delta", "table"] = "csv"
    path: str | None = None
    columns: SourceColumns = Field(default_factory=SourceColumns)
    csv_options: dict[str, str] = Field(
        default_factory=lambda: {"header": "true", "encoding": "UTF-8", "multiLine": "false"}
    )
    timestamp_formats: list[str] = Field(default_factory=lambda: ["yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm"])
    timezone: str = "UTC"
    price_kind: Literal["unit", "line_total"] = "unit"
    returns_prefix: str | None = "C"

    _text_values = field_validator("csv_options", mode="before")(lambda value: _as_text_map(value))

    @model_validator(mode="before")
    @classmethod
    def _path_as_uri(cls, data: Any, info: ValidationInfo) -> Any:
        return _with_path_as_uri(data, info, default_format="csv")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/London") from None
        return value

    @field_validator("returns_prefix")
    @classmethod
    def _non_blank_prefix(cls, value: str | None) -> str | None:
        if value is not None and value == "":
            raise ValueError("returns_prefix must be non-empty, or null for none")
        return value

    @field_validator("timestamp_formats")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one timestamp format is needed")
        return value

    @model_validator(mode="after")
    def _amount_is_defined(self) -> SourceSettings:
        if self.price_kind == "unit" and self.columns.quantity is None:
            raise ValueError("columns.quantity is required when price_kind is 'unit'")
        return self


#: Reasons ingest rejects a line for, in the order ingest tests them; contracts.schemas.REJECT_REASONS derives from it.
RejectReason = Literal[
    "missing_customer_id",
    "invalid_encoding",
    "invalid_timestamp",
    "future_timestamp",
    "invalid_quantity",
    "invalid_price",
    "duplicate",
]


_TOLERATED_BY_DEFAULT: tuple[RejectReason, ...] = ("duplicate", "missing_customer_id")


class IngestSettings(_Section):
    """When ingest calls its output unusable and fails.

    Each key's meaning: conf/base.yaml, section ``ingest``.
    """

    mode: Literal["incremental", "full"] = "incremental"
    max_reject_share: float = Field(default=0.5, ge=0, le=1)
    tolerated_reject_reasons: list[RejectReason] = Field(default_factory=lambda: list(_TOLERATED_BY_DEFAULT))
    latest_timestamp: dt.datetime | None = None

    @field_validator("latest_timestamp")
    @classmethod
    def _as_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class RfmRule(_Section):
    """One rule of ``features.rfm_segments``: a cell range of the RFM grid and the segment it names."""

    segment: str
    r: tuple[int, int]
    fm: tuple[int, int]

    @model_validator(mode="after")
    def _ranges(self) -> RfmRule:
        for name, (lo, hi) in (("r", self.r), ("fm", self.fm)):
            if not 1 <= lo <= hi <= 5:
                raise ValueError(f"{name} must be [low, high] with 1 <= low <= high <= 5, got [{lo}, {hi}]")
        return self


def _rule(segment: str, r: tuple[int, int], fm: tuple[int, int]) -> RfmRule:
    return RfmRule(segment=segment, r=r, fm=fm)


#: The default of ``features.rfm_segments``, the standard named RFM segments (conf/base.yaml states the same list).
DEFAULT_RFM_RULES = (
    _rule("Champions", (4, 5), (4, 5)),
    _rule("Loyal Customers", (3, 3), (4, 5)),
    _rule("Loyal Customers", (4, 4), (3, 3)),
    _rule("Potential Loyalists", (4, 5), (2, 3)),
    _rule("New Customers", (5, 5), (1, 1)),
    _rule("Promising", (4, 4), (1, 1)),
    _rule("Need Attention", (3, 3), (2, 3)),
    _rule("About to Sleep", (3, 3), (1, 1)),
    _rule("About to Sleep", (2, 2), (2, 2)),
    _rule("Can't Lose Them", (1, 2), (5, 5)),
    _rule("Can't Lose Them", (1, 1), (4, 4)),
    _rule("At Risk", (1, 2), (3, 4)),
    _rule("Hibernating", (2, 2), (1, 1)),
    _rule("Hibernating", (1, 1), (2, 2)),
    _rule("Lost", (1, 1), (1, 1)),
)


class FeatureSettings(_Section):
    """How customer features are computed.

    Each key's meaning: conf/base.yaml, section ``features``.
    """

    recent_window_days: int = Field(default=90, ge=1)
    evening_start_hour: int = Field(default=18, ge=0, le=23)
    rfm_segments: tuple[RfmRule, ...] = DEFAULT_RFM_RULES

    @field_validator("rfm_segments")
    @classmethod
    def _covers_grid(cls, rules: tuple[RfmRule, ...]) -> tuple[RfmRule, ...]:
        uncovered = [
            f"r={r},fm={fm}"
            for r in range(1, 6)
            for fm in range(1, 6)
            if not any(rule.r[0] <= r <= rule.r[1] and rule.fm[0] <= fm <= rule.fm[1] for rule in rules)
        ]
        if uncovered:
            raise ValueError(f"rules leave score pairs without a segment: {', '.join(uncovered)}")
        return rules


#: The default of both ``model.numeric_features`` and ``model.log_features`` (why these: conf/base.yaml).
DEFAULT_MODEL_FEATURES = ("recency_days", "frequency", "monetary", "avg_basket_value", "tenure_days")
#: Clustering algorithms ``model.algorithms`` may list.
Algorithm = Literal["kmeans", "bisecting_kmeans", "gaussian_mixture"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


class AttributeSource(_Section):
    """A customer-level table whose columns can be model features.

    Each key's meaning: conf/base.yaml, section ``model.attributes``.
    """

    format: Literal["delta", "parquet", "csv", "table"] = "delta"
    path: str | None = None
    customer_id: str | None = "customer_id"
    as_of_column: str | None = "as_of_date"
    csv_options: dict[str, str] = Field(default_factory=lambda: {"header": "true", "encoding": "UTF-8"})

    _text_values = field_validator("csv_options", mode="before")(lambda value: _as_text_map(value))

    @model_validator(mode="before")
    @classmethod
    def _path_as_uri(cls, data: Any, info: ValidationInfo) -> Any:
        return _with_path_as_uri(data, info, default_format="delta")


class PcaSettings(_Section):
    """Optional PCA after standardisation.

    Each key's meaning: conf/base.yaml, section ``model.pca``.
    """

    components: int | None = Field(default=None, ge=1)
    variance: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_of(self) -> PcaSettings:
        if self.components is not None and self.variance is not None:
            raise ValueError("set pca.components or pca.variance, not both")
        return self

    @property
    def enabled(self) -> bool:
        """Whether PCA runs (``components`` or ``variance`` is set)."""
        return self.components is not None or self.variance is not None


class WinsorizeSettings(_Section):
    """Optional cap of each numeric model feature at percentiles.

    Each key's meaning: conf/base.yaml, section ``model.winsorize``.
    """

    lower: float | None = Field(default=None, ge=0, lt=0.5)
    upper: float | None = Field(default=None, gt=0.5, le=1)

    @model_validator(mode="after")
    def _both(self) -> WinsorizeSettings:
        if (self.lower is None) != (self.upper is None):
            raise ValueError("set both winsorize.lower and winsorize.upper (e.g. 0.01 and 0.99), or neither")
        return self

    @property
    def enabled(self) -> bool:
        """Whether features are capped (``lower`` and ``upper`` are set; they are set together or not at all)."""
        return self.lower is not None


_DEFAULT_ALGORITHMS: tuple[Algorithm, ...] = ("kmeans",)


class ModelSettings(_Section):
    """The segmentation model: its features, the K sweep and the rule that chooses K.

    Each key's meaning: conf/base.yaml, section ``model``.
    """

    input: Literal["features", "attributes"] = "features"
    attributes: AttributeSource = Field(default_factory=AttributeSource)
    numeric_features: list[str] = Field(default_factory=lambda: list(DEFAULT_MODEL_FEATURES))
    categorical_features: list[str] = Field(default_factory=list)
    log_features: list[str] = Field(default_factory=lambda: list(DEFAULT_MODEL_FEATURES))
    pca: PcaSettings = Field(default_factory=PcaSettings)
    winsorize: WinsorizeSettings = Field(default_factory=WinsorizeSettings)
    algorithms: list[Algorithm] = Field(default_factory=lambda: list(_DEFAULT_ALGORITHMS))
    k_min: int = Field(default=2, ge=2)
    k_max: int = Field(default=10, ge=2)
    force_k: int | None = Field(default=None, ge=2)
    max_iter: int = Field(default=100, ge=1)
    tol: float = Field(default=1e-4, gt=0)
    rows_per_partition: int = Field(default=50_000, ge=100)
    sample_size: int = Field(default=100_000, ge=100)
    silhouette_sample_size: int = Field(default=3_000, ge=50, le=20_000)
    restarts: int = Field(default=5, ge=1)
    stability_runs: int = Field(default=2, ge=0)
    min_segment_share: float = Field(default=0.02, ge=0, lt=1)
    min_distinct_segment_share: float = Field(default=0.005, ge=0, lt=1)
    min_stability: float = Field(default=0.8, ge=-1, le=1)
    min_silhouette: float = Field(default=0.25, ge=-1, le=1)
    strong_silhouette: float = Field(default=0.5, ge=-1, le=1)
    min_silhouette_gain: float = Field(default=0.10, ge=0, le=2)
    silhouette_tolerance: float = Field(default=0.02, ge=0, le=1)
    match_previous: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ModelSettings:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) is greater than k_max ({self.k_max})")
        features = self.numeric_features + self.categorical_features
        if not features:
            raise ValueError("numeric_features and categorical_features are both empty: the model needs features")
        repeated = sorted({f for f in features if features.count(f) > 1})
        if repeated:
            raise ValueError(f"features listed more than once (numeric and categorical together): {repeated}")
        not_numeric = [f for f in self.log_features if f not in self.numeric_features]
        if not_numeric:
            raise ValueError(f"log_features must be numeric_features; not numeric features: {not_numeric}")
        if "customer_id" in features:
            raise ValueError("customer_id identifies customers and cannot be a model feature")
        if len(set(self.algorithms)) != len(self.algorithms) or not self.algorithms:
            raise ValueError(f"algorithms must be a non-empty list without repeats, got {self.algorithms}")
        if self.input == "attributes" and self.attributes.path is None:
            raise ValueError("input is 'attributes' but attributes.path is not set")
        if self.input == "features" and self.attributes.path is not None and self.attributes.customer_id is None:
            raise ValueError(
                "attributes.customer_id is null (no id column) but input is 'features': attributes are joined to "
                "customer_features by customer id, so name the table's id column"
            )
        return self

    @property
    def features(self) -> list[str]:
        """Every model feature: the numeric ones, then the categorical ones."""
        return self.numeric_features + self.categorical_features

    def k_values(self) -> list[int]:
        """Every K the sweep fits: k_min..k_max, plus force_k when it lies outside."""
        ks = set(range(self.k_min, self.k_max + 1))
        if self.force_k is not None:
            ks.add(self.force_k)
        return sorted(ks)


class ScoreSettings(_Section):
    """What ``segspark score`` scores with.

    Each key's meaning: conf/base.yaml, section ``score``.
    """

    model_version: str | None = None


#: Levels a name or action rule can ask of a feature; what each means: conf/base.yaml, ``profile.level_threshold``.
Level = Literal["high", "low", "mid", "not_high", "not_low"]
Play = Literal["retain", "win_back", "upsell", "cross_sell", "nurture", "deprioritise"]


class NameRule(_Section):
    """One rule of ``profile.names``: the feature levels ``when`` asks for and the ``name`` it gives."""

    name: str = Field(min_length=1)
    when: dict[str, Level] = Field(default_factory=dict)


class ActionRule(_Section):
    """One rule of ``profile.actions``: the feature levels ``when`` asks for and the ``play`` it gives."""

    play: Play
    when: dict[str, Level] = Field(default_factory=dict)


def _name_rules(*rules: tuple[str, dict[str, Level]]) -> tuple[NameRule, ...]:
    return tuple(NameRule(name=name, when=when) for name, when in rules)


def _action_rules(*rules: tuple[Play, dict[str, Level]]) -> tuple[ActionRule, ...]:
    return tuple(ActionRule(play=play, when=when) for play, when in rules)


DEFAULT_NAME_RULES = _name_rules(
    ("Champions", {"recency_days": "low", "frequency": "high", "monetary": "high"}),
    ("Loyal regulars", {"recency_days": "not_high", "frequency": "high"}),
    ("Big spenders at risk", {"recency_days": "high", "monetary": "high"}),
    ("Regulars at risk", {"recency_days": "high", "frequency": "high"}),
    ("New one-time buyers", {"tenure_days": "low", "frequency": "low"}),
    ("Recent big spenders", {"recency_days": "low", "monetary": "high"}),
    ("Promising recent buyers", {"recency_days": "low"}),
    ("Lapsed low-value", {"recency_days": "high", "monetary": "low"}),
    ("Lapsed customers", {"recency_days": "high"}),
    ("Low-value occasional buyers", {"monetary": "low"}),
    ("High-value customers", {"monetary": "high"}),
    ("Mid-value customers", {}),
)

DEFAULT_ACTION_RULES = _action_rules(
    ("retain", {"recency_days": "high", "monetary": "high"}),
    ("retain", {"recency_days": "high", "frequency": "high"}),
    ("deprioritise", {"recency_days": "high", "monetary": "low"}),
    ("win_back", {"recency_days": "high"}),
    ("upsell", {"monetary": "high"}),
    ("nurture", {"frequency": "low"}),
    ("cross_sell", {}),
)


_Rule = TypeVar("_Rule", NameRule, ActionRule)


def _ends_with_catch_all(rules: tuple[_Rule, ...], what: str) -> tuple[_Rule, ...]:
    if not rules or rules[-1].when:
        raise ValueError(f"the last {what} rule must have an empty 'when' ({{}}) so every segment gets one")
    return rules


class CrossSellSettings(_Section):
    """Association rules mined per segment (``segment_cross_sell``).

    Each key's meaning: conf/base.yaml, section ``profile.cross_sell``.
    """

    min_support: float = Field(default=0.02, gt=0, le=1)
    min_confidence: float = Field(default=0.2, gt=0, le=1)
    top_n: int = Field(default=20, ge=1)


class ProfileSettings(_Section):
    """How segments are profiled, named and given actions.

    Each key's meaning: conf/base.yaml, section ``profile``.
    """

    lookback_days: int = Field(default=365, ge=1)
    median_accuracy: int = Field(default=10_000, ge=100)
    level_threshold: float = Field(default=0.5, gt=0)
    top_features: int = Field(default=3, ge=1)
    names: tuple[NameRule, ...] = DEFAULT_NAME_RULES
    weak_name: str = "Value tier {tier} of {tiers}"
    actions: tuple[ActionRule, ...] = DEFAULT_ACTION_RULES
    top_products: int = Field(default=10, ge=1)
    non_products: list[str] = Field(default_factory=list)
    cross_sell: CrossSellSettings = Field(default_factory=CrossSellSettings)

    @field_validator("names")
    @classmethod
    def _names_catch_all(cls, rules: tuple[NameRule, ...]) -> tuple[NameRule, ...]:
        return _ends_with_catch_all(rules, "profile.names")

    @field_validator("actions")
    @classmethod
    def _actions_catch_all(cls, rules: tuple[ActionRule, ...]) -> tuple[ActionRule, ...]:
        return _ends_with_catch_all(rules, "profile.actions")

    @field_validator("weak_name")
    @classmethod
    def _weak_name_fields(cls, value: str) -> str:
        try:
            value.format(tier=1, tiers=3)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"may use only {{tier}} and {{tiers}}: {exc}") from None
        if "{tier}" not in value:
            raise ValueError("must contain {tier}, or every weak segment gets the same name")
        return value


class CampaignSettings(_Section):
    """The campaign audience of each snapshot and its measurement.

    Each key's meaning: conf/base.yaml, section ``campaign``.
    """

    holdout_share: float = Field(default=0.1, ge=0, lt=1)
    name: str | None = None
    min_group_customers: int = Field(default=100, ge=1)


class AlertThresholds(_Section):
    """The levels at which one drift figure becomes ``watch`` and ``act`` (magnitudes: 0 <= watch <= act)."""

    watch: float = Field(ge=0)
    act: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> AlertThresholds:
        if self.watch > self.act:
            raise ValueError(f"watch ({self.watch}) must not be above act ({self.act})")
        return self


class DriftThresholds(_Section):
    """Alert thresholds per drift figure.

    Each key's meaning: conf/base.yaml, section ``monitor.thresholds``.
    """

    psi: AlertThresholds = Field(default_factory=lambda: AlertThresholds(watch=0.1, act=0.25))
    js_distance: AlertThresholds = Field(default_factory=lambda: AlertThresholds(watch=0.1, act=0.2))
    mean_shift: AlertThresholds = Field(default_factory=lambda: AlertThresholds(watch=0.5, act=1.0))
    missing_share_change: AlertThresholds = Field(default_factory=lambda: AlertThresholds(watch=0.05, act=0.1))
    centroid_shift: AlertThresholds = Field(default_factory=lambda: AlertThresholds(watch=0.5, act=1.0))


class RetrainWhen(_Section):
    """What makes monitor recommend a new model.

    Each key's meaning: conf/base.yaml, section ``monitor.retrain_when``.
    """

    feature_at_act: bool = True
    segment_shares_at_act: bool = True
    model_older_than_days: int | None = Field(default=None, ge=1)
    silhouette_drop: float | None = Field(default=0.1, gt=0)


class MonitorSettings(_Section):
    """Drift against the model's training snapshot and the retrain decision (``segspark monitor``).

    Each key's meaning: conf/base.yaml, section ``monitor``.
    """

    reference_sample: int = Field(default=100_000, ge=1_000)
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    retrain_when: RetrainWhen = Field(default_factory=RetrainWhen)
    auto_retrain: bool = False


class RunSettings(_Section):
    """What ``segspark run`` does once features are built.

    Each key's meaning: conf/base.yaml, section ``run``.
    """

    retrain: bool = False


class ReportSettings(_Section):
    """The HTML report (``segspark report``).

    Each key's meaning: conf/base.yaml, section ``report``.
    """

    enabled: bool = True
    run_id: str | None = None
    sample_size: int = Field(default=3_000, ge=100, le=20_000)
    explore: bool = True
    dbscan_eps: float | None = Field(default=None, gt=0)
    dbscan_min_samples: int = Field(default=10, ge=2)


class CatalogSettings(_Section):
    """Registering the output tables in a catalog.

    Each key's meaning: conf/base.yaml, section ``catalog``.
    """

    database: str | None = None
    metastore_dir: str | None = None

    @field_validator("database")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", value):
            raise ValueError(f"{value!r} is not a database name (letters, digits and _, not starting with a digit)")
        return value


class MaintainSettings(_Section):
    """Compaction, Z-ordering and clean-up of the tables (``segspark maintain``).

    Each key's meaning: conf/base.yaml, section ``maintain``.
    """

    zorder: bool = True
    vacuum_retain_hours: int = Field(default=168, ge=0)
    allow_short_retention: bool = False

    @model_validator(mode="after")
    def _retention_is_safe(self) -> MaintainSettings:
        if self.vacuum_retain_hours < 168 and not self.allow_short_retention:
            raise ValueError(
                f"vacuum_retain_hours {self.vacuum_retain_hours} is under Delta's 168-hour safety window; "
                "set maintain.allow_short_retention=true to allow it"
            )
        return self


class PrivacySettings(_Section):
    """What personal data reaches the output tables.

    Each key's meaning: conf/base.yaml, section ``privacy``.
    """

    pseudonymise_ids: bool = False
    key_env: str = "SEGSPARK_ID_KEY"
    keep_descriptions: bool = True

    @field_validator("key_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch == "_" for ch in value) or value[0].isdigit():
            raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
        return value


class TableNames(_Section):
    """The folder name of each table under the lakehouse.

    Each key's meaning: conf/base.yaml, section ``tables``.
    """

    transactions_clean: str = "transactions_clean"
    transactions_rejected: str = "transactions_rejected"
    ingested_files: str = "ingested_files"
    ingest_fingerprints: str = "ingest_fingerprints"
    ingested_versions: str = "ingested_versions"
    pipeline_runs: str = "pipeline_runs"
    published_runs: str = "published_runs"
    invoice_rollup: str = "invoice_rollup"
    product_rollup: str = "product_rollup"
    new_products_rollup: str = "new_products_rollup"
    rollup_batches: str = "rollup_batches"
    customer_features: str = "customer_features"
    model_selection: str = "model_selection"
    sweep_segments: str = "sweep_segments"
    drift_reference: str = "drift_reference"
    customer_segments: str = "customer_segments"
    segment_centroids: str = "segment_centroids"
    segment_profiles: str = "segment_profiles"
    segment_top_products: str = "segment_top_products"
    segment_cross_sell: str = "segment_cross_sell"
    campaign_audiences: str = "campaign_audiences"
    campaign_results: str = "campaign_results"
    segment_migration: str = "segment_migration"
    feature_drift: str = "feature_drift"


class Config(_Section):
    """The whole validated configuration of one segspark run; the top-level keys are in conf/base.yaml."""

    #: An absolute URI once loaded (see :func:`absolute_uri`), so validating the default resolves it too.
    lakehouse: str = Field(default="lakehouse", validate_default=True)
    seed: int = 42
    spark: SparkSettings = Field(default_factory=SparkSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    tables: TableNames = Field(default_factory=TableNames)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    campaign: CampaignSettings = Field(default_factory=CampaignSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    maintain: MaintainSettings = Field(default_factory=MaintainSettings)
    as_of_dates: list[dt.date] = Field(default_factory=list)

    #: Whether Hadoop's default file system was local when the paths were resolved (see ``absolute_uri``).
    _local_default_fs: bool = PrivateAttr(default=True)

    @field_validator("lakehouse")
    @classmethod
    def _lakehouse_as_uri(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("the lakehouse must be a folder or URI, not empty")
        return absolute_uri(value, _local_fs(info))

    @model_validator(mode="after")
    def _remember_file_system(self, info: ValidationInfo) -> Config:
        self._local_default_fs = _local_fs(info)
        return self

    def table_path(self, table: str) -> str:
        """URI of the Delta folder for a logical table name such as ``"transactions_clean"``."""
        return f"{self.lakehouse}/{getattr(self.tables, table)}"

    def model_path(self, model_version: str) -> str:
        """URI of a saved segmentation PipelineModel: ``<lakehouse>/models/<model_version>``."""
        return f"{self.lakehouse}/models/{model_version}"

    @property
    def lakehouse_local_path(self) -> Path | None:
        """The lakehouse as a local folder, or None when it lives on another filesystem (s3a://, HDFS, ...)."""
        if not self._local_default_fs and not self.lakehouse.startswith("file:"):
            return None
        return local_path(self.lakehouse)

    def config_hash(self) -> str:
        """Short stable hash of the effective configuration, recorded with every run."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _Loader(yaml.SafeLoader):
    """Safe YAML without implicit timestamps (dates stay text so validation can name a bad one's key) and
    without duplicate keys: YAML itself lets the last of two equal keys win silently, which hides a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"key '{key}' is given twice (lines {seen[key]} and {key_node.start_mark.line + 1}): keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _names(folder: Path, *, exclude: str = "") -> str:
    names = sorted(p.stem for p in folder.glob("*.yaml") if p.is_file() and p.stem != exclude)
    return ", ".join(names) or "none"


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML layer; the file must hold a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects dotted.key=value, got {text!r}")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from exc
    # spark.conf keys contain dots themselves: everything after "spark.conf." is one key.
    parts = key.split(".")
    for map_key in ("spark.conf", "source.csv_options"):
        prefix = map_key.split(".")
        if parts[: len(prefix)] == prefix and len(parts) > len(prefix):
            parts = prefix + [".".join(parts[len(prefix) :])]
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _describe(error: ErrorDetails) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown config key '{key}'"
    if error["type"] == "missing":
        return f"config key '{key}' is required"
    expected = error.get("ctx", {}).get("expected")
    got = error.get("input")
    detail = f"expected {expected}" if expected else error["msg"].removeprefix("Value error, ")
    if isinstance(got, dict):  # a whole section failed a cross-field rule: the message names the keys
        return f"config key '{key}': {detail}"
    return f"config key '{key}': {detail} (got {got!r})"


def validate(data: dict[str, Any], *, local_default_fs: bool = True) -> Config:
    """Validate a merged mapping into a :class:`Config`, or raise ConfigError naming every bad key.

    ``local_default_fs``: whether a path without a scheme is a local path (made absolute here) or one on the
    cluster's default file system (kept for the JVM to qualify); see :func:`segspark.config.paths.absolute_uri`.
    """
    try:
        return Config.model_validate(data, context={"local_default_fs": local_default_fs})
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def load_config(
    config_files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
    *,
    env: str | None = "local",
    layout: str | None = None,
    conf_dir: str | Path | None = None,
    flags: dict[str, Any] | None = None,
) -> Config:
    """Build the effective configuration from its layers.

    Parameters
    ----------
    config_files : files layered after ``base.yaml``, ``<env>.yaml`` and the layout, later wins.
    overrides : ``dotted.key=value`` strings, applied after the files.
    env : overlay name (``local``, ``cluster``); ``None`` for none. Missing env files are an error only when
        the conf folder exists.
    layout : source layout name: ``<conf_dir>/layouts/<layout>.yaml`` is layered right after the env overlay;
        ``None`` for none. An unknown name is an error naming the available layouts.
    conf_dir : folder holding ``base.yaml``, the env overlays and ``layouts/``; defaults to the repository's
        ``conf/``.
    flags : explicit CLI values (already nested), applied last.
    """
    folder = Path(conf_dir) if conf_dir is not None else REPO_CONF_DIR
    data: dict[str, Any] = {}
    if folder.is_dir():
        base = folder / "base.yaml"
        if base.is_file():
            data = _deep_merge(data, read_yaml(base))
        if env:
            overlay = folder / f"{env}.yaml"
            if not overlay.is_file():
                known = _names(folder, exclude="base")
                raise ConfigError(f"no overlay for env '{env}' in {folder} (found: {known})")
            data = _deep_merge(data, read_yaml(overlay))
    elif conf_dir is not None:
        raise ConfigError(f"conf folder not found: {folder}")
    if layout:
        layouts = folder / LAYOUTS_SUBDIR
        layout_file = layouts / f"{layout}.yaml"
        if Path(layout).name != layout or not layout_file.is_file():  # a name, not a path out of layouts/
            raise ConfigError(f"no source layout '{layout}' in {layouts} (found: {_names(layouts)})")
        data = _deep_merge(data, read_yaml(layout_file))
    for path in config_files or []:
        data = _deep_merge(data, read_yaml(path))
    for text in overrides or []:
        data = _deep_merge(data, parse_override(text))
    if flags:
        data = _deep_merge(data, flags)
    spark_conf = (data.get("spark") or {}).get("conf") if isinstance(data.get("spark"), dict) else None
    return validate(data, local_default_fs=default_fs_is_local(_as_text_map(spark_conf) or {}))
