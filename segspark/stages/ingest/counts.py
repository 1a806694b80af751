"""Ingest's counts: the lines per reject reason, their reconciliation and the check of the reject share.

:func:`reject_metrics` are observed on the rejected write itself (``DataFrame.observe``), so the lines per
reason and one example text each cost no read of the table; :func:`counts_from_metrics` makes them
:class:`IngestCounts`. :func:`reconcile` fails unless every source line landed in exactly one table, and
:func:`check_reject_share` fails the stage when no line is clean or too many are rejected, naming each reason
as :func:`describe_reason` words it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from segspark.config.settings import Config, SourceSettings
from segspark.contracts.schemas import REJECT_REASON, REJECT_REASONS
from segspark.errors import ReconciliationError, RejectThresholdError
from segspark.stages.ingest.fingerprints import source_column
from segspark.stages.ingest.rules import undecodable_text

__all__ = [
    "EXAMPLE_CHARS",
    "IngestCounts",
    "check_reject_share",
    "counts_from_metrics",
    "describe_reason",
    "published_counts",
    "reason_columns",
    "reconcile",
    "reject_example_text",
    "reject_metrics",
]


@dataclass(frozen=True)
class IngestCounts:
    """Row counts of one ingest; ``rejected_by_reason`` has every reason, zeros included.

    ``reject_examples`` holds, per reason that rejected lines, one source text of the column that decided it
    (the least non-null one in sort order; None when all are null); ``duplicate`` has none.
    """

    rows_in: int
    rows_clean: int
    rejected_by_reason: dict[str, int]
    reject_examples: dict[str, str | None] = field(default_factory=dict)
    #: The latest valid timestamp of the run (later lines are ``future_timestamp``).
    latest_timestamp: dt.datetime | None = None
    #: Whether the run appended a batch of new files (False: it replaced both tables).
    incremental: bool = False
    #: Source files read, and (incremental runs) files left out because they were ingested already.
    files_read: int = 0
    files_skipped: int = 0
    #: Lines in both tables after the run (``total_rows_clean``, ``total_rows_rejected``) and, for file
    #: sources, in every file ingested so far (``total_rows_in``).
    totals: dict[str, int] = field(default_factory=dict)
    #: A Delta source's versions read: (first version of the changes read, or None for the whole table; last).
    source_versions: tuple[int | None, int] | None = None

    @property
    def rows_rejected(self) -> int:
        """Lines rejected for any reason: the sum of ``rejected_by_reason``."""
        return sum(self.rejected_by_reason.values())


#: Longest example text kept per reason; longer ones end in "...".
EXAMPLE_CHARS = 60


def reason_columns(source: SourceSettings) -> dict[str, str]:
    """Reason -> the source column whose text decides it (reasons whose column the source lacks are left out)."""
    cols = source.columns
    by_reason = {
        "missing_customer_id": cols.customer_id,
        "invalid_encoding": cols.description or cols.customer_id,
        "invalid_timestamp": cols.invoice_ts,
        "future_timestamp": cols.invoice_ts,
        "invalid_quantity": cols.quantity,
        "invalid_price": cols.price,
    }
    return {reason: name for reason, name in by_reason.items() if name is not None}


def reject_example_text(source: SourceSettings) -> Column:
    """The source text behind each row's ``reject_reason``, cut to ``EXAMPLE_CHARS + 1``; null for clean rows."""
    example = F.lit(None).cast(T.StringType())
    for reason, name in reason_columns(source).items():
        text = undecodable_text(source) if reason == "invalid_encoding" else source_column(name)
        example = F.when(F.col(REJECT_REASON) == reason, text).otherwise(example)
    return F.substring(example, 1, EXAMPLE_CHARS + 1)


def reject_metrics(source: SourceSettings) -> list[Column]:
    """Aggregates over rejected lines: ``lines:<reason>`` for every reason, ``example:<reason>`` for each but
    ``duplicate`` (the least example text; see :class:`IngestCounts`).

    Observed on the rejected write itself (``DataFrame.observe``), so the counts cost no read of the table.
    """
    example = reject_example_text(source)
    metrics = []
    for reason in REJECT_REASONS:
        is_reason = F.col(REJECT_REASON) == reason
        metrics.append(F.count(F.when(is_reason, True)).alias(f"lines:{reason}"))
        if reason != "duplicate":
            metrics.append(F.min(F.when(is_reason, example)).alias(f"example:{reason}"))
    return metrics


def counts_from_metrics(metrics: dict[str, object], rows_in: int, rows_clean: int) -> IngestCounts:
    """:class:`IngestCounts` from the values of :func:`reject_metrics`; reasons without lines have no example."""
    rejected = {reason: int(str(metrics[f"lines:{reason}"])) for reason in REJECT_REASONS}
    examples = {
        reason: None if metrics[f"example:{reason}"] is None else str(metrics[f"example:{reason}"])
        for reason in REJECT_REASONS
        if reason != "duplicate" and rejected[reason]
    }
    return IngestCounts(rows_in=rows_in, rows_clean=rows_clean, rejected_by_reason=rejected, reject_examples=examples)


