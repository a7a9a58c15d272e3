"""The retrain experiment: the best trials of a search, each re-run with new training seeds.

The playbook measures the trial variance before adopting a change: re-run the best
configuration(s) with several seeds, and read differences smaller than their spread as noise.
:func:`retrain_document` writes that experiment as a plain document (the experiment file's
keys): ``follows:`` the searched experiment, one study per chosen trial given as an explicit
configuration (``configs:``, named ``study #index`` like the trial), an empty nuisance space
(every trial of a study is the same configuration) and ``search: {trials: N}`` (N seeds: trial
``i``'s training seed is derived from the search seed, the new study's name and ``i``, so none
repeats the original trial's). Workload, objective, lengths, fixed values, trial timeout and
check thresholds are the original's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunebook.analysis.data import TrialData, load
from tunebook.analysis.replicates import parse_ref, retrain_study_name
from tunebook.errors import TunebookError
from tunebook.store.api import StoreAPI

__all__ = ["retrain_document", "retrain_name"]


def retrain_name(name: str) -> str:
    """The default name of the retrain experiment of ``name``: ``NAME-retrain``."""
    return f"{name}-retrain"


def _chosen(store: StoreAPI, name: str, top: int,
            trial_refs: Sequence[str]) -> list[TrialData]:
    data = load(store, name, curves=False, current=True)
    if not trial_refs:
        chosen = [t for s in data.studies for t in data.ranked(s)[:top]]
        if not chosen:
            raise TunebookError(f"experiment {name!r} has no completed trial to retrain")
        return chosen
    out: list[TrialData] = []
    for text in trial_refs:
        # A bare STUDY#INDEX is read inside NAME, a full reference must name NAME.
        full = text if text.startswith(f"{name}/") else f"{name}/{text}"
        ref = parse_ref(store, full, "--trial")
        if ref.experiment != name or ref.index is None:
            raise TunebookError(f"--trial: must name a trial of {name!r} as STUDY#INDEX, "
                                f"got {text!r}")
        trial = next(t for t in data.trials if t.study == ref.study and t.index == ref.index)
        if trial not in out:
            out.append(trial)
    return out


def retrain_document(store: StoreAPI, name: str, top: int, seeds: int,
                     trial_refs: Sequence[str] = (), new_name: str | None = None
                     ) -> dict[str, Any]:
    """The retrain experiment of ``name`` as the experiment file's keys: the ``top`` best
    completed trials of each study (or the trials ``trial_refs``, ``STUDY#INDEX`` or
    ``NAME/STUDY#INDEX``), each with ``seeds`` training seeds (see the module)."""
    if top < 1 or seeds < 1:
        raise TunebookError(f"--top and --seeds: must be >= 1, got {top} and {seeds}")
    exp = store.require_experiment(name)
    config = exp.config
    fixed = dict(config.get("fixed") or {})
    configs: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    for t in _chosen(store, name, top, trial_refs):
        # Every hyperparameter of the trial, scientific values included; the fixed values
        # stay in `fixed:` (a hyperparameter has exactly one role).
        params = {k: v for k, v in t.params.items() if k not in fixed}
        if params in seen:  # the same configuration twice (a retrain of a retrain): once
            continue
        seen.append(params)
        configs.append({"name": retrain_study_name(t.study, t.index), **params})
    doc: dict[str, Any] = {
        "name": new_name if new_name is not None else retrain_name(name),
        "goal": f"Trial variance of {name}: {len(configs)} configurations, {seeds} seeds each",
        "follows": name,
    }
    if "workload" in config:
        doc["workload"] = config["workload"]
    else:
        doc["command"] = list(config.get("command") or ())
    search = dict(config.get("search") or {})
    doc.update({
        "objective": dict(config["objective"]),
        "max_train_steps": config["max_train_steps"],
        "eval_every": config["eval_every"],
        "search": {"trials": seeds, "seed": search.get("seed", 0)},
        "nuisance": {},
        "configs": configs,
    })
    if fixed:
        doc["fixed"] = fixed
    for key in ("trial_timeout", "checks"):
        if key in config:
            doc[key] = config[key]
    return doc
