"""explain recomputes a pair's score from the stored model: it must agree with the run, and mask."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import numpy as np
import polars as pl
import pytest

from flows.explain import explain_command
from linkage.explain import explain_pair, explain_record, format_pair, mask_birth_date, mask_id, mask_name
from linkage.link import link_records
from linkage.standardize import standardize_records

_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def resident_id(region: str, birth: str, seq: int) -> str:
    s = f"{region}{birth}{seq:03d}"
    return s + "10X98765432"[sum(int(c) * w for c, w in zip(s, _W, strict=True)) % 11]


def town(n: int = 150, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    sur, given = list("王李张刘陈杨黄赵吴周"), list("伟芳娜敏静丽强磊军洋")
    rows = []
    for p in range(n):
        name = sur[rng.integers(10)] + given[rng.integers(10)] + given[rng.integers(10)]
        birth = f"{rng.integers(1950, 2010)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
        rid = resident_id("330602", birth, int(rng.integers(0, 999)))
        rows.append(("hukou", f"h{p}", name, rid, birth))
        rows.append(("health", f"m{p}", name, rid if rng.random() < 0.8 else None, birth))
    rows.append(("hukou", "ouyang", "欧阳娜娜", resident_id("330602", "19900909", 88), "19900909"))
    rows.append(("school", "ouyang2", "歐陽娜娜", None, "1990-09-09"))
    n_rows = len(rows)
    return pl.DataFrame(
        {
            "record_key": list(range(n_rows)),
            "source": [r[0] for r in rows],
            "department": ["d"] * n_rows,
            "source_kind": ["generic"] * n_rows,
            "file": ["f.csv"] * n_rows,
            "row_number": list(range(1, n_rows + 1)),
            "record_id": [r[1] for r in rows],
            "name": [r[2] for r in rows],
            "id_number": [r[3] for r in rows],
            "birth_date": [r[4] for r in rows],
        }
    )


def linked_town_database(con: duckdb.DuckDBPyConnection):
    """The town standardized and linked into ``con``'s int_persons_standardized and entity_map."""
    std = standardize_records(town())
    result = link_records(con, std, None)
    con.register("std_df", std)
    con.execute("create table int_persons_standardized as select * from std_df")
    con.register("em_df", result.entity_map)
    con.execute("create table entity_map as select * from em_df")
    return std, result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    rundir = out / "runs" / "r1"
    rundir.mkdir(parents=True)
    con = duckdb.connect(str(out / "renhu.duckdb"))
    std, result = linked_town_database(con)
    con.close()
    (rundir / "linkage_model.json").write_text(json.dumps(result.model), encoding="utf-8")
    return rundir, std, result


def test_masks():
    assert mask_id("33060219900102123X") == "330602********123X"
    assert mask_name("张伟") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_birth_date(dt.date(1990, 9, 9)) == "1990-**-**"
    assert mask_birth_date(None) == "-"


def test_explain_agrees_with_the_run(run):
    rundir, std, result = run
    con = duckdb.connect(str(rundir.parent.parent / "renhu.duckdb"), read_only=True)
    keys = std.select("record_key", "source", "record_id")
    sample = result.pairs.sort("match_weight").gather_every(max(len(result.pairs) // 25, 1))
    for pair in sample.iter_rows(named=True):
        a = keys.filter(pl.col("record_key") == pair["record_key_l"]).row(0)
        b = keys.filter(pl.col("record_key") == pair["record_key_r"]).row(0)
        e = explain_pair(con, result.model, (a[1], a[2]), (b[1], b[2]))
        assert e.total_weight == pytest.approx(pair["match_weight"], abs=1e-6)
        assert e.is_match == pair["is_match"]


def test_pair_output_masks_and_decides(run, capsys):
    rundir, std, result = run
    code = explain_command(["--run", str(rundir), "hukou:ouyang", "school:ouyang2"])
    text = capsys.readouterr().out
    assert code == 0
    assert "decision: MATCH" in text
    assert "name" in text and "same pinyin" in text or "same name" in text
    assert "欧阳娜娜" not in text and "歐陽娜娜" not in text
    assert resident_id("330602", "19900909", 88) not in text
    assert "330602********" in text
    # The masked id hides its birth date: the date beside it must not give it back.
    assert "1990-09-09" not in text and "19900909" not in text
    assert "1990-**-**" in text


def test_record_output_lists_its_links(run, capsys):
    rundir, _, _ = run
    assert explain_command(["--run", str(rundir), "school:ouyang2"]) == 0
    text = capsys.readouterr().out
    assert "hukou:ouyang" in text and "2 records" in text


def test_explain_record_structure(run):
    rundir, _, _ = run
    con = duckdb.connect(str(rundir.parent.parent / "renhu.duckdb"), read_only=True)
    e = explain_record(con, json.loads((rundir / "linkage_model.json").read_text()), ("hukou", "ouyang"))
    assert e.cluster_size == 2 and e.links[0].is_match
    assert "total match weight" in format_pair(e.links[0])


def test_errors_are_one_line_and_nonzero(run, capsys, tmp_path):
    rundir, _, _ = run
    assert explain_command(["--run", str(rundir), "hukou:nope", "school:ouyang2"]) == 1
    assert "no record hukou:nope" in capsys.readouterr().err
    assert explain_command(["--run", str(tmp_path), "hukou:ouyang"]) == 1
    assert explain_command(["--run", str(rundir), "not-a-record"]) == 2


def test_latest_symlink_finds_the_run_database(run, capsys):
    rundir, _, _ = run
    latest = rundir.parent.parent / "latest"
    if not latest.exists():
        latest.symlink_to(rundir, target_is_directory=True)
    assert explain_command(["--run", str(latest), "hukou:ouyang", "school:ouyang2"]) == 0
    assert "decision: MATCH" in capsys.readouterr().out
