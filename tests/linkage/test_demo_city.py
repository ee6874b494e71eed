"""The demo city generator: files in the declared formats, an answer key that matches
the files row for row, valid identity numbers where they are meant to be valid, and
the planted cases present."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import openpyxl
import polars as pl
import pytest
import yaml

from linkage.demo_city import generate_city
from linkage.demo_city.people import id_check_ok

KINDS = {"hukou_residence_split", "multi_household", "roster_conflict", "unregistered_resident",
         "two_heads", "no_head", "child_older_than_parent", "spouse_under_legal_age"}
REASONS = {"wrong_column_count", "undecodable_bytes", "unreadable_row", "missing_record_id", "no_name_or_id",
           "superseded_duplicate_record_id"}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return generate_city(tmp_path_factory.mktemp("city"), 2000)


@pytest.fixture(scope="module")
def spec(city):
    return {s["name"]: s for s in yaml.safe_load(city.sources_file.read_text(encoding="utf-8"))["sources"]}


@pytest.fixture(scope="module")
def truth(city):
    return pl.read_parquet(city.truth_dir / "records.parquet")


@pytest.fixture(scope="module")
def people(city):
    return pl.read_parquet(city.truth_dir / "persons.parquet")


def _csv_rows(path: Path, encoding: str) -> tuple[list[str], list[list[str] | None]]:
    """Header and data rows as the raw bytes split them; None for a row that does not decode."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    assert lines[-1] == b""
    header = lines[0].decode(encoding).split(",")
    rows: list[list[str] | None] = []
    for raw in lines[1:-1]:
        try:
            rows.append(raw.decode(encoding).split(","))
        except UnicodeDecodeError:
            rows.append(None)
    return header, rows


def _extract_frame(city, s: dict) -> pl.DataFrame:
    """Every data row of a source as strings, with row_number; damaged rows left out."""
    path = city.sources_file.parent / s["path"]
    if s["format"] == "csv":
        header, rows = _csv_rows(path, s.get("encoding", "utf-8"))
        recs = [dict(zip(header, r, strict=True), row_number=i + 1)
                for i, r in enumerate(rows) if r is not None and len(r) == len(header)]
        return pl.DataFrame(recs, infer_schema_length=None)
    if s["format"] == "jsonl":
        recs = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            try:
                recs.append({**json.loads(line), "row_number": i + 1})
            except json.JSONDecodeError:
                pass
        return pl.DataFrame(recs, infer_schema_length=None)
    if s["format"] == "parquet":
        df = pl.read_parquet(path)
        return df.with_columns(pl.exclude(pl.String).cast(pl.String)).with_row_index("row_number", 1)
    ws = openpyxl.load_workbook(path, read_only=True).active
    it = ws.iter_rows(values_only=True)
    header = list(next(it))
    recs = [dict(zip(header, [None if v is None else str(v) for v in r], strict=True), row_number=i + 1)
            for i, r in enumerate(it)]
    return pl.DataFrame(recs, infer_schema_length=None)


def _id_col(s: dict) -> str:
    return s["columns"]["id_number"]


def test_sources_yaml_follows_the_contract(city, spec):
    assert list(spec) == ["police_hukou", "residence_registration", "health_family_planning", "social_insurance",
                          "civil_affairs_roster", "schools", "rental_housing"]
    for name, s in spec.items():
        assert re.fullmatch(r"[a-z0-9_]+", name)
        assert re.search(r"[\u4e00-\u9fff]", s["department"]), s
        assert s["kind"] in {"hukou", "residence", "roster", "rental", "generic"}
        assert not Path(s["path"]).is_absolute() and (city.sources_file.parent / s["path"]).is_file()
        assert ("encoding" in s) == (s["format"] == "csv")
        assert "record_id" in s["columns"] and ({"name", "id_number"} & set(s["columns"]))
        header = _extract_frame(city, s).columns
        for col in s["columns"].values():
            for c in col if isinstance(col, list) else [col]:
                assert c in header, (name, c)
    assert spec["social_insurance"]["columns"]["name"] == ["xing", "ming"]
    assert {s["kind"] for s in spec.values()} == {"hukou", "residence", "roster", "rental", "generic"}
    # pinyin-initial headers, as real systems have them
    assert spec["residence_registration"]["columns"]["id_number"] == "gmsfhm"
    assert spec["schools"]["columns"]["name"] == "xm"


