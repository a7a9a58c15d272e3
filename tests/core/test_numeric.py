"""The one finite-number test shared by validation, summaries, analysis and the report."""

from __future__ import annotations

import math

import pytest

from tunebook.core.numeric import finite


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1.0), (-2.5, -2.5), (0.0, 0.0), (1e308, 1e308),
    (True, None), (False, None), ("1.0", None), (None, None), ([1.0], None),
    (math.nan, None), (math.inf, None), (-math.inf, None), (10**400, None),
])
def test_finite_is_the_one_test_of_a_usable_number(value: object, expected: float | None) -> None:
    got = finite(value)
    assert got == expected and (got is None or type(got) is float)
