"""The temporary Prefect server `renhu run` launches before it imports Prefect."""

from __future__ import annotations

import sys
import urllib.request

import pytest

from flows import prefect_server
from flows.prefect_server import ServerStartError, TemporaryPrefectServer, server_environment


def test_the_child_gets_prefects_own_temporary_server_settings_and_not_the_clients_api_url() -> None:
    environment = server_environment(
        {"PATH": "/usr/bin", "PREFECT_API_URL": "http://elsewhere:4200/api", "PREFECT_UI_URL": "", "PREFECT_HOME": "/h"}
    )
    # What prefect.server.api.server.SubprocessASGIServer sets for its own temporary server.
    assert environment["PREFECT_UI_ENABLED"] == "0"
    assert environment["PREFECT__SERVER_EPHEMERAL"] == "1"
    assert environment["PREFECT__SERVER_FINAL"] == "1"
    # The server is the API; a client setting pointing elsewhere must not leak into it.
    assert "PREFECT_API_URL" not in environment and "PREFECT_UI_URL" not in environment
    assert environment["PREFECT_HOME"] == "/h" and environment["PATH"] == "/usr/bin"


def test_the_command_is_uvicorn_serving_prefects_app_factory() -> None:
    command = prefect_server.server_command(4321)
    assert command[:3] == [sys.executable, "-m", "uvicorn"]
    assert "prefect.server.api.server:create_app" in command and "--factory" in command
    assert command[command.index("--port") + 1] == "4321"


def test_a_server_that_dies_before_answering_is_relaunched_once_then_reported(monkeypatch) -> None:
    launches: list[int] = []

    def dying_command(port: int) -> list[str]:
        launches.append(port)
        return [sys.executable, "-c", "raise SystemExit(3)"]

    monkeypatch.setattr(prefect_server, "server_command", dying_command)
    server = TemporaryPrefectServer.launch()
    with pytest.raises(ServerStartError, match="exited with status 3 before it answered"):
        server.wait_until_ready(timeout=30)
    assert len(launches) == 2
    server.stop()
    assert server.process is None


def test_a_server_that_never_answers_is_stopped_after_the_timeout(monkeypatch) -> None:
    monkeypatch.setattr(prefect_server, "server_command",
                        lambda port: [sys.executable, "-c", "import time; time.sleep(60)"])
    server = TemporaryPrefectServer.launch()
    process = server.process
    with pytest.raises(ServerStartError, match="did not answer within 1 s"):
        server.wait_until_ready(timeout=1)
    assert server.process is None and process.poll() is not None


@pytest.fixture
def own_prefect_home(tmp_path, monkeypatch):
    """A Prefect database of the test's own, so it neither needs nor touches ~/.prefect."""
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    yield
    monkeypatch.undo()
    import prefect.context

    # `serving` refreshed Prefect's process-wide settings from the patched environment.
    prefect.context.refresh_global_settings_context()


@pytest.mark.slow
def test_a_flow_run_inside_serving_is_recorded_by_the_server_and_settings_are_restored(own_prefect_home) -> None:
    server = TemporaryPrefectServer.launch()
    try:
        assert server.wait_until_ready() > 0
        with urllib.request.urlopen(f"{server.api_url}/health") as response:
            assert response.status == 200

        from prefect import flow, get_run_logger
        from prefect.client.orchestration import get_client
        from prefect.settings import get_current_settings

        @flow(name="renhu-server-check")
        def check(value: int) -> int:
            get_run_logger().info("checking %d", value)
            return value + 1

        with server.serving():
            settings = get_current_settings()
            assert settings.api.url == server.api_url
            assert settings.flows.heartbeat_frequency is None
            assert check(41) == 42
            prefect_server.drain_prefect_workers()  # the run's logs are sent in batches
            with get_client(sync_client=True) as client:
                (run,) = client.read_flow_runs()
                assert run.state.is_completed() and run.parameters == {"value": 41}
                logs = client.read_logs()
                assert any(log.message == "checking 41" for log in logs)
        after = get_current_settings()
        assert after.api.url != server.api_url
        assert after.flows.heartbeat_frequency is not None
    finally:
        process = server.process
        server.stop()
    assert process.poll() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_the_server_does_not_outlive_a_run_that_is_killed(tmp_path) -> None:
    # `renhu run` killed with SIGKILL (or by the kernel's out-of-memory killer) runs no finally
    # and no atexit: its temporary server must still go.
    import os
    import signal
    import subprocess
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from flows import prefect_server\n"
         "prefect_server.server_command = lambda port: [sys.executable, '-c', 'import time; time.sleep(60)']\n"
         "server = prefect_server.TemporaryPrefectServer.launch()\n"
         "print(server.process.pid, flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def running(pid: int) -> bool:
        try:
            status = open(f"/proc/{pid}/status", encoding="ascii").read()
        except FileNotFoundError:
            return False
        return "\nState:\tZ" not in status  # a zombie is dead, waiting to be reaped

    deadline = time.monotonic() + 10
    while running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = running(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive
