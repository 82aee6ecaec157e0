"""How an sfsync process logs: one format on stderr, and no personal data at INFO.

:func:`configure` is what every process entry point calls. It keeps httpx's and httpcore's INFO
lines out: they name every request's URL, and a Salesforce match query's URL carries members'
emails (``...WHERE Email IN ('ada@example.com', ...)``).
"""

from __future__ import annotations

import logging

__all__ = ["FORMAT", "QUIET_LIBRARIES", "configure"]

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUIET_LIBRARIES = ("httpx", "httpcore")
"""Libraries whose INFO lines carry request URLs: logged from WARNING up only."""


def configure(level: int = logging.INFO) -> None:
    """Log at ``level`` to stderr in :data:`FORMAT`; the :data:`QUIET_LIBRARIES` at WARNING at least."""
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
