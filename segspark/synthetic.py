"""Seeded synthetic transactions in the UCI "Online Retail" layout.

For demos, tests and benchmarks of segspark when the real data set is absent or too small.
Needs only numpy and pyarrow (no Spark, no pandas): the demo, the tests and the benchmark import it.

Usage::

    python scripts/generate_transactions.py --rows 1000000 --out demo_data/transactions
    python scripts/generate_transactions.py --rows 20000 --out /tmp/tx --format parquet --seed 7

or from Python::

    from segspark.synthetic import generate

    summary = generate("/tmp/tx", rows=20_000, seed=42)

Output layout
-------------
``--out`` becomes a folder of part files, ``part-00000.csv``, ``part-00001.csv``, ... (or
``part-NNNNN.parquet``), each holding at most ``--chunk-rows`` lines and, for CSV, its own header.
The columns are exactly those of the UCI Online Retail file, in this order, all written as text
(Parquet columns are strings too, so both formats read back identically)::

    InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country

- ``InvoiceNo``: six digits counting up from ``536365`` (as in the real file); a cancellation
  invoice is ``C`` followed by the number. Numbers increase with the invoice date inside each block
  of customers (see *Determinism*). When a run needs more invoice numbers than ``536365..999999``
  holds, numbering starts at ``100000``; runs needing more than 900,000 invoice numbers (roughly
  9 million rows and above) continue into seven digits.
- ``StockCode``: a catalogue of 2,000 products with codes like ``22423`` or ``85123A``, plus the
  real file's non-product codes ``POST`` (postage, mostly on orders from outside the UK), ``DOT``
  (dotcom postage, on guest orders), ``M`` (manual) and ``BANK CHARGES``.
- ``Description``: upper-case product text (the non-products keep the real file's spellings,
  ``Manual`` and ``Bank Charges``). Some contain commas or apostrophes; fields are quoted exactly
  when they contain a comma (RFC 4180, as ``csv.QUOTE_MINIMAL`` does). None contains a double quote,
  so readers need no escape setting. About 0.3% of lines, all on guest orders, have it empty.
- ``Quantity``: integer; negative on cancellation lines.
- ``InvoiceDate``: ``yyyy-MM-dd HH:mm:ss`` (seconds always ``00``), inside ``[start, start+days)``,
  during shop hours 07:00-20:59.
- ``UnitPrice``: two decimals (``2.55``), or ``0`` on about 0.5% of lines; those lines otherwise look
  normal and all have a customer id.
- ``CustomerID``: a float as in the real file (``17850.0``), or empty for guest checkouts (about 25%
  of lines); a guest invoice has no id on any of its lines.
- ``Country``: ``United Kingdom`` for most customers, else one of 14 others; a customer keeps one
  country.

Quirks kept from the real data
------------------------------
- About 1.5% of lines are cancellations: invoice ``C...``, negative quantity (the full quantity, or
  part of it), copying the product, price, customer and country of one earlier purchase line of the
  same customer, dated at most 14 days later. Cancelled purchase lines stay in the data.
- About 1% of lines are exact duplicates of another line of the same block of customers, written
  again at a random place in that block. Apart from these, no two lines are identical (a product
  appears at most once per invoice, barring a handful of leftovers after the redraws).
- Empty customer ids, empty descriptions and zero prices at the rates above.

Planted behaviour types
-----------------------
Every customer with an id belongs to exactly one type, in fixed shares (exact quotas, shuffled over
customers). By default (``--mix standard``) there are four. The types separate on per-customer RFM
features (recency to the end date, distinct invoices, total spend, average basket value, tenure) after
a log transform and standardisation; typical values at the default 90 lines per customer:

==================  =====  ==============  ============================  ==================
type                share  invoices        when                          basket (avg spend)
==================  =====  ==============  ============================  ==================
``champions``       15%    20-60           first in first 12%, last in   ~7 lines, ~£300
                                           final 6 days
``loyal_regulars``  30%    6-15            first in first 30%, last in   ~5 lines, ~£100
                                           final 30 days
``one_time_new``    30%    1 (70%) or 2    all in the final 45 days      ~3 lines, ~£20
``lapsed``          25%    2-6             all in the first 38%          ~3.5 lines, ~£45
==================  =====  ==============  ============================  ==================

``--mix extended`` plants seven types instead, for testing how K is chosen when groups are small or
overlap: the four above (one-time customers with one invoice of about four lines, 15-45 days before
the end) plus three more (medians at 1.8 million rows, 20,000 customers):

=====================  =====  ==========  ==========================  =================================
type                   share  invoices    when                        spend (basket)
=====================  =====  ==========  ==========================  =================================
``champions``          14.1%  20-60       as above                    ~£8,000 (~£210)
``loyal_regulars``     22%    6-15        as above                    ~£730 (~£70)
``one_time_new``       20%    1           15-45 days before the end   ~£36
``lapsed``             20%    2-6         as above                    ~£130 (~£33)
``occasional``         19%    3-6         first at 45-65% of the      ~£330 (~£75); overlaps lapsed
                                          period, last 40-110 days    and loyal customers
                                          before the end
``wholesale``          3%     6-12        first in first 40%, last    ~£12,000 (~£1,300: big baskets)
                                          in final 60 days
``very_high_value``    1.9%   100-180     first in first 5%, last     ~£390,000 (~£2,800)
                                          in final 3 days
=====================  =====  ==========  ==========================  =================================

Each customer also draws its own basket size and quantity multipliers (log-normal noise), and each
invoice and line draws further noise, so the groups have realistic spread but wide gaps. The type of
every customer goes to a separate ground-truth CSV, ``customer_id,behaviour_type`` (id as an integer
string), by default ``<out>/../<outname>_truth.csv``, never inside the data folder.

Size, memory and speed
----------------------
``--rows N`` is met exactly: the number of customers (``max(50, round(N / 90))``), invoices and lines
per customer, guest lines and the quirk counts are planned up front from small per-customer arrays,
then customers are generated in blocks of about 1,024 (about 90,000 lines) with vectorised numpy and
formatted with pyarrow compute kernels. Only one block is in memory at a time, so a 20-million-row
run stays within a few hundred MB (about 250 MB peak). 5 million CSV rows take about 11 s.

Determinism
-----------
The same ``--seed``, ``--rows``, ``--start`` and ``--days`` give byte-identical files (for the same
numpy and pyarrow versions). The content does not depend on ``--chunk-rows`` either: each block of
customers draws from its own stream, ``numpy.random.default_rng([seed, 1, block])``, with block
boundaries fixed by the number of customers, and part files are cut at exact line counts. So
concatenating the part files' data lines in order gives identical bytes for any chunk size; only
where the files are split differs. The product catalogue is fixed and the same for every seed.
The file order is block by block (dates are sorted within a block, not across the whole output).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import re
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

# pyarrow ships no type information, and pyproject's list of untyped libraries does not name it.
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

__all__ = [
    "ALL_TYPES",
    "BEHAVIOUR_TYPES",
    "CANCEL_SHARE",
    "CATALOGUE_SEED",
    "COLUMNS",
    "COUNTRIES",
    "CUSTOMERS_PER_BLOCK",
    "DUPLICATE_SHARE",
    "EMPTY_DESCRIPTION_SHARE",
    "FALLBACK_FIRST_INVOICE_NO",
    "FIRST_CUSTOMER_ID",
    "FIRST_INVOICE_NO",
    "FORMATS",
    "GUEST_LINES_PER_INVOICE",
    "GUEST_SHARE",
    "LINES_PER_CUSTOMER",
    "MAX_DAYS",
    "MAX_ROWS",
    "MIN_CHUNK_ROWS",
    "MIN_CUSTOMERS",
    "MIN_DAYS",
    "MIN_ROWS",
    "MIXES",
    "N_PRODUCTS",
    "TYPE_SHARES",
    "ZERO_PRICE_SHARE",
    "GenerationSummary",
    "GeneratorArgumentError",
    "generate",
    "main",
]

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
# Every type the generator knows, in index order; a mix picks some of them with shares.
ALL_TYPES = (
    "champions",
    "loyal_regulars",
    "one_time_new",
    "lapsed",
    "occasional",
    "wholesale",
    "very_high_value",
)
MIXES = {
    # The default: four well separated types.
    "standard": {"champions": 0.15, "loyal_regulars": 0.30, "one_time_new": 0.30, "lapsed": 0.25},
    # Seven types: two small ones (3% wholesale-like buyers, 2% very-high-value customers) and
    # occasional buyers who overlap regulars and lapsed customers.
    "extended": {
        "champions": 0.141,
        "loyal_regulars": 0.22,
        "one_time_new": 0.20,
        "lapsed": 0.20,
        "occasional": 0.19,
        "wholesale": 0.03,
        "very_high_value": 0.019,
    },
}
BEHAVIOUR_TYPES = tuple(MIXES["standard"])
TYPE_SHARES = tuple(MIXES["standard"].values())
FORMATS = ("csv", "parquet")

MIN_ROWS = 1_000
MAX_ROWS = 2_000_000_000
MIN_CHUNK_ROWS = 100
MIN_DAYS = 90
MAX_DAYS = 3_660
LINES_PER_CUSTOMER = 90
MIN_CUSTOMERS = 50

# Shares of all lines. Guests are planned before duplicates are added, hence the small correction
# in _plan so that the written share lands on 25%.
GUEST_SHARE = 0.25
CANCEL_SHARE = 0.015
DUPLICATE_SHARE = 0.01
ZERO_PRICE_SHARE = 0.005
EMPTY_DESCRIPTION_SHARE = 0.003
GUEST_LINES_PER_INVOICE = 20

CUSTOMERS_PER_BLOCK = 1_024
FIRST_INVOICE_NO = 536_365
FALLBACK_FIRST_INVOICE_NO = 100_000
FIRST_CUSTOMER_ID = 12_346
N_PRODUCTS = 2_000
# Fixed so that every seed shares one product universe (joins across demo data sets work).
CATALOGUE_SEED = 20101201

CHAMPIONS, LOYAL, ONE_TIME, LAPSED, OCCASIONAL, WHOLESALE, VERY_HIGH_VALUE = range(len(ALL_TYPES))
# Per type, indexed as ALL_TYPES: invoice count range, relative lines per invoice, quantity multiplier.
_INVOICES_LOW = np.array([20, 6, 1, 2, 3, 6, 100])
_INVOICES_HIGH = np.array([60, 15, 2, 6, 6, 12, 180])
_BASKET_LINES = np.array([12.0, 7.0, 3.0, 4.5, 4.0, 25.0, 20.0])
_QUANTITY_MULT = np.array([3.0, 1.5, 0.7, 1.0, 2.5, 10.0, 25.0])
# Windows in fractions of the period / days before the end (see module docstring table). Types with a
# first-purchase fraction and a last-purchase window are active to the end; one-time and lapsed
# customers have windows of their own (nan here).
# The first purchase falls in [from, from + frac) of the period, the last between last_min and
# last_min + last_days before its end.
_FIRST_FROM = np.array([0.0, 0.0, np.nan, np.nan, 0.45, 0.0, 0.0])
_FIRST_FRAC = np.array([0.12, 0.30, np.nan, np.nan, 0.20, 0.40, 0.05])
_LAST_MIN = np.array([0.0, 0.0, np.nan, np.nan, 40.0, 0.0, 0.0])
_LAST_DAYS = np.array([6.0, 30.0, np.nan, np.nan, 70.0, 60.0, 3.0])
# Per mix, for one-time new customers: the share with a second invoice, relative lines per invoice,
# and the window of their purchases as (min, span) days before the end. The extended mix keeps them
# one group: one invoice 15-45 days ago (in log days, 1-45 days ago spans as much as two types) and
# baskets of several lines (one-line baskets make spend bimodal).
_ONE_TIME_TWO_INVOICES = {"standard": 0.3, "extended": 0.0}
_ONE_TIME_BASKET_LINES = {"standard": 3.0, "extended": 10.0}
_NEW_WINDOW_DAYS = {"standard": (0.0, 45.0), "extended": (15.0, 30.0)}
_LAPSED_FIRST_FRAC, _LAPSED_END_FRAC = 0.20, 0.38
_CANCEL_MAX_DELAY_DAYS = 14

# Invoice hours 07-20, shaped like the real file (peak around noon, quiet evenings).
_HOURS = np.arange(7, 21)
_HOUR_WEIGHTS = np.array(
    [383, 8909, 34332, 49037, 57674, 78709, 72829, 67471, 77519, 54516, 28509, 7974, 3705, 871]
)
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()

COUNTRIES = (
    "United Kingdom",
    "Germany",
    "France",
    "EIRE",
    "Spain",
    "Netherlands",
    "Belgium",
    "Switzerland",
    "Portugal",
    "Australia",
    "Norway",
    "Italy",
    "Channel Islands",
    "Finland",
    "Sweden",
)
_UK_CUSTOMER_SHARE = 0.885
_UK_GUEST_SHARE = 0.93
_OTHER_COUNTRY_WEIGHTS = np.array([95, 87, 8, 31, 9, 25, 21, 14, 9, 10, 15, 9, 12, 8], dtype=float)
_OTHER_COUNTRY_WEIGHTS /= _OTHER_COUNTRY_WEIGHTS.sum()
_CUSTOMER_COUNTRY_P = np.concatenate(
    [[_UK_CUSTOMER_SHARE], (1 - _UK_CUSTOMER_SHARE) * _OTHER_COUNTRY_WEIGHTS]
)
_GUEST_COUNTRY_P = np.concatenate([[_UK_GUEST_SHARE], (1 - _UK_GUEST_SHARE) * _OTHER_COUNTRY_WEIGHTS])

_POST_ON_FOREIGN_INVOICE = 0.6
_DOT_ON_GUEST_INVOICE = 0.15
_MANUAL_LINE_RATE = 0.0005
_BANK_CHARGES_LINE_RATE = 0.0001

_PART_FILE = re.compile(r"part-\d{5}\.(csv|parquet)")


class GeneratorArgumentError(ValueError):
    """An argument of :func:`generate` is invalid; the message names the command-line option."""


# ---------------------------------------------------------------------------------------------
# Product catalogue
# ---------------------------------------------------------------------------------------------

# Word lists for product names; "|" keeps them compact. Commas and apostrophes are deliberate
# (quoting must work), double quotes are left out (Spark's CSV reader escapes with a backslash).
_PREFIXES = tuple(
    "|||||SET OF 3 |SET OF 6 |SET/4 |PACK OF 12 |PACK OF 72 |SMALL |LARGE |JUMBO |MINI |HANGING ".split("|")
)
_STYLES = tuple(
    "WHITE|RED|PINK|BLUE|GREEN|IVORY|BLACK|CREAM|SILVER|GOLD|VINTAGE|RETROSPOT|POLKADOT|REGENCY|HEART|"
    "ANTIQUE|PAISLEY|SPACEBOY|DOLLY GIRL|WOODLAND|SKULL|PANTRY|CHRISTMAS|FRENCH|ENGLISH ROSE|"
    "ASSORTED COLOUR|FAIRY CAKE|STRAWBERRY|BIRD|ROSE|GINGHAM|ZINC|WOODEN|GLASS|ENAMEL|SWEETHEART|LOVE|"
    "SCANDINAVIAN|PARTY|BAROQUE".split("|")
)
_ITEMS = tuple(
    "T-LIGHT HOLDER|CAKESTAND 3 TIER|LUNCH BAG|JUMBO BAG|TEA TOWELS|NAPKINS|CANDLE|PHOTO FRAME|DOORMAT|MUG|"
    "TEACUP AND SAUCER|CAKE TINS|BUNTING|ALARM CLOCK|HOT WATER BOTTLE|NOTEBOOK|GIFT WRAP|PAPER CUPS|"
    "BAKING SET|CHARM|PURSE|TRINKET BOX|WALL CLOCK|HANGING DECORATION|LANTERN|METAL SIGN|COASTER|"
    "CUSHION COVER|SHOPPING BAG|PLASTERS IN TIN|WATER BOTTLE|BOWL|PLATE|CAKE CASES|PAPER CHAIN KIT|"
    "STORAGE JAR|DRAWER KNOB|LIGHTS|WASHBAG|BIRTHDAY CARD|STICKER SHEET|TISSUES|SPOTTY BUNTING|PARASOL|"
    "DOOR STOP|SNACK BOXES|RIBBON REEL|PICNIC BASKET|CANDLESTICK|FELTCRAFT DOLL".split("|")
)
_SUFFIXES = tuple(
    "|||||| DESIGN| 50'S| SMALL| LARGE|, ASSORTED|, PINK AND BLUE| IN TIN| WITH LID|, SET OF 2".split("|")
)
_PACK_SIZES = np.array([1, 2, 3, 4, 6, 12, 24])
_PACK_P = np.array([0.28, 0.14, 0.10, 0.12, 0.16, 0.15, 0.05])

# Non-product codes, appended after the products: (code, description as in the real file).
_SPECIALS = (
    ("POST", "POSTAGE"),
    ("M", "Manual"),
    ("DOT", "DOTCOM POSTAGE"),
    ("BANK CHARGES", "Bank Charges"),
)
_POST, _MANUAL, _DOT, _BANK = range(N_PRODUCTS, N_PRODUCTS + len(_SPECIALS))


def _csv_field(text: str) -> str:
    """Quote ``text`` the way ``csv.QUOTE_MINIMAL`` would."""
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class _Catalogue:
    """Products and non-product codes; index ``i`` is the same in every array."""

    def __init__(self) -> None:
        rng = np.random.default_rng(CATALOGUE_SEED)
        numbers = rng.choice(np.arange(10_002, 90_000), size=N_PRODUCTS, replace=False)
        letters = np.where(rng.random(N_PRODUCTS) < 0.12, rng.choice(list("ABCDEFG"), N_PRODUCTS), "")
        codes = [f"{n}{s}" for n, s in zip(numbers.tolist(), letters.tolist(), strict=True)]
        descriptions: list[str] = []
        seen: set[str] = set()
        while len(descriptions) < N_PRODUCTS:
            text = (
                _PREFIXES[rng.integers(len(_PREFIXES))]
                + _STYLES[rng.integers(len(_STYLES))]
                + " "
                + _ITEMS[rng.integers(len(_ITEMS))]
                + _SUFFIXES[rng.integers(len(_SUFFIXES))]
            )
            if text not in seen:
                seen.add(text)
                descriptions.append(text)
        codes += [code for code, _ in _SPECIALS]
        descriptions += [text for _, text in _SPECIALS]
        # Popularity follows a Zipf-like curve over a random ranking, like real best-seller lists.
        rank = rng.permutation(N_PRODUCTS)
        weights = (rank + 8.0) ** -0.85
        self.popularity = weights / weights.sum()
        price = np.exp(rng.normal(np.log(210.0), 0.75, N_PRODUCTS))
        # Prices in the real file mostly end in 5 or 0 pence.
        self.price_cents = np.concatenate(
            [np.clip(np.rint(price / 5) * 5, 10, 29_500).astype(np.int64), np.zeros(len(_SPECIALS), np.int64)]
        )
        self.pack = np.concatenate(
            [rng.choice(_PACK_SIZES, N_PRODUCTS, p=_PACK_P), np.ones(len(_SPECIALS), int)]
        )
        self.codes = pa.array(codes, pa.string())
        self.descriptions = pa.array(descriptions, pa.string())
        self.descriptions_csv = pa.array([_csv_field(d) for d in descriptions], pa.string())
        self.countries = pa.array(COUNTRIES, pa.string())
        # The newline rides on the last column so a joined line array is the file content as is.
        self.countries_csv = pa.array([_csv_field(c) + "\n" for c in COUNTRIES], pa.string())


@functools.cache
def _catalogue() -> _Catalogue:
    return _Catalogue()


# ---------------------------------------------------------------------------------------------
# Planning: every count that must add up to --rows, fixed before any line is generated
# ---------------------------------------------------------------------------------------------


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into non-negative integers proportional to ``weights``, summing exactly.

    Parameters
    ----------
    total : int
        The amount to split.
    weights : numpy.ndarray
        Non-negative weights, one per share.

    Returns
    -------
    numpy.ndarray
        int64 shares; rounding the cumulative sum (not each share) keeps the total exact.
    """
    weights = np.asarray(weights, dtype=float)
    out = np.zeros(len(weights), dtype=np.int64)
    mass = weights.sum()
    if total <= 0 or mass <= 0:
        return out
    cumulative = np.rint(np.cumsum(weights) * (total / mass)).astype(np.int64)
    cumulative[-1] = total
    return np.diff(cumulative, prepend=0)


