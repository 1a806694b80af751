"""Schema contracts: column names and the schema (with comments) of every table segspark writes.

Each table is described once here by a :class:`TableSpec`; writers select exactly these columns, cast to these
types and carry these comments into the Delta table, so BI tools see documented columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from segspark.config.settings import RejectReason
from segspark.errors import SchemaError

__all__ = [
    "AMOUNT_TYPE",
    "AS_OF_DATE",
    "CAMPAIGN_AUDIENCES",
    "CAMPAIGN_RESULTS",
    "CHANGE_FEED",
    "CORE_COLUMNS",
    "COUNTRY",
    "CREATED_AT",
    "CUSTOMER_FEATURES",
    "CUSTOMER_ID",
    "CUSTOMER_SEGMENTS",
    "DRIFT_REFERENCE",
    "DESCRIPTION",
    "INGESTED_AT",
    "INGEST_RUN_ID",
    "INVOICE_ROLLUP",
    "INVOICE_DATE",
    "INVOICE_ID",
    "INVOICE_TS",
    "INGESTED_FILES",
    "INGESTED_VERSIONS",
    "FEATURE_DRIFT",
    "INGEST_FINGERPRINTS",
    "IS_RETURN",
    "LINE_AMOUNT",
    "MODEL_SELECTION",
    "MODEL_VERSION",
    "NEW_PRODUCTS_ROLLUP",
    "PIPELINE_RUNS",
    "PRICE_TYPE",
    "PRODUCT_ID",
    "PRODUCT_ROLLUP",
    "PUBLISHED_RUNS",
    "PUBLISHED_TABLES",
    "QUANTITY",
    "REJECTED_EXTRA_FIELDS",
    "REJECT_REASON",
    "REJECT_REASONS",
    "ROLLUP_BATCHES",
    "RUN_ID",
    "SEGMENT_CENTROIDS",
    "SEGMENT_CROSS_SELL",
    "SEGMENT_ID",
    "SEGMENT_MIGRATION",
    "SEGMENT_NAME",
    "SEGMENT_PROFILES",
    "SEGMENT_TOP_PRODUCTS",
    "STAGE_STATUSES",
    "SWEEP_SEGMENTS",
    "TABLES",
    "TABLE_NAMES",
    "TABLE_SPECS",
    "TRANSACTIONS_CLEAN",
    "UNIT_PRICE",
    "StageStatus",
    "Table",
    "TableSpec",
    "field",
    "require_columns",
    "transactions_rejected_spec",
]

# Canonical transaction columns.
INVOICE_ID = "invoice_id"
CUSTOMER_ID = "customer_id"
PRODUCT_ID = "product_id"
DESCRIPTION = "description"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
LINE_AMOUNT = "line_amount"
INVOICE_TS = "invoice_ts"
INVOICE_DATE = "invoice_date"
COUNTRY = "country"
IS_RETURN = "is_return"
RUN_ID = "run_id"
INGESTED_AT = "ingested_at"
REJECT_REASON = "reject_reason"
AS_OF_DATE = "as_of_date"
#: The ingest run whose clean lines a rollup row aggregates (``run_id`` of those lines).
INGEST_RUN_ID = "ingest_run_id"

#: The core RFM columns of customer_features: every profile and report shows them, whatever the model read.
CORE_COLUMNS = ("recency_days", "frequency", "monetary", "tenure_days")

#: Money is exact decimal: sums over millions of lines and rounding to cents must not drift as doubles do.
PRICE_TYPE = T.DecimalType(18, 4)
AMOUNT_TYPE = T.DecimalType(28, 4)

#: Rejection reasons, in the order they are tested: a row gets the first that applies. Written once, as the
#: config's ``RejectReason`` type (``ingest.tolerated_reject_reasons`` is validated against it).
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)

#: ``pipeline_runs.status``: how a stage of a run ended, and whether its tables are the published ones.
#: ``succeeded``: it finished and its tables were published. ``failed``: it raised an error; its writes were
#: rolled back (except an ingest over the reject threshold, whose tables stay for inspection).
#: ``rolled_back``: its tables were rolled back before they were published: it finished, but a later stage of
#: the same command that publishes with it failed; or its process died before publishing (recorded by the
#: command that took over the lakehouse lock). ``interrupted_after_publishing``: its process died after the
#: stage had published and before it recorded itself; recorded by the command that took over, with the counts
#: its publication names.
StageStatus = Literal["succeeded", "failed", "rolled_back", "interrupted_after_publishing"]
STAGE_STATUSES: tuple[str, ...] = get_args(StageStatus)


def field(name: str, data_type: T.DataType, comment: str, nullable: bool = True) -> T.StructField:
    """A StructField carrying a column comment, as Delta stores it."""
    return T.StructField(name, data_type, nullable, metadata={"comment": comment})


@dataclass(frozen=True)
class TableSpec:
    """One output table: its schema with column comments, table comment and partition columns.

    ``stats_columns`` are the columns Delta keeps min/max statistics for (to skip files when a query filters
    on them); None leaves Delta's default, the first 32 columns. Statistics on long text columns cost more to
    collect on every write than they save on tables that are read whole.
    """

    comment: str
    schema: T.StructType
    partition_by: tuple[str, ...] = ()
    stats_columns: tuple[str, ...] | None = None
    #: Columns added after the table's first release: writes merge them into an older table's schema.
    added_columns: tuple[str, ...] = ()
    #: Columns that became nullable after the table's first release: a write drops their NOT NULL on an older
    #: table first (Delta keeps a table's NOT NULL through a schema merge).
    relaxed_columns: tuple[str, ...] = ()
    #: Delta table properties set when the table is created (``segspark maintain`` adds them to older tables).
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def columns(self) -> list[str]:
        """The table's column names, in schema order."""
        return [f.name for f in self.schema.fields]

    def row(self, values: Mapping[str, object]) -> tuple[object, ...]:
        """A row in this table's column order from ``values`` by column name, for rows built on the driver.

        Raises
        ------
        SchemaError
            ``values`` lacks a column of the table or names one it does not have.
        """
        names = self.columns
        missing = [c for c in names if c not in values]
        unknown = sorted(set(values) - set(names))
        if missing or unknown:
            raise SchemaError(f"a row of a table with columns {names} lacks {missing} and has unknown {unknown}")
        return tuple(values[c] for c in names)


