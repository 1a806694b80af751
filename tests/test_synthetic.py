"""Tests for segspark/synthetic.py, the Online Retail-like data generator (numpy + pyarrow only, no Spark)."""

from __future__ import annotations

import csv
import datetime as dt
import re
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country".split(",")
START = dt.datetime(2010, 12, 1)
DAYS = 374
END = START + dt.timedelta(days=DAYS)


from segspark import synthetic as gen  # noqa: E402
from tests.helpers.data import read_truth  # noqa: E402


def _read_csv_parts(folder: Path) -> tuple[list[str], list[list[str]]]:
    """Header of the first part and the data rows of all parts, in order; checks every header."""
    rows: list[list[str]] = []
    header = None
    for part in sorted(folder.glob("part-*.csv")):
        with part.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            this_header = next(reader)
            header = header or this_header
            assert this_header == header
            rows.extend(reader)
    return header, rows


def _data_bytes(folder: Path) -> bytes:
    """Concatenated part files without their header lines."""
    out = []
    for part in sorted(folder.glob("part-*.csv")):
        head, _, body = part.read_bytes().partition(b"\n")
        assert head.decode().split(",") == HEADER
        out.append(body)
    return b"".join(out)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """One 20,000-row CSV run shared by the read-only tests."""
    base = tmp_path_factory.mktemp("gen")
    summary = gen.generate(base / "tx", rows=20_000, seed=7, chunk_rows=6_000)
    header, rows = _read_csv_parts(base / "tx")
    return summary, header, rows, read_truth(Path(summary["truth_path"]))


# ---------------------------------------------------------------------------------------------
# Determinism and size
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = gen.generate(tmp_path / "a", rows=5_000, seed=3, chunk_rows=2_000)
    b = gen.generate(tmp_path / "b", rows=5_000, seed=3, chunk_rows=2_000)
    gen.generate(tmp_path / "c", rows=5_000, seed=4, chunk_rows=2_000)
    assert [Path(f).name for f in a["files"]] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    for fa, fb in zip(a["files"], b["files"], strict=True):
        assert Path(fa).read_bytes() == Path(fb).read_bytes()
    assert Path(a["truth_path"]).read_bytes() == Path(b["truth_path"]).read_bytes()
    assert _data_bytes(tmp_path / "a") != _data_bytes(tmp_path / "c")


def test_chunk_size_does_not_change_content(tmp_path):
    small = gen.generate(tmp_path / "small", rows=6_000, seed=11, chunk_rows=1_000)
    large = gen.generate(tmp_path / "large", rows=6_000, seed=11, chunk_rows=500_000)
    assert len(small["files"]) == 6 and len(large["files"]) == 1
    assert _data_bytes(tmp_path / "small") == _data_bytes(tmp_path / "large")
    assert Path(small["truth_path"]).read_bytes() == Path(large["truth_path"]).read_bytes()
    for part in small["files"]:
        assert Path(part).read_bytes().count(b"\n") == 1_000 + 1  # rows plus header


@pytest.mark.parametrize("rows", [1_000, 1_234, 7_777])
def test_row_count_is_met(tmp_path, rows):
    summary = gen.generate(tmp_path / "tx", rows=rows, seed=5, chunk_rows=3_000)
    _, data = _read_csv_parts(tmp_path / "tx")
    assert summary["rows"] == len(data)
    assert abs(len(data) - rows) <= 0.01 * rows
    assert summary["customers"] == max(50, round(rows / 90))


def test_summary_and_default_truth_location(sample):
    summary, _, rows, truth = sample
    out = Path(summary["out_dir"])
    assert Path(summary["truth_path"]) == out.parent / "tx_truth.csv"
    assert sorted(p.name for p in out.iterdir()) == [Path(f).name for f in summary["files"]]
    assert summary["rows"] == len(rows) and summary["customers"] == len(truth)


# ---------------------------------------------------------------------------------------------
# Layout and formats
# ---------------------------------------------------------------------------------------------

