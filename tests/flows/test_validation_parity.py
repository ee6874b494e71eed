"""DuckDB computes the metrics GX judges the expectations from (flows/validation.py): the
outcome must be the one GX's own pandas engine gives on the same frames, row by row.

Two small nights, one with a warning planted on every per-source check and one with every
critical problem at once (duplicates, lost rows, a record in two clusters, a person with
two ids, a wrong share rate, a source missing from the ledger, so that the pair checks
meet missing values too). For every check of every batch the test runs the expectation
through GX's pandas engine on the frame the suite's SQL builds, and compares success,
element, missing and unexpected counts, and the examples shown.
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pytest

from flows import validation
from flows.validation import (
    RUN_BATCH,
    _Batch,
    _build_suite,
    _mapped_field_columns,
    create_compared_nights_view,
    load_suites,
    load_thresholds,
    run_validation,
)

_SPEC = importlib.util.spec_from_file_location(
    "validation_nights", Path(__file__).with_name("test_validation.py")
)
nights = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(nights)
RUN_ID, PREVIOUS_RUN_ID = nights.RUN_ID, nights.PREVIOUS_RUN_ID
SALT = "00" * 16
MAPPED = {"police_hukou": ["record_id", "name", "id_number", "phone"], "health": ["name", "id_number", "sex"]}


def warnings_night() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    nights.build_night(con)
    # A wrong check character in 1 of 40 police_hukou ids and 1 of 25 residence ids.
    con.execute(
        "update int_persons_standardized set id_number = left(id_number, 17) || "
        "case when right(id_number, 1) = '0' then '1' else '0' end, id_valid = false where record_key in (3, 45)"
    )
    con.execute(
        f"update run_source_counts set rows_in = rows_in * 2 where run_id = '{PREVIOUS_RUN_ID}' and source = 'residence'"
    )
    con.execute(f"delete from run_source_counts where run_id = '{PREVIOUS_RUN_ID}' and source = 'health'")
    con.execute(
        "update int_persons_standardized set birth_date = birth_date + 1, sex = case sex when 'M' then 'F' else 'M' end "
        "where source = 'health' and record_key % 2 = 0"
    )
    # Ids cut short and dates that do not parse, of several shapes (more than 10 examples).
    con.execute(
        "update raw_records set id_number = left(id_number, 16 - record_key % 4), "
        "birth_date = case when record_key % 2 = 0 then '1990年13月' else '19901399' end, "
        "registered_at = null, updated_at = 'NULL' where source = 'health' and record_key % 3 = 0"
    )
    con.execute("update int_persons_standardized set name = null where record_key in (7, 70)")
    con.execute("update raw_records set record_id = 'PO000001' where record_key = 2")
    return con


def broken_night() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    nights.build_night(con)
    con.execute(
        "update raw_records set record_id = 'RE000001' where source = 'residence' and record_id = 'RE000002'"
    )
    con.execute(
        "insert into entity_map select record_key, source, record_id, 'P0000000000ff' from entity_map where record_key = 5"
    )
    con.execute("delete from entity_map where record_key = 7")
    con.execute("update entity_map set person_id = 'p-1' where record_key = 9")
    con.execute("update entity_map set person_id = 'P000000000001' where person_id = 'P000000000002'")
    con.execute("update share_rates set share_rate = share_rate - 0.1 where source = 'police_hukou'")
    con.execute("update share_rates set shared_persons = null where source = 'residence'")
    con.execute(f"delete from run_source_counts where run_id = '{RUN_ID}' and source = 'health'")
    con.execute("delete from quarantine where source = 'residence'")
    return con


def reference_results(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], dict]:
    """(suite, batch, check) -> the result GX's pandas engine gives on the suite's frame."""

    context = validation._gx_context(Path(tempfile.mkdtemp(prefix="renhu-parity-")))
    asset = context.data_sources.add_pandas("reference").add_dataframe_asset("frame")
    definition = asset.add_batch_definition_whole_dataframe("whole")
    limits = load_thresholds()
    found = {}
    create_compared_nights_view(con)
    for suite in load_suites():
        params = {"run_id": RUN_ID, "mask_salt": SALT}
        used = {k: v for k, v in params.items() if f"${k}" in suite.frame_sql}
        # As pyarrow hands a frame to pandas (what GX's parquet and dataframe assets read):
        # integers with missing values become floats with NaN.
        frame = con.execute(suite.frame_sql, used).to_arrow_table().to_pandas()
        names = [RUN_BATCH] if suite.batch == RUN_BATCH else sorted(frame["source"].unique())
        for name in names:
            source = None if name == RUN_BATCH else name
            rows = frame if source is None else frame[frame["source"] == source].reset_index(drop=True)
            empty = [
                c for c in rows.columns
                if c.startswith("has_") and c.removeprefix("has_") in validation.OPTIONAL_FIELDS and not rows[c].any()
            ]  # fmt: skip
            rows = rows.drop(columns=empty)
            run_values = {"mapped_field_columns": _mapped_field_columns(MAPPED, source)}
            batch = _Batch(suite, name, len(rows), limits.for_source(source), run_values)
            outcome = definition.get_batch(batch_parameters={"dataframe": rows}).validate(
                _build_suite(batch), result_format=validation._RESULT_FORMAT
            )
            for item in outcome.results:
                found[(suite.suite, name, item.expectation_config.meta["check"])] = item
    return found


def _missing_as_none(value):
    # pandas shows a missing number as NaN, DuckDB as None (which also stays valid JSON);
    # pandas' numbers are numpy's.
    if isinstance(value, list | tuple):
        return tuple(_missing_as_none(v) for v in value)
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize("night", [warnings_night, broken_night])
def test_duckdb_metrics_give_gx_pandas_results(night, tmp_path, monkeypatch):
    con = night()
    monkeypatch.setattr(validation.secrets, "token_hex", lambda n: SALT)
    summary = run_validation(con, tmp_path, RUN_ID, mapped_fields=MAPPED)
    expected = reference_results(con)

    ours = {(c.suite, c.batch, c.check): c for c in summary.checks}
    assert set(ours) == set(expected)
    assert summary.failed >= 10  # the nights do plant failures: the comparison is not of passes only
    compared_examples = 0
    for key, reference in expected.items():
        mine, result = ours[key], reference.result or {}
        assert mine.success == reference.success, key
        assert mine.element_count == result.get("element_count"), key
        assert mine.unexpected_count == result.get("unexpected_count"), key
        assert mine.unexpected_percent == pytest.approx(result.get("unexpected_percent")), key
        assert mine.observed_value == result.get("observed_value"), key
        partial = [_missing_as_none(v) for v in result.get("partial_unexpected_list") or []]
        if (result.get("unexpected_count") or 0) <= validation.EXAMPLES_PER_CHECK:
            # Up to 10 unexpected values GX shows them all; beyond, which 10 depends on row order.
            shown = set(
                validation._distinct(partial)
            )  # 1 == 1.0: pandas holds an int column with gaps as floats
            assert set(mine.examples) <= shown, key
            assert len(mine.examples) == min(3, len(shown)), key
            compared_examples += bool(partial)
    assert compared_examples >= 5
