"""The next round of an experiment: longer runs around the best configurations of this one.

The playbook ("Deciding how long to train when training is compute-bound") tunes in rounds of
growing ``max_train_steps``: round 1 finds good hyperparameters with short runs, round 2 runs
few long runs around the good points. :func:`next_round` writes round ``i+1``'s experiment as an
editable YAML document with comments saying what was carried over and why. Reading the best
trials of the previous round from a store is :func:`tunebook.analysis.rounds.top_configs`.

**The narrowed nuisance space** (:func:`narrow`): per ``float``/``int`` hyperparameter, the
range the top trials span in the scaled space (log, linear or one-minus-log: the space's own
unit interval), widened on each side by :data:`MARGIN` of that span and at least
:data:`MIN_MARGIN` of the old range, clipped to the old range; per ``discrete``/``categorical``
one, the values the top trials used (in the old order). A list left with one value becomes a
fixed value (a search space needs two).

**The schedule** (:func:`extend_schedule`, built-in schedules of
:mod:`tunebook.workloads.common`): ``warmup_steps`` stays in steps (warmup transfers between
rounds, the playbook's "very likely to transfer"); ``decay_steps``, when set, is scaled by
``(S - W) / (S0 - W)`` (``S0``, ``S``: the old and new ``max_train_steps``, ``W`` the
configuration's ``warmup_steps``; ``S / S0`` when ``W`` differs from one trial to the next), so
the decay keeps its shape relative to the training after warmup (when unset it spans the rest
of training by default, which already does that); ``end_learning_rate``, ``end_factor``,
``rsqrt_timescale`` and the learning rate stay. ``eval_every`` is scaled by ``S / S0`` so that
a trial is evaluated as many times as before.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from tunebook.errors import ConfigError
from tunebook.experiment import Experiment
from tunebook.search.space import Categorical, Discrete, Float, Hyperparameter, Int, Value

__all__ = ["MARGIN", "MIN_MARGIN", "NextRound", "extend_schedule", "narrow", "next_name",
           "next_round"]

#: Widening of the top trials' span on each side, as a fraction of the span (scaled space).
MARGIN = 0.25
#: The least widening on each side, as a fraction of the old range (scaled space): with one
#: top trial the span is 0.
MIN_MARGIN = 0.05
_ROUND = re.compile(r"^(.*)-r(\d+)$")
_GOAL = re.compile(r"^Longer runs \(\d+ steps\) around the best of .*?\. ")


def next_name(name: str, taken: Sequence[str] = ()) -> str:
    """``NAME-r2`` for ``NAME``, ``NAME-r4`` for ``NAME-r3``; past any name in ``taken``."""
    m = _ROUND.match(name)
    base, n = (m.group(1), int(m.group(2)) + 1) if m else (name, 2)
    while f"{base}-r{n}" in taken:
        n += 1
    return f"{base}-r{n}"


def _decay_factor(old: int, new: int, warmup: Value | None) -> float:
    """How much ``decay_steps`` grows: ``(new - W) / (old - W)``, or ``new / old`` when the
    warmup is unknown (it varies) or not shorter than the old run."""
    if isinstance(warmup, int | float) and not isinstance(warmup, bool) and 0 <= warmup < old:
        return (new - warmup) / (old - warmup)
    return new / old


def extend_schedule(config: Mapping[str, Value], old_steps: int, new_steps: int,
                    warmup_varies: bool = False) -> tuple[dict[str, Value], list[str]]:
    """``config`` with its schedule extended from ``old_steps`` to ``new_steps`` by the rule of
    this module's docstring, and what changed, one line each. ``warmup_varies``: the
    configuration's ``warmup_steps`` is not known (it is searched), so ``S / S0`` applies."""
    out = dict(config)
    notes: list[str] = []
    decay = config.get("decay_steps")
    if isinstance(decay, int | float) and not isinstance(decay, bool):
        f = _decay_factor(old_steps, new_steps,
                          None if warmup_varies else config.get("warmup_steps", 0))
        out["decay_steps"] = max(1, round(decay * f))
        notes.append(f"decay_steps {decay} -> {out['decay_steps']} (x{f:.4g}: the decay keeps "
                     "its share of the training after warmup)")
    return out, notes