def test_encodings_are_the_declared_ones(city, spec, truth):
    police = (city.out_dir / spec["police_hukou"]["path"]).read_bytes()
    assert spec["police_hukou"]["encoding"] == "gb18030"
    with pytest.raises(UnicodeDecodeError):
        police.decode("utf-8")
    header = police.split(b"\r\n")[0].decode("gb18030")
    assert header.startswith("记录编号,姓名,性别")
    health = (city.out_dir / spec["health_family_planning"]["path"]).read_bytes()
    assert health.startswith(b"\xef\xbb\xbf")
    # only the rows meant to carry bad bytes fail to decode
    for name in ("police_hukou", "health_family_planning", "schools"):
        s = spec[name]
        _, rows = _csv_rows(city.out_dir / s["path"], s["encoding"])
        bad = truth.filter((pl.col("source") == name) & (pl.col("expected_reason_code") == "undecodable_bytes"))
        assert sum(r is None for r in rows) == bad.height >= 1
    schools = (city.out_dir / spec["schools"]["path"]).read_bytes()
    assert spec["schools"]["encoding"] == "gbk"
    assert schools.split(b"\r\n")[0].decode("gbk").startswith("xsbh,xm")
    (city.out_dir / spec["rental_housing"]["path"]).read_bytes().decode("utf-8")


def test_xlsx_holds_real_date_cells_and_some_typed_text(city, spec):
    ws = openpyxl.load_workbook(city.out_dir / spec["residence_registration"]["path"], read_only=True).active
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    b, r = header.index("csrq"), header.index("djrq")
    kinds = [type(row[b]).__name__ for row in rows[1:]]
    assert kinds.count("datetime") > 0.9 * len(kinds)
    assert kinds.count("str") > 0 and kinds.count("int") > 0  # 1990年1月2日 and 19900102
    assert all(type(row[r]).__name__ == "datetime" for row in rows[1:])


def test_truth_has_exactly_one_row_per_data_row(city, spec, truth):
    for name, s in spec.items():
        path = city.out_dir / s["path"]
        if s["format"] == "csv":
            n = len(_csv_rows(path, s["encoding"])[1])
        elif s["format"] == "jsonl":
            n = len(path.read_bytes().splitlines())
        elif s["format"] == "parquet":
            n = pl.read_parquet(path).height
        else:
            n = openpyxl.load_workbook(path, read_only=True).active.max_row - 1
        t = truth.filter(pl.col("source") == name)
        assert t.height == n, name
        assert t["file"].unique().to_list() == [s["path"]]
        assert t["row_number"].to_list() == list(range(1, n + 1))
    assert truth.height == city.records
    assert set(truth["expected_outcome"].unique()) == {"accepted", "quarantined"}
    q = truth.filter(pl.col("expected_outcome") == "quarantined")
    assert set(q["expected_reason_code"].unique()) == REASONS
    assert truth.filter(pl.col("expected_outcome") == "accepted")["expected_reason_code"].null_count() == \
        truth.filter(pl.col("expected_outcome") == "accepted").height
    # we generated every row, so we know who each is
    assert truth["true_person_id"].null_count() == 0


def test_damaged_rows_are_damaged_as_the_truth_says(city, spec, truth):
    for name, s in spec.items():
        t = truth.filter(pl.col("source") == name)
        reason = dict(zip(t["row_number"].to_list(), t["expected_reason_code"].to_list(), strict=True))
        path = city.out_dir / s["path"]
        if s["format"] == "csv":
            header, rows = _csv_rows(path, s["encoding"])
            for i, r in enumerate(rows, start=1):
                if r is None:
                    assert reason[i] == "undecodable_bytes", (name, i)
                elif len(r) != len(header):
                    assert reason[i] == "wrong_column_count", (name, i)
                else:
                    assert reason[i] not in ("undecodable_bytes", "wrong_column_count"), (name, i)
        if s["format"] == "jsonl":
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    json.loads(line)
                    assert reason[i] != "unreadable_row"
                except json.JSONDecodeError:
                    assert reason[i] == "unreadable_row"
        frame = _extract_frame(city, s)
        rid = s["columns"]["record_id"]
        got = frame.join(t, on="row_number")
        # an empty record id is exactly a missing_record_id row
        empty = got.filter(pl.col(rid).is_null() | (pl.col(rid) == ""))
        assert (empty["expected_reason_code"] == "missing_record_id").all()
        assert got.filter(pl.col("expected_reason_code") == "missing_record_id").height == empty.height
        # a record id repeated in the source: all but the freshest are superseded
        rep = got.filter(pl.col(rid).is_not_null() & (pl.col(rid) != "")).group_by(rid).len()
        assert got.filter(pl.col("expected_reason_code") == "superseded_duplicate_record_id").height == \
            int((rep["len"] - 1).sum()), name
        # a superseded row is older than the row that replaced it
        upd = s["columns"]["updated_at"]
        sup = got.filter(pl.col("expected_reason_code") == "superseded_duplicate_record_id")
        kept = got.filter(pl.col("expected_outcome") == "accepted")
        pairs = sup.join(kept, on=rid, suffix="_new")
        assert pairs.height == sup.height
        assert (pairs[upd] < pairs[upd + "_new"]).all(), name


