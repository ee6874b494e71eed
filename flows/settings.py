"""The one reader of environment variables: a typed settings object built once per run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    # DuckDB spills to disk past this. DuckDB otherwise keeps table pages it has read up to
    # its limit: at a million records 1 GB cut ingest's peak from 2.7 to 1.5 GB and link's
    # from 2.9 to 2.3 GB at the same speed; larger nights spill their joins instead.
    duckdb_memory_limit: str = "1GB"
    duckdb_threads: int = 0  # 0: DuckDB's default (all cores)
    duckdb_temp_dir: Path | None = None
    # A source's row count moving by more than this share against last night is flagged.
    row_count_band: float = 0.3
    show_progress: bool = True
    # Re-standardize and re-link every record and refit the linkage model instead of reusing
    # last night's work for unchanged records (`renhu run --full-refresh`).
    full_refresh: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        temp_dir = env.get("RENHU_DUCKDB_TEMP_DIR")
        return cls(
            duckdb_memory_limit=env.get("RENHU_DUCKDB_MEMORY_LIMIT", cls.duckdb_memory_limit),
            duckdb_threads=int(env.get("RENHU_DUCKDB_THREADS", "0")),
            duckdb_temp_dir=Path(temp_dir) if temp_dir else None,
            row_count_band=float(env.get("RENHU_ROW_COUNT_BAND", str(cls.row_count_band))),
            show_progress=env.get("RENHU_PROGRESS", "1") not in {"0", "false", "no"} and env.get("CI") != "true",
            full_refresh=_flag(env.get("RENHU_FULL_REFRESH")),
        )

    @staticmethod
    def prefect_api_configured() -> bool:
        return bool(os.environ.get("PREFECT_API_URL"))
