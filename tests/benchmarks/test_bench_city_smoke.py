"""Smoke tests of the city benchmark's pure parts: pairwise scoring, process-tree RSS,
stage windows, the night-2 mutation, the profile summary and the Splink side's
standardization. Tiny inline data; the expected numbers are worked out in comments."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("bench_city")
baseline = _load("splink_baseline")


def _truth(rows: list[tuple[str, str, str, list[str]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source": [r[0] for r in rows],
            "record_id": [r[1] for r in rows],
            "true_person_id": [r[2] for r in rows],
            "expected_outcome": ["accepted"] * len(rows),
            "hard_cases": [r[3] for r in rows],
        },
        schema_overrides={"hard_cases": pl.List(pl.Utf8)},
    )


def test_pairwise_scores_counts_pairs_and_treats_missing_records_as_singletons():
    # truth: A = {r1, r2, r3}, B = {r4, r5}, C = {r6}  -> true pairs 3 + 1 = 4
    truth = _truth(
        [
            ("s", "r1", "A", []),
            ("s", "r2", "A", []),
            ("t", "r3", "A", ["twin"]),
            ("t", "r4", "B", []),
            ("t", "r5", "B", []),
            ("t", "r6", "C", []),
        ]
    )
    # predicted: X = {r1, r2}, Y = {r3, r4, r5}; r6 absent -> predicted pairs 1 + 3 = 4
    # found: r1-r2 (X, A) and r4-r5 (Y, B) = 2  -> precision 0.5, recall 0.5
    predicted = pl.DataFrame(
        {
            "source": ["s", "s", "t", "t", "t", "zz"],
            "record_id": ["r1", "r2", "r3", "r4", "r5", "unknown"],
            "person_id": ["X", "X", "Y", "Y", "Y", "Q"],
        }
    )
    scores = bench.pairwise_scores(predicted, truth)
    assert scores["records_scored"] == 6
    assert scores["records_missing_from_output"] == 1
    assert (scores["predicted_pairs"], scores["true_pairs"], scores["true_positive_pairs"]) == (4, 4, 2)
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5
    # pairs touching r3: predicted r3-r4, r3-r5; true r1-r3, r2-r3; none found
    twin = scores["by_hard_case"]["twin"]
    assert (twin["predicted_pairs"], twin["true_pairs"], twin["true_positive_pairs"]) == (2, 2, 0)
    assert twin["precision"] == 0.0 and twin["recall"] == 0.0 and twin["f1"] is None
    assert twin["records"] == 1


def test_pairwise_scores_perfect_clustering_scores_one():
    truth = _truth([("s", "1", "A", []), ("s", "2", "A", []), ("s", "3", "B", [])])
    predicted = pl.DataFrame({"source": ["s"] * 3, "record_id": ["1", "2", "3"], "cluster_id": [7, 7, 8]})
    scores = bench.pairwise_scores(predicted, truth, cluster_col="cluster_id")
    assert scores["f1"] == 1.0
    assert scores["persons_true"] == scores["persons_predicted"] == 2


def test_accepted_truth_keeps_accepted_rows_once():
    truth = pl.DataFrame(
        {
            "source": ["s", "s", "s", "s"],
            "record_id": ["1", "1", "2", None],
            "true_person_id": ["A", "A", "B", None],
            "expected_outcome": ["accepted", "quarantined", "quarantined", "quarantined"],
        }
    )
    accepted = bench.accepted_truth(truth)
    assert accepted.select("source", "record_id").rows() == [("s", "1")]


def test_run_measured_sees_memory_of_a_grandchild():
    # The child only waits; the grandchild holds ~150 MB for a second. The tree's peak must
    # see it, though the direct child itself stays small.
    grandchild = "import time; b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    measured = bench.run_measured(
        [sys.executable, "-c", child], log_path=Path("/tmp/renhu-bench-smoke.log"), interval=0.05
    )
    assert measured.returncode == 0
    assert measured.peak_tree_rss > 150 * 2**20
    assert measured.max_process_rss > 150 * 2**20
    assert measured.seconds >= 1.0


def test_run_measured_counts_cpu_of_a_grandchild_it_waited_for():
    # The child sleeps while its child spins for ~0.6 s of CPU: the tree's CPU time must
    # hold the grandchild's, and the sleeping child adds next to none of its own.
    spin = "import time; end = time.process_time() + 0.6\nwhile time.process_time() < end: pass"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}], check=True)"
    measured = bench.run_measured(
        [sys.executable, "-c", child], log_path=Path("/tmp/renhu-bench-smoke-cpu.log"), interval=0.05
    )
    assert measured.returncode == 0
    assert 0.6 <= measured.cpu_seconds < 0.6 + 1.0  # two interpreters' start-up at most
    assert measured.steal_seconds is None or measured.steal_seconds >= 0


def test_alternation_ratios_of_wall_and_cpu_time():
    pair = bench._alternation(
        {"seconds": 40.0, "cpu_seconds": 60.0, "steal_seconds": 0.5},
        {"seconds": 80.0, "cpu_seconds": 150.0, "steal_seconds": 1.0},
    )
    assert pair["ratio"] == 0.5 and pair["cpu_ratio"] == 0.4
    assert (pair["renhu_steal_seconds"], pair["splink_steal_seconds"]) == (0.5, 1.0)
    # A result file from before CPU was measured: no CPU ratio rather than a wrong one.
    assert "cpu_ratio" not in bench._alternation({"seconds": 40.0}, {"seconds": 80.0})


def test_run_measured_stops_a_tree_past_its_rss_limit():
    # 400 MB held for a minute; a 100 MB limit must stop it long before it would finish.
    hog = "import time; b = bytearray(400 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)"
    measured = bench.run_measured(
        [sys.executable, "-c", hog],
        log_path=Path("/tmp/renhu-bench-smoke-limit.log"),
        interval=0.05,
        rss_limit=100 * 2**20,
    )
    assert measured.returncode == -9
    assert measured.killed_over_rss > 100 * 2**20
    assert measured.seconds < 60


def test_tree_memory_sees_memory_held_only_between_two_polls():
    # 600 MB touched and freed between two polls: RSS read at the polls never shows it, the
    # high-water mark does, at the first poll after it and not again. The child and the test
    # take turns over a pipe, not by sleeping: under load a sleep-timed spike came late.
    spike = (
        "import sys; print('ready', flush=True); sys.stdin.readline(); "
        "b = bytearray(600 * 2**20); b[::4096] = b'x' * len(b[::4096]); del b; "
        "print('freed', flush=True); sys.stdin.readline()"
    )
    process = subprocess.Popen([sys.executable, "-c", spike], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    memory = bench.TreeMemory()
    try:
        assert process.stdout.readline() == "ready\n"
        before = memory.tree(process.pid)
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline() == "freed\n"
        during = memory.tree(process.pid)
        after = memory.tree(process.pid)
        rss_after = bench.memory_status(process.pid)[0]
        process.stdin.write("end\n")
        process.stdin.flush()
    finally:
        process.wait(timeout=60)
    assert before < 100 * 2**20
    assert during > 600 * 2**20
    assert after < 100 * 2**20
    assert rss_after < 100 * 2**20


def test_tree_rss_of_a_gone_process_is_zero():
    assert bench.memory_status(2**22 + 12345) == (0, 0)
    assert bench.TreeMemory().tree(2**22 + 12345) == 0


def test_stage_table_puts_samples_in_each_stage_window():
    metrics = {
        "started_at": "2026-11-23T02:00:00+00:00",
        "stages": [
            {"stage": "ingest", "seconds": 10.0, "rows_in": 100, "rows_out": 98},
            {"stage": "link", "seconds": 5.0, "rows_in": 98, "rows_out": 98},
        ],
    }
    t0 = 1795399200.0  # 2026-11-23T02:00:00Z
    measured = bench.Measured(
        command=[],
        returncode=0,
        seconds=16.0,
        peak_tree_rss=900,
        max_process_rss=900,
        started_at=t0,
        samples=[(t0 + 1, 100), (t0 + 9, 300), (t0 + 11, 900), (t0 + 14, 500)],
    )
    rows = bench.stage_table(metrics, None, measured)
    assert [(r["stage"], r["peak_rss"], r["rows_out"]) for r in rows] == [
        ("ingest", 300, 98),
        ("link", 900, 98),
    ]


def test_summarise_profile_inclusive_and_self_shares():
    collapsed = Path("/tmp/renhu-bench-smoke-profile.txt")
    collapsed.write_text(
        'process 1:"python renhu run --sources x";main (flows/cli.py:1);link (linkage/link.py:9) 3\n'
        'process 1:"python renhu run --sources x";main (flows/cli.py:2);link (linkage/link.py:12) 1\n'
        'process 2:"python -m uvicorn prefect";serve (uvicorn/server.py:5) 1\n'
        'process 2:"python -m uvicorn prefect";_find_and_load (<frozen importlib._bootstrap>:1176) 1\n',
        encoding="utf-8",
    )
    summary = bench.summarise_profile(collapsed)
    assert summary["samples"] == 6
    # line numbers folded: link at lines 9 and 12 is one function, 3 + 1 of 6 samples
    project = {row["function"]: row["share"] for row in summary["top_project"]}
    assert project == {"main (flows/cli.py)": 0.6667, "link (linkage/link.py)": 0.6667}
    assert summary["top_self"][0] == {"function": "link (linkage/link.py)", "share": 0.6667}
    assert summary["importing_share"] == 0.1667
    # the server's own frames are not renhu's
    assert all("uvicorn" not in row["function"] for row in summary["top_project"])
    assert summary["by_process"] == [
        {"process": "python renhu run", "share": 0.6667},
        {"process": "python -m uvicorn", "share": 0.3333},
    ]


def test_mutate_city_changes_one_percent_and_extends_the_truth(tmp_path: Path):
    n = 400
    extracts = tmp_path / "extracts"
    extracts.mkdir()
    header = "编号,姓名,居住地址\n"
    lines = [f"H{i:04d},张{i},越城区府山街道{i}号" for i in range(n)]
    # an undecodable row must survive byte for byte
    (extracts / "a.csv").write_bytes(
        header.encode("gb18030") + "\n".join(lines).encode("gb18030") + b"\n\xff\xfe,bad,row\n"
    )
    (extracts / "b.jsonl").write_text(
        "\n".join(
            json.dumps({"id": f"J{i}", "xm": f"李{i}", "dh": "13800000000"}, ensure_ascii=False)
            for i in range(n)
        )
        + "\n{broken\n",
        encoding="utf-8",
    )
    pl.DataFrame(
        {"rid": [f"P{i}" for i in range(n)], "xm": [f"王{i}" for i in range(n)], "addr": ["柯桥"] * n}
    ).write_parquet(extracts / "c.parquet")
    sources = {
        "sources": [
            {
                "name": "a",
                "department": "甲",
                "path": "extracts/a.csv",
                "format": "csv",
                "encoding": "gb18030",
                "columns": {"record_id": "编号", "name": "姓名", "residence_address": "居住地址"},
            },
            {
                "name": "b",
                "department": "乙",
                "path": "extracts/b.jsonl",
                "format": "jsonl",
                "columns": {"record_id": "id", "name": "xm", "phone": "dh"},
            },
            {
                "name": "c",
                "department": "丙",
                "path": "extracts/c.parquet",
                "format": "parquet",
                "columns": {"record_id": "rid", "name": "xm", "residence_address": "addr"},
            },
        ]
    }
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(sources, allow_unicode=True), encoding="utf-8")
    truth_rows = (
        [("a", f"H{i:04d}", f"A{i}") for i in range(n)]
        + [("b", f"J{i}", f"B{i}") for i in range(n)]
        + [("c", f"P{i}", f"C{i}") for i in range(n)]
    )
    truth = pl.DataFrame(
        {
            "source": [r[0] for r in truth_rows],
            "record_id": [r[1] for r in truth_rows],
            "true_person_id": [r[2] for r in truth_rows],
            "expected_outcome": ["accepted"] * len(truth_rows),
        }
    )
    (tmp_path / "truth").mkdir()
    truth.write_parquet(tmp_path / "truth" / "records.parquet")

    summary = bench.mutate_city(tmp_path, 0.05, seed=1)

    # 5% of 1200 = 60 records: per source int(400 * 0.05) = 20 picks, 10 modified + 10 added
    assert summary["changed"] == 60
    assert all(v == {"modified": 10, "added": 10} for v in summary["by_source"].values())
    raw = (extracts / "a.csv").read_bytes()
    assert b"\n\xff\xfe,bad,row\n" in raw
    decoded = [line for line in raw.split(b"\n")[1:] if line and not line.startswith(b"\xff")]
    rows = [line.decode("gb18030").split(",") for line in decoded]
    assert len(rows) == n + 10
    assert sum(1 for r in rows if r[0].endswith("N2")) == 10
    assert sum(1 for r, original in zip(rows, lines, strict=False) if ",".join(r) != original) == 10
    new_truth = pl.read_parquet(tmp_path / "truth" / "records.parquet")
    assert new_truth.height == 1200 + 30
    added = new_truth.filter(pl.col("record_id").str.ends_with("N2"))
    # each added record belongs to the person of the row it copied
    copied = added.with_columns(pl.col("record_id").str.strip_suffix("N2")).join(
        truth, on=["source", "record_id"], suffix="_copied"
    )
    assert copied.height == 30
    assert (copied["true_person_id"] == copied["true_person_id_copied"]).all()
    parquet = pl.read_parquet(extracts / "c.parquet")
    assert parquet.height == n + 10 and parquet.filter(pl.col("addr") != "柯桥").height == 10
    jsonl_lines = (extracts / "b.jsonl").read_text(encoding="utf-8").splitlines()
    assert "{broken" in jsonl_lines and len(jsonl_lines) == n + 1 + 10

    # A second change of the same city (a reused city's next night 2): its added records get
    # ids no record has yet, N3, even where the row copied is one added by the first.
    bench.mutate_city(tmp_path, 0.05, seed=2)
    twice = pl.read_parquet(tmp_path / "truth" / "records.parquet")
    assert twice.height == 1230 + 30
    assert twice.select("source", "record_id").is_unique().all()
    assert twice.filter(pl.col("record_id").str.ends_with("N3")).height == 30
    parquet_ids = pl.read_parquet(extracts / "c.parquet")["rid"]
    assert parquet_ids.is_unique().all() and parquet_ids.len() == n + 20


def test_splink_side_id_standardization():
    # 15-digit id: '19' goes into the birth year; weighted sum of 33060219800101123 is 181,
    # 181 mod 11 = 5, and the check table "10X98765432" gives '7' at 5.
    assert baseline.standard_id("330602800101123") == "330602198001011237"
    # full-width digits and x folded by NFKC, separators dropped, x upper-cased
    assert baseline.standard_id("３３０６０２ 1980-0101 123x") == "33060219800101123X"
    assert baseline.standard_id(None) is None


def test_splink_side_dates_names_and_sex():
    assert baseline.standard_date("1990年1月2日") == "1990-01-02"
    assert baseline.standard_date("19900102") == "1990-01-02"
    assert baseline.standard_date("1990/1/2") == "1990-01-02"
    assert baseline.standard_date("1990-02-30") is None
    assert baseline.standard_name("欧阳 娜娜") == ("欧阳娜娜", "欧", "ou yang na na", "na na ou yang")
    assert baseline.standard_name("Wei Zhang")[2:] == ("wei zhang", "wei zhang")
    assert baseline.standard_name("不详") == (None, None, None, None)
    assert baseline.standard_sex("女") == "F"


def test_last_stage_started_reads_the_flow_log(tmp_path: Path):
    log = tmp_path / "night.log"
    log.write_text(
        "14:26:38 | INFO | Task run 'ingest-101' - stage ingest: starting\n"
        "14:27:38 | INFO | Task run 'standardize-1' - stage standardize: starting\n"
        "Killed\n",
        encoding="utf-8",
    )
    assert bench.last_stage_started(log) == "standardize"
    assert bench.last_stage_started(tmp_path / "missing.log") is None


def test_rss_timeline_keeps_the_peak_of_each_slice():
    t0 = 1000.0
    samples = [(t0 + i, (i % 7) * 10**9) for i in range(100)]  # peaks of 6 GB every 7 s
    measured = bench.Measured(
        command=[],
        returncode=0,
        seconds=100.0,
        peak_tree_rss=6 * 10**9,
        max_process_rss=0,
        started_at=t0,
        samples=samples,
    )
    timeline = bench.rss_timeline(measured, points=10)
    assert len(timeline) == 10
    assert timeline[0] == [0.0, 6.0]
    assert max(gb for _, gb in timeline) == 6.0
    assert bench.rss_timeline(bench.Measured([], 0, 0.0, 0, 0, t0)) == []


def test_report_puts_running_server_nights_beside_splinks_median(capsys):
    result = {
        "records_requested": 1000,
        "city": {"records": 1000},
        "machine": {"cores": 2, "memory_gb": 23.5},
        "splink": {"returncode": 0, "seconds": 20.0},
        "alternations": {"pairs": [{"splink_seconds": 20.0}, {"splink_seconds": 30.0}, {"splink_seconds": 10.0}]},
        "renhu_running_server": {
            "server_ready_seconds": 2.7,
            "runs": [
                {"returncode": 0, "seconds": 8.0, "outside_stages_seconds": 2.5},
                {"returncode": 0, "seconds": 6.0, "outside_stages_seconds": 2.0},
            ],
            "median_seconds": 7.0,
        },
    }
    bench.print_report(result)
    line = next(t for t in capsys.readouterr().out.splitlines() if "running Prefect server" in t)
    # 7.0 s against Splink's median of 20, 30 and 10 s
    assert "8.0 / 6.0 s, median 7.0 s = 0.35 of Splink's median" in line
    assert "outside the stages 2.5 / 2.0 s" in line
