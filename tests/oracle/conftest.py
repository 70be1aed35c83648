"""Hypothesis profiles for the exactness oracle.

``bounded`` (``make test``, the default) keeps the whole oracle near a minute; ``full``
(``make test-full``, or ``NBVERSION_ORACLE=full``) runs at least 10,000 generated examples in
all (sessions, fresh interpreters, file trees and values). Failures Hypothesis finds are replayed from its database first, then become named
regression tests.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
# The bounded profile is derandomized: `make test` (and CI) plays the same sessions every time,
# so it passes or fails on the code alone; the full profile explores new ones on every run.
settings.register_profile("bounded", max_examples=25, stateful_step_count=20, derandomize=True, **_COMMON)
settings.register_profile("full", max_examples=4200, stateful_step_count=40, **_COMMON)
settings.load_profile(os.environ.get("NBVERSION_ORACLE", "bounded"))
