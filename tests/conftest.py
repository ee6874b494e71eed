"""Shared fixtures: one Prefect test server for the whole session, started only when a
test asks for it (most tests call plain functions and never need it)."""

from __future__ import annotations

import os

import pytest

# Progress spinners would interleave with pytest's output.
os.environ.setdefault("RENHU_PROGRESS", "0")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    # Prefect's temporary server takes 12-23 s to start here: once per session.
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def write_corrupt_parquet():
    """Writes a Parquet file whose schema and footer read but whose second row group's
    pages do not: only reading the file to its end finds it bad."""

    def write(path, rows: int = 3000) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({
            "grbh": [f"s{i}" for i in range(rows)],
            "xm": [f"张{i}伟" for i in range(rows)],
            "sfzh": [f"33060219900102{i % 10000:04d}" for i in range(rows)],
        })
        pq.write_table(table, path, row_group_size=rows // 3, compression="zstd")
        chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)
        data = bytearray(path.read_bytes())
        for i in range(chunk.data_page_offset + 8, chunk.data_page_offset + chunk.total_compressed_size - 8):
            data[i] ^= 0x5A
        path.write_bytes(bytes(data))

    return write
