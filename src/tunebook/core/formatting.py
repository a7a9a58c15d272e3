"""How trial values and errors are shown: numbers for people, strict JSON, one error line.

A curve's best and final values and the direction guessed from a metric's name are the
objective's rules: :mod:`tunebook.objective`.
"""

from __future__ import annotations

import math

from tunebook.core.numeric import finite

__all__ = ["error_line", "finite_json", "format_value"]


def format_value(v: object, digits: int = 4) -> str:
    """How values are shown to people: 4 significant digits, ``-`` for missing."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


def error_line(error: str | None, limit: int = 200) -> str:
    """The line of a failed trial's error that says what happened, at most ``limit`` chars.

    The last non-empty line of a traceback (the exception itself), or of a command's output.
    """
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    return lines[-1][:limit] if lines else "(no error recorded)"


def finite_json(value: object) -> object:
    """``value`` with every non-finite float replaced by None: strict JSON has no NaN or
    Infinity (for the command line's ``--format json`` and the report's embedded data)."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Curves are long lists of floats: those go straight to the number check.
        return [finite(v) if type(v) is float else finite_json(v) for v in value]
    return value