def check_reject_share(counts: IngestCounts, config: Config) -> None:
    """Raise RejectThresholdError when no line is clean, or too large a share of all input lines is rejected.

    An incremental batch without clean lines passes when some of its lines are duplicates (a re-delivery).

    The share is (lines rejected for reasons outside ``ingest.tolerated_reject_reasons``) / ``rows_in``, where
    ``rows_in`` counts every source line, duplicates and tolerated rejects included; it fails when above
    ``ingest.max_reject_share``. The message names the reasons, largest first (ties in check order), each with
    its count and one example.
    """
    settings = config.ingest
    if counts.rows_in == 0:
        return
    counted = {r: n for r, n in counts.rejected_by_reason.items() if r not in settings.tolerated_reject_reasons}
    counted_lines = sum(counted.values())
    share = counted_lines / counts.rows_in
    # A batch of re-delivered lines has no clean line and nothing wrong with it.
    no_clean = counts.rows_clean == 0 and not (counts.incremental and counts.rejected_by_reason["duplicate"])
    if not no_clean and share <= settings.max_reject_share:
        return
    if no_clean:
        headline = f"no input line is clean ({counts.rows_rejected:,} of {counts.rows_in:,} rejected)"
        shown = counts.rejected_by_reason
    else:
        tolerated = settings.tolerated_reject_reasons
        other_than = f" for reasons other than {', '.join(tolerated)}" if tolerated else ""
        headline = (
            f"{counted_lines:,} of {counts.rows_in:,} input lines ({share:.1%}) were rejected{other_than}; "
            f"ingest.max_reject_share is {settings.max_reject_share * 100:g}%"
        )
        shown = counted
    order = sorted((r for r, n in shown.items() if n), key=lambda r: (-shown[r], REJECT_REASONS.index(r)))
    details = "; ".join(
        describe_reason(r, shown[r], counts.reject_examples.get(r), config.source, counts.latest_timestamp)
        for r in order
    )
    raise RejectThresholdError(
        f"{headline}. {details}. Both tables were written; the rejected lines are in "
        f"{config.table_path('transactions_rejected')}"
    )


def describe_reason(
    reason: str, lines: int, example: str | None, source: SourceSettings, latest: dt.datetime | None = None
) -> str:
    """``invalid_timestamp: 2 lines, e.g. '01.12.2010 08:26' (column InvoiceDate; configured formats: ...)``."""
    text = f"{reason}: {lines:,} line{'s' if lines != 1 else ''}"
    column = reason_columns(source).get(reason)
    if column is None:
        return text
    if example is None:
        shown = "empty"
    elif len(example) > EXAMPLE_CHARS:
        shown = repr(example[:EXAMPLE_CHARS]) + "..."
    else:
        shown = repr(example)
    hint = f"column {column}"
    if reason == "invalid_timestamp":
        hint += f"; configured formats: {', '.join(source.timestamp_formats)}"
    elif reason == "invalid_encoding":
        encoding = source.csv_options.get("encoding", "UTF-8")
        hint = (
            f"bytes that are not {encoding}; a Latin-1 export needs source.csv_options.encoding: ISO-8859-1"
            if source.format == "csv"
            else "text holding U+FFFD, the mark of bytes a decoder could not read"
        )
    elif reason == "future_timestamp" and latest is not None:
        hint += f"; later than {latest:%Y-%m-%d %H:%M:%S} UTC (ingest.latest_timestamp, default the run's start)"
    return f"{text}, e.g. {shown} ({hint})"


def reconcile(counts: IngestCounts, clean_written: int, rejected_written: int) -> None:
    """Fail loudly unless every source line landed in exactly one table.

    ``counts.rows_in`` is the source's own line count and ``counts.rows_rejected`` the rejected lines observed on
    the rejected write, so a commit whose recorded row count disagrees with its rows fails too.
    """
    if clean_written + rejected_written != counts.rows_in or counts.rows_rejected != rejected_written:
        raise ReconciliationError(
            f"rows do not reconcile: {counts.rows_in:,} source lines, {clean_written:,} clean + "
            f"{rejected_written:,} rejected written ({counts.rows_rejected:,} rejected lines in the table)"
        )


def published_counts(counts: IngestCounts) -> dict[str, int]:
    """The run's counts as its publication (and its ``pipeline_runs`` row) records them: lines in, clean and
    rejected, files read and skipped, the totals after the run and, for a Delta source, the versions read."""
    named = {
        "rows_in": counts.rows_in,
        "rows_clean": counts.rows_clean,
        "rows_rejected": counts.rows_rejected,
        "files_read": counts.files_read,
        "files_skipped": counts.files_skipped,
        **counts.totals,
    }
    if counts.source_versions is not None:
        first, last = counts.source_versions
        if first is not None:
            named["from_version"] = first
        named["to_version"] = last
    return named
