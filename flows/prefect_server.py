"""Prefect's own API server for one `renhu run`, started before anything imports Prefect.

Without PREFECT_API_URL, Prefect starts a temporary server itself the first time the
flow needs its API ("ephemeral mode"). That costs the night seconds it need not: the
command must first import Prefect's whole server package (FastAPI, SQLAlchemy, every
API model: 1.7 s alone, 4-8 s while the extracts are read) only to launch a child process,
which then imports it all again. Here the child is launched first, with the same command and
environment Prefect uses (`uvicorn prefect.server.api.server:create_app`, no UI, in the
ephemeral server's mode, on the same database), and this process points PREFECT_API_URL at
it. The flow, its logs and its artifacts go to that server exactly as they would to
Prefect's own temporary one, and so to the database `prefect server start` later shows.

Nothing here imports Prefect at module level: launching must not wait for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

# Settings the server child gets on top of this process's environment. The first three are
# what Prefect's own temporary server sets (prefect.server.api.server.SubprocessASGIServer).
# Automations (triggers, and the actions they start) are switched off: they answer events
# over hours and days, and this server lives for one run; flow runs, task runs, logs, events
# and artifacts are all still recorded.
SERVER_ENVIRONMENT: dict[str, str] = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    # The machines renhu runs on have no way out; telemetry would only log DNS errors.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

# Prefect's own default is 20 s (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); this 2-core
# machine at a load of 7 has needed 22 s, and a first run creates Prefect's database as well.
STARTUP_TIMEOUT_SECONDS = 60.0


class ServerStartError(RuntimeError):
    """The temporary server did not answer; the message is one line for the steward."""


def free_port() -> int:
    # The kernel's choice of a free port; the child binds it a moment later.
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(port: int) -> list[str]:
    """The command Prefect itself runs for its temporary server (UI off, errors only)."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        raise ServerStartError("Prefect is not installed in this environment")
    return [
        sys.executable, "-m", "uvicorn",
        "--app-dir", str(Path(spec.origin).parent.parent),
        "--factory", "prefect.server.api.server:create_app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]


def _die_with_parent():
    """A function for Popen's preexec_fn that has the child sent SIGTERM when this process
    dies, however it dies (SIGKILL, an out-of-memory kill, SIGTERM while Prefect handles it),
    so the temporary server does not outlive its run; None where Linux's prctl is not there.

    The library is loaded here, before the fork: the child only makes the one call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return set_parent_death_signal


def _popen(command: list[str], environment: Mapping[str, str]) -> subprocess.Popen:
    # The parent-death signal follows the thread that forks: launch and its relaunch run on the
    # main thread, which lives as long as the run.
    return subprocess.Popen(command, env=environment, preexec_fn=_die_with_parent())


def server_environment(base: Mapping[str, str]) -> dict[str, str]:
    environment = {key: value for key, value in base.items() if key not in {"PREFECT_API_URL", "PREFECT_UI_URL"}}
    environment.update(SERVER_ENVIRONMENT)
    return environment


class TemporaryPrefectServer:
    """One Prefect API server child for this process's run.

    `launch()` returns at once; `wait_until_ready()` blocks until the API answers; `stop()`
    lets the server shut down cleanly (its event persister writes the last events on the way).
    """

    def __init__(self, port: int, process: subprocess.Popen, environment: Mapping[str, str]) -> None:
        self.port = port
        self.process: subprocess.Popen | None = process
        self._environment = dict(environment)
        self.launched_at = time.perf_counter()
        self.ready_seconds: float | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @classmethod
    def launch(cls, environment: Mapping[str, str] | None = None) -> TemporaryPrefectServer:
        environment = server_environment(os.environ if environment is None else environment)
        port = free_port()
        return cls(port, _popen(server_command(port), environment), environment)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_until_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> float:
        """Block until the API answers /health; returns seconds since launch. Relaunches once
        on a new port if the child died first (another process took the port in between)."""
        deadline = time.perf_counter() + timeout
        relaunched = False
        while time.perf_counter() < deadline:
            if self.process is None:
                raise ServerStartError("the temporary Prefect server was stopped before it started")
            code = self.process.poll()
            if code is not None:
                if relaunched:
                    raise ServerStartError(f"Prefect's temporary server exited with status {code} before it answered")
                relaunched = True
                self.port = free_port()
                self.process = _popen(server_command(self.port), self._environment)
                continue
            if self._answers():
                self.ready_seconds = time.perf_counter() - self.launched_at
                return self.ready_seconds
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(f"Prefect's temporary server did not answer within {timeout:.0f} s")

    def terminate(self) -> None:
        """Ask the server to shut down without waiting for it (see `stop`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Point this process's Prefect at the server while the flow runs.

        The environment variables reach Prefect's global settings (which its log and event
        workers fall back to in their own threads) through `refresh_global_settings_context`;
        `temporary_settings` covers the flow's own context. On the way out the logs and events
        Prefect still holds are sent, then both are undone.
        """
        import prefect.context
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
            PREFECT_UI_URL,
            temporary_settings,
        )

        # No "View at" link: this server has no UI and is gone when the run ends.
        variables = {"PREFECT_API_URL": self.api_url, "PREFECT_UI_URL": ""}
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        prefect.context.refresh_global_settings_context()
        try:
            # Heartbeats let a long-lived server notice a run whose process died; this one dies
            # with the process, and the heartbeat thread takes up to a second to stop.
            with temporary_settings(updates={
                PREFECT_API_URL: self.api_url, PREFECT_UI_URL: "", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            }):
                try:
                    yield
                finally:
                    drain_prefect_workers()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            prefect.context.refresh_global_settings_context()


def prefect_api_url() -> str | None:
    """The API URL Prefect's own settings give (environment, profile, prefect.toml, .env)."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def drain_prefect_workers(timeout: float = 10.0) -> None:
    """Send the logs and events Prefect still holds, before its server goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout)
    EventsWorker.drain_all(timeout=timeout)
