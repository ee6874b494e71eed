"""The run dashboard and the history page, built from a sample published run folder.

`make_run` writes what the publish stage publishes (metrics.json shaped as DESIGN.md
section 5, share_rates.csv, quarantine.parquet, household_findings.parquet, reports/,
validation/) with synthetic figures, and plants full identity numbers and names in the
row-level files so the tests can prove they never reach a page.

The browser tests render the pages in headless Chromium (Debian's package, installed
once per session when missing) with every host name unresolvable, so a page that needed
the network would fail to draw.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from datetime import date, datetime
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pytest

from flows.dashboard import load_history, night_of, warm_up, write_history, write_run_dashboard

# Planted in row-level files; none may appear on a page.
PLANTED_IDS = ("330602199003071234", "33060219850101123X", "330621201205054321")
PLANTED_NAMES = ("张伟明", "欧阳娜娜", "李秀英")

SOURCES = {
    # name: (department, kind, records_in, quarantined, persons, shared_persons)
    "police_hukou": ("公安局户政科", "hukou", 2000, 12, 1990, 1850),
    "residence_reg": ("公安局流动人口管理科", "residence", 820, 30, 780, 600),
    "health_records": ("卫生健康委员会", "generic", 1500, 5, 1460, 1320),
    "social_insurance": ("人力资源和社会保障局", "generic", 1300, 0, 1290, 1100),
    "civil_roster": ("民政局", "roster", 400, 8, 390, 300),
    "rental_housing": ("住房和城乡建设局", "rental", 350, 20, 320, 150),
}
FIELDS = ("record_id", "name", "id_number", "sex", "birth_date", "phone", "hukou_address",
          "residence_address", "household_id", "relation_to_head")
REASONS = ("wrong_column_count", "missing_record_id", "no_name_or_id", "superseded_duplicate_record_id")
KINDS = ("hukou_residence_split", "multi_household", "roster_conflict", "unregistered_resident", "no_head")


def _rate(num: int, den: int) -> dict:
    return {"numerator": num, "denominator": den, "value": num / den if den else None}


def make_run(out_dir: Path, run_id: str, started_at: str, *, scale: float = 1.0,
             share_shift: float = 0.0, with_department: bool = True) -> Path:
    """Write a published run folder `out_dir/runs/<run_id>/` with synthetic figures.

    `scale` multiplies police_hukou's row count (to make a row-count jump);
    `share_shift` moves residence_reg's share rate (to make a share-rate jump).
    """
    run_dir = out_dir / "runs" / run_id
    run_dir.mkdir(parents=True)
    sources = {}
    quarantine_rows = []
    share_rows = []
    for i, (name, (dept, kind, records_in, quarantined, persons, shared)) in enumerate(SOURCES.items()):
        if name == "police_hukou":
            records_in, persons, shared = (round(v * scale) for v in (records_in, persons, shared))
        if name == "residence_reg":
            shared = round(persons * (shared / persons + share_shift))
        accepted = records_in - quarantined
        reasons: dict[str, int] = {}
        for row in range(quarantined):
            code = REASONS[(row + i) % len(REASONS)]
            reasons[code] = reasons.get(code, 0) + 1
            quarantine_rows.append({
                "source": name, "file": f"extracts/{name}.csv", "row_number": 10 + row * 7,
                "record_id": f"{name[:2].upper()}{row:05d}" if code != "missing_record_id" else "",
                "reason_code": code,
                "reason": f"记录有误 ({PLANTED_NAMES[row % 3]} {PLANTED_IDS[row % 3]}) / bad row",
            })
        share_rows.append({"source": name, "records": accepted, "persons": persons,
                           "shared_persons": shared, "share_rate": shared / persons})
        completeness = {f: round(1.0 - 0.09 * ((j + i) % 7), 3) for j, f in enumerate(FIELDS)}
        if kind == "rental":
            del completeness["relation_to_head"]
        sources[name] = {
            "department": dept, "kind": kind, "records_in": records_in, "accepted": accepted,
            "quarantined": quarantined, "persons": persons, "shared_persons": shared,
            "share_rate": shared / persons, "duplicate_records": accepted - persons,
            "duplicate_rate": (accepted - persons) / accepted, "quarantine_reasons": reasons,
            "field_completeness": completeness,
            "standardization": {f: {"filled": round(accepted * c), "standardized": 3, "flagged_invalid": 2 if f == "id_number" else 0}
                                for f, c in completeness.items()},
        }
    names = list(SOURCES)
    overlap = {a: {b: (sources[a]["persons"] if a == b else min(sources[a]["persons"], sources[b]["persons"]) // (2 + (ia + ib) % 3))
                   for ib, b in enumerate(names)} for ia, a in enumerate(names)}
    records_in = sum(s["records_in"] for s in sources.values())
    quarantined = sum(s["quarantined"] for s in sources.values())
    accepted = records_in - quarantined
    persons = 2400 + round(2000 * (scale - 1))
    findings_rows = []
    for n in range(60):
        kind = KINDS[n % len(KINDS)]
        source = names[n % len(names)]
        findings_rows.append({
            "kind": kind, "person_id": f"P{n // 2:012x}", "source": source, "record_id": f"R{n:06d}",
            "detail": f"{PLANTED_NAMES[n % 3]}（{PLANTED_IDS[n % 3]}）户籍在越城区，居住在柯桥区",
            "department": SOURCES[source][0],
        })
    by_kind: dict[str, int] = {}
    by_department: dict[str, dict[str, int]] = {}
    for row in findings_rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
        dept = by_department.setdefault(row["department"], {})
        dept[row["kind"]] = dept.get(row["kind"], 0) + 1
    metrics = {
        "run_id": run_id, "renhu_version": "0.1.0", "started_at": started_at,
        "finished_at": started_at.replace(":00:00", ":04:12"),
        "linkage_method": "规则 + Fellegi-Sunter 打分 (rule blocking then probabilistic scoring)",
        "records_in": records_in, "accepted": accepted, "quarantined": quarantined, "persons": persons,
        "duplicate_records": accepted - persons,
        "duplicate_rate": _rate(accepted - persons, accepted),
        "share_rate": _rate(1900, persons),
        "household_consistency_rate": _rate(1710, 1990),
        "floating_registration_rate": _rate(610, 905),
        "sources": sources, "overlap": overlap,
        "findings": {"by_kind": by_kind, "by_department": by_department},
        "stages": [
            {"stage": "ingest", "seconds": 3.2, "rows_in": records_in, "rows_out": accepted,
             "read_ahead_seconds": 1.75},
            {"stage": "standardize", "seconds": 5.9, "rows_in": accepted, "rows_out": accepted},
            {"stage": "link", "seconds": 21.4, "rows_in": accepted, "rows_out": accepted},
            {"stage": "households", "seconds": 2.1, "rows_in": accepted, "rows_out": len(findings_rows)},
            {"stage": "validate", "seconds": 7.5, "rows_in": accepted, "rows_out": accepted},
            {"stage": "publish", "seconds": 1.8, "rows_in": accepted, "rows_out": accepted},
        ],
        "linkage": {"pairs_scored": 48213, "pairs_matched": 3895, "em_iterations": 7,
                    "blocking": [{"pass": "id_number", "pairs": 4100}]},
        "validation": {"success": True, "evaluated": 48, "failed": 1, "critical_failed": 0},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
    pl.DataFrame(share_rows).write_csv(run_dir / "share_rates.csv")
    pl.DataFrame(quarantine_rows).write_parquet(run_dir / "quarantine.parquet")
    findings = pl.DataFrame(findings_rows)
    if not with_department:
        findings = findings.drop("department")
    findings.write_parquet(run_dir / "household_findings.parquet")
    for name, (dept, *_rest) in SOURCES.items():
        report = run_dir / "reports" / dept
        report.mkdir(parents=True, exist_ok=True)
        # A department's own report may hold full ids; the dashboard only links to it.
        (report / f"{name}_mismatches.csv").write_text(
            f"record_id,name,id_number\nR1,{PLANTED_NAMES[0]},{PLANTED_IDS[0]}\n", encoding="utf-8")
        (report / f"{name}_mismatches.xlsx").write_bytes(b"PK\x03\x04 not a real workbook")
    (run_dir / "validation").mkdir()
    (run_dir / "validation" / "index.html").write_text("<html><body>Data Docs</body></html>", encoding="utf-8")
    return run_dir


def _without_plotly_bundle(html: str) -> str:
    """The page minus the inlined plotly.js, whose minified text is not ours to check."""
    start = html.index("<script>")
    return html[:start] + html[html.index("</script>", start):]


def _figure_data(html: str, div_id: str) -> list[dict]:
    """The traces plotly is asked to draw in the chart `div_id`."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*(\[.*?\]),\s*\{', html, re.S)
    assert match, f"no chart {div_id}"
    return json.loads(match.group(1))


