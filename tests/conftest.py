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