def test_identity_numbers_are_valid_unless_meant_otherwise(city, spec, truth, people):
    assert people["id_number"].n_unique() == people.height
    assert all(id_check_ok(x) for x in people["id_number"])
    ids = dict(zip(people["true_person_id"], people["id_number"], strict=True))
    households = dict(zip(people["true_person_id"], people["hukou_household"], strict=True))
    by_household: dict[str, set[str]] = {}
    for p, h in households.items():
        by_household.setdefault(h, set()).add(ids[p])
    checked = 0
    seen_tags = set()
    for name, s in spec.items():
        frame = _extract_frame(city, s).join(truth.filter(pl.col("source") == name), on="row_number")
        for v, tags, who in zip(frame[_id_col(s)].to_list(), frame["hard_cases"].to_list(),
                                frame["true_person_id"].to_list(), strict=True):
            seen_tags.update(tags)
            if "missing_id" in tags:
                assert v is None or v == ""
            elif "noisy_id" in tags:
                # MOD 11-2 catches every single-digit error and neighbour swap
                assert len(v) == 18 and not id_check_ok(v) and v != ids[who]
            elif "id15" in tags:
                assert v == ids[who][:6] + ids[who][8:17]
            elif "shared_parent_id" in tags:
                assert v != ids[who] and v in by_household[households[who]] and id_check_ok(v)
            elif v:
                assert v == ids[who] and id_check_ok(v), (name, v)
                checked += 1
    assert checked > 3000
    assert seen_tags == {"noisy_id", "id15", "traditional_name", "homophone_name", "typo_name", "romanized_name",
                         "twin", "shared_parent_id", "missing_id", "date_format", "duplicate_in_source",
                         "popular_name"}


def test_people_are_consistent(people):
    # the id's birth date and sex digit agree with the person
    ymd = people["birth_date"].dt.strftime("%Y%m%d")
    assert (people["id_number"].str.slice(6, 8) == ymd).all()
    odd = people["id_number"].str.slice(16, 1).cast(pl.Int32) % 2 == 1
    assert ((people["sex"] == "M") == odd).all()
    assert people["hukou_region"].str.len_chars().eq(9).all()
    twins = people.filter(pl.col("twin_of").is_not_null())
    assert twins.height >= 4
    pair = twins.join(people, left_on="twin_of", right_on="true_person_id", suffix="_t")
    assert (pair["birth_date"] == pair["birth_date_t"]).all()
    assert (pair["hukou_household"] == pair["hukou_household_t"]).all()
    assert (pair["id_number"].str.slice(0, 14) == pair["id_number_t"].str.slice(0, 14)).all()
    assert (pair["name"] != pair["name_t"]).all()
    assert people.filter(pl.col("name").str.contains("·")).height > 0
    assert people.filter(pl.col("name").is_in(["张伟", "王芳", "李娜", "刘洋", "王伟", "李静"])).height >= 5
    ages = (2026 - people["birth_date"].dt.year())
    assert ages.min() <= 1 and 85 <= ages.max() <= 96


def test_floating_and_split_shares_are_as_designed(people):
    residents = people.filter(pl.col("residence_region").is_not_null())
    floating = residents["is_floating"].mean()
    assert 0.15 <= floating <= 0.25
    # floating people's hukou is outside the city, locals' inside
    assert not residents.filter(pl.col("is_floating"))["hukou_region"].str.starts_with("3306").any()
    assert people.filter(~pl.col("is_floating"))["hukou_region"].str.starts_with("3306").all()
    locals_ = residents.filter(~pl.col("is_floating"))
    split = (locals_["hukou_region"] != locals_["residence_region"]).mean()
    assert 0.05 <= split <= 0.11