@pytest.fixture
def sample_run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "out", "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00")


# ---------------------------------------------------------------- one run


def test_run_dashboard_shows_headline_figures_with_numerator_and_denominator(sample_run: Path) -> None:
    page = write_run_dashboard(sample_run)
    assert page == sample_run / "index.html"
    html = page.read_text(encoding="utf-8")
    metrics = json.loads((sample_run / "metrics.json").read_text(encoding="utf-8"))
    headline = html[html.index('id="headline"'):html.index('id="sources"')]
    # 6,370 in = 6,295 accepted + 75 quarantined
    assert f"{metrics['records_in']:,}" == "6,370"
    assert "6,370" in headline and "6,295" in headline and "接收 6,295 + 隔离 75" in headline
    assert "无遗漏" in headline
    assert "人户一致率" in headline and "85.9%" in headline and "户籍与居住同乡镇街道 1,710 / 两地均知 1,990" in headline
    assert "流动人口登记率" in headline and "67.4%" in headline and "已居住登记 610 / 流动人口 905" in headline
    assert "总体共享率" in headline and "79.2%" in headline and "1,900" in headline and "2,400" in headline
    # duplicate rate: (6,295 - 2,400) / 6,295 = 61.9%
    assert "重复记录率" in headline and "61.9%" in headline and "3,895" in headline


