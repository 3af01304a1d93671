"""Test-suite settings shared by every test package: Hypothesis profiles.

The default profile is derandomized: every property-based test draws the same examples on
every run, so the suite's verdict depends on the code alone, never on the day's luck. To hunt
for new failing inputs with fresh random examples, run (as often as you like)::

    HYPOTHESIS_PROFILE=explore python -m pytest tests/scenario tests/stress

and turn whatever it finds into a fixed regression test.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
