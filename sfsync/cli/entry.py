"""The ``sfsync`` console script: the command line, or a clear word when the install lacks its packages.

``pip install sfsync`` is the product SDK alone; the command line needs the pipeline's packages
(``pip install 'sfsync[worker]'``). Without them, :func:`main` names the missing package and the
extra to install, and exits 2, instead of a traceback.
"""

from __future__ import annotations

import sys

WORKER_EXTRA_HINT = "pip install 'sfsync[worker]'"


def main() -> None:
    """Run the command line (:data:`sfsync.cli.main.app`)."""
    try:
        # imported here, not at the top: this is the one place that can tell a missing extra apart
        from sfsync.cli.main import app
    except ModuleNotFoundError as exc:
        missing = exc.name or "a package"
        print(
            f"sfsync: the command line needs the pipeline's packages ({missing} is not installed): {WORKER_EXTRA_HINT}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    app()
