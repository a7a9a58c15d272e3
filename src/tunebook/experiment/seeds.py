"""Study variance: every study's search repeated with other quasi-random seeds.

The playbook's *study variance* is how much the best trial of a study moves when the same
search is run again with another seed (other nuisance points). ``search: {seeds: [0, 1, 2]}``
in an experiment file (or ``tunebook run FILE --search-seeds 3``) repeats each study once per
seed. The first seed is the *primary* search: its studies keep their plain names (``main``,
``optimizer=adam``), so the report's comparison of the scientific values, the findings and the
plots read exactly the trials a one-seed experiment would have. The other seeds' studies are
named ``STUDY@seed=S``; they are replicates, read only by the report's "Study variance"
section (:mod:`tunebook.analysis.variance`). Within one seed every study searches the same
nuisance points (the comparison stays paired); across seeds the points differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunebook.experiment import Experiment, StudySpec

__all__ = ["SEED_MARK", "SeededStudy", "seeded_studies", "with_search_seeds"]

#: What separates a study's name from its search seed in a replicate's name.
SEED_MARK = "@seed="


@dataclass(frozen=True)
class SeededStudy:
    """One study of one search seed: the scientific study, the seed, the name in the store."""

    spec: StudySpec
    seed: int
    name: str
    primary: bool


def seeded_studies(experiment: Experiment) -> list[SeededStudy]:
    """Every study of every search seed, the primary seed's first (in the studies' order)."""
    seeds = experiment.search.seeds or (experiment.search.seed,)
    out = []
    for k, seed in enumerate(seeds):
        for spec in experiment.studies():
            name = spec.name if k == 0 else f"{spec.name}{SEED_MARK}{seed}"
            out.append(SeededStudy(spec, seed, name, k == 0))
    return out


def with_search_seeds(experiment: Experiment, count: int) -> Experiment:
    """``experiment`` with its search repeated with ``count`` seeds: ``search.seed`` and the
    ``count - 1`` integers after it (``count`` 1: the experiment as it is). Validated like any
    experiment (``count`` is at most ``MAX_SEARCH_SEEDS``)."""
    import dataclasses

    if count == 1:
        return experiment
    first = experiment.search.seed
    search = dataclasses.replace(experiment.search, seeds=tuple(range(first, first + count)))
    return dataclasses.replace(experiment, search=search)
