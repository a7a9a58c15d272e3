"""The one test of "a finite number", shared by validation, summaries, analysis and the report.

Booleans are not numbers here (YAML reads ``yes`` as True, and ``True + 1`` is no learning rate);
an integer too large for any float is not finite (``float(10**400)`` overflows), so a value that
passes can always be computed with as a float.
"""

from __future__ import annotations

import math

__all__ = ["finite"]


def finite(value: object) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None.

    None, strings, booleans, NaN, infinities and integers beyond the float range all give None,
    so ``finite(v) is not None`` reads "v is a usable number".
    """
    if type(value) is float:  # the common case first: the report checks ~10^5 values per page
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the largest float
        return None
    return number if math.isfinite(number) else None
