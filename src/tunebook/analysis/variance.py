"""Study variance: how much each study's best trial moves from one search seed to the next.

An experiment with ``search.seeds`` repeats every study's search with each seed
(:mod:`tunebook.experiment.seeds`). :func:`primary` is the experiment as a one-seed search would
have had it (the first seed's studies): the report's comparison, findings and plots read that,
because the pairing of studies by trial index holds only within one seed. :func:`study_variance`
reads every seed: per scientific study, the best value under each search seed, their mean and
standard deviation, and whether the scientific comparison holds under every seed.

**The rule** (:attr:`StudyVariance.holds`): with two or more scientific studies, the comparison
*holds* when the same study has the best value under every search seed that gave each study a
value (ties go to the earlier study); with one study there is nothing to compare and ``holds``
is None. The spread (sample standard deviation, ``ddof=1``, over the seeds with a value) is the
study variance the playbook asks to know before trusting a best-of-study number.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from tunebook.analysis.data import ExperimentData
from tunebook.experiment.seeds import seeded_studies

__all__ = ["SeedBests", "StudyVariance", "primary", "study_variance"]


def primary(data: ExperimentData) -> ExperimentData:
    """``data`` restricted to the primary search seed's studies (``data`` itself when the
    experiment has one search seed)."""
    if not data.experiment.search.seeds:
        return data
    keep = {s.name for s in seeded_studies(data.experiment) if s.primary}
    return dataclasses.replace(
        data, studies=tuple(s for s in data.studies if s in keep),
        trials=tuple(t for t in data.trials if t.study in keep))


@dataclass(frozen=True)
class SeedBests:
    """One scientific study's best value under each search seed (None: no completed trial)."""

    study: str
    bests: tuple[tuple[int, float | None], ...]

    @property
    def values(self) -> list[float]:
        """The seeds' best values that exist."""
        return [v for _, v in self.bests if v is not None]

    @property
    def mean(self) -> float | None:
        """Mean of the best values over the seeds (None without any)."""
        return statistics.fmean(self.values) if self.values else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation of the best values (None with fewer than two)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class StudyVariance:
    """Every study's best per search seed, and whether the comparison holds across seeds."""

    seeds: tuple[int, ...]
    studies: tuple[SeedBests, ...]
    winners: tuple[tuple[int, str], ...]  # per seed where every study has a value: the best

    @property
    def holds(self) -> bool | None:
        """True when one study is best under every seed compared; None with one study or no
        seed where every study has a value."""
        if len(self.studies) < 2 or not self.winners:
            return None
        return len({w for _, w in self.winners}) == 1

    def sentence(self) -> str:
        """What the numbers say about the scientific comparison, in one sentence."""
        sds = [s.sd for s in self.studies if s.sd is not None]
        move = f"the best of a study moves by up to {max(sds):.4g} (sd)" if sds else (
            "no study has a best value under two seeds yet")
        if self.holds is None:
            if len(self.studies) < 2:
                return f"One study: across {len(self.seeds)} search seeds {move}."
            return f"No search seed has a value for every study yet; {move}."
        n = len(self.winners)
        if self.holds:
            return (f"The comparison holds across search seeds: {self.winners[0][1]} is best "
                    f"under all {n} seeds compared; {move}.")
        counts: dict[str, list[int]] = {}
        for seed, w in self.winners:
            counts.setdefault(w, []).append(seed)
        who = "; ".join(f"{w} under seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"
                        for w, s in counts.items())
        return (f"The comparison does NOT hold across search seeds ({who}): the winner depends "
                f"on the luck of the search; {move}. Run more trials per study before "
                "concluding.")


def study_variance(data: ExperimentData) -> StudyVariance | None:
    """The study variance of ``data``'s experiment (None without ``search.seeds``)."""
    seeds = data.experiment.search.seeds
    if not seeds:
        return None
    by: dict[str, dict[int, float | None]] = {}
    for st in seeded_studies(data.experiment):
        ranked = data.ranked(st.name)
        best = data.value(ranked[0]) if ranked else None
        by.setdefault(st.spec.name, {})[st.seed] = (
            best if best is not None and math.isfinite(best) else None)
    studies = tuple(SeedBests(name, tuple((s, per[s]) for s in seeds))
                    for name, per in by.items())
    winners = []
    for seed in seeds:
        vals = [(s.study, v) for s in studies if (v := dict(s.bests)[seed]) is not None]
        if len(vals) < 2 or len(vals) < len(studies):
            continue
        best_name, best_val = vals[0]
        for name, v in vals[1:]:
            if data.better(v, best_val):
                best_name, best_val = name, v
        winners.append((seed, best_name))
    return StudyVariance(tuple(seeds), studies, tuple(winners))
