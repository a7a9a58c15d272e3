"""Seeds for a trial that trains on several hosts (data parallelism).

The discipline: every host builds the **same** initial model (the same initialisation seed,
else the replicas start apart and the all-reduced update is meaningless) and reads a
**different** part or order of the data (different data seeds, else every host trains on the
same examples and the effective batch is one host's). Both come from the trial's seed, so a
trial stays reproducible and two trials still differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunebook.search.rng import derive_seed

__all__ = ["HostSeeds", "host_seeds"]


@dataclass(frozen=True)
class HostSeeds:
    """The seeds one host uses.

    Attributes:
        init: the model's initialisation seed: the same on every host of the trial.
        data: the data order's (shuffling, augmentation, dropout) seed: different per host.
    """

    init: int
    data: int


def host_seeds(trial_seed: int, host: int) -> HostSeeds:
    """The seeds of host ``host`` (0, 1, ...) of a trial with seed ``trial_seed``: ``init`` is
    the same for every host, ``data`` differs between hosts (and from ``init``).

    Raises:
        ValueError: for a negative host index.
    """
    if host < 0:
        raise ValueError(f"host must be >= 0, got {host}")
    return HostSeeds(init=derive_seed("init", trial_seed),
                     data=derive_seed("data", trial_seed, host))