#: Delta's change data feed: downstream jobs read what each run inserted, replaced or deleted
#: (``readChangeFeed``) instead of whole snapshots. On the tables campaign tools and BI refresh from.
CHANGE_FEED = (("delta.enableChangeDataFeed", "true"),)

TRANSACTIONS_CLEAN = TableSpec(
    comment="One clean transaction line per source line that passed ingest checks (segspark ingest).",
    schema=T.StructType(
        [
            field(INVOICE_ID, T.StringType(), "Invoice id; customer_id-yyyy-MM-dd when the source has none"),
            field(CUSTOMER_ID, T.StringType(), "Customer id, trimmed; 17850.0 written as 17850", False),
            field(PRODUCT_ID, T.StringType(), "Product (stock) code; null when the source has none"),
            field(DESCRIPTION, T.StringType(), "Product description as given"),
            field(QUANTITY, T.IntegerType(), "Units; negative on returns; never 0", False),
            field(UNIT_PRICE, PRICE_TYPE, "Price of one unit, > 0, exact decimal (4 places)", False),
            field(LINE_AMOUNT, AMOUNT_TYPE, "quantity x unit_price; negative on returns", False),
            field(INVOICE_TS, T.TimestampType(), "Invoice time in UTC", False),
            field(INVOICE_DATE, T.DateType(), "Invoice date (UTC) of invoice_ts", False),
            field(COUNTRY, T.StringType(), "Customer country as given"),
            field(IS_RETURN, T.BooleanType(), "True for a return: invoice has the returns prefix or qty < 0", False),
            field(RUN_ID, T.StringType(), "Ingest run that wrote the line", False),
            field(INGESTED_AT, T.TimestampType(), "When the ingest run wrote the line (UTC)", False),
        ]
    ),
    # run_id: the features stage reads the lines of new ingest batches by run id, skipping the older files.
    stats_columns=(CUSTOMER_ID, INVOICE_DATE, RUN_ID),
)

#: Columns the rejected table adds after the source's own columns (which are kept as text, by source name).
REJECTED_EXTRA_FIELDS = [
    field(REJECT_REASON, T.StringType(), "First failed check: " + ", ".join(REJECT_REASONS), False),
    field(RUN_ID, T.StringType(), "Ingest run that rejected the line", False),
    field(INGESTED_AT, T.TimestampType(), "When the ingest run wrote the line (UTC)", False),
]


def transactions_rejected_spec(source_columns: Iterable[str]) -> TableSpec:
    """Spec of ``transactions_rejected``: every source column as original text, then the reason."""
    source_fields = [field(name, T.StringType(), f"Source column {name} as original text") for name in source_columns]
    clash = {f.name for f in source_fields} & {f.name for f in REJECTED_EXTRA_FIELDS}
    if clash:
        raise SchemaError(f"source columns clash with columns ingest adds: {sorted(clash)}")
    return TableSpec(
        comment="Every source line ingest rejected, with its original text and the first failed check.",
        schema=T.StructType(source_fields + REJECTED_EXTRA_FIELDS),
        stats_columns=(REJECT_REASON,),
    )


INGESTED_FILES = TableSpec(
    comment=(
        "One row per source file an ingest run read: its identity when read (path, size, modification time) and "
        "its lines in, clean and rejected by reason. An incremental ingest reads only the files this table lacks "
        "(segspark ingest)."
    ),
    schema=T.StructType(
        [
            field("path", T.StringType(), "Fully qualified path of the file, as Spark listed it", False),
            field("size", T.LongType(), "File size in bytes when it was ingested", False),
            field("modification_time", T.TimestampType(), "File modification time when it was ingested (UTC)", False),
            field("lines_in", T.LongType(), "Lines (rows) the file held", False),
            field(RUN_ID, T.StringType(), "Ingest run that read the file", False),
            field(INGESTED_AT, T.TimestampType(), "When that run wrote the file's lines (UTC)", False),
            field(
                "lines_clean",
                T.LongType(),
                "Lines of the file written to transactions_clean: a line repeated in several files of one run is "
                "clean in the first of them by path; null for a file ingested before the counts per file",
            ),
            field("lines_rejected", T.LongType(), "Lines of the file rejected (lines_in - lines_clean)"),
            field(
                "rejected_by_reason",
                T.MapType(T.StringType(), T.LongType(), False),
                "Rejected lines of the file per reason, every reason present (0 when none)",
            ),
        ]
    ),
    added_columns=("lines_clean", "lines_rejected", "rejected_by_reason"),
)

INGESTED_VERSIONS = TableSpec(
    comment=(
        "One row per ingest run of a Delta source table: the table (its id) and the versions the run read, with "
        "their lines in, clean and rejected by reason. An incremental ingest reads the versions after the last "
        "one here, from the table's change data feed (segspark ingest)."
    ),
    schema=T.StructType(
        [
            field("source", T.StringType(), "The source table: its location, or its name in the catalog", False),
            field("table_id", T.StringType(), "The source table's Delta id (new when it is created anew)", False),
            field(
                "from_version",
                T.LongType(),
                "First version whose changes the run read (null: the run read the whole table at to_version)",
            ),
            field("to_version", T.LongType(), "The source table's version the run read up to (inclusive)", False),
            field("lines_in", T.LongType(), "Lines (rows) the run read", False),
            field("lines_clean", T.LongType(), "Lines written to transactions_clean", False),
            field("lines_rejected", T.LongType(), "Lines rejected", False),
            field(
                "rejected_by_reason",
                T.MapType(T.StringType(), T.LongType(), False),
                "Rejected lines per reason, every reason present (0 when none)",
                False,
            ),
            field(RUN_ID, T.StringType(), "Ingest run that read the versions", False),
            field(INGESTED_AT, T.TimestampType(), "When that run wrote the lines (UTC)", False),
        ]
    ),
)

INGEST_FINGERPRINTS = TableSpec(
    comment=(
        "Ingest state: one row per distinct source line text per file per run, as two 64-bit hashes, so a "
        "later incremental run finds lines it has seen before without their text (segspark ingest)."
    ),
    schema=T.StructType(
        [
            field("fingerprint", T.LongType(), "xxhash64 of the line's text columns and of where its nulls are", False),
            field("fingerprint2", T.LongType(), "A second, differently seeded xxhash64 of the same", False),
            field("path", T.StringType(), "File the lines came from", False),
            field("copies", T.LongType(), "How many lines of that file had this text", False),
            field("latest_timestamp", T.TimestampType(), "The run's future_timestamp bound (UTC)", False),
            field(RUN_ID, T.StringType(), "Ingest run that read the lines", False),
        ]
    ),
    stats_columns=(RUN_ID,),
)