def test_run_dashboard_flags_rows_that_are_neither_accepted_nor_quarantined(sample_run: Path) -> None:
    metrics_path = sample_run / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["accepted"] -= 3
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    assert "差 3 行" in html and "无遗漏" not in html


def test_run_dashboard_charts_carry_the_published_figures(sample_run: Path) -> None:
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    (bar,) = _figure_data(html, "chart-share-rate")
    assert bar["y"] == list(SOURCES)
    # police_hukou: 1,850 shared of 1,990 persons
    assert bar["x"][0] == pytest.approx(1850 / 1990)
    (heat,) = _figure_data(html, "chart-overlap")
    assert heat["z"][0][0] == 1990 and heat["x"] == list(SOURCES)
    quarantine = _figure_data(html, "chart-quarantine")
    counts = pl.read_parquet(sample_run / "quarantine.parquet").group_by("source", "reason_code").len()
    for trace in quarantine:
        code = trace["hovertemplate"].rsplit("<extra>", 1)[1].removesuffix("</extra>")
        for source, n in zip(trace["y"], trace["x"], strict=True):
            expected = counts.filter((pl.col("source") == source) & (pl.col("reason_code") == code))["len"].sum()
            assert n == expected
    assert sum(sum(t["x"]) for t in quarantine) == 75
    findings = _figure_data(html, "chart-findings")
    assert sum(sum(t["y"]) for t in findings) == 60
    assert {t["name"] for t in findings} == {"人户分离", "一人多户", "户成员冲突", "居住未登记", "户无户主"}


