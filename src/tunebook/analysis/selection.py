"""Which trial a person means, and where its best checkpoint is: for ``tunebook final-eval``,
``tunebook trials --format json`` and :func:`best_checkpoint` in a notebook.

A trial reference is ``STUDY#INDEX`` (``num_layers=2#7``; spaces around ``#`` allowed, as the
report writes ``num_layers=2 #7``), or a bare ``INDEX`` when the experiment has one study. No
reference means the best trial of the whole experiment under its objective: the completed
trial with the best objective value over every study (the report's ranking: ties go to the
lower index, then the earlier trial).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook.analysis.data import TrialData, load
from tunebook.core.paths import checkpoints_dir, trial_dir
from tunebook.errors import TunebookError
from tunebook.execution.final_eval import best_checkpoint as _best_checkpoint
from tunebook.execution.final_eval import checkpoint_at
from tunebook.objective import Objective, resolve
from tunebook.store.api import StoreAPI

__all__ = ["Selection", "best_checkpoint", "checkpoint_of", "experiment_folder", "parse_ref",
           "select_trial"]


@dataclass(frozen=True)
class Selection:
    """A chosen trial, the objective that ranks it, and how it was chosen (``rule``: JSON)."""

    trial: TrialData
    objective: Objective
    rule: dict[str, Any]


def parse_ref(ref: str, studies: list[str], name: str,
              option: str = "--trial") -> tuple[str, int]:
    """``(study, index)`` of a trial reference; TunebookError (one line, starting with
    ``option``) when it is malformed or names no study of experiment ``name``."""
    text = ref.strip()
    study, sep, index_text = text.rpartition("#")
    if not sep:
        if len(studies) != 1:
            raise TunebookError(f"{option}: {ref!r} names no study; experiment {name!r} has "
                                f"{len(studies)} studies: write STUDY#INDEX (e.g. "
                                f"'{studies[0] if studies else 'main'}#0')")
        study, index_text = studies[0], text
    study = study.strip()
    try:
        index = int(index_text.strip())
    except ValueError:
        raise TunebookError(f"{option}: the index of {ref!r} must be an integer "
                            "(STUDY#INDEX)") from None
    if study not in studies:
        close = difflib.get_close_matches(study, studies, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TunebookError(f"{option}: experiment {name!r} has no study {study!r}{hint}; its "
                            f"studies: {', '.join(studies)}")
    return study, index


def select_trial(store: StoreAPI, name: str, ref: str | None = None,
                 option: str = "--trial") -> Selection:
    """The trial ``ref`` names, or the experiment's best (module docstring).

    Raises:
        TunebookError: unknown experiment, study or index; no completed trial to be best.
    """
    exp = store.require_experiment(name)
    objective = resolve(exp.config["objective"], None, None, False)
    records = load(store, name, current=True, curves=False).trials
    if ref is None:
        ranked = objective.ranked(records)
        if not ranked:
            raise TunebookError(f"experiment {name!r} has no completed trial with a value of "
                                f"{objective.metric!r}: nothing to select")
        return Selection(ranked[0], objective, {"rule": "best", "metric": objective.metric,
                                                "goal": objective.goal})
    studies = [st.name for st in store.studies(exp.id)]
    study, index = parse_ref(ref, studies, name, option)
    found = next((r for r in records if r.study == study and r.index == index), None)
    if found is None:
        count = sum(r.study == study for r in records)
        raise TunebookError(f"{option}: study {study!r} of {name!r} has no trial {index} "
                            f"(its trials: 0 to {count - 1})")
    return Selection(found, objective, {"rule": "trial", "ref": ref})


def checkpoint_of(root: str | Path, name: str, trial: TrialData, objective: Objective,
                  checkpoint_root: str | None = None, base_dir: str | Path = "."
                  ) -> tuple[int, Path] | None:
    """The trial's best checkpoint ``(step, folder)`` under ``root`` (see
    :func:`tunebook.execution.final_eval.best_checkpoint`), or None.

    With a ``checkpoint_root`` (the experiment's shared checkpoints; a relative path is
    relative to ``base_dir``) and no local copy of the checkpoint at the trial's best step
    (the trial ran on another machine), the best shared checkpoint is downloaded into the
    trial's local folder first, verified against its manifest.
    """
    folder = trial_dir(root, name, trial.study, trial.index)
    if checkpoint_root is not None and checkpoint_at(folder, trial.best_step) is None:
        from tunebook.execution.ckptstore import fetch_best, open_checkpoint_root

        shared = open_checkpoint_root(checkpoint_root, base_dir)
        if shared is not None:
            fetch_best(shared.trial(name, trial.study, trial.index), checkpoints_dir(folder),
                       trial.best_step, objective.metric, objective.sign)
    return _best_checkpoint(folder, trial.best_step, objective)


def experiment_folder(store: StoreAPI, experiment_id: int) -> str:
    """The folder of the experiment file as the latest run or submission recorded it
    (:func:`tunebook.execution.remote.recorded_origin`: a workload module beside it must be
    importable, a relative ``checkpoint_root`` is relative to it) when it exists here; else
    the recorded file's folder when that file exists here (runs recorded before folders were);
    else the current folder."""
    from tunebook.execution.remote import recorded_origin

    file, folder = recorded_origin(store, experiment_id)
    if folder is not None:
        return folder
    if file and Path(file).is_file():
        return str(Path(file).resolve().parent)
    return "."


def best_checkpoint(name: str, *, root: str | Path | None = None,
                    store: StoreAPI | str | None = None, trial: str | None = None) -> Path:
    """The folder of the best checkpoint of a finished trial of experiment ``name``.

    ``trial`` is a reference (``STUDY#INDEX``, or ``INDEX`` with one study); None means the
    best trial of the experiment under its objective. ``root`` is the tunebook folder (default
    ``./tunebook``); ``store`` a store or its URL (default: the root's SQLite store). The
    folder of a built-in workload holds ``state.pt``::

        state = torch.load(tunebook.best_checkpoint("digits-depth") / "state.pt",
                           weights_only=True)
        model.load_state_dict(state["model"])

    Raises:
        TunebookError: unknown experiment or trial, a trial that did not complete, or one
            without a checkpoint (one line saying which).
    """
    from tunebook.store.sql import Store

    root = Path(root) if root is not None else Path("tunebook")
    opened = None
    if store is None:
        store = opened = Store.at_root(root, create=False)
    elif isinstance(store, str):
        store = opened = Store(store, create=False)
    try:
        chosen = select_trial(store, name, trial, option="trial")
        exp = store.require_experiment(name)
        shared = exp.config.get("checkpoint_root")
        base_dir = experiment_folder(store, exp.id) if shared else "."
    finally:
        if opened is not None:
            opened.close()
    t = chosen.trial
    if t.status != "completed":
        raise TunebookError(f"trial {t.label} of {name!r} is {t.status}, not completed")
    found = checkpoint_of(root, name, t, chosen.objective, shared, base_dir)
    if found is None:
        raise TunebookError(f"trial {t.label} of {name!r} has no checkpoint under "
                            f"{str(trial_dir(root, name, t.study, t.index))!r}")
    return found[1]
