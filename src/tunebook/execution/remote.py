"""Experiments as the store holds them: registered by ``tunebook submit``, joined by ``tunebook
worker`` on any machine.

A worker rebuilds each experiment from its stored configuration and runs it with
:func:`tunebook.execution.runner.run`, so it is a full supervisor of the experiment beside any
other (a ``tunebook run``, workers on other machines): it releases the trials of dead or silent
workers, tops up adaptive studies (a compare-and-swap per change: :mod:`.suggestions`), keeps
its own run record and stops cleanly on a signal.

The workload is resolved on the worker's machine: a ``module:function`` of an installed package
is imported as is; a module file or a command's program is looked for in the experiment's
folder, which is the folder recorded at submit (or by the latest run) when it exists on this
machine, else the current folder, unless ``base_dir`` says where it is here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tunebook.core.processes import host_name
from tunebook.errors import ConfigError, StoreError, TunebookError, WorkloadError
from tunebook.execution.provenance import provenance
from tunebook.execution.runner import register_experiment
from tunebook.execution.suggestions import materialize
from tunebook.execution.workload import load_workload
from tunebook.experiment import Experiment
from tunebook.store.api import TERMINAL, ExperimentRow, RunOutcome, StoreAPI

__all__ = ["Submitted", "rebuild", "recorded_origin", "submit", "trials_left"]


@dataclass(frozen=True)
class Submitted:
    """What ``submit`` registered.

    Attributes:
        studies: how many studies the experiment has.
        budget: trials over every study (an adaptive study's trials are written as results
            come in, by whichever worker supervises it).
        left: of those, trials not yet finished (completed, infeasible or failed).
    """

    experiment_id: int
    studies: int
    budget: int
    left: int


def trials_left(store: StoreAPI, experiment_id: int) -> int:
    """Trials within the studies' budgets not finished yet: pending, interrupted, running, and
    those an adaptive designer has yet to suggest."""
    budget = sum(st.budget for st in store.studies(experiment_id))
    done = sum(n for status, n in store.counts(experiment_id).items() if status in TERMINAL)
    return max(0, budget - done)


def submit(experiment: Experiment, store: StoreAPI, argv: list[str] | None = None) -> Submitted:
    """Register ``experiment`` and its trials without running any.

    Checks what ``run`` checks before anything is written, the workload included (a typo in a
    module name fails here, not on every worker). The submission is recorded in the
    experiment's run history (with its provenance and the experiment's folder, where workers
    look for the workload first) as a run of no worker.
    """
    load_workload(experiment)
    studies, trials = materialize(experiment)
    exp_id = register_experiment(store, experiment, studies, trials)
    record = provenance(experiment.source, experiment.base_dir, experiment.identity(), argv,
                        experiment=experiment).as_dict()
    run_id = store.start_run(exp_id, host_name(), 0, {
        **record, "pid": os.getpid(), "base_dir": experiment.base_dir, "submitted": True})
    store.end_run(run_id, RunOutcome(store.counts(exp_id)))
    return Submitted(exp_id, len(studies), sum(st.budget for st in studies),
                     trials_left(store, exp_id))


def recorded_origin(store: StoreAPI, experiment_id: int) -> tuple[str | None, str | None]:
    """``(file, folder)`` of the experiment as the latest submit or run recorded them: the
    experiment file's path (absolute where its folder was recorded), and the newest recorded
    folder that exists on this machine; None for what is unknown."""
    file = None
    for r in reversed(store.runs(experiment_id)):
        where, name = r.provenance.get("base_dir"), r.provenance.get("file")
        if file is None and isinstance(name, str) and name:
            # The path as given on the command line: relative to where that command ran.
            file = (str(Path(where) / Path(name).name)
                    if isinstance(where, str) and not Path(name).is_absolute() else name)
        if isinstance(where, str) and Path(where).is_dir():
            return file, where
    return file, None


def rebuild(store: StoreAPI, row: ExperimentRow, base_dir: str | Path | None = None
            ) -> Experiment:
    """The experiment of ``row`` as a worker on this machine runs it, its workload loaded.

    ``base_dir``: the folder holding the workload's module file or program here (default: the
    folder recorded at submit when it exists here, else the current folder).

    Raises:
        WorkloadError: the workload cannot be found or imported here (the message names the
            experiment and the folder tried), or the stored configuration no longer gives the
            stored identity (another tunebook version wrote it): running it would register
            other trials under the same name.
    """
    file, recorded = recorded_origin(store, row.id)
    folder = str(Path(base_dir).resolve()) if base_dir is not None else (
        recorded or os.getcwd())
    where = f"experiment {row.name!r} of {store.display_url}"
    try:
        experiment = Experiment.from_dict(row.config, source=file or f"store:{row.name}",
                                          base_dir=folder)
    except (ConfigError, ValueError) as exc:
        raise StoreError(f"{where}: its stored configuration is not valid for this tunebook "
                         f"({exc})") from None
    if experiment.identity() != row.identity:
        raise WorkloadError(
            f"{where}: rebuilt from its stored configuration it has identity "
            f"{experiment.identity()}, the store says {row.identity} (written by another "
            "tunebook version?); run it with the tunebook version that submitted it")
    try:
        load_workload(experiment)
    except TunebookError as exc:
        how = ("an installed package, or a module file in" if experiment.workload is not None
               else "the program's folder:")
        raise WorkloadError(
            f"{where}: {exc}; looked for {how} {folder} (--base-dir DIR: the folder holding "
            "the workload on this machine)") from None
    return experiment