PIPELINE_RUNS = TableSpec(
    comment="One row per stage per run: timings, row counts, status, configuration hash and versions.",
    schema=T.StructType(
        [
            field(RUN_ID, T.StringType(), "Run id (UTC start time + random suffix)", False),
            field("stage", T.StringType(), "Stage name: ingest, features, train, ...", False),
            field(
                "status",
                T.StringType(),
                "succeeded; failed; rolled_back (its tables were rolled back unpublished: a later stage it publishes "
                "with failed, or its process died first); interrupted_after_publishing (its process died after it "
                "published; counts are those of published_runs)",
                False,
            ),
            field("started_at", T.TimestampType(), "Stage start (UTC)", False),
            field(
                "ended_at",
                T.TimestampType(),
                "Stage end (UTC); for a process that died, the next stage's start or its lock's last refresh",
                False,
            ),
            field("seconds", T.DoubleType(), "Wall-clock seconds", False),
            field("rows_in", T.LongType(), "Rows read by the stage"),
            field("rows_out", T.LongType(), "Rows written by the stage (main table)"),
            field("counts", T.MapType(T.StringType(), T.LongType()), "Named counts, e.g. rejects by reason"),
            field("config_hash", T.StringType(), "Hash of the effective configuration", False),
            field(
                "versions",
                T.MapType(T.StringType(), T.StringType()),
                "segspark, Spark and Delta versions (null for a stage of a process that died)",
            ),
            field(
                "message",
                T.StringType(),
                "The error of a failed stage; why a stage was rolled back or interrupted, and which run recorded it",
            ),
            field(
                "decision",
                T.StringType(),
                "monitor: the retrain decision for the latest snapshot and its reason in figures ('retrain "
                "recommended: ...', 'retrained: ...' or 'model kept: ...'); null for other stages",
            ),
        ]
    ),
    added_columns=("decision",),
)


PUBLISHED_RUNS = TableSpec(
    comment=(
        "Publication log: one row per stage run whose tables were all written, naming the Delta version of "
        "each. Readers use each table at the version of its latest row; later versions belong to an unfinished "
        "run and are rolled back by the next segspark command."
    ),
    schema=T.StructType(
        [
            field(
                RUN_ID, T.StringType(), "Run id of the stage run (or of the command that repaired or adopted)", False
            ),
            field("stage", T.StringType(), "ingest, features, train, score; or repair / adopt", False),
            field(
                "kind",
                T.StringType(),
                "run: a stage published its tables; repair: unfinished versions were rolled back to the published "
                "ones; adopt: a lakehouse older than the log had its tables' versions taken as published",
                False,
            ),
            field("published_at", T.TimestampType(), "When the row was written (UTC)", False),
            field(
                "table_versions",
                T.MapType(T.StringType(), T.LongType(), False),
                "Logical table name -> Delta version that holds this publication's rows",
                False,
            ),
            field("model_version", T.StringType(), "The model a train publication saved under models/"),
            field("counts", T.MapType(T.StringType(), T.LongType()), "Counts the readers can check, e.g. rows_in"),
        ]
    ),
)


