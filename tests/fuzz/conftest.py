"""Hypothesis profiles of the fuzz tests.

- ``ci`` (loaded when ``CI=true``, as ``.ci/run`` sets it): derandomized, so a CI run is reproducible
  and a failure shows up again on the next run; no example database; 200 examples per test at most.
- ``dev`` (otherwise): random examples, remembered in ``.hypothesis/`` so a failure found once is
  tried first next time; the same bound.
- ``deep``: ``HYPOTHESIS_PROFILE=deep`` for a long hunt by hand (5,000 examples per test).

No deadline: the machine is shared, and a slow example is not what these tests are about. The whole
folder stays under a minute on two cores with the bounded profiles; a test whose examples are
costly lowers its own ``max_examples``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

settings.register_profile("ci", max_examples=200, derandomize=True, database=None, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=200, **_COMMON)
settings.register_profile("deep", max_examples=5_000, **_COMMON)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() in ("1", "true") else "dev")
)