class _Plan:
    """Per-customer and per-block counts for one run; small (a few numbers per customer)."""

    def __init__(self, rows: int, seed: int, days: int, mix: str = "standard") -> None:
        rng = np.random.default_rng([seed, 0])
        self.rows = rows
        self.days = days
        self.mix = mix
        n = max(MIN_CUSTOMERS, round(rows / LINES_PER_CUSTOMER))
        self.n_customers = n

        shares = MIXES[mix]
        types = np.array([ALL_TYPES.index(name) for name in shares], dtype=np.int8)
        type_counts = _allocate(n, np.array(list(shares.values())))
        self.ctype = rng.permutation(np.repeat(types, type_counts))
        low, high = _INVOICES_LOW[self.ctype], _INVOICES_HIGH[self.ctype]
        n_inv = low + np.floor(rng.random(n) * (high - low + 1)).astype(np.int64)
        one_time = self.ctype == ONE_TIME
        n_inv[one_time] = 1 + (rng.random(int(one_time.sum())) < _ONE_TIME_TWO_INVOICES[mix])
        self.n_inv = n_inv
        # Ids climb with gaps, like the real 12346..18287 range.
        self.customer_id = FIRST_CUSTOMER_ID + np.arange(n) + np.cumsum(rng.random(n) < 0.35)
        self.country = rng.choice(len(COUNTRIES), n, p=_CUSTOMER_COUNTRY_P).astype(np.int16)
        basket_lines = _BASKET_LINES.copy()
        basket_lines[ONE_TIME] = _ONE_TIME_BASKET_LINES[mix]
        basket = basket_lines[self.ctype] * rng.lognormal(0.0, 0.25, n)

        cancels = round(CANCEL_SHARE * rows)
        duplicates = round(DUPLICATE_SHARE * rows)
        purchases = rows - cancels - duplicates
        guests = round(GUEST_SHARE * (rows - duplicates))
        identified = purchases - guests
        if identified < n_inv.sum():
            # Only reachable at the smallest sizes: every invoice needs one line, so guests give way.
            identified = int(n_inv.sum())
            guests = purchases - identified
        # Lines beyond one per invoice go to customers in proportion to invoices x basket size, so the
        # basket-size ratios between types hold at every --rows.
        self.lines = n_inv + _allocate(identified - int(n_inv.sum()), n_inv * basket)

        n_blocks = max(1, round(n / CUSTOMERS_PER_BLOCK))
        self.bounds = np.rint(np.linspace(0, n, n_blocks + 1)).astype(np.int64)
        self.n_blocks = n_blocks
        block_lines = np.add.reduceat(self.lines, self.bounds[:-1])
        block_invoices = np.add.reduceat(self.n_inv, self.bounds[:-1])
        self.guest_lines = _allocate(guests, block_lines)
        self.guest_invoices = np.minimum(
            self.guest_lines, np.maximum(np.rint(self.guest_lines / GUEST_LINES_PER_INVOICE), 1)
        ).astype(np.int64)
        self.cancels = np.minimum(_allocate(cancels, block_lines), block_lines)
        self.zero_prices = np.minimum(_allocate(round(ZERO_PRICE_SHARE * rows), block_lines), block_lines)
        self.empty_descriptions = np.minimum(
            _allocate(round(EMPTY_DESCRIPTION_SHARE * rows), self.guest_lines), self.guest_lines
        )
        self.duplicates = _allocate(duplicates, block_lines + self.guest_lines + self.cancels)

        # A block may use up to one number per purchase invoice and per cancellation line.
        numbers = block_invoices + self.guest_invoices + self.cancels
        total_numbers = int(numbers.sum())
        fits = FIRST_INVOICE_NO + total_numbers <= 1_000_000
        first = FIRST_INVOICE_NO if fits else FALLBACK_FIRST_INVOICE_NO
        self.invoice_base = first + np.cumsum(numbers) - numbers