def require_columns(df: DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise SchemaError naming every column ``what`` needs that ``df`` lacks."""
    present = set(df.columns)
    missing = [c for c in columns if c not in present]
    if missing:
        raise SchemaError(f"{what} needs column(s) {missing}; found {sorted(present)}")


CUSTOMER_FEATURES = TableSpec(
    comment=(
        "One row per customer per snapshot (as_of_date): RFM and behavioural features from clean lines "
        "dated strictly before as_of_date, RFM scores and the named RFM segment (segspark features)."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            field(AS_OF_DATE, T.DateType(), "Snapshot date: only invoices dated before it count", False),
            field(CUSTOMER_ID, T.StringType(), "Customer id", False),
            field("recency_days", T.IntegerType(), "Days from the last purchase date to as_of_date", False),
            field("frequency", T.LongType(), "Distinct purchase invoices", False),
            field("monetary", T.DecimalType(20, 2), "Sum of purchase line amounts (gross of returns), cents", False),
            field("tenure_days", T.IntegerType(), "Days from the first purchase date to as_of_date", False),
            field("returned_value", T.DecimalType(20, 2), "Sum of |line_amount| over return lines; 0 if none", False),
            field("avg_basket_value", T.DoubleType(), "monetary / frequency", False),
            field("return_rate", T.DoubleType(), "returned_value / monetary (can exceed 1)", False),
            field("first_purchase_date", T.DateType(), "Date of the first purchase", False),
            field("last_purchase_date", T.DateType(), "Date of the last purchase", False),
            field("distinct_products", T.IntegerType(), "Distinct product ids purchased", False),
            field("total_items", T.LongType(), "Units purchased (purchase lines)", False),
            field("items_per_basket", T.DoubleType(), "total_items / frequency", False),
            field("purchase_days_count", T.IntegerType(), "Distinct days with a purchase", False),
            field(
                "avg_days_between_purchases",
                T.DoubleType(),
                "Mean gap between purchase days; tenure_days when there is one purchase day",
                False,
            ),
            field(
                "std_days_between_purchases",
                T.DoubleType(),
                "Population std of the gaps between purchase days; 0 with fewer than two gaps",
                False,
            ),
            field("recent_spend_share", T.DoubleType(), "Share of monetary in the recent window", False),
            field("weekend_share", T.DoubleType(), "Share of purchase invoices on Saturday or Sunday (UTC)", False),
            field("evening_share", T.DoubleType(), "Share of purchase invoices from the evening hour on (UTC)", False),
            field("q4_spend_share", T.DoubleType(), "Share of monetary spent in October-December", False),
            field(COUNTRY, T.StringType(), "Country of the latest purchase invoice"),
            field("r_score", T.IntegerType(), "Recency quintile 1-5 (5 = most recent), mid-rank ties", False),
            field("f_score", T.IntegerType(), "Frequency quintile 1-5 (5 = most invoices), mid-rank ties", False),
            field("m_score", T.IntegerType(), "Monetary quintile 1-5 (5 = highest spend), mid-rank ties", False),
            field("fm_score", T.IntegerType(), "Half-up mean of f_score and m_score", False),
            field("rfm_score", T.StringType(), "r_score, f_score, m_score as text, e.g. 545", False),
            field("rfm_segment", T.StringType(), "Named RFM segment from features.rfm_segments", False),
            field(RUN_ID, T.StringType(), "Run that wrote the snapshot", False),
        ]
    ),
)

SEGMENT_ID = "segment_id"
SEGMENT_NAME = "segment_name"
MODEL_VERSION = "model_version"
CREATED_AT = "created_at"

INVOICE_ROLLUP = TableSpec(
    comment=(
        "The features stage's rollup of transactions_clean: one row per customer, invoice, invoice date and "
        "ingest batch, holding partial aggregates of those lines that merge exactly (sums, min, max, OR), so any "
        "snapshot's invoices come from these rows instead of the lines (segspark features)."
    ),
    schema=T.StructType(
        [
            field(CUSTOMER_ID, T.StringType(), "Customer id", False),
            field(INVOICE_ID, T.StringType(), "Invoice id"),
            field(INVOICE_DATE, T.DateType(), "Invoice date (UTC) of the lines", False),
            field(INGEST_RUN_ID, T.StringType(), "Ingest run that wrote the lines (their run_id)", False),
            field("lines", T.LongType(), "Clean lines aggregated into the row", False),
            field("purchase_value", T.DecimalType(38, 4), "Sum of line_amount over purchase lines; null if none"),
            field("returned_value", T.DecimalType(38, 4), "Sum of |line_amount| over return lines; null if none"),
            field("purchase_items", T.LongType(), "Sum of quantity over purchase lines; null if none"),
            field("has_purchase", T.BooleanType(), "Whether any line is a purchase (is_return false)", False),
            field("purchase_ts", T.TimestampType(), "Earliest invoice_ts of the purchase lines; null if none"),
            field(COUNTRY, T.StringType(), "Greatest country of the purchase lines (as features merges invoices)"),
            field(RUN_ID, T.StringType(), "Features run that wrote the row", False),
        ]
    ),
    stats_columns=(CUSTOMER_ID, INVOICE_DATE),
)

PRODUCT_ROLLUP = TableSpec(
    comment=(
        "The features stage's record of purchased products: one row per customer and product a batch of clean "
        "lines bought first, or earlier than known, with that purchase date; a pair's first purchase date is the "
        "earliest of its rows (segspark features)."
    ),
    schema=T.StructType(
        [
            field(CUSTOMER_ID, T.StringType(), "Customer id", False),
            field(PRODUCT_ID, T.StringType(), "Product id (lines without one never count)", False),
            field("first_purchase_date", T.DateType(), "Earliest invoice_date of the batch's purchase lines", False),
            field(RUN_ID, T.StringType(), "Features run (batch) that wrote the row", False),
        ]
    ),
    stats_columns=(CUSTOMER_ID, PRODUCT_ID),
)

NEW_PRODUCTS_ROLLUP = TableSpec(
    comment=(
        "The features stage's rollup of distinct products: one row per customer, date and batch with the change "
        "in the number of products first bought that day, so distinct products as of any snapshot are the sum "
        "over the days before it (segspark features)."
    ),
    schema=T.StructType(
        [
            field(CUSTOMER_ID, T.StringType(), "Customer id", False),
            field("first_purchase_date", T.DateType(), "The day the products were first bought", False),
            field(
                "new_products",
                T.LongType(),
                "Products first bought that day; -1 for each whose first purchase a later batch found earlier",
                False,
            ),
            field(RUN_ID, T.StringType(), "Features run (batch) that wrote the row", False),
        ]
    ),
    stats_columns=(CUSTOMER_ID, "first_purchase_date"),
)

ROLLUP_BATCHES = TableSpec(
    comment=(
        "What the features rollup has consumed of transactions_clean: one row per features run that read clean "
        "lines into it, since its last rebuild (segspark features)."
    ),
    schema=T.StructType(
        [
            field(RUN_ID, T.StringType(), "Features run that read the batch", False),
            field("kind", T.StringType(), "rebuild: every line, the rollup written anew; append: new lines", False),
            field("reason", T.StringType(), "Why: no rollup yet, transactions_clean rewritten, lines appended", False),
            field("clean_table_id", T.StringType(), "Delta table id of transactions_clean (new when recreated)", False),
            field("clean_version", T.LongType(), "The transactions_clean version read (its published one)", False),
            field(
                "lines_by_ingest_run",
                T.MapType(T.StringType(), T.LongType(), False),
                "Ingest run id -> clean lines of that run the batch read",
                False,
            ),
            field("lines", T.LongType(), "Clean lines the batch read", False),
            field("invoice_rows", T.LongType(), "Rows appended to invoice_rollup", False),
            field("product_rows", T.LongType(), "Rows appended to product_rollup", False),
            field("new_products_rows", T.LongType(), "Rows appended to new_products_rollup", False),
            field(CREATED_AT, T.TimestampType(), "When the batch was written (UTC)", False),
        ]
    ),
)


#: The columns naming one candidate of one train run's sweep (model_selection and sweep_segments).
_CANDIDATE_KEY = [
    field(RUN_ID, T.StringType(), "Train run", False),
    field(MODEL_VERSION, T.StringType(), "Model version the run saved (its run id)", False),
    field(AS_OF_DATE, T.DateType(), "Snapshot trained on"),
    field("algorithm", T.StringType(), "kmeans, bisecting_kmeans or gaussian_mixture", False),
    field("k", T.IntegerType(), "Number of segments requested", False),
]

MODEL_SELECTION = TableSpec(
    comment=(
        "The K sweep of each train run: one row per (algorithm, K) with its evidence, and the decision record "
        "(is_chosen, structure, reason) (segspark train)."
    ),
    schema=T.StructType(
        [
            *_CANDIDATE_KEY,
            field("customers", T.LongType(), "Customers in the snapshot", False),
            field("customers_evaluated", T.LongType(), "Customers the candidate was fitted and evaluated on", False),
            field("wssse", T.DoubleType(), "Within-segment sum of squared distances to the model's centres", False),
            field(
                "silhouette_squared_euclidean",
                T.DoubleType(),
                "MLlib ClusteringEvaluator silhouette; it uses SQUARED Euclidean distance",
            ),
            field(
                "silhouette_euclidean",
                T.DoubleType(),
                "Silhouette with Euclidean distance on a seeded sample (as scikit-learn's silhouette_score)",
            ),
            field("silhouette_sample", T.IntegerType(), "Customers in the Euclidean silhouette sample", False),
            field(
                "reference_silhouette",
                T.DoubleType(),
                "Euclidean silhouette of the same fit on a structureless reference: one Gaussian with the "
                "sample's mean and covariance",
            ),
            field("davies_bouldin", T.DoubleType(), "Davies-Bouldin index (lower is better)"),
            field("calinski_harabasz", T.DoubleType(), "Calinski-Harabasz index (higher is better)"),
            field("segments_found", T.IntegerType(), "Non-empty segments (can be below k on degenerate data)", False),
            field("smallest_segment_share", T.DoubleType(), "Share of customers in the smallest segment", False),
            field(
                "stability_ari",
                T.DoubleType(),
                "Mean adjusted Rand index of the assignments of fits with other seeds; null when not measured",
            ),
            field("iterations", T.IntegerType(), "Iterations of the main fit"),
            field("converged", T.BooleanType(), "The main fit stopped before max_iter"),
            field("is_elbow", T.BooleanType(), "K is the knee of this algorithm's WSSSE curve", False),
            field("fit_seconds", T.DoubleType(), "Seconds to fit the main model", False),
            field("seconds", T.DoubleType(), "Seconds for the candidate: all fits and every metric", False),
            field("structure", T.StringType(), "Evidence of cluster structure: strong, moderate or weak", False),
            field("is_chosen", T.BooleanType(), "The (algorithm, K) the run fitted on all customers and saved", False),
            field("reason", T.StringType(), "Plain-language reason it was or was not chosen", False),
            field("created_at", T.TimestampType(), "When the row was written (UTC)", False),
        ]
    ),
)

SWEEP_SEGMENTS = TableSpec(
    comment=(
        "Every segment of every candidate of each train run's K sweep: its size and mean silhouette, and whether "
        "a small one counted as a distinct group (segspark train)."
    ),
    schema=T.StructType(
        [
            *_CANDIDATE_KEY,
            field("segment_rank", T.IntegerType(), "1 = the candidate's largest segment", False),
            field("customers", T.LongType(), "Customers of the sweep (sample) in the segment", False),
            field("share", T.DoubleType(), "Share of the sweep's customers in the segment", False),
            field(
                "silhouette",
                T.DoubleType(),
                "Mean Euclidean silhouette of the segment's members in the silhouette sample; null when none sampled",
            ),
            field("silhouette_customers", T.IntegerType(), "The segment's members in the silhouette sample", False),
            field("candidate_silhouette", T.DoubleType(), "The candidate's overall silhouette, for comparison"),
            field("is_small", T.BooleanType(), "Under model.min_segment_share", False),
            field(
                "is_distinct",
                T.BooleanType(),
                "Counts as a segment: not small, or small but well separated (see docs/train.md, Choosing K)",
                False,
            ),
            field("profile", T.StringType(), "Standardised features that set it apart, largest first"),
            field("is_chosen", T.BooleanType(), "The candidate is the run's chosen (algorithm, K)", False),
            field("created_at", T.TimestampType(), "When the row was written (UTC)", False),
        ]
    ),
)

CUSTOMER_SEGMENTS = TableSpec(
    properties=CHANGE_FEED,
    comment="Segment of every customer per snapshot, from the saved model (segspark train, score).",
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            field(AS_OF_DATE, T.DateType(), "Snapshot the features are as of", False),
            field(CUSTOMER_ID, T.StringType(), "Customer id", False),
            field(SEGMENT_ID, T.IntegerType(), "Stable segment id (see segment_centroids)", False),
            field(
                "distance_to_centroid",
                T.DoubleType(),
                "Euclidean distance to the segment's centre in model space (standardised, or PCA) units",
                False,
            ),
            field(MODEL_VERSION, T.StringType(), "Model that assigned the segment", False),
            field(RUN_ID, T.StringType(), "Run that wrote the row", False),
            field(SEGMENT_NAME, T.StringType(), "Segment name (segment_profiles); null until segspark profile runs"),
        ]
    ),
    added_columns=(SEGMENT_NAME,),
)

SEGMENT_CENTROIDS = TableSpec(
    comment="One row per segment of each saved model: size, centroid in standardised and original units.",
    schema=T.StructType(
        [
            field(MODEL_VERSION, T.StringType(), "Model version", False),
            field(SEGMENT_ID, T.IntegerType(), "Stable segment id", False),
            field("algorithm", T.StringType(), "Clustering algorithm", False),
            field("k", T.IntegerType(), "Segments in the model", False),
            field(AS_OF_DATE, T.DateType(), "Snapshot the model was trained on"),
            field("customers", T.LongType(), "Training customers in the segment", False),
            field("share", T.DoubleType(), "Share of training customers in the segment", False),
            field(
                "centroid_standardised",
                T.MapType(T.StringType(), T.DoubleType(), False),
                "Feature -> mean of the members' standardised values (one-hot slots as feature=value)",
                False,
            ),
            field(
                "centroid_original",
                T.MapType(T.StringType(), T.DoubleType(), False),
                "Feature -> the standardised centroid mapped back to original units (log undone); for a "
                "one-hot slot, the share of members with that value",
                False,
            ),
            field("feature_columns", T.ArrayType(T.StringType(), False), "Input columns the model reads", False),
            field("previous_model_version", T.StringType(), "Model whose segment ids this model's ids continue"),
            field(
                "previous_centroid_distance",
                T.DoubleType(),
                "Distance (this model's standardised units) to the matched previous segment's centroid",
            ),
            field(RUN_ID, T.StringType(), "Train run", False),
            field("created_at", T.TimestampType(), "When the model was saved (UTC)", False),
        ]
    ),
)


#: Every field nullable: Delta refuses NOT NULL constraints inside arrays.
_FEATURE_PROFILE = T.StructType(
    [
        field("feature", T.StringType(), "customer_features column"),
        field("mean", T.DoubleType(), "Mean over the segment's customers (original units)"),
        field("median", T.DoubleType(), "Approximate median (percentile_approx) over the segment's customers"),
        field("population_mean", T.DoubleType(), "Mean over all customers of the snapshot"),
        field("population_median", T.DoubleType(), "Approximate median over all customers"),
        field(
            "effect_size",
            T.DoubleType(),
            "(segment mean - population mean) / population standard deviation on the model's scale (log for "
            "model.log_features); null when the population does not vary",
        ),
        field("effect_rank", T.IntegerType(), "1 = the largest |effect_size| of the segment"),
        field("level", T.StringType(), "high, low or mid against profile.level_threshold; null without effect"),
    ]
)

_SNAPSHOT_SEGMENT = [
    field(AS_OF_DATE, T.DateType(), "Snapshot profiled", False),
    field(SEGMENT_ID, T.IntegerType(), "Segment id (customer_segments)", False),
    field(SEGMENT_NAME, T.StringType(), "Segment name (segment_profiles)", False),
]
_WRITTEN_BY = [
    field(MODEL_VERSION, T.StringType(), "Model that assigned the segments", False),
    field(RUN_ID, T.StringType(), "Profile run that wrote the row", False),
    field("created_at", T.TimestampType(), "When the row was written (UTC)", False),
]
_MONEY = T.DecimalType(28, 2)

SEGMENT_PROFILES = TableSpec(
    properties=CHANGE_FEED,
    comment=(
        "One row per snapshot and segment: size, revenue, value at stake, core RFM figures, the features that "
        "set the segment apart, its name and recommended play (segspark profile)."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            *_SNAPSHOT_SEGMENT,
            field("structure", T.StringType(), "The model's evidence of structure: strong, moderate or weak"),
            field("customers", T.LongType(), "Customers of the snapshot in the segment", False),
            field("customer_share", T.DoubleType(), "Share of the snapshot's customers", False),
            field("revenue", _MONEY, "Sum of the customers' monetary (lifetime purchase revenue)", False),
            field("revenue_share", T.DoubleType(), "Share of all customers' revenue; null when that is 0"),
            field(
                "value_at_stake",
                _MONEY,
                "Purchase revenue of the customers in the profile.lookback_days before as_of_date: what is exposed "
                "if they lapse",
                False,
            ),
            field("value_at_stake_share", T.DoubleType(), "Share of all customers' value at stake; null when 0"),
            field("recency_days_mean", T.DoubleType(), "Mean days since the last purchase"),
            field("recency_days_median", T.DoubleType(), "Approximate median days since the last purchase"),
            field("frequency_mean", T.DoubleType(), "Mean purchase invoices"),
            field("frequency_median", T.DoubleType(), "Approximate median purchase invoices"),
            field("monetary_mean", T.DoubleType(), "Mean lifetime purchase revenue"),
            field("monetary_median", T.DoubleType(), "Approximate median lifetime purchase revenue"),
            field("dominant_rfm_segment", T.StringType(), "The named RFM segment most of its customers are in"),
            field("dominant_rfm_share", T.DoubleType(), "Share of the segment's customers in dominant_rfm_segment"),
            field("previous_as_of_date", T.DateType(), "The previous customer_features snapshot; null if none"),
            field("customers_with_previous", T.LongType(), "Customers also in the previous snapshot; null if none"),
            field(
                "recency_rose_share",
                T.DoubleType(),
                "Share of customers_with_previous whose recency_days rose (no purchase since); null if none",
            ),
            field(
                "top_features",
                T.ArrayType(T.StringType()),
                "The profile.top_features features with the largest |effect_size|, largest first",
                False,
            ),
            field("top_features_text", T.StringType(), "The top features in words with their medians", False),
            field("play", T.StringType(), "retain, win_back, upsell, cross_sell, nurture or deprioritise", False),
            field("play_reason", T.StringType(), "Why: the profile's own figures against all customers'", False),
            field("priority", T.IntegerType(), "1 = largest value at stake; deprioritise plays last", False),
            field(
                "feature_profile",
                T.ArrayType(_FEATURE_PROFILE),
                "Every profiled feature's figures, by effect_rank",
                False,
            ),
            *_WRITTEN_BY,
        ]
    ),
)

SEGMENT_TOP_PRODUCTS = TableSpec(
    comment=(
        "Per snapshot and segment, the products with the largest share of the segment's purchase spend in the "
        "lookback window, and their lift against all customers (segspark profile)."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            *_SNAPSHOT_SEGMENT,
            field("rank", T.IntegerType(), "1 = largest spend_share", False),
            field("product_id", T.StringType(), "Product id", False),
            field("description", T.StringType(), "The product's most frequent description"),
            field("spend", _MONEY, "The segment's purchase spend on the product", False),
            field("spend_share", T.DoubleType(), "spend / the segment's purchase spend", False),
            field("population_spend_share", T.DoubleType(), "The product's share of all customers' spend", False),
            field("lift", T.DoubleType(), "spend_share / population_spend_share: > 1 = bought more than by others"),
            field("buyers", T.LongType(), "Customers of the segment who bought it", False),
            *_WRITTEN_BY,
        ]
    ),
)

SEGMENT_CROSS_SELL = TableSpec(
    comment=(
        "Per snapshot and segment, association rules mined with FP-Growth over the segment's baskets (invoices) "
        "in the lookback window; only rules with lift > 1 (segspark profile)."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            *_SNAPSHOT_SEGMENT,
            field("rank", T.IntegerType(), "1 = highest lift (then confidence, support)", False),
            field("antecedent", T.ArrayType(T.StringType()), "Products in the basket (sorted)", False),
            field("antecedent_descriptions", T.ArrayType(T.StringType()), "Their descriptions, same order"),
            field("consequent", T.StringType(), "Product to recommend", False),
            field("consequent_description", T.StringType(), "Its description"),
            field("support", T.DoubleType(), "Share of the segment's baskets holding antecedent and consequent", False),
            field("confidence", T.DoubleType(), "Share of baskets with the antecedent that hold the consequent", False),
            field("lift", T.DoubleType(), "confidence / the consequent's share of baskets", False),
            field("rule_baskets", T.LongType(), "Baskets holding antecedent and consequent", False),
            field("segment_baskets", T.LongType(), "The segment's baskets", False),
            *_WRITTEN_BY,
        ]
    ),
)

CAMPAIGN_AUDIENCES = TableSpec(
    properties=CHANGE_FEED,
    comment=(
        "One row per customer of a snapshot, ready for a campaign tool: segment, play, priority, key figures, "
        "and a seeded holdout (is_control) per segment (segspark profile)."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            field(AS_OF_DATE, T.DateType(), "Snapshot", False),
            field(CUSTOMER_ID, T.StringType(), "Customer id", False),
            *_SNAPSHOT_SEGMENT[1:],
            field("play", T.StringType(), "The segment's recommended play", False),
            field("priority", T.IntegerType(), "The segment's priority (1 = largest value at stake)", False),
            field("recency_days", T.IntegerType(), "Days since the last purchase", False),
            field("frequency", T.LongType(), "Purchase invoices", False),
            field("monetary", T.DecimalType(20, 2), "Lifetime purchase revenue", False),
            field("last_purchase_date", T.DateType(), "Date of the last purchase", False),
            field("value_at_stake", _MONEY, "Purchase revenue of the lookback window", False),
            field("is_control", T.BooleanType(), "Held out: not to be contacted, to measure the campaign", False),
            field("campaign", T.StringType(), "Campaign key (campaign.name or the date) fixing the holdout", False),
            *_WRITTEN_BY,
        ]
    ),
    stats_columns=(CUSTOMER_ID, SEGMENT_ID),
)

#: campaign_results' lift columns (added after its first release): the same on both rows of a segment.
_LIFT_COLUMNS = [
    field("purchase_rate_uplift_low", T.DoubleType(), "Lower end of the uplift's 95% Newcombe (hybrid score) interval"),
    field("purchase_rate_uplift_high", T.DoubleType(), "Upper end of the uplift's 95% Newcombe interval"),
    field("purchase_rate_p_value", T.DoubleType(), "Two-sided p-value of no rate difference (pooled z test)"),
    field("spend_per_customer_uplift_low", T.DoubleType(), "Lower end of the spend uplift's 95% Welch interval"),
    field("spend_per_customer_uplift_high", T.DoubleType(), "Upper end of the spend uplift's 95% Welch interval"),
    field("spend_per_customer_p_value", T.DoubleType(), "Two-sided p-value of no spend difference (Welch's t test)"),
    field("control_share", T.DoubleType(), "Control customers / all customers of the segment's audience"),
    field("sample_ratio_p_value", T.DoubleType(), "Chi-square p-value of the control count against the holdout share"),
    field("sample_ratio_alert", T.BooleanType(), "sample_ratio_p_value below 0.001: the split is not as configured"),
    field("verdict", T.StringType(), "The lift in words: uplift with its interval, no detectable effect, or why not"),
]


CAMPAIGN_RESULTS = TableSpec(
    comment=(
        "Per audience snapshot, segment and group (contacted or control): purchase rate and spend up to the next "
        "snapshot; on both rows of a segment, the lift of contacted over control with 95% intervals, p-values, "
        "the sample-ratio check and a verdict; rows with a null segment_id are all segments together (segspark "
        "profile, once a later snapshot exists)."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            field(AS_OF_DATE, T.DateType(), "Snapshot of the audience", False),
            field("next_as_of_date", T.DateType(), "Snapshot the outcome is measured at", False),
            field("campaign", T.StringType(), "Campaign key of the audience", False),
            field(SEGMENT_ID, T.IntegerType(), "Segment id (customer_segments); null: all segments together"),
            field(SEGMENT_NAME, T.StringType(), "Segment name (segment_profiles), or 'All segments'", False),
            field("play", T.StringType(), "The segment's play in the audience (null for all segments)"),
            field("is_control", T.BooleanType(), "The held-out group", False),
            field("customers", T.LongType(), "Customers in the group", False),
            field("purchasers", T.LongType(), "Customers with a purchase in [as_of_date, next_as_of_date)", False),
            field("purchase_rate", T.DoubleType(), "purchasers / customers", False),
            field("spend", _MONEY, "Their purchase spend in the window", False),
            field("spend_per_customer", T.DoubleType(), "spend / customers", False),
            field("purchase_rate_uplift", T.DoubleType(), "Contacted minus control purchase rate (both rows)"),
            field("spend_per_customer_uplift", T.DoubleType(), "Contacted minus control spend per customer"),
            *_LIFT_COLUMNS,
            *_WRITTEN_BY,
        ]
    ),
    added_columns=tuple(f.name for f in _LIFT_COLUMNS),
    relaxed_columns=(SEGMENT_ID, "play"),
)


SEGMENT_MIGRATION = TableSpec(
    comment=(
        "Customers moving between segments from one scored snapshot to the next: per (earlier, later) snapshot, "
        "from-segment and to-segment, with 'new' and 'gone' rows for customers who appeared or dropped out "
        "(segspark monitor)."
    ),
    partition_by=("to_as_of_date",),
    schema=T.StructType(
        [
            field("from_as_of_date", T.DateType(), "The earlier snapshot", False),
            field("to_as_of_date", T.DateType(), "The later snapshot (the partition)", False),
            field("from_segment_id", T.IntegerType(), "Segment in the earlier snapshot; null for new customers"),
            field("from_segment_name", T.StringType(), "Its name, or 'new'"),
            field("to_segment_id", T.IntegerType(), "Segment in the later snapshot; null for customers gone"),
            field("to_segment_name", T.StringType(), "Its name, or 'gone'"),
            field("customers", T.LongType(), "Customers who made this move", False),
            field("share_of_from", T.DoubleType(), "customers / all customers of the from-segment (or of new)", False),
            field("from_model_version", T.StringType(), "Model that assigned the earlier snapshot", False),
            field("to_model_version", T.StringType(), "Model that assigned the later snapshot", False),
            field("from_segments_run_id", T.StringType(), "Run that wrote the earlier snapshot's segments", False),
            field("to_segments_run_id", T.StringType(), "Run that wrote the later snapshot's segments", False),
            field(RUN_ID, T.StringType(), "Monitor run that wrote the row", False),
            field(CREATED_AT, T.TimestampType(), "When the row was written (UTC)", False),
        ]
    ),
)


DRIFT_REFERENCE = TableSpec(
    comment=(
        "The drift reference each model is saved with: every model feature's fixed bins (deciles of the training "
        "snapshot for a numeric feature, the training categories for a categorical one) and the training "
        "customers in each (segspark train). segspark monitor bins every later snapshot the same way."
    ),
    schema=T.StructType(
        [
            field(MODEL_VERSION, T.StringType(), "Model version", False),
            field(AS_OF_DATE, T.DateType(), "Snapshot the model was trained on"),
            field("feature", T.StringType(), "Model feature", False),
            field("kind", T.StringType(), "numeric or categorical", False),
            field("bin", T.IntegerType(), "Bin, from 0; -1 holds the missing values", False),
            field(
                "lower",
                T.DoubleType(),
                "Numeric bin: values above this edge (null for the first bin); after the model's log transform",
            ),
            field("upper", T.DoubleType(), "Numeric bin: values up to and including this edge (null for the last)"),
            field("category", T.StringType(), "Categorical bin: its value; '(unseen)' for values training never saw"),
            field("customers", T.LongType(), "Training customers in the bin", False),
            field("share", T.DoubleType(), "customers / all training customers", False),
            field("feature_mean", T.DoubleType(), "Numeric feature: mean of its non-missing training values"),
            field("feature_std", T.DoubleType(), "Numeric feature: their sample standard deviation"),
            field(RUN_ID, T.StringType(), "Train run", False),
            field(CREATED_AT, T.TimestampType(), "When the model was saved (UTC)", False),
        ]
    ),
)


FEATURE_DRIFT = TableSpec(
    comment=(
        "Drift of each scored snapshot against the model that scored it (segspark monitor): per model feature, "
        "the population stability index on the model's fixed bins (or the Jensen-Shannon distance of a "
        "categorical feature), the mean shift and the change in missing values; the same for the segment "
        "shares; the shift of each centroid where a new model was fitted; and an alert level from "
        "monitor.thresholds."
    ),
    partition_by=(AS_OF_DATE,),
    schema=T.StructType(
        [
            field(AS_OF_DATE, T.DateType(), "The scored snapshot (the partition)", False),
            field(MODEL_VERSION, T.StringType(), "Model that scored it; its training snapshot is the reference", False),
            field("model_as_of_date", T.DateType(), "The model's training snapshot"),
            field("segments_run_id", T.StringType(), "Run that wrote the snapshot's customer_segments", False),
            field(
                "kind",
                T.StringType(),
                "numeric or categorical (a model feature), segments (the segment shares), centroid (a new fit's "
                "centroid against the previous model's)",
                False,
            ),
            field("feature", T.StringType(), "Model feature; segment_id for segments; the segment for centroid", False),
            field("customers", T.LongType(), "Customers of the snapshot", False),
            field("psi", T.DoubleType(), "Population stability index against training (numeric, segments)"),
            field("js_distance", T.DoubleType(), "Jensen-Shannon distance, base 2, in [0, 1] (categorical, segments)"),
            field("mean", T.DoubleType(), "Mean of the non-missing values, after the model's log transform"),
            field("reference_mean", T.DoubleType(), "The same mean over the training customers"),
            field("mean_shift", T.DoubleType(), "(mean - reference_mean) in training standard deviations"),
            field("missing_share", T.DoubleType(), "Share of customers with no value"),
            field("reference_missing_share", T.DoubleType(), "The same share in training"),
            field("missing_share_change", T.DoubleType(), "missing_share - reference_missing_share"),
            field(
                "centroid_shift",
                T.DoubleType(),
                "centroid: distance to the matched segment of the previous model (standardised units)",
            ),
            field("alert", T.StringType(), "ok, watch or act: the worst level of the row's figures", False),
            field("reason", T.StringType(), "The figures at watch or act against their thresholds; null when ok"),
            field(RUN_ID, T.StringType(), "Monitor run that wrote the row", False),
            field(CREATED_AT, T.TimestampType(), "When the row was written (UTC)", False),
        ]
    ),
)


@dataclass(frozen=True)
class Table:
    """One table of the lakehouse in the registry :data:`TABLES`.

    ``name`` is the logical name (``config.tables`` maps it to a folder), ``writer`` the stage that writes it,
    ``spec`` its contract (None for ``transactions_rejected``, which keeps the source's own columns: see
    :func:`transactions_rejected_spec`), and ``published`` whether readers see it through the publication log
    (the run logs ``pipeline_runs`` and ``published_runs`` are read directly).
    """

    name: str
    writer: str
    spec: TableSpec | None
    published: bool = True


#: Every table segspark writes, in pipeline order, run logs last: the one inventory. The catalog registers,
#: maintain compacts and the publication log publishes the tables derived from it.
TABLES: tuple[Table, ...] = (
    Table("transactions_clean", "ingest", TRANSACTIONS_CLEAN),
    Table("transactions_rejected", "ingest", None),
    Table("ingested_files", "ingest", INGESTED_FILES),
    Table("ingest_fingerprints", "ingest", INGEST_FINGERPRINTS),
    Table("ingested_versions", "ingest", INGESTED_VERSIONS),
    Table("invoice_rollup", "features", INVOICE_ROLLUP),
    Table("product_rollup", "features", PRODUCT_ROLLUP),
    Table("new_products_rollup", "features", NEW_PRODUCTS_ROLLUP),
    Table("rollup_batches", "features", ROLLUP_BATCHES),
    Table("customer_features", "features", CUSTOMER_FEATURES),
    Table("customer_segments", "train, score", CUSTOMER_SEGMENTS),
    Table("segment_centroids", "train", SEGMENT_CENTROIDS),
    Table("model_selection", "train", MODEL_SELECTION),
    Table("sweep_segments", "train", SWEEP_SEGMENTS),
    Table("drift_reference", "train", DRIFT_REFERENCE),
    Table("segment_profiles", "profile", SEGMENT_PROFILES),
    Table("segment_top_products", "profile", SEGMENT_TOP_PRODUCTS),
    Table("segment_cross_sell", "profile", SEGMENT_CROSS_SELL),
    Table("campaign_audiences", "profile", CAMPAIGN_AUDIENCES),
    Table("campaign_results", "profile", CAMPAIGN_RESULTS),
    Table("segment_migration", "monitor", SEGMENT_MIGRATION),
    Table("feature_drift", "monitor", FEATURE_DRIFT),
    Table("pipeline_runs", "every stage", PIPELINE_RUNS, published=False),
    Table("published_runs", "every publishing stage", PUBLISHED_RUNS, published=False),
)

#: Every table's logical name, in :data:`TABLES` order (what the catalog registers and maintain compacts).
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)
#: The tables a stage publishes as one unit (see :mod:`segspark.platform.publication`), in pipeline order.
PUBLISHED_TABLES: tuple[str, ...] = tuple(t.name for t in TABLES if t.published)
#: Logical name -> spec of every table whose schema is fixed.
TABLE_SPECS: dict[str, TableSpec] = {t.name: t.spec for t in TABLES if t.spec is not None}
