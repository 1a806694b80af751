"""Customer features: hand-computed golden snapshot, quintile scores, several snapshots, the rollup, the stage.

Every expected value below is computed by hand from the definitions in ``schemas.CUSTOMER_FEATURES`` (and the
feature spec), not read back from the implementation. Day counts to the as_of_date 2011-12-10 (a Saturday):
Dec d -> 10 - d; Nov d -> 40 - d; Oct d -> 71 - d; Sep d -> 101 - d; the recent window starts 2011-09-11.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from functools import reduce

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from segspark.config.settings import DEFAULT_RFM_RULES, FeatureSettings
from segspark.contracts.schemas import (
    CUSTOMER_FEATURES,
    INVOICE_ROLLUP,
    NEW_PRODUCTS_ROLLUP,
    PRODUCT_ROLLUP,
    TRANSACTIONS_CLEAN,
)
from segspark.errors import InputError, ReconciliationError, SchemaError
from segspark.platform import lakehouse, publication
from segspark.platform.lakehouse import Commit
from segspark.platform.stage_log import StageRun
from segspark.stages.features import batches
from segspark.stages.features import stage as features
from segspark.stages.features.batches import BatchPlan, RollupState, plan_batch
from segspark.stages.features.customers import build_customer_features, quintile_score, rfm_segment
from segspark.stages.features.rollup import (
    build_features_from_rollup,
    first_purchases,
    product_rollup_rows,
    rollup_lines,
    with_known_dates,
)
from segspark.stages.ingest import stage as ingest
from segspark.stages.train import stage as train
from tests.helpers.config import REAL_DATA, make_config, requires_real_data, retail_config

UTC = dt.UTC
UK = "United Kingdom"
AS_OF = dt.date(2011, 12, 10)

LINES_DDL = (
    "customer_id string, invoice_id string, product_id string, quantity int, line_amount decimal(28,4), "
    "invoice_ts timestamp, invoice_date date, country string, is_return boolean"
)


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def ln(customer, invoice, product, qty, amount, ts, country=UK, is_return=False):
    """One clean line; ``ts`` is UTC (an aware datetime, so the driver's own zone never matters)."""
    stamp = dt.datetime.fromisoformat(ts).replace(tzinfo=UTC)
    return (customer, invoice, product, qty, Decimal(amount), stamp, stamp.date(), country, is_return)


def ret(customer, invoice, product, qty, amount, ts, country=UK):
    return ln(customer, invoice, product, qty, amount, ts, country, is_return=True)


def plain(df):
    """Drop column metadata (comments) so frames compare by name, type and value only."""
    return df.select(*[F.col(c).alias(c, metadata={}) for c in df.columns])


# --- the golden snapshot: 22 customers, 20 kept (c03 has only returns, c22 only lines on/after as_of) ---

GOLDEN_LINES = [
    # c01: 4 purchase invoices on 3 days (two on 2011-12-01), several lines, P1 bought twice, a return,
    # a country change (the latest purchase invoice, 12-01 14:00, is France; the later return is Germany),
    # one line ON as_of and one AFTER it (both ignored).
    ln("c01", "I101", "P1", 2, "10.00", "2011-09-30 10:00:00"),  # Fri, recent, not q4
    ln("c01", "I101", "P2", 1, "5.50", "2011-09-30 10:00:00"),
    ln("c01", "I102", "P1", 4, "20.00", "2011-11-05 19:30:00"),  # Sat evening
    ln("c01", "I103", "P3", 1, "4.50", "2011-12-01 09:00:00", "Belgium"),
    ln("c01", "I104", "P4", 10, "10.00", "2011-12-01 14:00:00", "France"),
    ret("c01", "C105", "P1", -1, "-5.00", "2011-12-02 11:00:00", "Germany"),
    ln("c01", "I106", "P5", 1, "100.00", "2011-12-10 12:00:00"),  # on as_of: excluded
    ln("c01", "I107", "P6", 1, "100.00", "2011-12-15 12:00:00"),  # after as_of: excluded
    # c02: one purchase (Sun), then a return larger than the purchase -> return_rate 12/8 = 1.5
    ln("c02", "I201", "P1", 2, "8.00", "2011-11-20 10:00:00"),
    ret("c02", "C202", "P1", -3, "-12.00", "2011-11-25 10:00:00"),
    # c03: returns only -> not in the snapshot
    ret("c03", "C301", "P1", -1, "-2.00", "2011-11-01 10:00:00"),
    # c04: single old purchase, not q4, not recent
    ln("c04", "I401", "P2", 5, "25.00", "2011-03-15 10:00:00"),
    # c05: two invoices on the same Saturday: frequency 2, one purchase day, one evening invoice
    ln("c05", "I501", "P6", 1, "6.00", "2011-10-15 08:00:00"),
    ln("c05", "I502", "P7", 1, "4.00", "2011-10-15 20:00:00"),
    # c06: same product on an old and a recent day
    ln("c06", "I601", "P8", 2, "30.00", "2011-01-10 10:00:00"),
    ln("c06", "I602", "P8", 2, "10.00", "2011-12-05 10:00:00"),
    # c07: recent-window boundary: 09-10 is outside (91 days), 09-11 inside (exactly 90 days); Sat + Sun
    ln("c07", "I701", "P1", 1, "7.00", "2011-09-10 11:00:00"),
    ln("c07", "I702", "P2", 1, "3.00", "2011-09-11 11:00:00"),
    # c08: evening boundary: 17:59 is not evening, 18:00 is
    ln("c08", "I801", "P3", 3, "12.00", "2011-11-28 17:59:00"),
    ln("c08", "I802", "P3", 2, "8.00", "2011-11-29 18:00:00"),
    # c09: Sunday 23:30 (weekend, evening) then Monday 00:30 (neither)
    ln("c09", "I901", "P4", 1, "5.00", "2011-11-27 23:30:00"),
    ln("c09", "I902", "P4", 1, "5.00", "2011-11-28 00:30:00"),
    # c10: one invoice mixing a return line (Sun 23:00, earliest line) and two purchase lines on Monday;
    # the invoice's time is its earliest PURCHASE line (Mon 09:00): not weekend, not evening.
    ret("c10", "I1001", "P2", -1, "-4.00", "2011-12-04 23:00:00"),
    ln("c10", "I1001", "P1", 2, "20.00", "2011-12-05 09:00:00"),
    ln("c10", "I1001", "P3", 1, "6.00", "2011-12-05 19:00:00"),
    # c11: four purchase days with gaps 1, 2, 3 -> std sqrt(2/3)
    ln("c11", "I1101", "P1", 1, "2.50", "2011-11-01 10:00:00", "Germany"),
    ln("c11", "I1102", "P2", 1, "2.50", "2011-11-02 10:00:00", "Germany"),
    ln("c11", "I1103", "P1", 1, "2.50", "2011-11-04 10:00:00", "Germany"),
    ln("c11", "I1104", "P2", 1, "2.50", "2011-11-07 10:00:00", "Germany"),
    # c12: q4 spend of the previous year (old), then an old Saturday purchase
    ln("c12", "I1201", "P9", 6, "60.00", "2010-12-15 10:00:00"),
    ln("c12", "I1202", "P9", 4, "40.00", "2011-08-20 10:00:00"),
    # c13: sub-cent amounts: monetary 2.4690 -> 2.47, returned 1.2345 -> 1.23, return_rate exact 0.5
    ln("c13", "I1301", "P1", 1, "1.2345", "2011-10-03 10:00:00"),
    ln("c13", "I1301", "P2", 1, "1.2345", "2011-10-03 10:00:00"),
    ret("c13", "C1302", "P1", -1, "-1.2345", "2011-10-04 10:00:00"),
    # c14, c15: tied on recency (1 day) and monetary (15.00)
    ln("c14", "I1401", "P1", 1, "15.00", "2011-12-09 12:00:00"),
    ln("c15", "I1501", "P2", 3, "15.00", "2011-12-09 15:00:00"),
    ln("c16", "I1601", "P5", 1, "200.00", "2011-07-04 10:00:00"),
    ln("c17", "I1701", "P6", 2, "12.00", "2011-12-03 10:00:00", "EIRE"),  # Sat
    # c18: country change Spain -> Portugal (latest wins, although "Spain" sorts last)
    ln("c18", "I1801", "P7", 1, "50.00", "2011-02-14 10:00:00", "Spain"),
    ln("c18", "I1802", "P7", 1, "50.00", "2011-11-15 10:00:00", "Portugal"),
    # c19: five invoices Mon-Fri
    *[ln("c19", f"I190{i}", "P1", 1, "20.00", f"2011-11-2{i} 10:00:00") for i in range(1, 6)],
    ln("c20", "I2001", "P8", 1, "1.00", "2011-12-07 21:00:00"),  # Wed evening
    ln("c21", "I2101", "P9", 1, "9.00", "2011-05-10 10:00:00"),
    # c22: lines on and after as_of only -> not in the snapshot at all
    ln("c22", "I2201", "P1", 1, "5.00", "2011-12-10 09:00:00"),
    ln("c22", "I2202", "P1", 1, "5.00", "2011-12-11 09:00:00"),
]

CORE_DDL = (
    "as_of_date date, customer_id string, recency_days int, frequency bigint, monetary decimal(20,2), "
    "tenure_days int, returned_value decimal(20,2), first_purchase_date date, last_purchase_date date, "
    "distinct_products int, total_items bigint, purchase_days_count int, country string"
)
# customer, recency, frequency, monetary, tenure, returned_value, first, last, distinct_products, total_items,
# purchase_days_count, country
CORE = [
    # c01: last 12-01 (9), first 09-30 (71); 15.50+20+4.50+10 = 50; items 2+1+4+1+10; P1..P4; 3 days
    ("c01", 9, 4, "50.00", 71, "5.00", "2011-09-30", "2011-12-01", 4, 18, 3, "France"),
    ("c02", 20, 1, "8.00", 20, "12.00", "2011-11-20", "2011-11-20", 1, 2, 1, UK),
    ("c04", 270, 1, "25.00", 270, "0.00", "2011-03-15", "2011-03-15", 1, 5, 1, UK),
    ("c05", 56, 2, "10.00", 56, "0.00", "2011-10-15", "2011-10-15", 2, 2, 1, UK),
    ("c06", 5, 2, "40.00", 334, "0.00", "2011-01-10", "2011-12-05", 1, 4, 2, UK),
    ("c07", 90, 2, "10.00", 91, "0.00", "2011-09-10", "2011-09-11", 2, 2, 2, UK),
    ("c08", 11, 2, "20.00", 12, "0.00", "2011-11-28", "2011-11-29", 1, 5, 2, UK),
    ("c09", 12, 2, "10.00", 13, "0.00", "2011-11-27", "2011-11-28", 1, 2, 2, UK),
    # c10: one purchase invoice (12-05); the return line counts in returned_value only
    ("c10", 5, 1, "26.00", 5, "4.00", "2011-12-05", "2011-12-05", 2, 3, 1, UK),
    ("c11", 33, 4, "10.00", 39, "0.00", "2011-11-01", "2011-11-07", 2, 4, 4, "Germany"),
    # c12: 2010-12-15 is 360 days before as_of, 2011-08-20 is 112
    ("c12", 112, 2, "100.00", 360, "0.00", "2010-12-15", "2011-08-20", 1, 10, 2, UK),
    ("c13", 68, 1, "2.47", 68, "1.23", "2011-10-03", "2011-10-03", 2, 2, 1, UK),
    ("c14", 1, 1, "15.00", 1, "0.00", "2011-12-09", "2011-12-09", 1, 1, 1, UK),
    ("c15", 1, 1, "15.00", 1, "0.00", "2011-12-09", "2011-12-09", 1, 3, 1, UK),
    ("c16", 159, 1, "200.00", 159, "0.00", "2011-07-04", "2011-07-04", 1, 1, 1, UK),
    ("c17", 7, 1, "12.00", 7, "0.00", "2011-12-03", "2011-12-03", 1, 2, 1, "EIRE"),
    # c18: 2011-02-14 is 299 days before as_of
    ("c18", 25, 2, "100.00", 299, "0.00", "2011-02-14", "2011-11-15", 1, 2, 2, "Portugal"),
    ("c19", 15, 5, "100.00", 19, "0.00", "2011-11-21", "2011-11-25", 1, 5, 5, UK),
    ("c20", 3, 1, "1.00", 3, "0.00", "2011-12-07", "2011-12-07", 1, 1, 1, UK),
    ("c21", 214, 1, "9.00", 214, "0.00", "2011-05-10", "2011-05-10", 1, 1, 1, UK),
]

BEHAVIOUR_DDL = (
    "as_of_date date, customer_id string, avg_basket_value double, return_rate double, "
    "items_per_basket double, avg_days_between_purchases double, std_days_between_purchases double, "
    "recent_spend_share double, weekend_share double, evening_share double, q4_spend_share double"
)
# customer, avg_basket, return_rate, items_per_basket, avg_days, std_days, recent, weekend, evening, q4
BEHAVIOUR = [
    # c01: days 09-30, 11-05, 12-01: gaps 36, 26 -> mean 31, std 5; q4 = (20+4.5+10)/50; Sat evening 1 of 4
    ("c01", 12.5, 0.1, 4.5, 31.0, 5.0, 1.0, 0.25, 0.25, 0.69),
    ("c02", 8.0, 1.5, 2.0, 20.0, 0.0, 1.0, 1.0, 0.0, 1.0),  # one purchase day: avg gap = tenure
    ("c04", 25.0, 0.0, 5.0, 270.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("c05", 5.0, 0.0, 1.0, 56.0, 0.0, 1.0, 1.0, 0.5, 1.0),  # two invoices, one day: avg gap = tenure
    ("c06", 20.0, 0.0, 2.0, 329.0, 0.0, 0.25, 0.0, 0.0, 0.25),  # one gap (334-5): std 0; 10 of 40 recent/q4
    ("c07", 5.0, 0.0, 1.0, 1.0, 0.0, 0.3, 1.0, 0.0, 0.0),  # 3 of 10 on 09-11 (in window), Sep: no q4
    ("c08", 10.0, 0.0, 2.5, 1.0, 0.0, 1.0, 0.0, 0.5, 1.0),
    ("c09", 5.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 1.0),
    ("c10", 26.0, 4 / 26, 3.0, 5.0, 0.0, 1.0, 0.0, 0.0, 1.0),
    ("c11", 2.5, 0.0, 1.0, 2.0, math.sqrt(2 / 3), 1.0, 0.0, 0.0, 1.0),  # gaps 1,2,3: var (1+0+1)/3
    ("c12", 50.0, 0.0, 5.0, 248.0, 0.0, 0.0, 0.5, 0.0, 0.6),  # 360-112 = 248; q4 60 of 100 (Dec 2010)
    ("c13", 2.469, 0.5, 2.0, 68.0, 0.0, 1.0, 0.0, 0.0, 1.0),  # exact sums: 1.2345 / 2.469
    ("c14", 15.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0),
    ("c15", 15.0, 0.0, 3.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0),
    ("c16", 200.0, 0.0, 1.0, 159.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("c17", 12.0, 0.0, 2.0, 7.0, 0.0, 1.0, 1.0, 0.0, 1.0),
    ("c18", 50.0, 0.0, 1.0, 274.0, 0.0, 0.5, 0.0, 0.0, 0.5),  # 299-25 = 274
    ("c19", 20.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0),  # gaps 1,1,1,1: std 0
    ("c20", 1.0, 0.0, 1.0, 3.0, 0.0, 1.0, 0.0, 1.0, 1.0),
    ("c21", 9.0, 0.0, 1.0, 214.0, 0.0, 0.0, 0.0, 0.0, 0.0),
]

# n = 20, so a single rank k scores 1 + floor((2k-1)/8): ranks 1-4 -> 1, 5-8 -> 2, 9-12 -> 3, 13-16 -> 4,
# 17-20 -> 5; a tied group lo..hi scores 1 + floor((lo-1+hi)/8).
# Recency, worst first: c04 270, c21 214, c16 159, c12 112 | c07 90, c13 68, c05 56, c11 33 | c18 25, c02 20,
#   c19 15, c09 12 | c08 11, c01 9, c17 7 | c06,c10 5 (ranks 16-17: (15+17)/8 = 4 -> 5), c20 3,
#   c14,c15 1 (ranks 19-20 -> 5).
# Frequency: ten 1s (ranks 1-10: 10/8 -> 2), seven 2s (11-17: 27/8 -> 4), c01,c11 4 (18-19: 36/8 -> 5),
#   c19 5 -> 5.
# Monetary: c20 1, c13 2.47, c02 8, c21 9 -> 1 | 10.00 x4 (ranks 5-8: 12/8 -> 2) | c17 12 (9) -> 3,
#   15.00 x2 (10-11: 20/8 -> 3), c08 20 (12) -> 3 | c04 25, c10 26, c06 40, c01 50 (13-16) -> 4 |
#   100.00 x3 (17-19: 35/8 -> 5), c16 200 -> 5.
# fm = floor((f + m + 1) / 2); segment = first DEFAULT_RFM_RULES rule holding (r, fm).
SCORES_DDL = (
    "as_of_date date, customer_id string, r_score int, f_score int, m_score int, fm_score int, "
    "rfm_score string, rfm_segment string"
)
SCORES = [
    ("c01", 4, 5, 4, 5, "454", "Champions"),
    ("c02", 3, 2, 1, 2, "321", "Need Attention"),
    ("c04", 1, 2, 4, 3, "124", "At Risk"),
    ("c05", 2, 4, 2, 3, "242", "At Risk"),
    ("c06", 5, 4, 4, 4, "544", "Champions"),
    ("c07", 2, 4, 2, 3, "242", "At Risk"),
    ("c08", 4, 4, 3, 4, "443", "Champions"),
    ("c09", 3, 4, 2, 3, "342", "Need Attention"),
    ("c10", 5, 2, 4, 3, "524", "Potential Loyalists"),
    ("c11", 2, 5, 2, 4, "252", "At Risk"),  # r2 fm4: no rule before "At Risk" holds it
    ("c12", 1, 4, 5, 5, "145", "Can't Lose Them"),
    ("c13", 2, 2, 1, 2, "221", "About to Sleep"),
    ("c14", 5, 2, 3, 3, "523", "Potential Loyalists"),
    ("c15", 5, 2, 3, 3, "523", "Potential Loyalists"),
    ("c16", 1, 2, 5, 4, "125", "Can't Lose Them"),  # r1 fm4: second "Can't Lose Them" rule
    ("c17", 4, 2, 3, 3, "423", "Loyal Customers"),  # r4 fm3: "Loyal Customers" comes before "Potential"
    ("c18", 3, 4, 5, 5, "345", "Loyal Customers"),
    ("c19", 3, 5, 5, 5, "355", "Loyal Customers"),
    ("c20", 5, 2, 1, 2, "521", "Potential Loyalists"),
    ("c21", 1, 2, 1, 2, "121", "Hibernating"),
]

#: Every column of customer_features the stage computes (all but run_id).
FEATURE_COLUMNS = [c for c in CUSTOMER_FEATURES.columns if c != "run_id"]


def core_row(as_of, row):
    cust, rec, freq, mon, ten, retv, first, last, products, items, days, country = row
    return (as_of, cust, rec, freq, Decimal(mon), ten, Decimal(retv), _d(first), _d(last), products, items,
            days, country)


@pytest.fixture(scope="module")
def settings():
    return FeatureSettings()


def in_two_batches(lines_df):
    """The lines with an ingest ``run_id``: about half ``b1``, the rest ``b2``, fixed by each line's content."""
    key = F.crc32(F.concat_ws("|", "customer_id", "invoice_id", "product_id", F.col("invoice_ts").cast("string")))
    return lines_df.withColumn("run_id", F.when(key % 2 == 0, "b1").otherwise("b2"))


def via_rollup(lines_df, as_of_dates, settings):
    """Features from the rollup of ``lines_df`` brought in one ingest run at a time, in run id order, as the
    stage appends one batch per run: each batch's products checked against the pairs known before it."""
    runs = sorted(r.run_id for r in lines_df.select("run_id").distinct().collect())
    invoices, new_products, known = [], [], None
    for run in runs:
        part = rollup_lines(lines_df.where(F.col("run_id") == run), f"features-{run}")
        pairs, changes = first_purchases(with_known_dates(product_rollup_rows(part), known), f"features-{run}")
        known = pairs if known is None else known.unionByName(pairs)
        invoices.append(part.drop("products"))
        new_products.append(changes)
    return build_features_from_rollup(reduce(DataFrame.unionByName, invoices),
                                      reduce(DataFrame.unionByName, new_products), as_of_dates, settings)


@pytest.fixture(scope="module", params=["from lines", "from the rollup"])
def golden(spark, settings, request):
    """The golden snapshot computed from the lines in one pass, and from a rollup appended in two batches."""
    lines = spark.createDataFrame(GOLDEN_LINES, LINES_DDL)
    if request.param == "from lines":
        out = build_customer_features(lines, [AS_OF], settings)
    else:
        out = via_rollup(in_two_batches(lines), [AS_OF], settings)
    out = out.select(*FEATURE_COLUMNS).cache()
    yield out
    out.unpersist()


def test_golden_columns_and_customers(golden):
    assert golden.columns == FEATURE_COLUMNS
    got = sorted(r.customer_id for r in golden.select("customer_id").collect())
    # 20 customers: no c03 (returns only), no c22 (nothing before as_of)
    assert got == [row[0] for row in CORE]


def test_golden_core_rfm_columns(spark, golden):
    expected = spark.createDataFrame([core_row(AS_OF, r) for r in CORE], CORE_DDL)
    got = golden.select(*expected.columns)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_golden_behavioural_columns(spark, golden):
    expected = spark.createDataFrame([(AS_OF, *r) for r in BEHAVIOUR], BEHAVIOUR_DDL)
    assert_approx_df_equality(plain(golden.select(*expected.columns)), expected, 1e-6, ignore_row_order=True,
                              ignore_nullable=True)


def test_golden_scores_and_segments(spark, golden):
    expected = spark.createDataFrame([(AS_OF, *r) for r in SCORES], SCORES_DDL)
    got = golden.select(*expected.columns)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_missing_input_column_is_named(spark, settings):
    lines = spark.createDataFrame(GOLDEN_LINES[:1], LINES_DDL).drop("is_return")
    with pytest.raises(SchemaError, match="is_return"):
        build_customer_features(lines, [AS_OF], settings)


# --- quintile scores and segments on explicit frames ---

# Each case is its own snapshot (as_of_date), so the frame also checks that snapshots are scored
# independently: value 1 scores 2 among two customers (d03) but 1 among five (d06).
# asc: higher is better; desc: lower is better.
QUINTILE_CASES = {
    # all equal: one tied group 1..n, (0+n)*5/(2n) = 2.5 -> 3
    "d01 all equal": [(7, 3, 3), (7, 3, 3), (7, 3, 3), (7, 3, 3)],
    "d02 one customer": [(42, 3, 3)],  # 5*(0+1)/2 = 2.5 -> 3
    "d03 two customers": [(1, 2, 4), (2, 4, 2)],  # ranks 1, 2: 5*1/4 -> 2, 5*3/4 -> 4
    "d04 three customers": [(10, 1, 5), (20, 3, 3), (30, 5, 1)],  # 5*(2k-1)/6: 0.8, 2.5, 4.2
    "d05 four customers": [(1, 1, 5), (2, 2, 4), (3, 4, 2), (4, 5, 1)],  # 5*(2k-1)/8: 0.6, 1.9, 3.1, 4.4
    "d06 five distinct": [(5, 5, 1), (4, 4, 2), (3, 3, 3), (2, 2, 4), (1, 1, 5)],
    # n = 10: 1 + floor((lo-1+hi)/4).
    # asc: 10 r1 .25; 20 r2-5 1.5; 30 r6 2.75; 40 r7-8 3.5; 50 r9 4.25; 60 r10 4.75
    # desc: 60 r1 .25; 50 r2 .75; 40 r3-4 1.5; 30 r5 2.25; 20 r6-9 3.5; 10 r10 4.75
    "d07 ten with ties": [(10, 1, 5), (20, 2, 4), (20, 2, 4), (20, 2, 4), (20, 2, 4), (30, 3, 3), (40, 4, 2),
                          (40, 4, 2), (50, 5, 1), (60, 5, 1)],
    # a tie spanning quintiles 1..5 scores from its mid-rank: ranks 2-9 -> (1+9)/4 = 2.5 -> 3
    "d08 tie across quintiles": [(1, 1, 5), *[(2, 3, 3)] * 8, (3, 5, 1)],
}


def test_quintile_score_edge_cases(spark):
    rows = []
    for case, values in QUINTILE_CASES.items():
        as_of = dt.date(2011, 1, int(case[1:3]))
        rows += [(as_of, case, v, asc, desc) for v, asc, desc in values]
    df = spark.createDataFrame(rows, "as_of_date date, case string, value int, asc int, desc int")
    got = df.select(
        "as_of_date", "case", "value",
        quintile_score(F.col("value")).alias("asc"),
        quintile_score(F.col("value"), higher_is_better=False).alias("desc"),
    )
    assert_df_equality(got, df, ignore_row_order=True, ignore_nullable=True)


def test_rfm_segment_grid(spark):
    # By hand from DEFAULT_RFM_RULES, first matching rule wins. Rows r = 5..1, columns fm = 1..5.
    grid = {
        5: ["New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
        4: ["Promising", "Potential Loyalists", "Loyal Customers", "Champions", "Champions"],
        3: ["About to Sleep", "Need Attention", "Need Attention", "Loyal Customers", "Loyal Customers"],
        2: ["Hibernating", "About to Sleep", "At Risk", "At Risk", "Can't Lose Them"],
        1: ["Lost", "Hibernating", "At Risk", "Can't Lose Them", "Can't Lose Them"],
    }
    df = spark.createDataFrame(
        [(r, fm, name) for r, names in grid.items() for fm, name in enumerate(names, start=1)],
        "r int, fm int, segment string",
    )
    got = df.withColumn("segment", rfm_segment(F.col("r"), F.col("fm"), DEFAULT_RFM_RULES))
    assert_df_equality(got, df, ignore_row_order=True, ignore_nullable=True)


# --- several snapshots in one call ---

SNAP_B = dt.date(2011, 11, 1)
MULTI_LINES = [
    ln("x1", "I1", "P1", 1, "10.00", "2011-10-01 10:00:00"),  # Sat
    ln("x1", "I2", "P2", 2, "30.00", "2011-11-01 10:00:00", "France"),  # ON snapshot B: only in A
    ln("x1", "I3", "P1", 1, "20.00", "2011-12-05 10:00:00", "France"),
    ln("x2", "I4", "P3", 1, "5.00", "2011-10-20 19:00:00"),  # Thu evening
    ret("x2", "C5", "P3", -1, "-5.00", "2011-11-10 10:00:00"),  # after B: only in A
    ret("x3", "C6", "P4", -1, "-3.00", "2011-10-25 10:00:00"),  # x3 has only this return before B
    ln("x3", "I7", "P4", 1, "8.00", "2011-11-20 10:00:00"),  # Sun
]
FULL_DDL = (
    "as_of_date date, customer_id string, recency_days int, frequency bigint, monetary decimal(20,2), "
    "tenure_days int, returned_value decimal(20,2), avg_basket_value double, return_rate double, "
    "first_purchase_date date, last_purchase_date date, distinct_products int, total_items bigint, "
    "items_per_basket double, purchase_days_count int, avg_days_between_purchases double, "
    "std_days_between_purchases double, recent_spend_share double, weekend_share double, "
    "evening_share double, q4_spend_share double, country string, r_score int, f_score int, m_score int, "
    "fm_score int, rfm_score string, rfm_segment string"
)
MULTI_EXPECTED = [
    # Each row: as_of, customer, recency, frequency, monetary, tenure, returned_value,
    #   avg_basket, return_rate, first, last, distinct_products, total_items, items_per_basket, purchase days,
    #   avg_days, std_days, recent, weekend, evening, q4, country, r, f, m, fm, rfm_score, segment.
    # Snapshot B (2011-11-01): x1 has I1 only (31 days), x2 has I4 (12 days; its return is later),
    # x3 excluded (returns only).
    # n = 2: recency x1 worse -> 2, x2 -> 4; frequency tied -> 3; monetary x2 5 -> 2, x1 10 -> 4.
    (SNAP_B, "x1", 31, 1, Decimal("10.00"), 31, Decimal("0.00"),
     10.0, 0.0, _d("2011-10-01"), _d("2011-10-01"), 1, 1, 1.0, 1,
     31.0, 0.0, 1.0, 1.0, 0.0, 1.0, UK, 2, 3, 4, 4, "234", "At Risk"),
    (SNAP_B, "x2", 12, 1, Decimal("5.00"), 12, Decimal("0.00"),
     5.0, 0.0, _d("2011-10-20"), _d("2011-10-20"), 1, 1, 1.0, 1,
     12.0, 0.0, 1.0, 0.0, 1.0, 1.0, UK, 4, 3, 2, 3, "432", "Loyal Customers"),
    # Snapshot A (2011-12-10): x1 days 10-01, 11-01, 12-05 (70, 39, 5 days): gaps 31, 34 -> mean 32.5,
    # std 1.5; weekend 1 of 3 (10-01 Sat); latest purchase invoice France. x2 now has its return (rate 1.0).
    # x3: 8.00 bought, 3.00 returned (0.375). n = 3: single ranks score 1, 3, 5; frequency x2,x3 tied
    # (ranks 1-2) -> 2.
    (AS_OF, "x1", 5, 3, Decimal("60.00"), 70, Decimal("0.00"),
     20.0, 0.0, _d("2011-10-01"), _d("2011-12-05"), 2, 4, 4 / 3, 3,
     32.5, 1.5, 1.0, 1 / 3, 0.0, 1.0, "France", 5, 5, 5, 5, "555", "Champions"),
    (AS_OF, "x2", 51, 1, Decimal("5.00"), 51, Decimal("5.00"),
     5.0, 1.0, _d("2011-10-20"), _d("2011-10-20"), 1, 1, 1.0, 1,
     51.0, 0.0, 1.0, 0.0, 1.0, 1.0, UK, 1, 2, 1, 2, "121", "Hibernating"),
    (AS_OF, "x3", 20, 1, Decimal("8.00"), 20, Decimal("3.00"),
     8.0, 0.375, _d("2011-11-20"), _d("2011-11-20"), 1, 1, 1.0, 1,
     20.0, 0.0, 1.0, 1.0, 0.0, 1.0, UK, 3, 2, 3, 3, "323", "Need Attention"),
]


def test_several_snapshots_in_one_call(spark, settings):
    lines = spark.createDataFrame(MULTI_LINES, LINES_DDL)
    got = build_customer_features(lines, [AS_OF, SNAP_B], settings).select(*FEATURE_COLUMNS)
    expected = spark.createDataFrame(MULTI_EXPECTED, FULL_DDL)
    assert_approx_df_equality(plain(got), expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


# --- the rollup: features from mergeable partials equal features from lines ---

BACKFILL, MID = dt.date(2011, 11, 15), dt.date(2011, 12, 1)
ROLLUP_DATES = [BACKFILL, MID, AS_OF]
ROLLUP_LINES = [
    # r1: I0 early; I1 spans two days AND two batches: day 1 (a purchase and a return line) in b1, day 2 (another
    # product, another country) in b2. MID sees day 1 only; AS_OF the whole invoice, whose time stays day 1's.
    (*ln("r1", "I0", "P1", 1, "4.00", "2011-11-10 10:00:00"), "b1"),
    (*ln("r1", "I1", "P1", 2, "10.00", "2011-11-30 23:50:00", "France"), "b1"),
    (*ret("r1", "I1", "P9", -1, "-3.00", "2011-11-30 23:55:00"), "b1"),
    (*ln("r1", "I1", "P2", 1, "5.00", "2011-12-01 00:10:00", "Germany"), "b2"),
    # r2: one invoice, one day, its lines in two batches; b2's purchase line is the earliest (Sunday 09:00)
    (*ln("r2", "I2", "P1", 1, "6.00", "2011-11-20 10:00:00"), "b1"),
    (*ln("r2", "I2", "P2", 1, "4.00", "2011-11-20 09:00:00"), "b2"),
    (*ret("r2", "I2", "P1", -1, "-6.00", "2011-11-20 11:00:00"), "b2"),
    # r3: nulls: a purchase line without product id, no country on any line
    (*ln("r3", "I3", None, 1, "3.00", "2011-11-05 10:00:00", None), "b1"),
    (*ln("r3", "I4", "P3", 2, "8.00", "2011-11-06 19:30:00", None), "b1"),
    # r4: returns only before BACKFILL (left out of it), a purchase later in b2
    (*ret("r4", "C1", "P1", -1, "-2.00", "2011-11-01 10:00:00"), "b1"),
    (*ln("r4", "I5", "P1", 1, "2.00", "2011-11-25 10:00:00"), "b2"),
    # r5: the same product in both batches; b2's line arrives late, dated before b1's
    (*ln("r5", "I6", "P4", 1, "1.00", "2011-11-28 10:00:00"), "b1"),
    (*ln("r5", "I7", "P4", 1, "1.00", "2011-11-12 10:00:00"), "b2"),
    # r6: a customer new in b2; r7: a line on AS_OF only (in no snapshot)
    (*ln("r6", "I8", "P5", 3, "9.00", "2011-12-05 19:00:00"), "b2"),
    (*ln("r7", "I9", "P6", 1, "5.00", "2011-12-10 09:00:00"), "b2"),
]
ROLLUP_LINES_DDL = LINES_DDL + ", run_id string"


@pytest.fixture(scope="module")
def rollup_lines_df(spark):
    return spark.createDataFrame(ROLLUP_LINES, ROLLUP_LINES_DDL)


def test_rollup_rows_of_invoices_split_by_day_and_batch(spark, rollup_lines_df):
    got = rollup_lines(rollup_lines_df.where(F.col("customer_id").isin("r1", "r2")), "f1")
    ts = lambda text: dt.datetime.fromisoformat(text).replace(tzinfo=UTC)  # noqa: E731
    expected = spark.createDataFrame(
        [
            # customer, invoice, date, batch, lines, purchase_value, returned, items, has_purchase, ts, country
            ("r1", "I0", _d("2011-11-10"), "b1", 1, Decimal("4.00"), None, 1, True, ts("2011-11-10 10:00:00"), UK),
            ("r1", "I1", _d("2011-11-30"), "b1", 2, Decimal("10.00"), Decimal("3.00"), 2, True,
             ts("2011-11-30 23:50:00"), "France"),
            ("r1", "I1", _d("2011-12-01"), "b2", 1, Decimal("5.00"), None, 1, True, ts("2011-12-01 00:10:00"),
             "Germany"),
            ("r2", "I2", _d("2011-11-20"), "b1", 1, Decimal("6.00"), None, 1, True, ts("2011-11-20 10:00:00"), UK),
            ("r2", "I2", _d("2011-11-20"), "b2", 2, Decimal("4.00"), Decimal("6.00"), 1, True,
             ts("2011-11-20 09:00:00"), UK),
        ],
        "customer_id string, invoice_id string, invoice_date date, ingest_run_id string, lines bigint, "
        "purchase_value decimal(38,4), returned_value decimal(38,4), purchase_items bigint, has_purchase boolean, "
        "purchase_ts timestamp, country string",
    )
    assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_first_purchases_of_products_over_two_batches(spark, rollup_lines_df):
    # r3's line without product id never counts; r5 bought P4 on 11-28 in b1, and b2 brings a line of 11-12:
    # b2 moves the pair's first purchase earlier (+1 on 11-12, -1 on 11-28).
    mine = rollup_lines_df.where(F.col("customer_id").isin("r3", "r5"))
    first_pairs, first_changes = first_purchases(
        with_known_dates(product_rollup_rows(rollup_lines(mine.where(F.col("run_id") == "b1"), "f1")), None), "f1")
    second_pairs, second_changes = first_purchases(
        with_known_dates(product_rollup_rows(rollup_lines(mine.where(F.col("run_id") == "b2"), "f2")), first_pairs),
        "f2")
    pairs_ddl = "customer_id string, product_id string, first_purchase_date date, run_id string"
    changes_ddl = "customer_id string, first_purchase_date date, new_products bigint, run_id string"
    for got, rows, ddl in (
        (first_pairs, [("r3", "P3", _d("2011-11-06"), "f1"), ("r5", "P4", _d("2011-11-28"), "f1")], pairs_ddl),
        (second_pairs, [("r5", "P4", _d("2011-11-12"), "f2")], pairs_ddl),
        (first_changes, [("r3", _d("2011-11-06"), 1, "f1"), ("r5", _d("2011-11-28"), 1, "f1")], changes_ddl),
        (second_changes, [("r5", _d("2011-11-12"), 1, "f2"), ("r5", _d("2011-11-28"), -1, "f2")], changes_ddl),
    ):
        expected = spark.createDataFrame(rows, ddl)
        assert_df_equality(got.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_features_from_the_rollup_equal_features_from_lines(rollup_lines_df, settings):
    from_lines = build_customer_features(rollup_lines_df, ROLLUP_DATES, settings).select(*FEATURE_COLUMNS)
    from_rollup = via_rollup(rollup_lines_df, ROLLUP_DATES, settings).select(*FEATURE_COLUMNS)
    assert from_lines.count() == 14  # BACKFILL: r1, r3, r5; MID: r1..r5; AS_OF: r1..r6
    assert_df_equality(from_rollup, from_lines, ignore_row_order=True)


def test_golden_lines_in_two_batches_equal_from_lines(spark, settings):
    lines = in_two_batches(spark.createDataFrame(GOLDEN_LINES, LINES_DDL))
    dates = [AS_OF, dt.date(2011, 11, 2), dt.date(2011, 10, 4)]
    assert {r.run_id for r in lines.select("run_id").distinct().collect()} == {"b1", "b2"}
    from_rollup = via_rollup(lines, dates, settings).select(*FEATURE_COLUMNS)
    assert_df_equality(from_rollup, build_customer_features(lines, dates, settings).select(*FEATURE_COLUMNS),
                       ignore_row_order=True)


def test_features_from_the_rollup_by_hand(spark, rollup_lines_df, settings):
    got = via_rollup(rollup_lines_df, ROLLUP_DATES, settings).where(F.col("customer_id").isin("r1", "r2", "r3"))
    ddl = (
        "as_of_date date, customer_id string, frequency bigint, monetary decimal(20,2), returned_value "
        "decimal(20,2), last_purchase_date date, distinct_products int, total_items bigint, weekend_share double, "
        "evening_share double, country string"
    )
    expected = spark.createDataFrame(
        [
            # r1 at MID: I0 and I1's day 1 (France); at AS_OF I1's day-2 line adds 5.00, P2 and the greater
            # country of the invoice's purchase lines (Germany); its time stays 11-30 23:50 (Wed, evening).
            (BACKFILL, "r1", 1, Decimal("4.00"), Decimal("0.00"), _d("2011-11-10"), 1, 1, 0.0, 0.0, UK),
            (MID, "r1", 2, Decimal("14.00"), Decimal("3.00"), _d("2011-11-30"), 1, 3, 0.0, 0.5, "France"),
            (AS_OF, "r1", 2, Decimal("19.00"), Decimal("3.00"), _d("2011-11-30"), 2, 4, 0.0, 0.5, "Germany"),
            # r2: one invoice from two batches: its time is b2's 09:00 (a Sunday morning)
            (MID, "r2", 1, Decimal("10.00"), Decimal("6.00"), _d("2011-11-20"), 2, 2, 1.0, 0.0, UK),
            (AS_OF, "r2", 1, Decimal("10.00"), Decimal("6.00"), _d("2011-11-20"), 2, 2, 1.0, 0.0, UK),
            # r3 (Sat, Sun evening): the line without product id counts in spend and items, not in products; no
            # country
            (BACKFILL, "r3", 2, Decimal("11.00"), Decimal("0.00"), _d("2011-11-06"), 1, 3, 1.0, 0.5, None),
            (MID, "r3", 2, Decimal("11.00"), Decimal("0.00"), _d("2011-11-06"), 1, 3, 1.0, 0.5, None),
            (AS_OF, "r3", 2, Decimal("11.00"), Decimal("0.00"), _d("2011-11-06"), 1, 3, 1.0, 0.5, None),
        ],
        ddl,
    )
    assert_df_equality(plain(got.select(*expected.columns)), expected, ignore_row_order=True, ignore_nullable=True)


# --- what the rollup reads: the plan from its state and the clean table's commits ---

STATE = RollupState("table-1", 5, frozenset({"b1", "b2"}))


def commit(version, operation, *, mode=None, rows=None, restored=None):
    parameters = {k: v for k, v in {"mode": mode, "version": restored}.items() if v is not None}
    return Commit(version, operation, parameters, {} if rows is None else {"numOutputRows": str(rows)})


def append(version, rows):
    return commit(version, "WRITE", mode="Append", rows=rows)


@pytest.mark.parametrize(
    ("state", "table_id", "version", "commits", "plan"),
    [
        (None, "table-1", 3, [], BatchPlan("rebuild", "no rollup yet")),
        (STATE, "table-2", 5, [], BatchPlan("rebuild", "transactions_clean was created anew")),
        (STATE, "table-1", 4, [], BatchPlan("rebuild", "transactions_clean v4 is older than the v5 the rollup read")),
        (STATE, "table-1", 5, [], BatchPlan("unchanged", "transactions_clean is still at v5")),
        (STATE, "table-1", 7, [append(6, 10), append(7, 5)],
         BatchPlan("append", "lines appended to transactions_clean after v5", 15)),
        # compaction, vacuum and properties keep the lines; a restore returns to a version whose lines are known
        (STATE, "table-1", 11,
         [commit(6, "OPTIMIZE"), append(7, 3), commit(8, "VACUUM START"), commit(9, "VACUUM END"), append(10, 4),
          commit(11, "RESTORE", restored="8")],
         BatchPlan("append", "lines appended to transactions_clean after v5", 3)),
        (STATE, "table-1", 6, [commit(6, "RESTORE", restored="5")],
         BatchPlan("append", "lines appended to transactions_clean after v5", 0)),
        (STATE, "table-1", 6, [commit(6, "RESTORE", restored="4")],
         BatchPlan("rebuild", "transactions_clean v6 replaced or removed lines (RESTORE)")),
        (STATE, "table-1", 7, [append(6, 2), commit(7, "WRITE", mode="Overwrite", rows=9)],
         BatchPlan("rebuild", "transactions_clean v7 replaced or removed lines (WRITE Overwrite)")),
        (STATE, "table-1", 6, [commit(6, "DELETE")],
         BatchPlan("rebuild", "transactions_clean v6 replaced or removed lines (DELETE)")),
        (STATE, "table-1", 7, [append(7, 2)],
         BatchPlan("rebuild", "the log of transactions_clean no longer holds v6")),
        # a commit without its row count: the new lines are read, their count not checked
        (STATE, "table-1", 7, [commit(6, "WRITE", mode="Append"), append(7, 2)],
         BatchPlan("append", "lines appended to transactions_clean after v5", None)),
    ],
    ids=["no rollup", "new table", "older version", "same version", "appends", "restore to a known version",
         "restore to the version read", "restore before it", "full refresh", "delete", "history gone",
         "no row count"],
)
def test_plan_batch(state, table_id, version, commits, plan):
    assert plan_batch(state, table_id, version, commits) == plan


# --- the stage end to end on a lakehouse ---

CLEAN_DDL = (
    "invoice_id string, customer_id string, product_id string, description string, quantity int, "
    "unit_price decimal(18,4), line_amount decimal(28,4), invoice_ts timestamp, invoice_date date, "
    "country string, is_return boolean, run_id string, ingested_at timestamp"
)
INGESTED_AT = dt.datetime(2011, 12, 20, tzinfo=UTC)


def clean_row(invoice, customer, product, qty, price, ts, country=UK, run="ingest-run"):
    stamp = dt.datetime.fromisoformat(ts).replace(tzinfo=UTC)
    price = Decimal(price)
    return (invoice, customer, product, product.lower(), qty, price, qty * price, stamp, stamp.date(),
            country, qty < 0, run, INGESTED_AT)


CLEAN_V1 = [
    clean_row("I1", "a", "P1", 2, "5.00", "2011-12-09 10:00:00"),  # latest date -> default as_of 2011-12-10
    clean_row("I2", "a", "P2", 1, "4.00", "2011-11-01 10:00:00"),
    clean_row("I3", "b", "P1", 1, "7.00", "2011-06-01 10:00:00", "France"),
    clean_row("C4", "r", "P1", -1, "5.00", "2011-01-05 10:00:00"),  # r: returns only
]
CLEAN_V2 = [
    clean_row("I1", "a", "P1", 2, "49.50", "2011-12-09 10:00:00"),
    clean_row("I5", "c", "P3", 4, "5.00", "2011-12-01 10:00:00"),
    clean_row("C4", "r", "P1", -1, "5.00", "2011-01-05 10:00:00"),
]
SNAP_STAGE_B = dt.date(2011, 11, 2)
KEY_DDL = (
    "as_of_date date, customer_id string, recency_days int, frequency bigint, monetary decimal(20,2), "
    "run_id string"
)
KEY_COLUMNS = ["as_of_date", "customer_id", "recency_days", "frequency", "monetary", "run_id"]


def write_clean(spark, config, rows):
    """Write and publish transactions_clean, as ingest does (features reads the published version)."""
    df = spark.createDataFrame(rows, CLEAN_DDL)
    written = lakehouse.write_table(df, config.table_path("transactions_clean"), TRANSACTIONS_CLEAN)
    publication.publish(spark, config, "test-ingest", "ingest", {"transactions_clean": written.version})


def feature_table(spark, config):
    return lakehouse.read_table(spark, config.table_path("customer_features"))


@pytest.fixture(scope="module")
def staged(spark, tmp_path_factory):
    """Default snapshot (A) through StageRun, then snapshot B, then A again over different clean data."""
    lake = tmp_path_factory.mktemp("features") / "lakehouse"
    config = make_config(lake)
    write_clean(spark, config, CLEAN_V1)
    with StageRun(spark, config, "run-a1", "features") as stage:
        counts_a1 = features.run_features(spark, config, "run-a1", stage)
    counts_b = features.run_features(spark, make_config(lake, as_of_dates=[SNAP_STAGE_B]), "run-b1")
    after_b = plain(feature_table(spark, config)).collect()
    write_clean(spark, config, CLEAN_V2)
    counts_a2 = features.run_features(spark, make_config(lake, as_of_dates=[AS_OF]), "run-a2")
    return {"config": config, "lake": lake, "counts_a1": counts_a1, "counts_b": counts_b, "after_b": after_b,
            "counts_a2": counts_a2}


def test_default_as_of_is_day_after_latest_invoice(staged):
    assert staged["config"].as_of_dates == []
    assert staged["counts_a1"].customers == {AS_OF: 2}
    assert staged["counts_a1"].returns_only_customers == {AS_OF: 1}


def test_stage_run_records_counts_in_pipeline_runs(spark, staged):
    runs = lakehouse.read_table(spark, staged["config"].table_path("pipeline_runs")).collect()
    assert len(runs) == 1
    run = runs[0]
    got = (run.run_id, run.stage, run.status, run.rows_in, run.rows_out)
    assert got == ("run-a1", "features", "succeeded", 4, 2)
    assert run.counts["customers_2011-12-10"] == 2
    assert run.counts["returns_only_customers_2011-12-10"] == 1


def test_snapshot_b_after_its_first_run(spark, staged):
    # B = 2011-11-02: a bought I2 on 11-01 (1 day, 4.00); b bought on 2011-06-01 (154 days).
    # A (default 2011-12-10) from run-a1: a 10.00 + 4.00, last 12-09; b 192 days.
    assert staged["counts_b"].customers == {SNAP_STAGE_B: 2}
    assert staged["counts_b"].returns_only_customers == {SNAP_STAGE_B: 1}
    got = spark.createDataFrame([tuple(r[c] for c in KEY_COLUMNS) for r in staged["after_b"]], KEY_DDL)
    expected = spark.createDataFrame(
        [
            (AS_OF, "a", 1, 2, Decimal("14.00"), "run-a1"),
            (AS_OF, "b", 192, 1, Decimal("7.00"), "run-a1"),
            (SNAP_STAGE_B, "a", 1, 1, Decimal("4.00"), "run-b1"),
            (SNAP_STAGE_B, "b", 154, 1, Decimal("7.00"), "run-b1"),
        ],
        KEY_DDL,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


def test_rerun_replaces_its_snapshot_and_keeps_the_others(spark, staged):
    assert staged["counts_a2"].customers == {AS_OF: 2}
    got = feature_table(spark, staged["config"]).select(*KEY_COLUMNS)
    expected = spark.createDataFrame(
        [
            # A over CLEAN_V2: a 2 x 49.50 on 12-09; c 4 x 5.00 on 12-01 (9 days); b is gone
            (AS_OF, "a", 1, 1, Decimal("99.00"), "run-a2"),
            (AS_OF, "c", 9, 1, Decimal("20.00"), "run-a2"),
            # B untouched
            (SNAP_STAGE_B, "a", 1, 1, Decimal("4.00"), "run-b1"),
            (SNAP_STAGE_B, "b", 154, 1, Decimal("7.00"), "run-b1"),
        ],
        KEY_DDL,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    untouched_b = [r for r in staged["after_b"] if r.as_of_date == SNAP_STAGE_B]
    now_b = plain(feature_table(spark, staged["config"])).where(F.col("as_of_date") == SNAP_STAGE_B).collect()
    assert sorted(now_b) == sorted(untouched_b)


def test_snapshot_without_purchases_is_an_error(spark, staged):
    # 2011-01-06: only r's return (2011-01-05) is before it; 2010-01-01: nothing at all.
    config = make_config(staged["lake"], as_of_dates=[AS_OF, dt.date(2011, 1, 6), dt.date(2010, 1, 1)])
    path = config.table_path("customer_features")
    version = lakehouse.current_version(spark, path)
    with pytest.raises(InputError) as err:
        features.run_features(spark, config, "run-bad")
    assert "2011-01-06" in str(err.value) and "2010-01-01" in str(err.value)
    assert lakehouse.current_version(spark, path) == version  # nothing written


def test_missing_clean_table_is_an_error(spark, tmp_path):
    with pytest.raises(InputError, match="transactions_clean"):
        features.run_features(spark, make_config(tmp_path / "empty-lakehouse"), "run-x")


# --- the stage over ingest batches: rebuild, append, backfill, full refresh ---

def as_clean(line, run):
    """A ROLLUP_LINES line as a transactions_clean row of ingest run ``run``."""
    customer, invoice, product, qty, amount, ts, date, country, is_return = line[:9]
    return (invoice, customer, product, None if product is None else product.lower(), qty, abs(amount / qty),
            amount, ts, date, country, is_return, run, INGESTED_AT)


BATCH_B3 = [
    ln("r2", "I10", "P7", 1, "7.00", "2011-12-03 10:00:00"),
    ln("r1", "I1", "P3", 1, "2.00", "2011-12-01 08:00:00"),  # a third part of r1's two-day invoice, in b3
    ret("r6", "C2", "P5", -1, "-9.00", "2011-12-06 10:00:00"),
]
B1 = [as_clean(line, "ingest-b1") for line in ROLLUP_LINES if line[9] == "b1"]
B2 = [as_clean(line, "ingest-b2") for line in ROLLUP_LINES if line[9] == "b2"]
B3 = [as_clean(line, "ingest-b3") for line in BATCH_B3]
# The full refresh: b1's lines again plus one, all under one new ingest run.
FULL = [as_clean(line, "ingest-full") for line in [*(x for x in ROLLUP_LINES if x[9] == "b1"), BATCH_B3[0]]]


def publish_clean(spark, config, rows, mode):
    df = spark.createDataFrame(rows, CLEAN_DDL)
    written = lakehouse.write_table(df, config.table_path("transactions_clean"), TRANSACTIONS_CLEAN, mode=mode)
    publication.publish(spark, config, f"test-ingest-{written.version}", "ingest",
                        {"transactions_clean": written.version})


def published_rows(spark, config, table):
    return plain(publication.read_published(spark, config, table)).collect()


def expected_features(spark, rows, dates, settings):
    return build_customer_features(spark.createDataFrame(rows, CLEAN_DDL), dates, settings).select(*FEATURE_COLUMNS)


@pytest.fixture(scope="module")
def batched(spark, tmp_path_factory):
    """Clean lines in two ingest batches and a first features run (a rebuild); a third batch appended and the
    clean table compacted, then a run for a backfill and a later snapshot (an append); then a full refresh and a
    run (a rebuild again)."""
    lake = tmp_path_factory.mktemp("features-batched") / "lakehouse"
    config = make_config(lake)
    clean = config.table_path("transactions_clean")
    publish_clean(spark, config, B1, "overwrite")
    publish_clean(spark, config, B2, "append")
    features.run_features(spark, make_config(lake, as_of_dates=[MID]), "run-f1")
    after_f1 = {t: published_rows(spark, config, t) for t in batches.ROLLUP_TABLES}

    files_before = set(publication.read_published(spark, config, "transactions_clean").inputFiles())
    publish_clean(spark, config, B3, "append")
    clean_df = publication.read_published(spark, config, "transactions_clean")
    new_files = set(clean_df.inputFiles()) - files_before
    read_files = set(batches.new_lines(clean_df, batches.rollup_state(spark, config)).inputFiles())
    DeltaTable.forPath(spark, clean).optimize().executeCompaction()  # as segspark maintain does
    publication.publish(spark, config, "test-maintain", "maintain",
                        {"transactions_clean": lakehouse.current_version(spark, clean)})
    with StageRun(spark, config, "run-f2", "features") as stage:
        features.run_features(spark, make_config(lake, as_of_dates=[BACKFILL, AS_OF]), "run-f2", stage)
    after_f2 = {t: published_rows(spark, config, t) for t in (*batches.ROLLUP_TABLES, "customer_features")}

    publish_clean(spark, config, FULL, "overwrite")
    features.run_features(spark, make_config(lake, as_of_dates=[AS_OF]), "run-f3")
    return {"config": config, "lake": lake, "after_f1": after_f1, "after_f2": after_f2, "new_files": new_files,
            "read_files": read_files, "files_before": files_before}


def batch_rows(rows):
    return [(r.run_id, r.kind, r.reason, dict(r.lines_by_ingest_run), r.lines) for r in rows]


def test_first_run_rebuilds_the_rollup_from_every_line(spark, batched):
    assert batch_rows(batched["after_f1"]["rollup_batches"]) == [
        ("run-f1", "rebuild", "no rollup yet", {"ingest-b1": len(B1), "ingest-b2": len(B2)}, len(B1) + len(B2)),
    ]
    got = spark.createDataFrame(batched["after_f1"]["invoice_rollup"], INVOICE_ROLLUP.schema)
    lines = spark.createDataFrame(B1 + B2, CLEAN_DDL)
    assert_df_equality(got, lakehouse.conform(rollup_lines(lines, "run-f1"), INVOICE_ROLLUP), ignore_row_order=True,
                       ignore_nullable=True, ignore_metadata=True)


def test_new_lines_are_read_from_the_new_files_only(batched):
    assert batched["new_files"] and batched["files_before"]
    assert batched["read_files"] == batched["new_files"]  # Delta skipped every file of b1 and b2 by run_id


def test_a_later_run_appends_only_the_new_lines(spark, batched):
    rows = batch_rows(sorted(batched["after_f2"]["rollup_batches"], key=lambda r: r.created_at))
    assert rows[0][:2] == ("run-f1", "rebuild")
    # The compaction between the two runs changed no line: no rebuild.
    assert rows[1] == ("run-f2", "append", "lines appended to transactions_clean after v2", {"ingest-b3": 3}, 3)
    appended = [r for r in batched["after_f2"]["invoice_rollup"] if r.run_id == "run-f2"]
    assert len(batched["after_f2"]["invoice_rollup"]) == len(batched["after_f1"]["invoice_rollup"]) + len(appended)
    assert {(r.customer_id, r.invoice_id, r.ingest_run_id) for r in appended} == {
        ("r2", "I10", "ingest-b3"), ("r1", "I1", "ingest-b3"), ("r6", "C2", "ingest-b3")}
    run = [r for r in lakehouse.read_table(spark, batched["config"].table_path("pipeline_runs")).collect()
           if r.run_id == "run-f2"][0]
    assert (run.status, run.rows_in, run.counts["rollup_rebuilt"]) == ("succeeded", 3, 0)


def test_features_after_an_append_equal_features_from_lines(spark, batched, settings):
    # MID from the rebuild run, BACKFILL and AS_OF from the appending one: each equal to the lines in one pass.
    got = spark.createDataFrame(batched["after_f2"]["customer_features"], CUSTOMER_FEATURES.schema)
    expected = expected_features(spark, B1 + B2 + B3, [BACKFILL, MID, AS_OF], settings)
    assert_df_equality(got.select(*FEATURE_COLUMNS), expected, ignore_row_order=True, ignore_nullable=True,
                       ignore_metadata=True)


def test_a_full_refresh_rebuilds_the_rollup(spark, batched, settings):
    config = batched["config"]
    rows = batch_rows(published_rows(spark, config, "rollup_batches"))
    assert rows == [("run-f3", "rebuild", "transactions_clean v5 replaced or removed lines (WRITE Overwrite)",
                     {"ingest-full": len(FULL)}, len(FULL))]
    lines = spark.createDataFrame(FULL, CLEAN_DDL)
    got = publication.read_published(spark, config, "invoice_rollup")
    assert_df_equality(got, lakehouse.conform(rollup_lines(lines, "run-f3"), INVOICE_ROLLUP), ignore_row_order=True,
                       ignore_nullable=True, ignore_metadata=True)
    pairs, changes = first_purchases(with_known_dates(product_rollup_rows(rollup_lines(lines, "run-f3")), None),
                                     "run-f3")
    for table, spec, rows in (("product_rollup", PRODUCT_ROLLUP, pairs), ("new_products_rollup", NEW_PRODUCTS_ROLLUP,
                                                                        changes)):
        assert_df_equality(publication.read_published(spark, config, table), lakehouse.conform(rows, spec),
                           ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)
    snapshot = feature_table(spark, config).where(F.col("as_of_date") == AS_OF).select(*FEATURE_COLUMNS)
    assert_df_equality(snapshot, expected_features(spark, FULL, [AS_OF], settings), ignore_row_order=True,
                       ignore_nullable=True, ignore_metadata=True)


@pytest.mark.slow  # 29 s of restores; rolling back unpublished writes is test_publication's, every day
def test_a_failed_run_leaves_the_rollup_as_published(spark, batched, monkeypatch):
    config = batched["config"]
    publish_clean(spark, config, [as_clean(ln("r8", "I11", "P1", 1, "1.00", "2011-12-08 10:00:00"), "ingest-b4")],
                  "append")
    tables = (*batches.ROLLUP_TABLES, "customer_features")
    before = {t: sorted(published_rows(spark, config, t), key=repr) for t in tables}
    write_table = lakehouse.write_table

    def fail_on_features(df, path, spec, **kwargs):
        if spec is CUSTOMER_FEATURES:
            raise ReconciliationError("simulated failure after the rollup was written")
        return write_table(df, path, spec, **kwargs)

    monkeypatch.setattr(lakehouse, "write_table", fail_on_features)
    with pytest.raises(ReconciliationError, match="simulated"):
        features.run_features(spark, make_config(batched["lake"], as_of_dates=[AS_OF]), "run-f4")
    monkeypatch.undo()
    # Rolled back: every table's latest version is a published one holding the rows published before.
    for table, rows in before.items():
        assert lakehouse.current_version(spark, config.table_path(table)) == publication.published_version(
            spark, config, table)
        assert sorted(published_rows(spark, config, table), key=repr) == rows


# --- real data ---


@pytest.mark.slow
@pytest.mark.real_data
@requires_real_data
def test_online_retail_features(spark, tmp_path):
    config = retail_config(tmp_path / "lh", REAL_DATA, source={"timestamp_formats": ["yyyy-MM-dd HH:mm:ss"]})
    ingest.run_ingest(spark, config, "real")
    counts = features.run_features(spark, config, "real-features")
    assert counts.customers == {AS_OF: 4_338}
    table = feature_table(spark, config)
    picked = table.where(F.col("customer_id").isin("12346", "12347", "18102")).collect()
    rows = {r.customer_id: r for r in picked}
    c = rows["12347"]
    assert (c.as_of_date, c.recency_days, c.frequency, c.monetary, c.tenure_days, c.returned_value) == (
        AS_OF, 3, 7, Decimal("4310.00"), 368, Decimal("0.00"))
    c = rows["12346"]
    assert (c.recency_days, c.frequency, c.monetary, c.returned_value) == (
        326, 1, Decimal("77183.60"), Decimal("77183.60"))
    assert c.return_rate == pytest.approx(1.0)
    c = rows["18102"]
    assert (c.recency_days, c.frequency, c.monetary) == (1, 60, Decimal("259657.30"))
    model_columns = [c for c in FEATURE_COLUMNS if c != "country"]
    nulls = table.select(*[F.count(F.when(F.col(c).isNull(), 1)).alias(c) for c in model_columns]).first()
    assert {c: n for c, n in nulls.asDict().items() if n} == {}
    assert table.count() == 4_338

    # Segmenting the real customers finishes and its decision record says how strong the structure is.
    sweep = config.model.model_copy(update={"k_min": 2, "k_max": 5, "restarts": 2, "stability_runs": 1})
    result = train.run_train(spark, config.model_copy(update={"model": sweep}), "real-train")
    assert result.customers == 4_338
    assert [c.k for c in result.candidates] == [2, 3, 4, 5]
    assert sum(c.is_chosen for c in result.candidates) == 1
    assert result.chosen.reason.startswith(f"Chosen: K={result.chosen.k} (kmeans)")
    assert result.chosen.structure == "weak" and "WEAK STRUCTURE" in result.chosen.reason
    segments = lakehouse.read_table(spark, config.table_path("customer_segments"))
    assert segments.count() == 4_338