PATTERNS = {
    "InvoiceNo": re.compile(r"C?\d{6}"),
    "StockCode": re.compile(r"\d{5}[A-Z]?|POST|M|DOT|BANK CHARGES"),
    "Description": re.compile(r"|[A-Z0-9][A-Za-z0-9 ,'/\-]*"),
    "Quantity": re.compile(r"-?[1-9]\d*"),
    "InvoiceDate": re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:00"),
    "UnitPrice": re.compile(r"0|\d+\.\d{2}"),
    "CustomerID": re.compile(r"|[1-9]\d{4,}\.0"),
    "Country": re.compile(r"[A-Z][A-Za-z ]+"),
}


def test_header_and_column_formats(sample):
    _, header, rows, _ = sample
    assert header == HEADER
    for row in rows:
        assert len(row) == 8
        for name, value in zip(HEADER, row, strict=True):
            assert PATTERNS[name].fullmatch(value), (name, value, row)
        stamp = dt.datetime.strptime(row[4], "%Y-%m-%d %H:%M:%S")
        assert START <= stamp < END
    assert any("," in row[2] for row in rows), "some descriptions should contain commas"
    assert Counter(row[7] for row in rows).most_common(1)[0][0] == "United Kingdom"
    assert len({row[7] for row in rows}) >= 10


def test_descriptions_with_commas_are_quoted(sample):
    summary, _, _, _ = sample
    text = Path(summary["files"][0]).read_text(encoding="utf-8")
    quoted = re.findall(r',"([^"]*)",', text)
    assert quoted and all("," in q for q in quoted)


def test_parquet_has_same_columns_and_content(tmp_path):
    gen.generate(tmp_path / "csv", rows=4_000, seed=9, chunk_rows=1_500)
    summary = gen.generate(tmp_path / "pq", rows=4_000, seed=9, fmt="parquet", chunk_rows=1_500)
    assert [Path(f).name for f in summary["files"]] == [f"part-{i:05d}.parquet" for i in range(3)]
    table = pa.concat_tables(pq.read_table(f) for f in summary["files"])
    assert table.column_names == HEADER
    assert all(field.type == pa.string() for field in table.schema)
    _, csv_rows = _read_csv_parts(tmp_path / "csv")
    pq_rows = [["" if v is None else v for v in row.values()] for row in table.to_pylist()]
    assert pq_rows == csv_rows


# ---------------------------------------------------------------------------------------------
# Quirks
# ---------------------------------------------------------------------------------------------


def test_quirk_rates(sample):
    _, _, rows, _ = sample
    n = len(rows)
    missing = sum(r[6] == "" for r in rows) / n
    cancels = [r for r in rows if r[0].startswith("C")]
    duplicates = (n - len({tuple(r) for r in rows})) / n
    zero = [r for r in rows if r[5] == "0"]
    empty_desc = sum(r[2] == "" for r in rows) / n
    assert 0.22 <= missing <= 0.28
    assert 0.01 <= len(cancels) / n <= 0.02
    assert all(int(r[3]) < 0 for r in cancels)
    assert all(int(r[3]) > 0 for r in rows if not r[0].startswith("C"))
    assert 0.007 <= duplicates <= 0.013
    assert 0.003 <= len(zero) / n <= 0.008
    assert all(r[6] != "" for r in zero)
    assert 0.001 <= empty_desc <= 0.006


def test_guest_invoices_and_countries_are_consistent(sample):
    _, _, rows, _ = sample
    ids_per_invoice = defaultdict(set)
    countries_per_customer = defaultdict(set)
    for r in rows:
        ids_per_invoice[r[0]].add(r[6])
        if r[6]:
            countries_per_customer[r[6]].add(r[7])
    assert all(len(ids) == 1 for ids in ids_per_invoice.values())
    assert all(len(c) == 1 for c in countries_per_customer.values())


def test_cancellations_copy_an_earlier_purchase_of_the_same_customer(sample):
    _, _, rows, _ = sample
    purchases = defaultdict(list)
    for r in rows:
        if not r[0].startswith("C"):
            purchases[(r[6], r[1], r[5])].append((r[4], int(r[3])))
    for r in (r for r in rows if r[0].startswith("C")):
        assert r[6] != ""
        matches = purchases[(r[6], r[1], r[5])]
        assert any(when <= r[4] and qty >= -int(r[3]) for when, qty in matches), r


