"""`full_refresh` is a parameter of the nightly flow and lands in the run's Settings.

The flow's body is called without Prefect (`nightly.fn`) and stopped where it opens the
run, which is where the settings it built are handed on to every stage.
"""

from __future__ import annotations

import inspect

import pytest

from flows import nightly as nightly_module
from flows.settings import Settings


class _Opened(Exception):
    pass


@pytest.fixture
def opened_settings(monkeypatch, tmp_path):
    seen: list[Settings] = []

    def open_run(sources_file, out_dir, db_path, settings):
        seen.append(settings)
        raise _Opened

    monkeypatch.setattr(nightly_module, "open_run", open_run)
    monkeypatch.setattr("flows.validation.preload_great_expectations", lambda: None)

    def run(env_value: str | None, **parameters) -> Settings:
        if env_value is None:
            monkeypatch.delenv("RENHU_FULL_REFRESH", raising=False)
        else:
            monkeypatch.setenv("RENHU_FULL_REFRESH", env_value)
        with pytest.raises(_Opened):
            nightly_module.nightly.fn(str(tmp_path / "sources.yaml"), str(tmp_path / "out"), **parameters)
        return seen[-1]

    return run


def test_full_refresh_is_a_flow_parameter_off_by_default() -> None:
    parameter = inspect.signature(nightly_module.nightly.fn).parameters["full_refresh"]
    assert parameter.default is False and parameter.annotation in (bool, "bool")
    # Prefect's parameter schema is what a deployment's "custom run" form shows.
    schema = nightly_module.nightly.parameters.model_dump()["properties"]["full_refresh"]
    assert schema["default"] is False and schema["type"] == "boolean"


@pytest.mark.parametrize(
    ("env_value", "parameters", "expected"),
    [
        (None, {}, False),
        (None, {"full_refresh": True}, True),
        # A deployment sets RENHU_FULL_REFRESH=1 in its environment instead of the parameter.
        ("1", {}, True),
        ("0", {"full_refresh": True}, True),
    ],
)
def test_full_refresh_lands_in_the_runs_settings(opened_settings, env_value, parameters, expected) -> None:
    assert opened_settings(env_value, **parameters).full_refresh is expected