def test_every_finding_kind_is_planted(city):
    f = pl.read_parquet(city.truth_dir / "findings.parquet")
    assert set(f["kind"].unique()) == KINDS
    assert f.select("kind", "true_person_id").is_duplicated().sum() == 0
    counts = dict(f.group_by("kind").len().iter_rows())
    # the common kinds are common, the register errors rare
    assert counts["hukou_residence_split"] > 50 and counts["unregistered_resident"] > 50
    assert counts["two_heads"] < 30 and counts["multi_household"] < 30


def test_findings_match_the_register_rows(city, spec, truth, people):
    f = pl.read_parquet(city.truth_dir / "findings.parquet")
    s = spec["police_hukou"]
    police = _extract_frame(city, s).join(truth.filter(pl.col("source") == "police_hukou"), on="row_number")
    police = police.filter(pl.col("expected_outcome") == "accepted")
    multi = f.filter(pl.col("kind") == "multi_household")["true_person_id"]
    n_hh = police.group_by("true_person_id").agg(pl.col("户号").n_unique())
    assert (n_hh.filter(pl.col("true_person_id").is_in(multi.implode()))["户号"] >= 2).all()
    assert n_hh.filter(pl.col("户号") >= 2).height == multi.len()
    young = f.filter(pl.col("kind") == "spouse_under_legal_age")["true_person_id"]
    rows = police.filter(pl.col("true_person_id").is_in(young.implode()))
    assert rows["与户主关系"].is_in(["妻", "夫", "配偶"]).any()
    heads2 = f.filter(pl.col("kind") == "two_heads")["true_person_id"]
    assert (police.filter(pl.col("true_person_id").is_in(heads2.implode()))["与户主关系"] == "户主").all()


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path):
    a = generate_city(tmp_path / "a", 300, seed=7)
    b = generate_city(tmp_path / "b", 300, seed=7)
    generate_city(tmp_path / "c", 300, seed=8)
    assert a.records == b.records
    da, db, dc = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert da == db
    assert da["extracts/police_hukou.csv"] != dc["extracts/police_hukou.csv"]


def test_old_systems_write_former_township_names(city, spec):
    from linkage.demo_city.places import FORMER_NAMES

    health = _extract_frame(city, spec["health_family_planning"])["现住址"].drop_nulls()
    former = health.str.contains("|".join(FORMER_NAMES.values()))
    current = health.str.contains("|".join(FORMER_NAMES))
    assert former.sum() > 0 and current.sum() > 0
    # the register, a current system, writes only current names
    police = _extract_frame(city, spec["police_hukou"])["户籍地址"]
    assert not police.str.contains("|".join(FORMER_NAMES.values())).any()


def test_namesakes_of_the_same_birth_year(people):
    from linkage.demo_city.names_data import POPULAR_FULL_NAMES

    pop = people.filter(pl.col("name").is_in(list(POPULAR_FULL_NAMES)))
    same_year = pop.group_by("name", pl.col("birth_date").dt.year()).agg(
        pl.col("true_person_id").n_unique().alias("n"), pl.col("hukou_household").n_unique().alias("h"))
    assert same_year.filter((pl.col("n") >= 2) & (pl.col("h") >= 2)).height >= 2


def test_a_residence_extract_over_the_sheet_limit_is_split_over_workbooks(tmp_path, monkeypatch):
    from linkage.demo_city import writers

    monkeypatch.setattr(writers, "XLSX_MAX_ROWS", 150)
    city = generate_city(tmp_path, 2000, seed=3)
    spec = {s["name"]: s for s in yaml.safe_load(city.sources_file.read_text(encoding="utf-8"))["sources"]}
    pattern = spec["residence_registration"]["path"]
    assert pattern == "extracts/residence_registration_*.xlsx"
    files = sorted(tmp_path.glob(pattern))
    assert len(files) >= 2
    truth = pl.read_parquet(city.truth_dir / "records.parquet").filter(pl.col("source") == "residence_registration")
    for f in files:
        rows = openpyxl.load_workbook(f, read_only=True).active.max_row - 1
        t = truth.filter(pl.col("file") == str(f.relative_to(tmp_path)))
        assert t["row_number"].to_list() == list(range(1, rows + 1))
    assert truth["file"].n_unique() == len(files)
