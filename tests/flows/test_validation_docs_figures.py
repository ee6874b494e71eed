"""The Data Docs state every figure of a check with what it is a share of, and the
figures add up.

GX judges a column check on its non-empty values; its own Data Docs said "2 unexpected
values found. ≈5.128% of 42 total rows." where 5.128 % is 2 of the 39 non-empty values
(2 / 42 is 4.762 %). The night below plants exactly that: police_hukou's raw_records frame
has 42 rows (40 accepted, 2 quarantined with no dates), one accepted row without a birth
date and two whose birth dates do not parse.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from fractions import Fraction
from pathlib import Path

import duckdb
import pytest

from flows.validation import run_validation
from flows.validation_figures import map_figures, percent, statement_text

_SPEC = importlib.util.spec_from_file_location("validation_nights", Path(__file__).with_name("test_validation.py"))
nights = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(nights)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    con = duckdb.connect()
    nights.build_night(con)
    con.execute("update raw_records set birth_date = null where record_key = 1")
    con.execute("update raw_records set birth_date = '1990年13月' where record_key in (2, 3)")
    # health (18 rows): its first night, so the row-count ratio is empty on every row.
    con.execute(f"delete from run_source_counts where run_id = '{nights.PREVIOUS_RUN_ID}' and source = 'health'")
    run_dir = tmp_path_factory.mktemp("figures")
    summary = run_validation(con, run_dir, nights.RUN_ID)
    con.close()
    return summary, run_dir / "validation"


def page_text(site: Path, gx_suite: str) -> str:
    """The visible text of the validation page of one suite and batch, spaces collapsed."""
    (page,) = site.glob(f"validations/**/duckdb-{gx_suite}.html")
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_a_share_of_the_non_empty_values_is_stated_as_one(night):
    summary, site = night
    text = page_text(site, "raw_records.police_hukou")
    # GX's own sentence: a share of 39 values said to be of 42 rows.
    assert "of 42 total rows" not in text
    assert (
        "Unexpected: 2 of 39 non-empty values (≈5.128%). "
        "Not checked: 3 of 42 rows (the value is empty); 39 + 3 = 42. "
        "Threshold: at least 98% of the 39 non-empty values must be as expected (mostly = 0.98); "
        "37 of 39 do (≈94.872%), so the check fails."
    ) in text
    assert "≈5.128% unexpected (2 of 39 non-empty values)" in text  # the Observed Value cell
    found = nights.check(summary, "raw_records", "police_hukou", "birth_date_parses")
    assert (found.element_count, found.missing_count, found.unexpected_count) == (42, 3, 2)
    assert not found.success  # 37 of 39 = 94.9 % < 98 %
    assert found.message.startswith(
        "WARNING raw_records[police_hukou] birth_date_parses: 2 of 39 checked values fail "
        "(≈5.128%; 3 of 42 rows not checked), at least 98% must pass"
    )


def test_each_check_says_whether_its_failure_stops_the_night(night):
    # GX's validation page marks a failed warning "Failed" as it does a critical check, and
    # its severity was shown only on the expectation-suite page: an auditor reading the
    # failed birth_date_parses could not tell that the night still published.
    summary, site = night
    text = page_text(site, "raw_records.police_hukou")
    assert (
        "37 of 39 do (≈94.872%), so the check fails. "
        "Severity: warning (a failure is reported; the night still publishes)."
    ) in text
    statements = text.count("Severity: ")
    critical = text.count("Severity: critical (a failure stops the night: nothing is published).")
    checks = [c for c in summary.checks if (c.suite, c.batch) == ("raw_records", "police_hukou")]
    assert critical == sum(c.severity == "critical" and c.missing_count is not None for c in checks) > 0
    assert statements == sum(c.missing_count is not None for c in checks)


def test_passing_and_empty_checks_state_their_counts_too(night):
    summary, site = night
    # The 2 quarantined rows have no record id: 40 checked, none repeated.
    text = page_text(site, "raw_records.police_hukou")
    assert "Unexpected: 0 of 40 non-empty values (0%). Not checked: 2 of 42 rows (the value is empty)" in text
    assert "0% unexpected (0 of 40 non-empty values)" in text
    # Nothing to compare the row count with: said so, not "--".
    assert nights.check(summary, "raw_records", "health", "row_count_in_band").success
    text = page_text(site, "raw_records.health")
    assert "Not checked: 18 of 18 rows (the value is empty). Nothing to check, so the check passes." in text
    assert "nothing to check (0 of 18 rows checked)" in text
    # Two-column checks say which rows they compared; not-null checks count every row.
    text = page_text(site, "run_source_counts")
    assert "Unexpected: 0 of 3 compared rows (0%). All 3 rows compared." in text
    assert "Empty: 0 of 3 rows (0%). Every one of the 3 rows must hold a value, so the check passes." in text


_OBSERVED = re.compile(
    r"(≈?[0-9.]+)% (?:unexpected|empty) \(([0-9,]+) of ([0-9,]+) (?:non-empty values|compared rows|rows)\)"
    r"|nothing to check \(0 of ([0-9,]+) rows (?:checked|compared)\)"
)
_NOT_CHECKED = re.compile(r"Not (?:checked|compared): ([0-9,]+) of ([0-9,]+) rows \([a-z ]+\); ([0-9,]+) \+ \1 = \2\.")


def test_every_page_states_the_figures_of_results_json_and_they_add_up(night):
    summary, site = night
    results = json.loads((site / "results.json").read_text(encoding="utf-8"))
    pages = 0
    for suite in summary.suites:
        gx_suite = suite.suite if suite.batch == "run" else f"{suite.suite}.{suite.batch}"
        text = page_text(site, gx_suite)
        stated = []
        for shown, unexpected, checked, nothing in _OBSERVED.findall(text):
            if nothing:
                stated.append((0, 0))
                continue
            u, c = int(unexpected.replace(",", "")), int(checked.replace(",", ""))
            assert f"{shown}%" == percent(u, c)
            assert abs(float(shown.lstrip("≈")) - float(Fraction(100 * u, c))) < 0.0005
            stated.append((u, c))
        recorded = [
            (c["unexpected_count"], c["element_count"] - c["missing_count"])
            for c in results["checks"]
            if (c["suite"], c["batch"]) == (suite.suite, suite.batch) and c["missing_count"] is not None
        ]
        assert sorted(stated) == sorted(recorded), gx_suite
        for not_checked, rows, checked in _NOT_CHECKED.findall(text):
            assert int(checked) + int(not_checked) == int(rows)
        pages += 1
    assert pages == 10
    for c in results["checks"]:
        if c["missing_count"] is None:
            continue
        checked = c["element_count"] - c["missing_count"]
        if checked:
            assert c["unexpected_percent"] == pytest.approx(100 * c["unexpected_count"] / checked)
            assert c["success"] == ((checked - c["unexpected_count"]) / checked >= c["mostly"])


def test_statements_hold_counts_and_words_only():
    # Whatever the values, a statement is built from counts, the threshold and fixed words:
    # no value of the checked column can appear in it (the privacy guard of the frames
    # covers the examples GX lists).
    figures = map_figures(
        "expect_column_values_to_be_in_set",
        {"column": "birth_date_check", "value_set": ["parses"], "mostly": 0.9995},
        {"element_count": 12345, "missing_count": 45, "unexpected_count": 7, "partial_unexpected_list": ["330602"]},
    )
    text = statement_text(figures, success=False)
    assert text == (
        "Unexpected: 7 of 12,300 non-empty values (≈0.057%).\n"
        "Not checked: 45 of 12,345 rows (the value is empty); 12,300 + 45 = 12,345.\n"
        "Threshold: at least 99.95% of the 12,300 non-empty values must be as expected (mostly = 0.9995); "
        "12,293 of 12,300 do (≈99.943%), so the check fails."
    )
    assert percent(1, 3) == "≈33.333%" and percent(1, 8) == "12.5%" and percent(0, 5) == "0%"


def test_a_check_that_could_not_run_still_shows_its_reason(tmp_path):
    import shutil

    from flows.validation import EXPECTATIONS_DIR

    suites = tmp_path / "suites"
    shutil.copytree(EXPECTATIONS_DIR, suites)
    share = suites / "share_rates.yaml"
    share.write_text(share.read_text(encoding="utf-8").replace("column: share_rate,", "column: share_ratio,"))
    con = duckdb.connect()
    nights.build_night(con)
    run_validation(con, tmp_path / "run", nights.RUN_ID, suites_dir=suites)
    text = page_text(tmp_path / "run" / "validation", "share_rates")
    # GX's own statement of the exception; no figures invented for it.
    assert 'raised an exception: The column "share_ratio" is not in the checked frame (share_rates.sql).' in text
    assert text.count("Unexpected: 0 of 3 compared rows") == 4  # the four pair checks ran
