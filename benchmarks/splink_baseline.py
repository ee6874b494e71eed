"""Splink 5 baseline for the city benchmark: what a user would run instead of renhu.

Runs in its own venv (`.venv-bench`, pins in requirements-bench.txt) so that Splink
never touches renhu's runtime pins. It does its own work end to end, all of it timed:
read the sources file and every extract (csv in its declared encoding, xlsx, parquet,
jsonl), a simple standardization (trim, NFKC, 15-digit ids upgraded, dates parsed,
pinyin via pypinyin), then a Fellegi-Sunter model on DuckDB: u by random sampling,
m by EM, predict, cluster at a fixed threshold.

Grain of the output: `clusters.parquet` has one row per (source, record_id) that the
baseline accepted, with the Splink `cluster_id`; `splink_metrics.json` has the phase
timings and counts. The threshold is fixed in advance (not tuned on the truth), as a
user without labels would have to do.

    .venv-bench/bin/python benchmarks/splink_baseline.py --sources city/sources.yaml \
        --out /tmp/splink-out --u-pairs 1e6
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import io
import json
import re
import sys
import time
import unicodedata
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

# Only the fields the model uses are carried; the rest of an extract is never read into the model.
FIELDS = (
    "record_id",
    "name",
    "id_number",
    "sex",
    "birth_date",
    "hukou_address",
    "residence_address",
    "updated_at",
)
PLACEHOLDER_NAMES = {"无", "不详", "未知", "测试", "空", "NULL", "NONE", "NA", "N/A", "-", "--"}
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_DATE_PARTS = re.compile(r"(\d{4})\D{0,2}(\d{1,2})\D{0,2}(\d{1,2})")
_SPACES = re.compile(r"\s+")


# ---------------------------------------------------------------- reading


def _cell_text(value: object) -> str | None:
    """One cell as text the way a spreadsheet user means it: dates ISO, whole numbers without '.0'."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def _read_csv(path: Path, encoding: str) -> pa.Table:
    raw = path.read_bytes()
    if encoding.lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig"):
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            # pyarrow only parses valid UTF-8; a bad byte becomes U+FFFD rather than stopping the night.
            raw = raw.decode("utf-8", errors="replace").encode("utf-8")
    else:
        raw = raw.decode(encoding, errors="replace").encode("utf-8")
    header = next(csv.reader(io.StringIO(raw.split(b"\n", 1)[0].decode("utf-8", errors="replace"))))
    return pacsv.read_csv(
        io.BytesIO(raw),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=lambda _row: "skip"),
        convert_options=pacsv.ConvertOptions(
            column_types={column: pa.string() for column in header}, strings_can_be_null=True
        ),
    )


def _read_xlsx(path: Path) -> pa.Table:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = [str(h).strip() if h is not None else f"column_{i}" for i, h in enumerate(next(rows))]
    columns: dict[str, list[str | None]] = {h: [] for h in header}
    for row in rows:
        if row is None or all(v is None for v in row):
            continue
        for i, h in enumerate(header):
            columns[h].append(_cell_text(row[i]) if i < len(row) else None)
    book.close()
    return pa.table({h: pa.array(v, pa.string()) for h, v in columns.items()})


def _read_jsonl(path: Path) -> pa.Table:
    records: list[dict] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                records.append({k: _cell_text(v) for k, v in obj.items()})
    keys = sorted({k for r in records for k in r})
    return pa.table({k: pa.array([r.get(k) for r in records], pa.string()) for k in keys})


def _read_parquet(path: Path) -> pa.Table:
    table = pq.read_table(path)
    columns = {}
    for name in table.column_names:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns[name] = column.cast(pa.string())
        else:
            columns[name] = pa.array([_cell_text(v) for v in column.to_pylist()], pa.string())
    return pa.table(columns)


def read_source(base_dir: Path, source: dict) -> pa.Table:
    """Every file of one source, mapped to the canonical FIELDS (missing fields all null)."""
    pattern = source["path"] if Path(source["path"]).is_absolute() else str(base_dir / source["path"])
    files = (
        sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        if glob.has_magic(pattern)
        else [Path(pattern)]
    )
    file_format = source.get("format") or Path(source["path"]).suffix.lstrip(".").lower()
    mapping = {
        field: ([cols] if isinstance(cols, str) else list(cols)) for field, cols in source["columns"].items()
    }
    parts = []
    for file in files:
        if file_format == "csv":
            table = _read_csv(file, source.get("encoding", "utf-8"))
        elif file_format == "xlsx":
            table = _read_xlsx(file)
        elif file_format == "parquet":
            table = _read_parquet(file)
        elif file_format == "jsonl":
            table = _read_jsonl(file)
        else:
            raise SystemExit(f"{source['name']}: unknown format {file_format}")
        n = table.num_rows
        out = {
            "source": pa.array([source["name"]] * n, pa.string()),
            "row_order": pa.array(range(n), pa.int64()),
        }
        for field in FIELDS:
            columns = [table[c] for c in mapping.get(field, []) if c in table.column_names]
            if not columns:
                out[field] = pa.nulls(n, pa.string())
            elif len(columns) == 1:
                out[field] = columns[0]
            else:
                joined = [
                    " ".join(v.strip() for v in values if v and v.strip()) or None
                    for values in zip(*(c.to_pylist() for c in columns), strict=True)
                ]
                out[field] = pa.array(joined, pa.string())
        parts.append(pa.table(out))
    return pa.concat_tables(parts) if parts else pa.table({})


