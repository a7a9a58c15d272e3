"""Multi-host seeds (same init, different data) and the data-share timer."""

from __future__ import annotations

import time

import pytest

from tunebook.workloads.hosts import host_seeds
from tunebook.workloads.timing import DataShare


def test_every_host_shares_the_init_seed_and_not_the_data_seed() -> None:
    seeds = [host_seeds(7, h) for h in range(8)]
    assert len({s.init for s in seeds}) == 1
    assert len({s.data for s in seeds}) == 8 and seeds[0].init not in {s.data for s in seeds}
    assert host_seeds(8, 0).init != seeds[0].init  # another trial starts elsewhere
    assert host_seeds(7, 3) == seeds[3]  # reproducible
    with pytest.raises(ValueError, match="host"):
        host_seeds(7, -1)


def test_data_share_is_the_fetch_time_over_the_step_time() -> None:
    timer = DataShare()
    for _ in range(3):
        timer.begin()
        time.sleep(0.03)  # the batch
        timer.fetched()
        time.sleep(0.01)  # the update
        timer.end()
    time.sleep(0.05)  # an evaluation: not counted
    share = timer.take()
    assert share is not None and 0.6 < share < 0.8
    assert timer.take() is None  # counting starts afresh
    timer.end()  # without begin: nothing
    assert timer.take() is None