def test_quarantine_without_reason_codes_counts_from_metrics_not_from_the_sentences(sample_run: Path) -> None:
    path = sample_run / "quarantine.parquet"
    pl.read_parquet(path).drop("reason_code").write_parquet(path)
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    quarantine = _figure_data(html, "chart-quarantine")
    assert sum(sum(t["x"]) for t in quarantine) == 75
    assert {t["name"] for t in quarantine} == {"列数不符", "缺记录编号", "无姓名且无证件号", "记录编号重复（已被替代）"}
    assert "记录有误" not in html and "metrics.json" in html


def test_findings_department_comes_from_the_sources_when_the_column_is_absent(tmp_path: Path) -> None:
    run = make_run(tmp_path / "out", "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00", with_department=False)
    html = write_run_dashboard(run).read_text(encoding="utf-8")
    findings = _figure_data(html, "chart-findings")
    assert set(findings[0]["x"]) == {dept for dept, *_ in SOURCES.values()}
    assert sum(sum(t["y"]) for t in findings) == 60


def test_run_dashboard_links_department_reports_and_data_docs(sample_run: Path) -> None:
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    hrefs = re.findall(r'<a [^>]*href="([^"]+)"', _without_plotly_bundle(html))
    assert "validation/index.html" in hrefs and "../../index.html" in hrefs
    report_links = [h for h in hrefs if h.startswith("reports/")]
    assert len(report_links) == 2 * len(SOURCES)
    for href in report_links:
        assert not href.startswith("/") and "://" not in href
        assert (sample_run / unquote(href)).is_file()
    assert "公安局户政科" in html
    # stage timings, total 41.9 s
    assert "21.40" in html and "41.90" in html
    # the linkage stage's scalar figures; nested ones (blocking per pass) stay in metrics.json
    assert "pairs_scored" in html and "48,213" in html and "<code>blocking</code>" not in html


def test_run_dashboard_holds_no_identity_number_or_name(sample_run: Path) -> None:
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    for planted in (*PLANTED_IDS, *PLANTED_NAMES):
        assert planted not in html
    ours = _without_plotly_bundle(html)
    assert not re.search(r"(?<![0-9])[1-9]\d{16}[0-9Xx](?![0-9])", ours)
    assert not re.search(r"(?<![0-9])\d{15}(?![0-9])", ours)


def test_run_dashboard_needs_no_network(sample_run: Path) -> None:
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html and "Noto Sans CJK SC" in html
    ours = _without_plotly_bundle(html)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", ours)
    assert html.count("<script>") >= 1 and "<script src" not in html
    # plotly.js is inlined exactly once
    assert html.count("* plotly.js v") == 1


def test_run_dashboard_with_only_metrics_says_what_is_missing(tmp_path: Path) -> None:
    run = make_run(tmp_path / "out", "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00")
    for name in ("share_rates.csv", "quarantine.parquet", "household_findings.parquet"):
        (run / name).unlink()
    shutil.rmtree(run / "reports")
    shutil.rmtree(run / "validation")
    html = write_run_dashboard(run).read_text(encoding="utf-8")
    assert "reports/ 未发布" in html and "validation/index.html 未发布" in html
    # without the row files the charts fall back to metrics.json's own counts
    assert sum(sum(t["x"]) for t in _figure_data(html, "chart-quarantine")) == 75
    assert sum(sum(t["y"]) for t in _figure_data(html, "chart-findings")) == 60
    assert _figure_data(html, "chart-share-rate")[0]["x"][0] == pytest.approx(1850 / 1990)


def test_run_dashboard_shows_an_unknown_rate_as_a_dash(sample_run: Path) -> None:
    metrics_path = sample_run / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    metrics["floating_registration_rate"] = {"numerator": 0, "denominator": 0, "value": None}
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    card = html[html.index("流动人口登记率"):html.index("总体共享率")]
    assert "—" in card and "分母为 0" in card


