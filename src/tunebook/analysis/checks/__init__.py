"""The playbook's checklist for a finished experiment, as pure functions returning findings.

Each check looks at an :class:`~tunebook.analysis.data.ExperimentData` and returns a (possibly
empty) list of :class:`~tunebook.analysis.findings.Finding`; nothing is drawn, printed or
written. :func:`run_checks` runs them all and :data:`CHECKS` maps each check's name to its
function. Every check copes with missing or partial data (no completed trial, one-point curves,
NaN values, empty studies, an unrecorded metric) by returning nothing rather than raising.

One module per family, each with its thresholds in one frozen dataclass:

- ``search_space`` (:mod:`.search_space`): ``boundary``.
- ``curves`` (:mod:`.curves`): ``overfitting``, ``late_variance``, ``train_loss_increases``.
- ``training_length`` (:mod:`.training_length`): ``still_improving``, ``saturated_early``,
  ``best_step_position``.
- ``failures`` (:mod:`.failures`, :mod:`.divergence`): ``infeasible``, ``at_chance``,
  ``failed_trials``, ``near_divergence``.
- ``evaluations`` (:mod:`.evaluations`): ``eval_steps``.
- ``budget`` (:mod:`.budget`): ``enough_trials``.
- ``clipping`` (:mod:`.clipping`): ``clipping``.
- ``setup`` (:mod:`.setup`): ``batch_size_tuned``, ``too_few_trials``.
- ``pipeline`` (:mod:`.pipeline`): ``class_imbalance``, ``periodic_validation``,
  ``input_bound``, ``eval_subset``.
- ``batch_size`` (:mod:`.batch_size`, procedure checks of ``tunebook batch-size``):
  ``batch_size_input_bound`` (with the ``pipeline`` threshold), ``batch_size_retune``,
  ``batch_size_target_not_reached``, ``batch_size_no_step_reduction``.
- ``comparison`` (:mod:`.comparison`): ``isolation`` (the verdict of
  :func:`tunebook.analysis.comparison.compare`).
- ``stability`` (:mod:`.stability`, procedure checks of ``tunebook stability``):
  ``unstable_learning_rate``, ``early_instability``, ``long_warmup`` (threshold
  ``long_warmup_share``, the playbook's 5% of max_train_steps), ``warmup_did_not_help``,
  ``clipping_did_not_help``; and of ``tunebook clip``, with the ``clipping`` family's
  thresholds: ``aggressive_clipping``, ``clipped_run_unstable``.

Every statistic (noise, bootstrap, quantiles, the spread that decides whether a difference is
real) comes from :mod:`tunebook.analysis.stats`. Thresholds can be changed per experiment in
the experiment file, validated when the checks run::

    checks:
      curves: {overfit_rel_rise: 0.05}
      failures: {infeasible_fraction: 0.3}

and the report lists the values it used.

Adding a check = one new function in one file + its tests:

1. In the family's module (or a new ``checks/NAME.py`` with its own thresholds dataclass,
   imported below), write ``check_NAME(data, th=DEFAULTS) -> list[Finding]`` and decorate it
   with ``@check("NAME", playbook_section="...", thresholds=FamilyThresholds)``; build its
   findings with :func:`~tunebook.analysis.checks.registry.finding` (the section is filled in).
   New thresholds are new fields of the family's dataclass, with a comment saying why the
   value.
2. Test it in ``tests/analysis/checks/test_checks_FAMILY.py`` with the builders of
   ``tests/analysis/checks/checkdata.py`` (``make_data``, ``tr``, ``only``): what must fire and
   what must not. ``test_checks_registry.py`` runs every registered check on degenerate data
   (no trials, NaN curves, all infeasible...) by itself.
"""

from __future__ import annotations

from tunebook.analysis.resolution import ResolutionThresholds

# Import order is registration order, which is the order of CHECKS (the playbook's): keep it.
# ruff: noqa: I001
from tunebook.analysis.checks.search_space import (
    SearchSpaceThresholds,
    check_boundary,
    check_no_effect,
)
from tunebook.analysis.checks.curves import (
    CurveThresholds,
    check_late_variance,
    check_overfitting,
    check_train_loss_increases,
)
from tunebook.analysis.checks.training_length import (
    TrainingLengthThresholds,
    check_best_step_position,
    check_saturated_early,
    check_still_improving,
)
from tunebook.analysis.checks.failures import (
    FailureThresholds,
    check_at_chance,
    check_failed_trials,
    check_infeasible,
)
from tunebook.analysis.checks.divergence import check_near_divergence
from tunebook.analysis.checks.evaluations import EvaluationThresholds, check_eval_steps
from tunebook.analysis.checks.budget import BudgetThresholds, check_enough_trials
from tunebook.analysis.checks.setup import (
    SetupThresholds,
    check_batch_size_tuned,
    check_too_few_trials,
)
from tunebook.analysis.checks.clipping import ClippingThresholds, check_clipping
from tunebook.analysis.checks.pipeline import (
    PipelineThresholds,
    check_class_imbalance,
    check_eval_subset,
    check_input_bound,
    check_periodic_validation,
)
from tunebook.analysis.checks.comparison import check_isolation
from tunebook.analysis.checks.batch_size import BatchSizeThresholds  # procedure checks
from tunebook.analysis.checks.stability import StabilityThresholds
from tunebook.analysis.comparison import ComparisonThresholds
from tunebook.analysis.checks import resolutions  # registers the training-length resolvers
from tunebook.analysis.checks.registry import (
    CHECKS,
    PROCEDURE_CHECKS,
    CheckSpec,
    check,
    family,
    procedure_findings,
    reconcile,
    resolves,
    registered,
    run_checks,
    thresholds_from_config,
    thresholds_used,
)

family(ResolutionThresholds)

__all__ = [
    "CHECKS",
    "PROCEDURE_CHECKS",
    "BatchSizeThresholds",
    "BudgetThresholds",
    "CheckSpec",
    "ClippingThresholds",
    "ComparisonThresholds",
    "CurveThresholds",
    "EvaluationThresholds",
    "FailureThresholds",
    "PipelineThresholds",
    "SearchSpaceThresholds",
    "SetupThresholds",
    "StabilityThresholds",
    "TrainingLengthThresholds",
    "check",
    "check_at_chance",
    "check_batch_size_tuned",
    "check_best_step_position",
    "check_boundary",
    "check_class_imbalance",
    "check_clipping",
    "check_enough_trials",
    "check_eval_steps",
    "check_eval_subset",
    "check_failed_trials",
    "check_infeasible",
    "check_input_bound",
    "check_isolation",
    "check_late_variance",
    "check_near_divergence",
    "check_no_effect",
    "check_overfitting",
    "check_periodic_validation",
    "check_saturated_early",
    "check_still_improving",
    "check_too_few_trials",
    "check_train_loss_increases",
    "family",
    "procedure_findings",
    "reconcile",
    "registered",
    "resolutions",
    "resolves",
    "run_checks",
    "thresholds_from_config",
    "thresholds_used",
]