# ---------------------------------------------------------------------------------------------
# Planted behaviour types
# ---------------------------------------------------------------------------------------------


def _customers(rows):
    """Per customer id (integer string): purchase dates and distinct purchase invoices."""
    dates, invoices = defaultdict(list), defaultdict(set)
    for r in rows:
        if r[6] and not r[0].startswith("C"):
            cid = r[6][:-2]
            dates[cid].append(dt.datetime.strptime(r[4], "%Y-%m-%d %H:%M:%S"))
            invoices[cid].add(r[0])
    return dates, invoices


def test_truth_covers_every_customer_with_planned_shares(sample):
    _, _, rows, truth = sample
    in_data = {r[6][:-2] for r in rows if r[6]}
    assert in_data == set(truth)
    assert all(re.fullmatch(r"[1-9]\d*", cid) for cid in truth)
    shares = Counter(truth.values())
    assert set(shares) == {"champions", "loyal_regulars", "one_time_new", "lapsed"}
    for name, expected in zip(gen.BEHAVIOUR_TYPES, gen.TYPE_SHARES, strict=True):
        assert abs(shares[name] / len(truth) - expected) <= 0.03, name


def test_truth_file_lies_outside_the_data_folder(sample):
    summary, *_ = sample
    assert not Path(summary["truth_path"]).is_relative_to(Path(summary["out_dir"]))


def test_types_separate_on_frequency_recency_and_tenure(sample):
    _, _, rows, truth = sample
    dates, invoices = _customers(rows)
    by_type = defaultdict(list)
    for cid, kind in truth.items():
        by_type[kind].append(cid)

    def median_invoices(kind):
        return statistics.median(len(invoices[c]) for c in by_type[kind])

    assert median_invoices("champions") > median_invoices("loyal_regulars") > median_invoices("lapsed")
    assert median_invoices("loyal_regulars") > median_invoices("one_time_new")
    assert min(len(invoices[c]) for c in by_type["champions"]) >= 20
    assert max(len(invoices[c]) for c in by_type["one_time_new"]) <= 2
    assert all(min(dates[c]) >= END - dt.timedelta(days=45) for c in by_type["one_time_new"])
    assert all(max(dates[c]) < START + dt.timedelta(days=0.4 * DAYS) for c in by_type["lapsed"])
    assert all(max(dates[c]) >= END - dt.timedelta(days=31) for c in by_type["loyal_regulars"])
    assert all(max(dates[c]) >= END - dt.timedelta(days=7) for c in by_type["champions"])


def test_types_separate_on_spend(sample):
    _, _, rows, truth = sample
    spend = defaultdict(float)
    for r in rows:
        if r[6] and not r[0].startswith("C"):
            spend[r[6][:-2]] += int(r[3]) * float(r[5])
    median = {}
    for kind in gen.BEHAVIOUR_TYPES:
        median[kind] = statistics.median(spend[c] for c, k in truth.items() if k == kind)
    assert median["champions"] > 4 * median["loyal_regulars"]
    assert median["loyal_regulars"] > 3 * median["lapsed"]
    assert median["lapsed"] > 2 * median["one_time_new"]