def _scaled_hp(hp: Hyperparameter, factor: float) -> Hyperparameter:
    """A ``decay_steps`` hyperparameter with every value scaled by ``factor``."""
    if isinstance(hp, Int):
        return Int(max(1, round(hp.low * factor)), max(2, round(hp.high * factor)), hp.scale)
    if isinstance(hp, Float):
        return Float(hp.low * factor, hp.high * factor, hp.scale)
    if isinstance(hp, Discrete):
        return Discrete(tuple(dict.fromkeys(max(1, round(v * factor)) for v in hp.values)))
    return Categorical(tuple(dict.fromkeys(
        max(1, round(v * factor)) if isinstance(v, int | float) and not isinstance(v, bool)
        else v for v in hp.values)))


def _round_out(x: float, down: bool, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits, down or up."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(abs(x))))
    return float((math.floor if down else math.ceil)(x * scale)) / scale


def narrow(hp: Hyperparameter, values: Sequence[Value]) -> Hyperparameter | Value:
    """The narrowed range of ``hp`` around ``values`` (the top trials'), by the rule of this
    module's docstring; a single value when only one is left of a list."""
    if isinstance(hp, Float | Int):
        nums = [float(v) for v in values if isinstance(v, int | float)]
        units = [hp.to_unit(v) for v in nums]
        lo_u, hi_u = min(units), max(units)
        m = max(MARGIN * (hi_u - lo_u), MIN_MARGIN)
        # Never inside the top trials' span, whatever the rounding of from_unit.
        lo = min(float(hp.from_unit(max(0.0, lo_u - m))), *nums)
        hi = max(float(hp.from_unit(min(1.0, hi_u + m))), *nums)
        if isinstance(hp, Int):
            ilo, ihi = math.floor(lo), math.ceil(hi)
            if ilo == ihi:  # an int range needs two values
                ilo, ihi = (ilo, ihi + 1) if ihi < hp.high else (ilo - 1, ihi)
            return Int(ilo, ihi, hp.scale)
        if hp.scale != "one_minus_log":  # readable bounds, never inside the top trials' span
            lo, hi = max(hp.low, _round_out(lo, True)), min(hp.high, _round_out(hi, False))
        return Float(lo, hi, hp.scale)
    used = tuple(v for v in hp.values if v in set(values))
    if len(used) == 1:
        return used[0]
    return Discrete(used) if isinstance(hp, Discrete) else Categorical(used)  # type: ignore[arg-type]


@dataclass
class NextRound:
    """The next round's experiment as a document, and the comments that explain it."""

    document: dict[str, Any]
    comments: dict[str, list[str]] = field(default_factory=dict)
    nuisance_comments: dict[str, str] = field(default_factory=dict)

    def to_yaml(self) -> str:
        """The editable experiment file: each key with its comments above it."""
        out = []
        for key, value in self.document.items():
            out += [f"# {c}" for c in self.comments.get(key, [])]
            if key == "configs" and value:
                out.append("configs:")
                out += ["  - " + yaml.safe_dump(e, default_flow_style=True, sort_keys=False,
                                                width=1000).strip() for e in value]
            elif key == "nuisance" and value:
                out.append("nuisance:")
                for name, spec in value.items():
                    if name in self.nuisance_comments:
                        out.append(f"  # {self.nuisance_comments[name]}")
                    out.append("  " + yaml.safe_dump({name: spec}, default_flow_style=True,
                                                     sort_keys=False, width=1000)
                               .strip()[1:-1])
            else:
                nested = isinstance(value, dict | list) and bool(value)
                out.append(yaml.safe_dump({key: value}, sort_keys=False, width=100,
                                          default_flow_style=None if nested else False
                                          ).rstrip())
        return "\n".join(out) + "\n"


def next_round(experiment: Experiment, top: Mapping[str, Sequence[Mapping[str, Value]]],
               steps: int, name: str,
               best: Sequence[tuple[str, Mapping[str, Value]]] | None = None) -> NextRound:
    """Round ``i+1`` of ``experiment``: ``max_train_steps`` = ``steps``, the schedule extended,
    and either the nuisance space narrowed around ``top`` (per study, the parameters of its
    best trials, best first) or, with ``best`` (``(origin, parameters)`` of the best trials,
    best first), one ``configs:`` entry per configuration and no nuisance search (replicates).
    Raises ConfigError when the result is not a valid experiment."""
    old = experiment.max_train_steps
    doc = experiment.to_dict()
    c: dict[str, list[str]] = {}
    doc["name"] = name
    c["name"] = [f"Round after {experiment.name!r}: written by `tunebook next-round "
                 f"{experiment.name} --steps {steps}`. Edit freely, then `tunebook run` it."]
    earlier = _GOAL.sub("", experiment.goal)  # one round's prefix, not one per round
    doc["goal"] = (f"Longer runs ({steps} steps) around the best of {experiment.name}. "
                   f"{earlier}").strip()
    doc["max_train_steps"] = steps
    c["max_train_steps"] = [f"was {old}: x{steps / old:.3g} (the playbook: rounds of growing "
                            "training length, round 2 few long runs on good points)"]
    evals = math.ceil(old / experiment.eval_every)
    doc["eval_every"] = min(steps, max(1, round(experiment.eval_every * steps / old)))
    now = math.ceil(steps / doc["eval_every"])
    c["eval_every"] = [f"was {experiment.eval_every}: scaled x{steps / old:.3g} to keep about "
                       f"{evals} evaluations per trial (now {now})"]
    doc["search"].pop("seeds", None)
    c["search"] = ["the same algorithm and seed; search.seeds (study variance) is not carried "
                   "over. Long runs are expensive: consider fewer trials."]
    notes: dict[str, str] = {}
    if best is not None:
        _listed(experiment, doc, c, best, steps)
    else:
        _narrowed(experiment, doc, c, notes, top, steps)
    doc["follows"] = experiment.name
    c["follows"] = ["the previous round: the project page links the rounds"]
    try:
        Experiment.from_dict(doc, source=f"next round of {experiment.name}")
    except ConfigError as exc:
        raise ConfigError("--steps", "", f"the next round would not be a valid experiment: "
                          f"{exc}") from None
    return NextRound(doc, c, notes)


_KEPT = ("warmup_steps, end_learning_rate / end_factor, rsqrt_timescale and the learning rate "
         "stay as they were (see docs/rounds.md)")


def _extend_entries(entries: list[dict[str, Any]], fixed: Mapping[str, Value], old: int,
                    steps: int) -> list[str]:
    """Extend the schedule of every ``configs:`` entry in place (its own warmup, else the
    fixed one); what changed."""
    notes = []
    for entry in entries:
        merged = {**fixed, **entry}
        new, changed = extend_schedule(merged, old, steps)
        if "decay_steps" in entry:
            entry["decay_steps"] = new["decay_steps"]
            notes += [f"{entry.get('name', 'entry')}: {n}" for n in changed]
    return notes


def _listed(experiment: Experiment, doc: dict[str, Any], c: dict[str, list[str]],
            best: Sequence[tuple[str, Mapping[str, Value]]], steps: int) -> None:
    """The ``configs:`` mode: the best configurations, each a study of replicates."""
    old = experiment.max_train_steps
    entries = []
    origins = []
    for i, (origin, params) in enumerate(best, 1):
        entries.append({"name": f"top{i}", **{k: v for k, v in params.items()
                                              if k not in experiment.fixed}})
        origins.append(f"top{i}: {origin}")
    # The entries hold the scientific values: configs takes scientific's place in the file.
    items = {**doc, "configs": entries}
    order = dict.fromkeys("configs" if key == "scientific" else key for key in [*doc, "configs"])
    doc.clear()
    doc.update({key: items[key] for key in order})
    c["configs"] = [f"the {len(entries)} best configurations of {experiment.name}, best first "
                    "(the playbook's round 2: few long runs on good points):", *origins,
                    *_extend_entries(entries, experiment.fixed, old, steps)]
    doc["nuisance"] = {}
    c["nuisance"] = ["empty: every trial of a study runs its configuration with its own "
                     "training seed (replicates); add ranges back to search around them"]
    doc["search"].update(algorithm="quasi_random", trials=1)
    c["search"] = ["trials: replicates per configuration (1: one long run each; 3-5 measure "
                   "the trial variance); nothing to search, so quasi_random. search.seeds "
                   "(study variance) is not carried over."]
    varies = any("warmup_steps" in e for e in entries)
    doc["fixed"], fixed_notes = extend_schedule(doc["fixed"], old, steps, varies)
    c["fixed"] = [*fixed_notes, _KEPT]


def _narrowed(experiment: Experiment, doc: dict[str, Any], c: dict[str, list[str]],
              notes: dict[str, str], top: Mapping[str, Sequence[Mapping[str, Value]]],
              steps: int) -> None:
    """The default mode: the nuisance space narrowed around each study's top trials."""
    old = experiment.max_train_steps
    trials = [p for rows in top.values() for p in rows]
    k = max((len(r) for r in top.values()), default=0)
    nuisance: dict[str, Any] = {}
    warmup_varies = "warmup_steps" in experiment.nuisance or "warmup_steps" in (
        experiment.scientific_values)
    warmup = None if warmup_varies else experiment.fixed.get("warmup_steps", 0)
    for hp_name, hp in experiment.nuisance.items():
        used = [p[hp_name] for p in trials if hp_name in p]
        narrowed = narrow(hp, used) if used else hp
        why = (f"was {hp.describe()}; narrowed around the best {k} trial(s) of each of "
               f"{len(top)} studies" if used else "kept: no top trial had it")
        if hp_name == "decay_steps":
            f = _decay_factor(old, steps, warmup)
            if isinstance(narrowed, Hyperparameter):
                narrowed = _scaled_hp(narrowed, f)
            elif isinstance(narrowed, int | float) and not isinstance(narrowed, bool):
                narrowed = max(1, round(narrowed * f))
            why += f"; then scaled x{f:.4g} (the decay keeps its share of training)"
        if isinstance(narrowed, Hyperparameter):
            nuisance[hp_name] = narrowed.to_json()
            notes[hp_name] = why
        else:
            doc["fixed"][hp_name] = narrowed
            c.setdefault("fixed", []).append(f"{hp_name}: {why}; only one value left: fixed")
    doc["nuisance"] = nuisance
    c["nuisance"] = [f"rule: each range spans the top trials in the scaled space, widened "
                     f"{MARGIN:.0%} of that span (at least {MIN_MARGIN:.0%} of the old range) "
                     "each side, clipped to the old range; lists keep the values the top used"
                     if nuisance else "empty, as before: replicates"]
    doc["fixed"], fixed_notes = extend_schedule(doc["fixed"], old, steps, warmup_varies)
    c.setdefault("fixed", []).extend([*fixed_notes, _KEPT])
    if "decay_steps" in experiment.scientific:
        f = _decay_factor(old, steps, warmup)
        doc["scientific"]["decay_steps"] = [max(1, round(v * f)) for v in
                                            doc["scientific"]["decay_steps"]]
        c["scientific"] = [f"decay_steps scaled x{f:.4g} (the study names change with it)"]
    if doc.get("configs"):
        changed = _extend_entries(doc["configs"], doc["fixed"], old, steps)
        if changed:
            c["configs"] = changed