def test_run_dashboard_without_metrics_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        write_run_dashboard(tmp_path)


# ---------------------------------------------------------------- history


def test_warming_up_writes_nothing_and_changes_no_page(sample_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # publish runs warm_up in a thread before the page is written: the page and the history
    # written after it are the ones written before it, byte for byte, and nothing is added.
    import flows.dashboard

    class StoppedClock(datetime):
        """The pages say when they were generated, to the second: the clock must not tick."""

        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 11, 23, 2, 0, 0, tzinfo=tz)

    monkeypatch.setattr(flows.dashboard, "datetime", StoppedClock)
    run_page = write_run_dashboard(sample_run).read_bytes()
    history_page = write_history(sample_run.parent.parent).read_bytes()
    files = sorted(p for p in sample_run.parent.parent.rglob("*"))
    warm_up()
    assert sorted(p for p in sample_run.parent.parent.rglob("*")) == files
    assert write_run_dashboard(sample_run).read_bytes() == run_page
    assert write_history(sample_run.parent.parent).read_bytes() == history_page


def test_night_of_a_run_is_the_evening_it_started_in_china_time() -> None:
    # 02:00 CST on the 23rd still belongs to the night of the 22nd
    assert night_of(datetime.fromisoformat("2026-11-22T18:00:00+00:00")) == date(2026, 11, 22)
    # 21:30 CST on the 22nd
    assert night_of(datetime.fromisoformat("2026-11-22T13:30:00+00:00")) == date(2026, 11, 22)
    # 13:00 CST on the 23rd is the next night
    assert night_of(datetime.fromisoformat("2026-11-23T05:00:00+00:00")) == date(2026, 11, 23)


def test_history_of_two_runs_has_two_points_linked_to_their_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for run_id, started in (("20261121T180000Z-aaaaaa", "2026-11-21T18:00:00+00:00"),
                            ("20261122T180000Z-bbbbbb", "2026-11-22T18:00:00+00:00")):
        write_run_dashboard(make_run(out, run_id, started))
    page = write_history(out)
    assert page == out / "index.html"
    html = page.read_text(encoding="utf-8")
    for div_id in ("chart-consistency-history", "chart-duplicate-history"):
        (trace,) = _figure_data(html, div_id)
        assert trace["x"] == ["2026-11-21", "2026-11-22"]
        assert trace["customdata"] == ["runs/20261121T180000Z-aaaaaa/index.html",
                                       "runs/20261122T180000Z-bbbbbb/index.html"]
    consistency = _figure_data(html, "chart-consistency-history")[0]
    assert consistency["y"] == pytest.approx([1710 / 1990] * 2)
    share = _figure_data(html, "chart-share-history")
    assert [t["name"] for t in share] == [*SOURCES, "总体 overall"]
    assert all(len(t["x"]) == 2 for t in share)
    assert 'href="runs/20261122T180000Z-bbbbbb/index.html"' in html
    assert "class=\"jump\"" not in html


