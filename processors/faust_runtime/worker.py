"""Run a built Faust app as this process's worker: one place for what both processors' commands do.

:func:`run_faust_worker` runs the worker in the main thread until SIGTERM/SIGINT (or ``max_seconds``),
closes what the app holds outside Faust, and turns the outcome into an exit status;
:func:`command_main` is the ``python -m processors.<app> [max_seconds]`` entry point around it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust

from sfsync.errors import SfsyncError
from sfsync.logs import configure as configure_logging

__all__ = ["command_main", "run_faust_worker"]


def run_faust_worker(
    app: Any, *, max_seconds: float | None, loglevel: str, closers: Sequence[Callable[[], None]] = ()
) -> int:
    """Run ``app`` (a ``faust.App``) until it is stopped; its exit status (non-zero when it crashed).

    Installs signal handlers: call it in the process's main thread. ``closers`` run afterwards, in
    order, whatever happened (producers outside Faust, the metrics server...)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = faust.Worker(app, loop=loop, loglevel=loglevel, override_logging=False, quiet=True)
    if max_seconds is not None:
        # The worker's own SIGTERM path: stops agents, commits, closes clients.
        loop.call_later(max_seconds, os.kill, os.getpid(), signal.SIGTERM)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    else:  # pragma: no cover - execute_from_commandline always exits
        code = 0
    finally:
        for close in closers:
            close()
    if app.crash_reason is not None and code == 0:
        code = 1
    return code


def command_main(run: Callable[..., int], argv: Iterable[str] | None = None) -> None:
    """``python -m <module> [max_seconds]``: log to stderr, run, exit with the status (2: sfsync's
    own start-up error, printed as one line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        code = run(max_seconds=float(args[0]) if args else None)
    except SfsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