# ---------------------------------------------------------------------------------------------
# One block of customers
# ---------------------------------------------------------------------------------------------


def _minute_of_day(rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.choice(_HOURS, size, p=_HOUR_P) * 60 + rng.integers(0, 60, size)


def _draw_products(rng: np.random.Generator, line_invoice: np.ndarray, cat: _Catalogue) -> np.ndarray:
    """Products by popularity, redrawn where an invoice would hold the same product twice.

    Without the redraw, popular products collide inside long invoices and produce accidental
    duplicate lines, which would blur the planted 1% duplicate rate.
    """
    product = rng.choice(N_PRODUCTS, size=len(line_invoice), p=cat.popularity)
    for _ in range(4):
        order = np.lexsort((product, line_invoice))
        inv_sorted, prod_sorted = line_invoice[order], product[order]
        repeat = np.zeros(len(order), dtype=bool)
        repeat[1:] = (inv_sorted[1:] == inv_sorted[:-1]) & (prod_sorted[1:] == prod_sorted[:-1])
        if not repeat.any():
            break
        redraw = order[repeat]
        product[redraw] = rng.integers(0, N_PRODUCTS, redraw.size)
    return product


class _Block:
    """Rows of one block in final order, as numpy arrays, plus per-invoice and per-customer values."""

    def __init__(self, plan: _Plan, b: int, seed: int, cat: _Catalogue) -> None:
        rng = np.random.default_rng([seed, 1, b])
        c0, c1 = int(plan.bounds[b]), int(plan.bounds[b + 1])
        nc = c1 - c0
        days = plan.days
        ctype, n_inv, lines = plan.ctype[c0:c1], plan.n_inv[c0:c1], plan.lines[c0:c1]
        country = plan.country[c0:c1]
        quantity_mult = _QUANTITY_MULT[ctype] * rng.lognormal(0.0, 0.2, nc)

        # Customer activity windows, in (fractional) days since the start.
        u_first, u_last = rng.random(nc), rng.random(nc)
        first, last = np.empty(nc), np.empty(nc)
        for t in np.unique(ctype):
            mask = ctype == t
            if t == ONE_TIME:
                new_min, new_span = _NEW_WINDOW_DAYS[plan.mix]
                first[mask] = (days - new_min - u_first * new_span)[mask]
            elif t == LAPSED:
                first[mask] = (u_first * _LAPSED_FIRST_FRAC * days)[mask]
            else:
                first[mask] = (u_first * _FIRST_FRAC[t] * days + _FIRST_FROM[t] * days)[mask]
                last[mask] = (days - u_last * _LAST_DAYS[t] - _LAST_MIN[t])[mask]
        new = ctype == ONE_TIME
        last[new] = first[new] + u_last[new] * (days - first[new])
        lapsed = ctype == LAPSED
        lapsed_end = _LAPSED_END_FRAC * days
        last[lapsed] = first[lapsed] + (0.25 + 0.75 * u_last[lapsed]) * (lapsed_end - first[lapsed])

        # Customer invoices: the first on the window start, the last on its end, the rest between.
        k = int(n_inv.sum())
        inv_cust = np.repeat(np.arange(nc), n_inv)
        rank = np.arange(k) - (np.cumsum(n_inv) - n_inv)[inv_cust]
        pos = first[inv_cust] + rng.random(k) * (last - first)[inv_cust]
        pos = np.where(rank == 0, first[inv_cust], pos)
        pos = np.where((rank == n_inv[inv_cust] - 1) & (rank > 0), last[inv_cust], pos)
        day = np.clip(np.floor(pos), 0, days - 1).astype(np.int64)
        inv_minute = day * 1440 + _minute_of_day(rng, k)

        extra = lines - n_inv
        weight = rng.lognormal(0.0, 0.5, k)
        per_customer = np.bincount(inv_cust, weights=weight, minlength=nc)
        # Rounding the running total keeps every customer's line count exact (boundaries are integers).
        running = np.rint(np.cumsum(extra[inv_cust] * weight / per_customer[inv_cust])).astype(np.int64)
        lines_per_inv = 1 + np.diff(running, prepend=0)

        # Guest invoices: any day, mostly UK, no customer.
        kg = int(plan.guest_invoices[b])
        guest_lines = int(plan.guest_lines[b])
        if kg:
            gw = rng.lognormal(0.0, 0.8, kg)
            guest_lpi = 1 + rng.multinomial(guest_lines - kg, gw / gw.sum())
        else:
            guest_lpi = np.zeros(0, dtype=np.int64)
        guest_minute = rng.integers(0, days, kg) * 1440 + _minute_of_day(rng, kg)
        guest_country = rng.choice(len(COUNTRIES), kg, p=_GUEST_COUNTRY_P).astype(np.int16)
        guest_qm = rng.lognormal(0.0, 0.4, kg)

        kp = k + kg
        p_cust = np.concatenate([inv_cust, np.full(kg, -1)])
        p_country = np.concatenate([country[inv_cust], guest_country])
        p_qm = np.concatenate([quantity_mult[inv_cust], guest_qm])
        lpi = np.concatenate([lines_per_inv, guest_lpi]).astype(np.int64)
        line_inv = np.repeat(np.arange(kp), lpi)
        n_lines = len(line_inv)
        n_identified = int(lines.sum())

        product = _draw_products(rng, line_inv, cat)
        first_line = np.cumsum(lpi) - lpi
        multi = lpi >= 2
        foreign = multi & (p_country != 0) & (rng.random(kp) < _POST_ON_FOREIGN_INVOICE)
        dotcom = multi & (p_cust < 0) & (rng.random(kp) < _DOT_ON_GUEST_INVOICE)
        product[first_line[foreign]] = _POST
        product[first_line[dotcom]] = _DOT
        u = rng.random(n_lines)
        product[u < _MANUAL_LINE_RATE] = _MANUAL
        product[(u >= _MANUAL_LINE_RATE) & (u < _MANUAL_LINE_RATE + _BANK_CHARGES_LINE_RATE)] = _BANK

        qty = np.maximum(1, np.rint(cat.pack[product] * p_qm[line_inv] * rng.lognormal(0.0, 0.35, n_lines)))
        qty = qty.astype(np.int64)
        price = cat.price_cents[product].copy()
        special = product >= N_PRODUCTS
        qty[special] = 1
        is_post = product == _POST
        qty[is_post] = rng.integers(1, 4, int(is_post.sum()))
        price[is_post] = rng.choice([1800, 2800, 4000], int(is_post.sum()))
        for code, median in ((_MANUAL, 250.0), (_DOT, 15000.0)):
            mask = product == code
            price[mask] = np.maximum(1, np.rint(np.exp(rng.normal(np.log(median), 0.8, int(mask.sum())))))
        price[product == _BANK] = 1500  # bank charges: one fixed price (no draw, so the stream above is unchanged)

        zero = rng.choice(n_identified, int(plan.zero_prices[b]), replace=False)
        price[zero] = 0
        desc_missing = np.zeros(n_lines, dtype=bool)
        if n_lines > n_identified:
            n_guest_lines = n_lines - n_identified
            empty = n_identified + rng.choice(n_guest_lines, int(plan.empty_descriptions[b]), replace=False)
            desc_missing[empty] = True

        # Cancellations copy purchase lines of customers; one C-invoice per cancelled purchase invoice.
        src = np.sort(rng.choice(n_identified, int(plan.cancels[b]), replace=False))
        src_inv = line_inv[src]
        cancelled_inv, c_local = np.unique(src_inv, return_inverse=True)
        kc = len(cancelled_inv)
        c_cust = p_cust[cancelled_inv]
        # Never after the customer's type window, so lapsed customers stay silent late in the period.
        cap_day = np.where(ctype[c_cust] == LAPSED, int(np.floor(lapsed_end)), days - 1)
        src_minute = inv_minute[cancelled_inv]
        src_day = src_minute // 1440
        span = np.clip(np.minimum(_CANCEL_MAX_DELAY_DAYS, cap_day - src_day), 0, None)
        c_day = src_day + np.floor(rng.random(kc) * (span + 1)).astype(np.int64)
        c_minute = np.maximum(c_day * 1440 + _minute_of_day(rng, kc), src_minute + 1)
        c_minute = np.minimum(c_minute, cap_day * 1440 + 1439)
        src_qty = qty[src]
        partial = (rng.random(len(src)) < 0.25) & (src_qty > 1)
        c_qty = -np.where(partial, rng.integers(1, np.maximum(src_qty, 2)), src_qty)

        # Invoice numbers count up with the date inside the block.
        self.inv_minute = np.concatenate([inv_minute, guest_minute, c_minute])
        self.inv_customer = np.concatenate([p_cust, c_cust])
        self.inv_country = np.concatenate([p_country, country[c_cust]])
        self.inv_cancel = np.concatenate([np.zeros(kp, np.int8), np.ones(kc, np.int8)])
        order = np.argsort(self.inv_minute, kind="stable")
        self.inv_no = np.empty(len(order), dtype=np.int64)
        self.inv_no[order] = plan.invoice_base[b] + np.arange(len(order))

        r_inv = np.concatenate([line_inv, kp + c_local])
        r_product = np.concatenate([product, product[src]])
        r_qty = np.concatenate([qty, c_qty])
        r_price = np.concatenate([price, price[src]])
        r_missing = np.concatenate([desc_missing, desc_missing[src]])
        row_order = np.argsort(self.inv_no[r_inv], kind="stable")
        n_rows = len(row_order)
        n_dup = int(plan.duplicates[b])
        dup_src = rng.choice(n_rows, n_dup, replace=False)
        dup_at = rng.integers(0, n_rows + 1, n_dup)
        final = np.insert(row_order, dup_at, row_order[dup_src])

        self.row_inv = r_inv[final]
        self.row_product = r_product[final]
        self.row_qty = r_qty[final]
        self.row_price = r_price[final]
        self.row_missing = r_missing[final]
        self.customer_id = plan.customer_id[c0:c1]

    def __len__(self) -> int:
        return len(self.row_inv)

    def columns(self, cat: _Catalogue, start_epoch: int, csv: bool) -> list[pa.Array]:
        """Format the block as eight string arrays in :data:`COLUMNS` order.

        Parameters
        ----------
        cat : _Catalogue
            Product catalogue.
        start_epoch : int
            Seconds since 1970 of the period start.
        csv : bool
            If true, descriptions come CSV-quoted and the country carries the line's newline.

        Returns
        -------
        list of pyarrow.Array
            Missing descriptions and guest customer ids are nulls.
        """
        # Invoice-level strings first, then one take per row: far fewer values to format.
        number = pc.cast(pa.array(self.inv_no), pa.string())
        invoice = pc.binary_join_element_wise(pa.array(["", "C"]).take(pa.array(self.inv_cancel)), number, "")
        stamps = pa.array(start_epoch + self.inv_minute * 60, type=pa.timestamp("s"))
        date = pc.strftime(stamps, format="%Y-%m-%d %H:%M:%S")
        ids = pc.binary_join_element_wise(pc.cast(pa.array(self.customer_id), pa.string()), ".0", "")
        guest = self.inv_customer < 0
        customer = ids.take(pa.array(np.where(guest, 0, self.inv_customer), mask=guest))
        countries = cat.countries_csv if csv else cat.countries
        country = countries.take(pa.array(self.inv_country))

        values, where = np.unique(self.row_price, return_inverse=True)
        prices = pa.array([f"{v // 100}.{v % 100:02d}" if v else "0" for v in values.tolist()], pa.string())
        descriptions = cat.descriptions_csv if csv else cat.descriptions
        rows = pa.array(self.row_inv)
        return [
            invoice.take(rows),
            cat.codes.take(pa.array(self.row_product)),
            descriptions.take(pa.array(self.row_product, mask=self.row_missing)),
            pc.cast(pa.array(self.row_qty), pa.string()),
            date.take(rows),
            prices.take(pa.array(where.reshape(-1))),
            customer.take(rows),
            country.take(rows),
        ]


# ---------------------------------------------------------------------------------------------
# Part files
# ---------------------------------------------------------------------------------------------

_SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
_CSV_HEADER = (",".join(COLUMNS) + "\n").encode()


class _PartWriter:
    """Cuts a stream of blocks into part files of exactly ``chunk_rows`` lines (the last may be short)."""

    def __init__(self, out_dir: Path, fmt: str, chunk_rows: int) -> None:
        self.out_dir, self.fmt, self.chunk_rows = out_dir, fmt, chunk_rows
        self.files: list[Path] = []
        self.rows = 0
        #: The open part: a binary file (CSV) or a pyarrow ParquetWriter; pyarrow ships no types, so Any.
        self._handle: Any = None
        self._in_part = 0

    def _roll(self) -> None:
        self.close()
        path = self.out_dir / f"part-{len(self.files):05d}.{self.fmt}"
        self.files.append(path)
        if self.fmt == "csv":
            # Kept open across blocks until the part is full; close() ends it.
            self._handle = open(path, "wb", buffering=1 << 20)
            self._handle.write(_CSV_HEADER)
        else:
            self._handle = pq.ParquetWriter(path, _SCHEMA, compression="snappy")
        self._in_part = 0

    def write(self, columns: list[pa.Array]) -> None:
        if self.fmt == "csv":
            lines = pc.binary_join_element_wise(*columns, ",", null_handling="replace", null_replacement="")
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
            offsets = offsets[lines.offset : lines.offset + len(lines) + 1]
            data = memoryview(lines.buffers()[2])
            batch = None
        else:
            batch = pa.Table.from_arrays(columns, schema=_SCHEMA)
        n, done = len(columns[0]), 0
        while done < n:
            if self._handle is None or self._in_part == self.chunk_rows:
                self._roll()
            take = min(self.chunk_rows - self._in_part, n - done)
            if batch is None:
                self._handle.write(data[offsets[done] : offsets[done + take]])
            else:
                self._handle.write_table(batch.slice(done, take))
            done += take
            self._in_part += take
            self.rows += take

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class GenerationSummary(TypedDict):
    """What :func:`generate` wrote (a plain dict at run time); the keys are described in its Returns section."""

    rows: int
    customers: int
    files: list[str]
    truth_path: str
    out_dir: str
    format: str
    mix: str
    seed: int
    start: str
    end: str
    seconds: float


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GeneratorArgumentError(f"{name}: expected an integer, got {value!r}")
    if not low <= value <= high:
        raise GeneratorArgumentError(f"{name}: must be between {low:,} and {high:,}, got {value:,}")
    return int(value)


def _validate(
    out_dir: str | Path,
    rows: int,
    seed: int,
    fmt: str,
    chunk_rows: int,
    start: str | dt.date,
    days: int,
    truth_path: str | Path | None,
    mix: str,
) -> tuple[Path, int, int, str, int, dt.date, int, Path]:
    """The arguments of :func:`generate` checked and normalised (resolved paths, ints, a date), in order."""
    if mix not in MIXES:
        raise GeneratorArgumentError(f"--mix: must be one of {', '.join(MIXES)}, got {mix!r}")
    rows = _check_int("--rows", rows, MIN_ROWS, MAX_ROWS)
    seed = _check_int("--seed", seed, 0, 2**63 - 1)
    chunk_rows = _check_int("--chunk-rows", chunk_rows, MIN_CHUNK_ROWS, MAX_ROWS)
    days = _check_int("--days", days, MIN_DAYS, MAX_DAYS)
    if fmt not in FORMATS:
        raise GeneratorArgumentError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(start, dt.datetime):
        start = start.date()
    if not isinstance(start, dt.date):
        try:
            start = dt.date.fromisoformat(str(start))
        except ValueError:
            raise GeneratorArgumentError(f"--start: expected a date like 2010-12-01, got {start!r}") from None

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise GeneratorArgumentError(f"--out: {out} exists and is not a folder")
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if not _PART_FILE.fullmatch(p.name))
        if foreign:
            raise GeneratorArgumentError(
                f"--out: {out} holds files this generator did not write ({', '.join(foreign[:3])}); "
                "use an empty or new folder"
            )
    if not out.name:
        raise GeneratorArgumentError(f"--out: {out} cannot be a data folder")
    truth = (
        out.parent / f"{out.name}_truth.csv"
        if truth_path is None
        else Path(truth_path).expanduser().resolve()
    )
    if truth.is_relative_to(out):
        raise GeneratorArgumentError(f"--truth: {truth} must not be inside the data folder {out}")
    if truth.is_dir():
        raise GeneratorArgumentError(f"--truth: {truth} is a folder, expected a file path")
    return out, rows, seed, fmt, chunk_rows, start, days, truth


