"""Conditional nuisance hyperparameters (``nuisance_for:``): reading, rules, each study's space.

``nuisance:`` is searched by every study; ``nuisance_for:`` adds hyperparameters that only some
studies search, chosen by a scientific value::

    scientific: {optimizer: [adam, nesterov]}
    nuisance:
      learning_rate: {type: float, low: 1.0e-4, high: 1.0, scale: log}
    nuisance_for:
      optimizer=adam:
        beta1: {type: float, low: 0.5, high: 0.999, scale: one_minus_log}
        epsilon: {type: float, low: 1.0e-10, high: 1.0e-6, scale: log}
      optimizer=nesterov:
        momentum: {type: float, low: 0.5, high: 0.999, scale: one_minus_log}

Rules (each broken one is a one-line ConfigError naming the file, the key and the value):

- a key is ``NAME=VALUE``: ``NAME`` a scientific hyperparameter (of ``scientific:`` or of the
  ``configs:`` entries) and ``VALUE`` one of its values as the study names write it
  (``optimizer=adam``, ``batch_size=64``, ``learning_rate=0.001``; ``use_bn=true`` or
  ``use_bn=True``);
- a block is a non-empty mapping of hyperparameter definitions, written like ``nuisance:``;
- a name of a block is not also in ``nuisance:``, ``fixed:`` or scientific (one role each);
- a name in several blocks (``beta1`` for adam and for adamw) has the same definition in each:
  the analysis shows one axis, over one range, per hyperparameter;
- ``search.algorithm: grid`` is refused: the studies' grids would differ in size and shape.

A study searches ``nuisance:`` plus every block whose ``NAME=VALUE`` it holds. Its space puts
the shared hyperparameters first (:class:`~tunebook.search.space.SearchSpace`'s ``first``), so
with ``quasi_random`` and ``random`` trial ``i`` of every study has the same values of the
shared hyperparameters (the comparison between studies stays paired on them) and its own
values of the conditional ones; ``refine`` starts from those points and then follows each
study's own results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tunebook.experiment.checks import Reader, got, nearest, show
from tunebook.search.space import SearchSpace, Value

if TYPE_CHECKING:
    from tunebook.experiment import Experiment
    from tunebook.experiment.parse import DocumentReader

__all__ = ["check_conditional", "matches", "parse_conditional", "study_space"]


def parse_conditional(r: DocumentReader, value: object) -> dict[str, SearchSpace]:
    """The ``nuisance_for:`` section of a document: condition -> its block, built into kinds."""
    out = {}
    for cond, block in r.mapping("nuisance_for", value or {}, ()).items():
        key = f"nuisance_for.{r.key(cond)}"
        spec = r.mapping(key, block, ())
        out[cond] = SearchSpace({k: r.hyperparameter(f"{key}.{r.key(k)}", v)
                                 for k, v in spec.items()})
    return out


def _written(value: Value, text: str) -> bool:
    """``text`` writes ``value`` as a study name does (booleans also in YAML's lower case)."""
    return str(value) == text or (isinstance(value, bool) and str(value).lower() == text)


def matches(condition: str, scientific: Mapping[str, Value]) -> bool:
    """True when a study with these scientific values holds ``NAME=VALUE``."""
    name, _, value = condition.partition("=")
    return name in scientific and _written(scientific[name], value)


def study_space(exp: Experiment, scientific: Mapping[str, Value]) -> SearchSpace:
    """What a study with these scientific values searches: ``nuisance`` first, then the blocks
    of ``nuisance_for`` it matches."""
    if not exp.nuisance_for:
        return exp.nuisance
    own: dict[str, Any] = {}
    for cond, block in exp.nuisance_for.items():
        if matches(cond, scientific):
            own.update(block)
    return SearchSpace({**exp.nuisance, **own}, first=tuple(exp.nuisance))


def check_conditional(exp: Experiment, r: Reader) -> None:
    """Every rule of ``nuisance_for:`` (the module docstring); raise ConfigError on the first."""
    if not exp.nuisance_for:
        return
    if exp.search.algorithm == "grid":
        raise r.fail("search.algorithm", "grid search cannot be used with nuisance_for (the "
                     "studies' grids would differ): use quasi_random")
    sci = exp.scientific_values
    first: dict[str, str] = {}  # hyperparameter -> the condition that first defined it
    for cond, block in exp.nuisance_for.items():
        key = f"nuisance_for.{r.key(cond)}"
        name, eq, value = cond.partition("=") if isinstance(cond, str) else ("", "", "")
        if not eq or not name:
            raise r.fail(key, f"must be NAME=VALUE (a scientific hyperparameter and one of its "
                         f"values, e.g. optimizer=adam), {got(cond)}")
        if name not in sci:
            known = tuple(sci)
            raise r.fail(key, f"unknown scientific hyperparameter {show(name)}"
                         f"{nearest(name, known)}; "
                         + (f"one of {', '.join(known)}" if known else "the experiment has none"))
        values = [str(v) for v in sci[name]]
        if not any(_written(v, value) for v in sci[name]):
            raise r.fail(key, f"{name} has no value {show(value)}{nearest(value, values)}; "
                         f"its values: {', '.join(values)}")
        if not isinstance(block, SearchSpace) or len(block) == 0:
            raise r.fail(key, "must define at least one hyperparameter, "
                         f"{got(block if not isinstance(block, SearchSpace) else {})}")
        for hp_name, hp in block.items():
            where = f"{key}.{r.key(hp_name)}"
            r.name(where, hp_name)
            for role, names in (("nuisance (searched by every study)", exp.nuisance),
                                ("fixed", exp.fixed), ("scientific", sci)):
                if hp_name in names:
                    raise r.fail(where, f"{hp_name!r} is also {role}: a hyperparameter has "
                                 "exactly one role")
            if hp_name in first:
                other = exp.nuisance_for[first[hp_name]][hp_name]
                if other != hp:
                    raise r.fail(where, f"{hp.describe()} differs from its definition in "
                                 f"nuisance_for.{first[hp_name]} ({other.describe()}): a "
                                 "hyperparameter has one range, give the same one")
            else:
                first[hp_name] = cond
