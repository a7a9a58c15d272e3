"""Best and final values of a trial's objective curve, chosen retrospectively.

The playbook: a trial's value is its best checkpoint's (the best evaluation over training), not
its last; both are kept so the choice can be changed after the fact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["CurveSummary", "error_line", "finite_json", "format_value", "guess_goal", "summarize"]


def format_value(v: object, digits: int = 4) -> str:
    """How values are shown to people: 4 significant digits, ``-`` for missing."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)

_HIGHER_IS_BETTER = ("acc", "accuracy", "auc", "f1", "precision", "recall", "bleu", "rouge",
                     "map", "ndcg", "iou", "dice", "r2", "reward", "return", "score")


def guess_goal(metric: str) -> Literal["minimize", "maximize"]:
    """The likely direction of a metric named on the command line without ``--goal``.

    Accuracies, AUC, F1, BLEU, rewards and scores are maximised; losses, errors, perplexity
    and anything unknown are minimised.
    """
    words = [w for w in metric.lower().replace("-", "_").split("_") if w]
    return "maximize" if any(w in _HIGHER_IS_BETTER for w in words) else "minimize"


@dataclass(frozen=True)
class CurveSummary:
    """Best (retrospective) and final points of one metric's curve; None when absent."""

    best_step: int | None
    best_value: float | None
    final_step: int | None
    final_value: float | None

    def value(self, final: bool = False) -> float | None:
        """The final value when ``final`` else the best value."""
        return self.final_value if final else self.best_value

    def as_dict(self) -> dict[str, int | float | None]:
        """Plain dict with best_step, best_value, final_step, final_value."""
        return {"best_step": self.best_step, "best_value": self.best_value,
                "final_step": self.final_step, "final_value": self.final_value}


def summarize(points: Iterable[tuple[int, float]],
              goal: Literal["minimize", "maximize"] = "minimize") -> CurveSummary:
    """Summarise ``(step, value)`` points; non-finite values are never best.

    Ties keep the earliest step (the cheaper checkpoint). The final point is the last step,
    whatever its value (NaN included, so a diverged run shows as such).
    """
    pts: Sequence[tuple[int, float]] = sorted(points)
    if not pts:
        return CurveSummary(None, None, None, None)
    best: tuple[int, float] | None = None
    for step, v in pts:
        if not math.isfinite(v):
            continue
        if best is None or (v < best[1] if goal == "minimize" else v > best[1]):
            best = (step, v)
    final_step, final_value = pts[-1]
    return CurveSummary(best[0] if best else None, best[1] if best else None,
                        final_step, final_value if math.isfinite(final_value) else None)


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
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value
