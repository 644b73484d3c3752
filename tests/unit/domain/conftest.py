"""Hypothesis settings for the mutation pass (`make mutation`, benchmarks/MUTATION.md).

With GRIDBOT_MUTATION set, property and stateful tests run the same examples for every mutant
(derandomized, no example database) and stop at the first failure without shrinking it: a
mutant only needs to be caught, not explained. Unset (the normal test run), nothing changes.
"""

from __future__ import annotations

import os

from hypothesis import Phase, settings

if os.environ.get("GRIDBOT_MUTATION"):
    settings.register_profile(
        "mutation",
        derandomize=True,
        database=None,
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
    )
    settings.load_profile("mutation")
