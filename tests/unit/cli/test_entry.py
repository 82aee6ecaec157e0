"""The console script in an install without the worker extra: a clear word, not a traceback."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_a_missing_pipeline_package_names_it_and_the_extra_to_install_and_exits_2() -> None:
    # None in sys.modules makes `import cel` raise ModuleNotFoundError, as in an SDK-only install
    done = _run("import sys; sys.modules['cel'] = None; from sfsync.cli.entry import main; main()")

    assert done.returncode == 2
    assert "cel is not installed" in done.stderr
    assert "pip install 'sfsync[worker]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_with_every_package_the_command_line_runs() -> None:
    done = _run("import sys; sys.argv = ['sfsync', '--help']; from sfsync.cli.entry import main; main()")

    assert done.returncode == 0, done.stderr
    assert "stack" in done.stdout