def test_history_marks_a_night_whose_row_count_or_share_rate_jumps(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_run(out, "20261120T180000Z-aaaaaa", "2026-11-20T18:00:00+00:00")
    make_run(out, "20261121T180000Z-bbbbbb", "2026-11-21T18:00:00+00:00", scale=1.05)  # +5%: inside the band
    make_run(out, "20261122T180000Z-cccccc", "2026-11-22T18:00:00+00:00", scale=1.30)  # +23.8% vs night 2
    make_run(out, "20261123T180000Z-dddddd", "2026-11-23T18:00:00+00:00", scale=1.30, share_shift=-0.15)
    nights = load_history(out).nights
    assert [bool(n.jumps) for n in nights] == [False, False, True, True]
    assert nights[2].jumped_sources == {"police_hukou": {"records"}}
    assert "police_hukou 行数 rows +23.8% (2,100 → 2,600)" in nights[2].jumps
    assert nights[3].jumped_sources == {"residence_reg": {"share_rate"}}
    html = write_history(out).read_text(encoding="utf-8")
    assert html.count('class="jump"') == 2
    jump_trace = [t for t in _figure_data(html, "chart-records-history") if t["name"] == "跳变 jump"]
    assert jump_trace and jump_trace[0]["x"] == ["2026-11-22"]
    # a wider band lets both nights pass
    nights = load_history(out, jump_band=0.30).nights
    assert not any(n.jumps for n in nights)
    with pytest.raises(ValueError, match="jump_band"):
        write_history(out, jump_band=0)


def test_a_rerun_on_the_same_night_replaces_the_earlier_point(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_run(out, "20261122T180000Z-first1", "2026-11-22T18:00:00+00:00")
    make_run(out, "20261122T193000Z-again2", "2026-11-22T19:30:00+00:00", scale=1.02)
    make_run(out, "20261123T180000Z-next03", "2026-11-23T18:00:00+00:00")
    nights = load_history(out).nights
    assert [n.run_id for n in nights] == ["20261122T193000Z-again2", "20261123T180000Z-next03"]
    assert nights[0].superseded == [("20261122T180000Z-first1", "runs/20261122T180000Z-first1/metrics.json")]
    html = write_history(out).read_text(encoding="utf-8")
    assert "superseded" in html and "20261122T180000Z-first1" in html


def test_history_lists_a_run_whose_metrics_cannot_be_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_run(out, "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00")
    broken = out / "runs" / "20261123T180000Z-broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json", encoding="utf-8")
    html = write_history(out).read_text(encoding="utf-8")
    assert "20261123T180000Z-broken" in html and "无法读取" in html
    assert len(_figure_data(html, "chart-duplicate-history")[0]["x"]) == 1


def test_history_leaves_out_a_run_still_publishing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_run(out, "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00")
    make_run(out, ".20261123T180000Z-ef34gh.partial", "2026-11-23T18:00:00+00:00")
    history = load_history(out)
    assert [n.run_id for n in history.nights] == ["20261122T180000Z-ab12cd"]
    assert history.unreadable == [] and history.failed == []
    assert "ef34gh" not in write_history(out).read_text(encoding="utf-8")


def test_history_lists_a_run_that_failed_validation_but_plots_no_point_for_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_run(out, "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00")
    failed = out / "runs" / "20261123T180000Z-ef34gh-failed"
    (failed / "validation").mkdir(parents=True)
    (failed / "validation" / "index.html").write_text("<html></html>", encoding="utf-8")
    history = load_history(out)
    assert [n.run_id for n in history.nights] == ["20261122T180000Z-ab12cd"]
    assert history.failed == [("20261123T180000Z-ef34gh-failed",
                               "runs/20261123T180000Z-ef34gh-failed/validation/index.html")]
    html = write_history(out).read_text(encoding="utf-8")
    assert 'href="runs/20261123T180000Z-ef34gh-failed/validation/index.html"' in html
    assert len(_figure_data(html, "chart-duplicate-history")[0]["x"]) == 1


def test_history_of_an_empty_folder_says_so(tmp_path: Path) -> None:
    html = write_history(tmp_path).read_text(encoding="utf-8")
    assert "还没有可读的运行" in html and "Plotly.newPlot" not in html


# ---------------------------------------------------------------- in a browser

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Every host name fails to resolve: a page that fetched its chart library would not draw.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def _has_cjk_font() -> bool:
    try:
        listed = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(listed.strip())


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium, installed (with CJK fonts) once per session when missing."""
    path = shutil.which("chromium")
    if path and _has_cjk_font():
        return path
    packages = ["chromium", "fonts-noto-cjk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", *packages], check=True, capture_output=True, env=env, timeout=1200)
    except (OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"could not install {packages}: {exc}")
        pytest.skip(f"chromium is not installed and could not be: {exc}")
    path = shutil.which("chromium")
    assert path, "apt-get installed chromium but it is not on PATH"
    return path


def render(chromium: str, page: Path, screenshot: Path | None = None) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message it logged."""
    with tempfile.TemporaryDirectory() as profile:
        args = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        if screenshot is not None:
            shot = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars",
                 f"--screenshot={screenshot}", "--window-size=1400,2400", "--virtual-time-budget=10000",
                 page.as_uri()],
                capture_output=True, text=True, timeout=120,
            )
            assert shot.returncode == 0, shot.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def _chart_slices(dom: str) -> dict[str, str]:
    """The rendered markup of each chart, keyed by its div id."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div id="(chart-[a-z-]+)"', dom)]
    return {name: dom[pos:(starts[i + 1][0] if i + 1 < len(starts) else len(dom))]
            for i, (pos, name) in enumerate(starts)}


def _drawn(chart: str) -> bool:
    """plotly drew something: its svg holds a bar, a marker, a line, or a heatmap image."""
    if 'class="main-svg"' not in chart:
        return False
    return bool(
        re.search(r'<g class="point"><path d="M[^"]+"', chart)  # a bar
        or re.search(r'<path class="point[^"]*"[^>]*d="M[^"]+"', chart)  # a marker
        or re.search(r'<path class="js-line" d="M[^"]+"', chart)  # a line
        or re.search(r'<g class="hm"><image[^>]*href="data:image/png', chart)  # a heatmap
    )


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_run_dashboard_draws_in_headless_chromium(chromium: str, sample_run: Path, tmp_path: Path) -> None:
    page = write_run_dashboard(sample_run)
    shot = tmp_path / "run.png"
    dom, console = render(chromium, page, shot)
    assert console == []
    charts = _chart_slices(dom)
    assert set(charts) == {"chart-share-rate", "chart-overlap", "chart-quarantine", "chart-findings"}
    for name, chart in charts.items():
        assert _drawn(chart), f"{name} did not draw"
    assert re.search(r'<g class="hm"><image[^>]*href="data:image/png', charts["chart-overlap"])
    # one bar per source in the share chart
    assert len(re.findall(r'<g class="point">', charts["chart-share-rate"])) == len(SOURCES)
    assert "人户一致率" in dom
    assert 'id="history-link" href="../../index.html"' in dom
    assert _is_png(shot)


@pytest.mark.slow
def test_history_page_draws_two_points_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for run_id, started in (("20261121T180000Z-aaaaaa", "2026-11-21T18:00:00+00:00"),
                            ("20261122T180000Z-bbbbbb", "2026-11-22T18:00:00+00:00")):
        write_run_dashboard(make_run(out, run_id, started))
    dom, console = render(chromium, write_history(out))
    assert console == []
    charts = _chart_slices(dom)
    assert set(charts) == {"chart-share-history", "chart-records-history",
                           "chart-consistency-history", "chart-duplicate-history"}
    for name, chart in charts.items():
        assert _drawn(chart), f"{name} did not draw"
    # one line, two markers: one per night
    for name in ("chart-consistency-history", "chart-duplicate-history"):
        assert len(re.findall(r'<path class="point[ "]', charts[name])) == 2
    # the nights' runs are linked from the table under the charts
    assert 'href="runs/20261121T180000Z-aaaaaa/index.html"' in dom
    # a click on a night's point opens that night's run: emit the click plotly would, on a copy of the page
    clicked = out / "index_click.html"
    clicked.write_text((out / "index.html").read_text(encoding="utf-8").replace("</body>", (
        "<script>setTimeout(function () { var gd = document.getElementById('chart-duplicate-history');"
        " gd.emit('plotly_click', {points: [{customdata: gd.data[0].customdata[0]}]}); }, 200);</script></body>")),
        encoding="utf-8")
    dom, console = render(chromium, clicked)
    assert console == []
    assert "<title>人户 运行 20261121T180000Z-aaaaaa</title>" in dom
    # OUT/latest/index.html is one level higher than runs/<run_id>/index.html: its history link follows
    (out / "latest").symlink_to(Path("runs") / "20261122T180000Z-bbbbbb", target_is_directory=True)
    dom, console = render(chromium, out / "latest" / "index.html")
    assert console == []
    assert 'id="history-link" href="../index.html"' in dom


def test_stage_timings_show_the_reading_done_before_the_flow_started(sample_run: Path) -> None:
    html = write_run_dashboard(sample_run).read_text(encoding="utf-8")
    timings = html[html.index("各阶段耗时"):html.index("合计 total")]
    assert "另有 1.75 秒在流程开始前读取源文件" in timings
    # Only ingest reads ahead; the total stays the stages' own seconds (3.2 + 5.9 + 21.4 + 2.1 + 7.5 + 1.8).
    assert timings.count("流程开始前读取") == 1
    assert "41.90" in html[html.index("合计 total"):html.index("合计 total") + 80]


def test_a_share_short_of_all_is_not_shown_as_100_percent() -> None:
    # The demo's police_hukou has an id number in 4,032 of 4,036 records (0.999009): its
    # completeness cell read "100%", as if no id were missing. A share that rounds to 100% (or
    # to 0%) without being all (or none) is shown as >99% (<1%); exact ends stay as they are.
    from flows.dashboard import _completeness, _fmt_pct

    metrics = {"sources": {"police_hukou": {"field_completeness": {"name": 1.0, "id_number": 0.999009, "phone": 0.004}}}}
    cells = {f["code"]: c["text"] for f, c in zip(_completeness(metrics)["fields"], _completeness(metrics)["rows"][0]["cells"], strict=True)}
    assert cells == {"name": "100%", "id_number": ">99%", "phone": "<1%"}
    assert (_fmt_pct(0.9995), _fmt_pct(1.0), _fmt_pct(0.0), _fmt_pct(0.805539), _fmt_pct(0.005113, 2)) == (
        ">99.9%", "100.0%", "0.0%", "80.6%", "0.51%"
    )


@pytest.mark.parametrize(
    ("validation", "shown", "style", "on_run_page"),
    [
        # GX's success is false for a failed warning: the night published all the same.
        ({"success": False, "evaluated": 48, "failed": 1, "critical_failed": 0, "warnings_failed": 1,
          "could_not_run": 0}, "有警告 1", "wn", "通过，有警告 passed with warnings"),
        ({"success": True, "evaluated": 48, "failed": 0, "critical_failed": 0, "warnings_failed": 0},
         "通过", "ok", "通过 passed"),
        ({"success": False, "evaluated": 48, "failed": 1, "critical_failed": 1, "warnings_failed": 0},
         "未通过", "ko", "未通过 failed"),
        # A run from before warnings were counted apart.
        ({"success": False, "evaluated": 48, "failed": 2, "critical_failed": 0}, "有警告 2", "wn",
         "通过，有警告 passed with warnings"),
    ],
)  # fmt: skip
def test_a_night_published_with_a_failed_warning_reads_as_a_warning_not_a_failure(
    tmp_path: Path, validation: dict, shown: str, style: str, on_run_page: str
) -> None:
    # Before, the history listed such a night as 未通过 in red, as a night that did not publish.
    out = tmp_path / "out"
    run = make_run(out, "20261122T180000Z-ab12cd", "2026-11-22T18:00:00+00:00")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    metrics["validation"] = validation
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    history = write_history(out).read_text(encoding="utf-8")
    assert f'<span class="{style}">{shown}</span>' in history
    page = write_run_dashboard(run).read_text(encoding="utf-8")
    assert f'<span class="{style}">{on_run_page}</span>' in page
