"""Segment baskets: top products and FPGrowth cross-sell rules, against values computed by hand.

The shared input (``LINES``): three segments with purchases, two without, and a customer with no segment.

Segment 0 (c1, c2), purchase lines only, by invoice (= basket):
    I01 c1: A 10, B 4        I02 c1: A 10, B 3        I03 c2: A 20, B 3, C 30
    I04 c2: A 10             I05 c2: C 10
    plus lines that must not count: a null product in I04, a return of A inside I05, the return invoice R01.
    Spend: A 50, B 10, C 40 -> 100. Baskets: {A,B} {A,B} {A,B,C} {A} {C}: N = 5.
Segment 1 (c3, c4):
    J01 c3: D 6.0050, E 2, A 4   J02 c4: D 6, E 1.9950   J03 c3: F 4   J04 c4: G 1, H 1, K 2
    Spend: D 12.005, E 3.995, A 4, F 4, G 1, H 1, K 2 -> 28. Baskets: {A,D,E} {D,E} {F} {G,H,K}: N = 4.
Segment 2 (c5): a return and a line without a product only -> no purchases, no baskets.
Segment 3 (c6): no lines at all.
Segment 4 (c7):
    T1: X 8, Y 8   T2: X 8   T3: Y 4   T4: Z 4
    Spend: X 16, Y 12, Z 4 -> 32. Baskets {X,Y} {X} {Y} {Z}: N = 4; X->Y and Y->X have confidence 1/2, the
    other item's support: lift exactly 1, so the segment has no rule.
c9 has no segment: all its lines (A 1000, descriptions "APPLE", "BEAR", "CAKE") are ignored.

Population (segmented customers): 100 + 28 + 32 = 160; A is bought in two segments: 50 + 4 = 54.

Descriptions over the segmented customers' purchase lines:
    A: "apple red" x3 (I01, I02, J01), APPLE x2 (I03, I04) -> "apple red", though APPLE is the smaller string
       (c9's two APPLE would make 4, the return's APPLE a 3-3 tie that APPLE wins).
    B: BEAR x1 (I01), "ABC BEAR" x1 (I02), null (I03) -> tie -> the smaller "ABC BEAR" (R01 would add a BEAR).
    C and K: only null descriptions -> null (c9's "CAKE" does not count).
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from segspark.errors import SchemaError
from segspark.stages.profile.baskets import cross_sell_rules, top_products

LINES_DDL = (
    "customer_id string, invoice_id string, product_id string, description string, "
    "line_amount decimal(28,4), is_return boolean"
)
SEGMENTS_DDL = "customer_id string, segment_id int"
TOP_PRODUCTS_DDL = (
    "segment_id int, rank int, product_id string, description string, spend decimal(28,2), "
    "spend_share double, population_spend_share double, lift double, buyers long"
)
RULES_DDL = (
    "segment_id int, rank int, antecedent array<string>, antecedent_descriptions array<string>, "
    "consequent string, consequent_description string, support double, confidence double, lift double, "
    "rule_baskets long, segment_baskets long"
)
PRECISION = 1e-12


def buy(customer, invoice, product, description, amount):
    return (customer, invoice, product, description, Decimal(amount), False)


def ret(customer, invoice, product, description, amount):
    return (customer, invoice, product, description, Decimal(amount), True)


LINES = [
    # segment 0
    buy("c1", "I01", "A", "apple red", "10"),
    buy("c1", "I01", "B", "BEAR", "4"),
    buy("c1", "I02", "A", "apple red", "10"),
    buy("c1", "I02", "B", "ABC BEAR", "3"),
    buy("c2", "I03", "A", "APPLE", "20"),
    buy("c2", "I03", "B", None, "3"),
    buy("c2", "I03", "C", None, "30"),
    buy("c2", "I04", "A", "APPLE", "10"),
    buy("c2", "I04", None, "MYSTERY", "99"),  # no product: would add 99 and a null item
    buy("c2", "I05", "C", None, "10"),
    ret("c2", "I05", "A", "APPLE", "-10"),  # a return in a purchase invoice: would make I05 {A, C}
    ret("c1", "R01", "B", "BEAR", "-4"),  # would make a basket {B} and B's description BEAR
    # segment 1
    buy("c3", "J01", "D", "DUCK", "6.0050"),
    buy("c3", "J01", "E", "EGG", "2"),
    buy("c3", "J01", "A", "apple red", "4"),
    buy("c4", "J02", "D", "DUCK", "6"),
    buy("c4", "J02", "E", "EGG", "1.9950"),
    buy("c3", "J03", "F", "FORK", "4"),
    buy("c4", "J04", "G", "GLOVE", "1"),
    buy("c4", "J04", "H", "HAT", "1"),
    buy("c4", "J04", "K", None, "2"),
    # segment 2: nothing that counts
    ret("c5", "R02", "D", "DUCK", "-3"),
    buy("c5", "I09", None, "GIFT", "5"),
    # segment 4
    buy("c7", "T1", "X", None, "8"),
    buy("c7", "T1", "Y", None, "8"),
    buy("c7", "T2", "X", None, "8"),
    buy("c7", "T3", "Y", None, "4"),
    buy("c7", "T4", "Z", None, "4"),
    # no segment
    buy("c9", "I90", "A", "APPLE", "1000"),
    buy("c9", "I90", "B", "BEAR", "1"),
    buy("c9", "I91", "A", "APPLE", "1"),
    buy("c9", "I91", "C", "CAKE", "1"),
]
SEGMENTS = [("c1", 0), ("c2", 0), ("c3", 1), ("c4", 1), ("c5", 2), ("c6", 3), ("c7", 4)]


@pytest.fixture(scope="module")
def lines_df(spark):
    return spark.createDataFrame(LINES, LINES_DDL)


@pytest.fixture(scope="module")
def segments_df(spark):
    return spark.createDataFrame(SEGMENTS, SEGMENTS_DDL)


def test_top_products_shares_lift_buyers_and_ties(spark, lines_df, segments_df):
    expected_df = spark.createDataFrame(
        [
            # Segment 0, total 100. A: 50/100; population 54/160 = 0.3375; lift 0.5/0.3375 = 40/27.
            # Bought by c1 (I01, I02) and c2 (I03, I04).
            (0, 1, "A", "apple red", Decimal("50.00"), 0.5, 0.3375, 40 / 27, 2),
            # C: 40/100; 40/160 = 0.25; lift 0.4/0.25 = 1.6; only c2 (I03, I05).
            (0, 2, "C", None, Decimal("40.00"), 0.4, 0.25, 1.6, 1),
            # B: 10/100; 10/160 = 0.0625; lift 1.6; c1 and c2.
            (0, 3, "B", "ABC BEAR", Decimal("10.00"), 0.1, 0.0625, 1.6, 2),
            # Segment 1, total 28. D: 12.005 -> 12.01 (half up); shares use 12.005: 12.005/28 = 0.42875,
            # 12.005/160 = 0.07503125; lift 160/28 = 40/7.
            (1, 1, "D", "DUCK", Decimal("12.01"), 0.42875, 0.07503125, 40 / 7, 2),
            # A and F tie at 4/28 = 1/7 and rank by product id; E (3.995, rounds to 4.00) is 4th: cut.
            # A: population 54/160; lift (1/7)/(27/80) = 80/189.
            (1, 2, "A", "apple red", Decimal("4.00"), 1 / 7, 0.3375, 80 / 189, 1),
            # F: population 4/160 = 0.025; lift (1/7)/(1/40) = 40/7.
            (1, 3, "F", "FORK", Decimal("4.00"), 1 / 7, 0.025, 40 / 7, 1),
            # Segments 2 and 3: no purchases, no rows. Segment 4, total 32; its products are its own, so each
            # lift is 160/32 = 5.
            (4, 1, "X", None, Decimal("16.00"), 0.5, 0.1, 5.0, 1),
            (4, 2, "Y", None, Decimal("12.00"), 0.375, 0.075, 5.0, 1),
            (4, 3, "Z", None, Decimal("4.00"), 0.125, 0.025, 5.0, 1),
        ],
        TOP_PRODUCTS_DDL,
    )
    result_df = top_products(lines_df, segments_df, top_n=3)
    assert_approx_df_equality(result_df, expected_df, PRECISION, ignore_nullable=True)


def test_cross_sell_rules_per_segment(spark, lines_df, segments_df):
    expected_df = spark.createDataFrame(
        [
            # Segment 0, N = 5; basket counts A 4, B 3, C 2, AB 3, AC 1, BC 1, ABC 1.
            # Dropped (lift <= 1): A->C 0.25/0.4 = 0.625, C->A 0.5/0.8 = 0.625, B->C (1/3)/0.4 = 0.83,
            # C->B 0.5/0.6 = 0.83, AB->C (1/3)/0.4 = 0.83.
            # AC->B: support 1/5, confidence 1/1, lift 1/0.6 = 5/3.
            (0, 1, ["A", "C"], ["apple red", None], "B", "ABC BEAR", 0.2, 1.0, 5 / 3, 1, 5),
            # Three rules of lift 1.25, ordered by confidence then support:
            # B->A: support 3/5, confidence 3/3, lift 1/0.8.
            (0, 2, ["B"], ["ABC BEAR"], "A", "apple red", 0.6, 1.0, 1.25, 3, 5),
            # BC->A: support 1/5, confidence 1/1, lift 1/0.8.
            (0, 3, ["B", "C"], ["ABC BEAR", None], "A", "apple red", 0.2, 1.0, 1.25, 1, 5),
            # A->B: support 3/5, confidence 3/4, lift 0.75/0.6.
            (0, 4, ["A"], ["apple red"], "B", "ABC BEAR", 0.6, 0.75, 1.25, 3, 5),
            # Segment 1, N = 4. The 9 rules within {G,H,K} (one basket) tie: support 1/4, confidence 1,
            # lift 1/0.25 = 4; the A/D/E rules have lift 2 (e.g. D->E 1/0.5, D->A 0.5/0.25). Top 4 of the
            # tie by antecedent text ("G" < "G,H" < "G,K" < "H" ...), then consequent.
            (1, 1, ["G"], ["GLOVE"], "H", "HAT", 0.25, 1.0, 4.0, 1, 4),
            (1, 2, ["G"], ["GLOVE"], "K", None, 0.25, 1.0, 4.0, 1, 4),
            (1, 3, ["G", "H"], ["GLOVE", "HAT"], "K", None, 0.25, 1.0, 4.0, 1, 4),
            (1, 4, ["G", "K"], ["GLOVE", None], "H", "HAT", 0.25, 1.0, 4.0, 1, 4),
            # Segments 2 and 3 have no baskets, segment 4 only rules of lift 1: no rows.
        ],
        RULES_DDL,
    )
    result_df = cross_sell_rules(lines_df, segments_df, min_support=0.2, min_confidence=0.1, top_n=4)
    assert_approx_df_equality(result_df, expected_df, PRECISION, ignore_nullable=True)


def test_cross_sell_rules_without_baskets_is_typed_and_empty(spark):
    # Only a return and a line without a product: no segment has a basket, so no FPGrowth fit at all.
    lines_df = spark.createDataFrame([ret("c1", "T1", "X", None, "-1"), buy("c1", "T2", None, None, "1")], LINES_DDL)
    segments_df = spark.createDataFrame([("c1", 7), ("c2", 8)], SEGMENTS_DDL)
    result_df = cross_sell_rules(lines_df, segments_df, min_support=0.25, min_confidence=0.5, top_n=5)
    assert_df_equality(result_df, spark.createDataFrame([], RULES_DDL), ignore_nullable=True)


@pytest.mark.parametrize(
    ("min_support", "min_confidence", "top_n", "message"),
    [
        (0.0, 0.5, 3, "min_support must be in (0, 1], got 0.0"),
        (1.5, 0.5, 3, "min_support must be in (0, 1], got 1.5"),
        (math.nan, 0.5, 3, "min_support must be in (0, 1], got nan"),
        (0.5, -0.1, 3, "min_confidence must be in (0, 1], got -0.1"),
        (0.5, 1.01, 3, "min_confidence must be in (0, 1], got 1.01"),
        (0.5, 0.5, 0, "top_n must be an integer >= 1, got 0"),
        (0.5, 0.5, 2.0, "top_n must be an integer >= 1, got 2.0"),
    ],
)
def test_cross_sell_rules_bad_arguments(lines_df, segments_df, min_support, min_confidence, top_n, message):
    with pytest.raises(ValueError) as raised:
        cross_sell_rules(lines_df, segments_df, min_support, min_confidence, top_n)
    assert str(raised.value) == message


def test_top_products_bad_top_n(lines_df, segments_df):
    with pytest.raises(ValueError, match=r"top_n must be an integer >= 1, got -1"):
        top_products(lines_df, segments_df, top_n=-1)


def test_missing_columns_are_named(lines_df, segments_df):
    with pytest.raises(SchemaError, match=r"cross_sell_rules needs column\(s\) \['invoice_id'\]"):
        cross_sell_rules(lines_df.drop("invoice_id"), segments_df, 0.5, 0.5, 3)
    with pytest.raises(SchemaError, match=r"top_products needs column\(s\) \['segment_id'\]"):
        top_products(lines_df, segments_df.drop("segment_id"), 3)