def read_sources(sources_file: Path) -> pa.Table:
    config = yaml.safe_load(sources_file.read_text(encoding="utf-8"))
    tables = [read_source(sources_file.parent, s) for s in config["sources"]]
    return pa.concat_tables([t for t in tables if t.num_rows])


# ---------------------------------------------------------------- standardization


def standard_name(raw: str | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(name, surname, pinyin, pinyin with syllables sorted) for one raw name."""
    from pypinyin import lazy_pinyin

    if raw is None:
        return None, None, None, None
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text or text.upper() in PLACEHOLDER_NAMES:
        return None, None, None, None
    if re.search(r"[\u3400-\u9fff]", text):
        name = _SPACES.sub("", text).replace("•", "·").replace(".", "·")
        syllables = [s.lower() for s in lazy_pinyin(name.replace("·", "")) if s.strip()]
        surname = name[0]
    else:
        name = _SPACES.sub(" ", re.sub(r"[^A-Za-z ]", " ", text)).strip().upper()
        if not name:
            return None, None, None, None
        syllables = name.lower().split()
        surname = None  # a latin name's order is unknown
    return name, surname, " ".join(syllables), " ".join(sorted(syllables))


def standard_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", raw)).upper()
    if re.fullmatch(r"\d{15}", text):
        body = text[:6] + "19" + text[6:]
        text = body + _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]
    return text or None


def standard_date(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", raw).strip()
    if re.fullmatch(r"\d{8}", text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    match = _DATE_PARTS.search(text)
    if not match:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3])).isoformat()
    except ValueError:
        return None


def standard_sex(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.strip().upper()
    if text in ("男", "M", "1", "MALE", "男性"):
        return "M"
    if text in ("女", "F", "2", "FEMALE", "女性"):
        return "F"
    return None


def standard_address(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = _SPACES.sub("", unicodedata.normalize("NFKC", raw))
    return text or None


def _map_distinct(values: list[str | None], function) -> list:
    # Names, dates and addresses repeat a lot; standardize each distinct value once.
    cache: dict = {}
    return [cache[v] if v in cache else cache.setdefault(v, function(v)) for v in values]


def standardize(raw: pa.Table) -> pa.Table:
    """One row per accepted record: rows with no record_id, or neither name nor id, are dropped;
    a record_id repeated in a source keeps its freshest row (updated_at, then file order)."""
    names = _map_distinct(raw["name"].to_pylist(), standard_name)
    ids = [standard_id(v) for v in raw["id_number"].to_pylist()]
    births = _map_distinct(raw["birth_date"].to_pylist(), standard_date)
    # A resident id carries the birth date: use it where the extract has none.
    births = [
        b if b is not None or i is None or len(i) != 18 else standard_date(i[6:14])
        for b, i in zip(births, ids, strict=True)
    ]
    hukou = _map_distinct(raw["hukou_address"].to_pylist(), standard_address)
    residence = _map_distinct(raw["residence_address"].to_pylist(), standard_address)
    table = pa.table(
        {
            "source": raw["source"],
            "record_id": raw["record_id"],
            "row_order": raw["row_order"],
            "updated_at": pa.array(_map_distinct(raw["updated_at"].to_pylist(), standard_date), pa.string()),
            "name": pa.array([n[0] for n in names], pa.string()),
            "surname": pa.array([n[1] for n in names], pa.string()),
            "name_pinyin": pa.array([n[2] for n in names], pa.string()),
            "name_pinyin_sorted": pa.array([n[3] for n in names], pa.string()),
            "id_number": pa.array(ids, pa.string()),
            "birth_date": pa.array(births, pa.string()),
            "sex": pa.array(_map_distinct(raw["sex"].to_pylist(), standard_sex), pa.string()),
            # Where someone lives is the comparable fact; the household address stands in when a source has no other.
            "address": pa.array(
                [r if r is not None else h for r, h in zip(residence, hukou, strict=True)], pa.string()
            ),
        }
    )
    con = duckdb.connect()
    con.register("std", table)
    kept = con.sql(
        """
        with usable as (
            select * from std
            where record_id is not null and trim(record_id) <> '' and (name is not null or id_number is not null)
        ),
        ranked as (
            select *, row_number() over (
                partition by source, record_id order by updated_at desc nulls last, row_order desc
            ) as freshness
            from usable
        )
        select row_number() over () as unique_id, * exclude (freshness, row_order, updated_at)
        from ranked where freshness = 1
        """
    ).arrow()
    con.close()
    return kept.read_all() if hasattr(kept, "read_all") else kept


# ---------------------------------------------------------------- model


def build_settings():
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    # Name and pinyin are one comparison, not two: they are the same evidence and
    # Fellegi-Sunter would count it twice if they were separate.
    name_comparison = cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.NullLevel("name_pinyin"),
            cll.ExactMatchLevel("name").configure(tf_adjustment_column="name"),
            cll.ExactMatchLevel("name_pinyin"),
            cll.ExactMatchLevel("name_pinyin_sorted"),
            cll.JaroWinklerLevel("name_pinyin", 0.9),
            cll.JaroWinklerLevel("name_pinyin", 0.75),
            cll.ElseLevel(),
        ],
        comparison_description="name: exact, same pinyin, same syllables, pinyin Jaro-Winkler",
    )
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=[
            block_on("id_number"),
            block_on("name", "birth_date"),
            block_on("surname", "birth_date"),
            block_on("name_pinyin_sorted", "birth_date"),
        ],
        comparisons=[
            # One typo or one swap of neighbours; twins and namesakes born the same day in one county
            # have ids two edits apart (sequence digit and check character), so no level at 2.
            cl.DamerauLevenshteinAtThresholds("id_number", [1]),
            name_comparison,
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.JaroWinklerAtThresholds("address", [0.95, 0.8]),
        ],
        additional_columns_to_retain=["source", "record_id"],
        retain_intermediate_calculation_columns=False,
    )


def run(sources_file: Path, out_dir: Path, u_pairs: float, threshold: float, seed: int) -> dict:
    from splink import DuckDBAPI, Linker, block_on

    out_dir.mkdir(parents=True, exist_ok=True)
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 3)
        print(f"splink: {name} {phases[name]:.1f}s", file=sys.stderr, flush=True)
        return now

    raw = read_sources(sources_file)
    t = phase("read", started)
    records = standardize(raw)
    t = phase("standardize", t)

    db_api = DuckDBAPI()
    df = db_api.register(records, dataset_display_name="city_records")
    linker = Linker(df, build_settings(), log_level="WARNING")
    linker.training.estimate_probability_two_random_records_match([block_on("id_number", "name")], recall=0.7)
    t = phase("prior", t)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=seed)
    t = phase("estimate_u", t)
    # Two EM sessions so that every comparison gets an m estimate from pairs it did not block on.
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("id_number"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname", "birth_date"))
    t = phase("estimate_m_em", t)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    pairs = db_api.duckdb_con.sql(f"select count(*) from {predictions.physical_name}").fetchall()[0][0]
    t = phase("predict", t)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    db_api.duckdb_con.sql(
        f"copy (select source, record_id, cast(cluster_id as varchar) as cluster_id from {clusters.physical_name}) "
        f"to '{out_dir / 'clusters.parquet'}' (format parquet)"
    )
    phase("cluster_and_write", t)
    total = round(time.perf_counter() - started, 3)
    clusters_n = db_api.duckdb_con.sql(
        f"select count(distinct cluster_id) from {clusters.physical_name}"
    ).fetchall()[0][0]
    metrics = {
        "splink_version": __import__("splink").__version__,
        "duckdb_version": duckdb.__version__,
        "records_read": raw.num_rows,
        "records_linked": records.num_rows,
        "u_max_pairs": u_pairs,
        "predict_threshold_match_probability": 0.5,
        "cluster_threshold_match_probability": threshold,
        "pairs_scored_above_0_5": pairs,
        "clusters": clusters_n,
        "phases_seconds": phases,
        "seconds": total,
    }
    (out_dir / "splink_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, required=True, help="the city's sources.yaml")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for clusters.parquet and splink_metrics.json"
    )
    parser.add_argument(
        "--u-pairs", type=float, default=1e6, help="random pairs for u estimation (default 1e6)"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.9, help="match probability to cluster at (default 0.9)"
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    metrics = run(args.sources, args.out, args.u_pairs, args.threshold, args.seed)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
