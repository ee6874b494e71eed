"""Hand-made cities for the household, rate and report tests: record dicts into the frames the
stages hand over (the standardized records and the entity map)."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl


def record(
    departments: Mapping[str, tuple[str, str]], source: str, record_id: str, person_id: str | None, **fields: object
) -> dict[str, object]:
    """One record of `source`, whose department and source kind come from `departments`."""
    department, kind = departments[source]
    return {
        "source": source,
        "department": department,
        "source_kind": kind,
        "record_id": record_id,
        "person_id": person_id,
        **fields,
    }


def city_frames(rows: list[dict[str, object]], schema: Mapping[str, pl.DataType]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """std and entity_map from record dicts, keyed in row order (the person_id goes to the entity map only)."""
    frame = pl.DataFrame(rows, schema=dict(schema)).with_row_index("record_key")
    return frame.drop("person_id"), frame.select("record_key", "source", "record_id", "person_id")