def generate(
    out_dir: str | Path,
    rows: int,
    seed: int = 42,
    fmt: str = "csv",
    chunk_rows: int = 500_000,
    start: str | dt.date = "2010-12-01",
    days: int = 374,
    truth_path: str | Path | None = None,
    mix: str = "standard",
) -> GenerationSummary:
    """Write synthetic Online Retail transactions and the customers' planted behaviour types.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Data folder to create. If it exists it may only hold part files of an earlier run, which
        are replaced.
    rows : int
        Number of lines to write (met exactly), 1,000 to 2 billion.
    seed : int, default 42
        Non-negative seed; with ``rows``, ``start`` and ``days`` it fixes the output byte for byte.
    fmt : {"csv", "parquet"}, default "csv"
        Part file format; Parquet columns are strings, like the CSV text.
    chunk_rows : int, default 500_000
        Lines per part file (the last one may hold fewer). Does not change the content.
    start : str or datetime.date, default "2010-12-01"
        First day of the period (ISO date).
    days : int, default 374
        Length of the period in days (90 to 3,660); dates fall in ``[start, start + days)``.
    truth_path : str or pathlib.Path, optional
        Ground-truth CSV; default ``<out_dir>/../<out_dir name>_truth.csv``. Must lie outside
        ``out_dir``.
    mix : {"standard", "extended"}, default "standard"
        Planted behaviour types and their shares (:data:`MIXES`): four well separated types, or
        seven including a 3% and a 2% group and one overlapping type.

    Returns
    -------
    GenerationSummary
        A dict: ``rows`` (lines written), ``customers`` (customers with an id), ``files`` (part file paths,
        in order), ``truth_path``, ``out_dir``, ``format``, ``seed``, ``start``, ``end`` (exclusive
        end date) and ``seconds``.

    Raises
    ------
    GeneratorArgumentError
        If an argument is invalid; the message names the command-line option.
    """
    began = time.perf_counter()
    out, rows, seed, fmt, chunk_rows, start, days, truth = _validate(
        out_dir, rows, seed, fmt, chunk_rows, start, days, truth_path, mix
    )
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        stale.unlink()
    truth.parent.mkdir(parents=True, exist_ok=True)

    cat = _catalogue()
    plan = _Plan(rows, seed, days, mix)
    start_epoch = (start - dt.date(1970, 1, 1)).days * 86_400
    writer = _PartWriter(out, fmt, chunk_rows)
    try:
        for b in range(plan.n_blocks):
            block = _Block(plan, b, seed, cat)
            writer.write(block.columns(cat, start_epoch, csv=fmt == "csv"))
    finally:
        writer.close()
    if writer.rows != rows:  # the plan makes this exact; a mismatch is a bug worth stopping on
        raise RuntimeError(f"planned {rows} rows but wrote {writer.rows}")

    names = np.array(ALL_TYPES)[plan.ctype]
    body = "".join(f"{i},{t}\n" for i, t in zip(plan.customer_id.tolist(), names.tolist(), strict=True))
    truth.write_text("customer_id,behaviour_type\n" + body, encoding="utf-8", newline="\n")

    return {
        "rows": writer.rows,
        "customers": plan.n_customers,
        "files": [str(p) for p in writer.files],
        "truth_path": str(truth),
        "out_dir": str(out),
        "format": fmt,
        "mix": mix,
        "seed": seed,
        "start": start.isoformat(),
        "end": (start + dt.timedelta(days=days)).isoformat(),
        "seconds": round(time.perf_counter() - began, 2),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate_transactions.py",
        description="Write seeded synthetic transactions in the UCI Online Retail layout, with "
        "planted customer behaviour types and a ground-truth file.",
    )
    parser.add_argument("--rows", type=int, required=True, help="number of lines to write (at least 1000)")
    parser.add_argument("--out", required=True, help="data folder for the part files")
    parser.add_argument("--format", default="csv", help="csv (default) or parquet")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--chunk-rows", type=int, default=500_000, help="lines per part file (default 500000)"
    )
    parser.add_argument("--start", default="2010-12-01", help="first day, ISO date (default 2010-12-01)")
    parser.add_argument("--days", type=int, default=374, help="length of the period in days (default 374)")
    parser.add_argument(
        "--truth", default=None, help="ground-truth CSV (default <out>/../<outname>_truth.csv)"
    )
    parser.add_argument(
        "--mix",
        default="standard",
        help="planted behaviour types: standard (four, default) or extended (seven, two of them small)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; invalid arguments exit with code 2 and a message naming them.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            rows=args.rows,
            seed=args.seed,
            fmt=args.format,
            chunk_rows=args.chunk_rows,
            start=args.start,
            days=args.days,
            truth_path=args.truth,
            mix=args.mix,
        )
    except GeneratorArgumentError as exc:
        parser.error(str(exc))
    print(
        f"wrote {summary['rows']:,} rows for {summary['customers']:,} customers into "
        f"{len(summary['files'])} {summary['format']} part file(s) in {summary['out_dir']} "
        f"({summary['start']}..{summary['end']}, seed {summary['seed']}, {summary['mix']} mix); "
        f"truth: {summary['truth_path']}; {summary['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
