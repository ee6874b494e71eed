"""`renhu explain --run RUNDIR` explains RUNDIR's night, or says it cannot."""

from __future__ import annotations

import json

import duckdb
import pytest

from flows.explain import explain_command
from tests.linkage.test_explain import linked_town_database


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """OUT with two published run folders, r1 and r2; the DuckDB file holds r2's night."""
    out = tmp_path_factory.mktemp("out")
    con = duckdb.connect(str(out / "renhu.duckdb"))
    _, result = linked_town_database(con)
    con.execute("create table pipeline_state (key varchar primary key, value varchar)")
    con.execute("insert into pipeline_state values ('standardized_keys_run', 'r2'), ('scored_pairs_keys_run', 'r2')")
    con.close()
    for run_id in ("r1", "r2"):
        rundir = out / "runs" / run_id
        rundir.mkdir(parents=True)
        (rundir / "linkage_model.json").write_text(json.dumps(result.model), encoding="utf-8")
        (rundir / "metrics.json").write_text(json.dumps({"run_id": run_id}), encoding="utf-8")
    return out


def test_the_night_the_database_holds_is_explained(out, capsys) -> None:
    assert explain_command(["--run", str(out / "runs" / "r2"), "hukou:ouyang"]) == 0
    assert "hukou:ouyang is person P" in capsys.readouterr().out


def test_an_earlier_night_is_refused_not_explained_with_tonights_records(out, capsys) -> None:
    # The DuckDB file holds r2's records and person ids: explaining r1 with them would name a
    # person and records r1 never published.
    assert explain_command(["--run", str(out / "runs" / "r1"), "hukou:ouyang"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert "run r1" in captured.err and "holds run r2" in captured.err


def test_a_night_that_stopped_part_way_is_refused(out, capsys) -> None:
    con = duckdb.connect(str(out / "renhu.duckdb"))
    con.execute("update pipeline_state set value = 'r3' where key = 'standardized_keys_run'")
    con.close()
    try:
        assert explain_command(["--run", str(out / "runs" / "r2"), "hukou:ouyang"]) == 1
        assert "r3 (standardized; linked: r2)" in capsys.readouterr().err
    finally:
        con = duckdb.connect(str(out / "renhu.duckdb"))
        con.execute("update pipeline_state set value = 'r2' where key = 'standardized_keys_run'")
        con.close()
