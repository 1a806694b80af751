"""Named errors. The CLI maps them to exit codes: usage/configuration errors exit 2, job failures exit 1."""

__all__ = [
    "ConfigError",
    "EnvironmentProblem",
    "InputError",
    "InputPathError",
    "InternalError",
    "ReconciliationError",
    "RejectThresholdError",
    "SchemaError",
    "SegsparkError",
]


class SegsparkError(Exception):
    """Base class for every error segspark raises on purpose."""

    exit_code = 1


class ConfigError(SegsparkError):
    """A configuration key is unknown, missing or has the wrong type or value."""

    exit_code = 2


class SchemaError(SegsparkError):
    """A DataFrame or source lacks columns a step needs, or has them with the wrong types."""

    exit_code = 2


class InputError(SegsparkError):
    """The input cannot be read or holds nothing to work on."""

    exit_code = 1


class InputPathError(InputError):
    """A local input path is unusable as given: it matches nothing, holds only empty files, or is an archive.

    A usage error (exit 2), found before Spark starts when the path is local; the message says what to pass.
    """

    exit_code = 2


class RejectThresholdError(InputError):
    """Ingest rejected too much of the input to be usable (``ingest.max_reject_share``) or kept nothing.

    Raised after both tables are written and reconciled, so the rejects can be inspected; the tables stay.
    """

    exit_code = 1


class ReconciliationError(SegsparkError):
    """Row counts do not reconcile: rows would be lost or invented."""

    exit_code = 1


class EnvironmentProblem(SegsparkError):
    """The runtime lacks something segspark needs (Java, Delta jars)."""

    exit_code = 1


class InternalError(SegsparkError):
    """A guarantee segspark relies on did not hold (an aggregation or a Delta table's history gave no row).

    A bug, or a lakehouse changed under segspark's feet; the message says what was expected.
    """

    exit_code = 1