def test_extended_mix_plants_seven_types_with_their_shares_and_behaviours(tmp_path):
    summary = gen.generate(tmp_path / "tx", rows=100_000, seed=3, mix="extended")
    assert summary["mix"] == "extended" and summary["customers"] == 1_111
    _, rows = _read_csv_parts(tmp_path / "tx")
    truth = read_truth(Path(summary["truth_path"]))
    counts = Counter(truth.values())
    assert set(counts) == set(gen.MIXES["extended"])
    for name, share in gen.MIXES["extended"].items():
        assert abs(counts[name] - share * 1_111) <= 1, name  # exact quotas
    dates, invoices = _customers(rows)
    spend, lines = defaultdict(float), defaultdict(int)
    for r in rows:
        if r[6] and not r[0].startswith("C"):
            spend[r[6][:-2]] += int(r[3]) * float(r[5])
            lines[r[6][:-2]] += 1

    def ids(kind):
        return [c for c, k in truth.items() if k == kind]

    def median(values):
        return statistics.median(values)

    def basket(c):
        return spend[c] / len(invoices[c])

    new = ids("one_time_new")
    assert all(len(invoices[c]) == 1 for c in new)
    assert all(END - dt.timedelta(days=46) <= d < END - dt.timedelta(days=14) for c in new for d in dates[c])
    assert median(lines[c] for c in new) >= 4
    occasional = ids("occasional")
    assert all(min(dates[c]) >= START + dt.timedelta(days=int(0.45 * DAYS)) for c in occasional)
    assert all(
        END - dt.timedelta(days=111) <= max(dates[c]) < END - dt.timedelta(days=39) for c in occasional
    )
    assert all(len(invoices[c]) >= 100 for c in ids("very_high_value"))
    # The small groups stand out: very-high-value on spend, wholesale on basket value.
    top_spend = {k: median(spend[c] for c in ids(k)) for k in ("very_high_value", "champions", "wholesale")}
    assert top_spend["very_high_value"] > 10 * max(top_spend["champions"], top_spend["wholesale"])
    wholesale_basket = median(basket(c) for c in ids("wholesale"))
    assert wholesale_basket > 4 * median(basket(c) for c in ids("champions"))
    assert median(basket(c) for c in occasional) > 1.5 * median(basket(c) for c in ids("lapsed"))


def test_standard_mix_is_the_default_and_knows_four_types(sample):
    summary, _, _, truth = sample
    assert summary["mix"] == "standard"
    assert set(truth.values()) == set(gen.BEHAVIOUR_TYPES) == set(gen.MIXES["standard"])


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def test_main_prints_one_line_summary(tmp_path, capsys):
    truth = tmp_path / "labels" / "truth.csv"
    code = gen.main(["--rows", "2000", "--out", str(tmp_path / "tx"), "--seed", "1", "--truth", str(truth)])
    assert code == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and "2,000 rows" in out
    assert truth.exists() and (tmp_path / "tx" / "part-00000.csv").exists()


def test_rerun_replaces_earlier_part_files(tmp_path):
    gen.generate(tmp_path / "tx", rows=3_000, seed=2, chunk_rows=1_000)
    summary = gen.generate(tmp_path / "tx", rows=3_000, seed=2, chunk_rows=2_000)
    assert sorted(p.name for p in (tmp_path / "tx").iterdir()) == ["part-00000.csv", "part-00001.csv"]
    assert summary["rows"] == 3_000


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--rows", "999"], "--rows"),
        (["--rows", "lots"], "--rows"),
        (["--format", "xlsx"], "--format"),
        (["--days", "10"], "--days"),
        (["--start", "12/1/2010"], "--start"),
        (["--chunk-rows", "5"], "--chunk-rows"),
        (["--seed", "-1"], "--seed"),
        (["--mix", "nine"], "--mix"),
        (["--truth", "{out}/truth.csv"], "--truth"),
    ],
)
def test_bad_arguments_exit_with_code_2(tmp_path, capsys, extra, option):
    out = tmp_path / "tx"
    argv = ["--rows", "2000", "--out", str(out)] + [a.format(out=out) for a in extra]
    with pytest.raises(SystemExit) as info:
        gen.main(argv)
    assert info.value.code == 2
    assert option in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_out_folder_with_foreign_files_is_refused(tmp_path, capsys):
    out = tmp_path / "tx"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as info:
        gen.main(["--rows", "2000", "--out", str(out)])
    assert info.value.code == 2 and "--out" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_generate_raises_value_error_for_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="--rows"):
        gen.generate(tmp_path / "tx", rows=10)
    with pytest.raises(ValueError, match="--format"):
        gen.generate(tmp_path / "tx", rows=2_000, fmt="json")


def test_runs_as_a_script(tmp_path):
    """scripts/generate_transactions.py works from a checkout, also where segspark is not installed."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "generate_transactions.py"

    result = subprocess.run(
        [sys.executable, str(script), "--rows", "1000", "--out", str(tmp_path / "tx"), "--format", "parquet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert pq.read_table(tmp_path / "tx" / "part-00000.parquet").num_rows == 1_000
