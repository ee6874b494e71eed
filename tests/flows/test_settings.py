"""The run's settings from the environment (the one reader of RENHU_* variables)."""

from __future__ import annotations

import pytest

from flows.settings import Settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("false", False), ("1", True), ("true", True), ("YES", True)],
)
def test_full_refresh_from_the_environment(monkeypatch, value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("RENHU_FULL_REFRESH", raising=False)
    else:
        monkeypatch.setenv("RENHU_FULL_REFRESH", value)
    assert Settings.from_env().full_refresh is expected


def test_full_refresh_is_off_by_default() -> None:
    assert Settings().full_refresh is False
