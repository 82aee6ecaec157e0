"""Child processes of integration tests: sfsync's components run as ``python -m module`` against the
test's own topics, each in its own session with its output in a log file, stopped as a pod is; every one
started is listed (:attr:`Spawned.started`), and a worker given a metrics port has its ``/metrics`` read
just before it is stopped or killed (what the secrets audit greps: ``secrets_audit``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]


def pipeline_env(services: Any, prefix: str, **extra: str) -> dict[str, str]:
    """This process's environment pointed at the test's Kafka, registry and topic prefix, plus ``extra``."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
        "SCHEMA_REGISTRY_URL": services.registry,
        "SFSYNC_TOPIC_PREFIX": prefix,
        **extra,
    }


def processor_env(services: Any, prefix: str, app_id: str, **extra: str) -> dict[str, str]:
    """:func:`pipeline_env` for ``sfsync.processors.outbound.app`` as ``app_id``: a 10 s session timeout, commits every
    half second, no fixed metrics port (tests run side by side); ``extra`` adds or overrides settings."""
    settings = {
        "SFSYNC_PROCESSOR_APP_ID": app_id,
        "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
        "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "0.5",
        "SFSYNC_PROCESSOR_METRICS_PORT": "0",
    }
    return pipeline_env(services, prefix, **{**settings, **extra})


def salesforce_env(running: Any) -> dict[str, str]:
    """``SALESFORCE_*`` settings for the emulated org ``running`` (its first connected app, client credentials)."""
    app = running.emulator.auth.config.connected_apps[0]
    return {
        "SALESFORCE_LOGIN_URL": running.base_url,
        "SALESFORCE_AUTH_FLOW": "client_credentials",
        "SALESFORCE_CLIENT_ID": app.client_id,
        "SALESFORCE_CLIENT_SECRET": app.client_secret,
    }


class Spawned:
    """``python -m module *args`` in a session of its own, stdout and stderr appended to ``log`` (a file,
    not a pipe: a full pipe would block the child). It runs in ``cwd``, by default the log's folder
    (where Faust puts its table data, out of the checkout).

    ``metrics_port``: the port the child serves ``/metrics`` on (its ``SFSYNC_*_METRICS_PORT``): the page is
    read into :attr:`metrics_text` each time the child is stopped or killed while it runs.
    """

    started: ClassVar[list[Spawned]] = []
    """Every child spawned by this test process, in order."""

    def __init__(
        self,
        module: str,
        *args: str,
        env: dict[str, str],
        log: Path,
        cwd: Path | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.log = log
        self.name = f"{module} {' '.join(args)}".strip()
        self.metrics_port = metrics_port
        self.metrics_text: str | None = None
        """The ``/metrics`` page as last read (None: never read)."""
        self.metrics_error: str | None = None
        """Why the last read of ``/metrics`` failed (None: it did not)."""
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=cwd or log.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        Spawned.started.append(self)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def read_metrics(self) -> None:
        """Read the child's ``/metrics`` page into :attr:`metrics_text` (when it has a metrics port and runs)."""
        if self.metrics_port is None or self.proc.poll() is not None:
            return
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as page:
                self.metrics_text = page.read().decode("utf-8", "replace")
                self.metrics_error = None
        except OSError as exc:
            self.metrics_error = f"{type(exc).__name__}: {exc}"

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then wait up to ``timeout_s`` (SIGKILL to the whole session after that); the exit status."""
        self.read_metrics()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL to the whole session, as a crash or an evicted pod: nothing is flushed or committed."""
        self.read_metrics()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def output(self) -> str:
        """Everything the child wrote (to ``log``, with what earlier runs appended to it)."""
        return self.log.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the log, for assertion messages."""
        return self.output()[-chars:]


def spawn(module: str, env: dict[str, str], folder: Path) -> Spawned:
    """``python -m module 280`` (it stops by itself should the test die), its log and data in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return Spawned(module, "280", env=env, log=folder / "out.log")


def unexpected_tracebacks(log: str) -> list[str]:
    """Tracebacks in a worker log, except Faust's cancelled agents on shutdown (``CancelledError``)."""
    blocks = re.split(r"\n(?=\d{4}-\d{2}-\d{2} )", log)
    return [b for b in blocks if "Traceback" in b and not b.rstrip().endswith("CancelledError")]
