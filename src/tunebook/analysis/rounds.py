"""The best configurations of a finished round, the material of the next one.

:func:`top_configs` reads, per study, the parameters of its ``k`` best completed trials (under
the experiment's objective, best over training unless ``final``): what
:func:`tunebook.experiment.rounds.next_round` narrows the next round's search space around.
Every study of the store counts, replicate studies of other search seeds included (more
evidence about where the good region is).
"""

from __future__ import annotations

from tunebook.analysis.data import ExperimentData
from tunebook.errors import TunebookError
from tunebook.search.space import Value

__all__ = ["best_configs", "top_configs"]


def top_configs(data: ExperimentData, k: int) -> dict[str, list[dict[str, Value]]]:
    """Per study, the parameters of its ``k`` best completed trials, best first.

    Raises TunebookError (one line, naming ``--top``) when a study has fewer than ``k``
    completed trials with a value: the next round would rest on trials that did not finish.
    """
    out: dict[str, list[dict[str, Value]]] = {}
    for study in data.studies:
        ranked = data.ranked(study)
        if len(ranked) < k:
            raise TunebookError(
                f"--top: {k} is more than the {len(ranked)} completed trial(s) of study "
                f"{study!r} of {data.name!r}; give --narrow --top {max(1, len(ranked))} or "
                "finish the round first" if ranked else
                f"--top: study {study!r} of {data.name!r} has no completed trial yet: "
                "finish the round first (tunebook run FILE)")
        out[study] = [dict(t.params) for t in ranked[:k]]
    return out


def best_configs(data: ExperimentData, k: int) -> list[tuple[str, dict[str, Value]]]:
    """The ``k`` best distinct configurations over every study, best first, each with where it
    came from (``study #index: value``).

    Raises TunebookError (one line, naming ``--top``) when there are fewer than ``k``.
    """
    out: list[tuple[str, dict[str, Value]]] = []
    seen: list[dict[str, Value]] = []
    for t in data.ranked():
        if t.params in seen:  # replicates of one configuration count once
            continue
        seen.append(t.params)
        out.append((f"trial {t.label}, {data.metric} {data.value(t):.4g}", dict(t.params)))
        if len(out) == k:
            return out
    raise TunebookError(f"--top: {k} is more than the {len(out)} distinct completed "
                        f"configuration(s) of {data.name!r}; give --top {max(1, len(out))} or "
                        "finish the round first" if out else
                        f"--top: {data.name!r} has no completed trial yet: finish the round "
                        "first (tunebook run FILE)")
