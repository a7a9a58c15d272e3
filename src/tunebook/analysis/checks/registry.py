"""The check registry: ``@check`` records a check with its playbook section and threshold family.

A *family* is a frozen dataclass of thresholds shared by the checks of one module (its
``family`` class variable names it in the experiment file's ``checks:`` section). A check is a
function ``check_NAME(data, thresholds) -> list[Finding]`` whose second argument defaults to
its family's defaults, registered with ``@check("NAME", playbook_section=..., thresholds=Cls)``.

A *procedure check* (``@check(..., procedure="stability")``) judges what one of the playbook's
procedures measured instead of an experiment: ``check_NAME(evidence, thresholds)`` gets the
procedure's evidence (the ``evidence`` of its recommendation, a JSON-like mapping) and returns
findings like any check. :func:`run_checks` leaves them out; :func:`procedure_findings` runs the
ones of one procedure. They share everything else: the threshold families (so an experiment
file's ``checks:`` section sets them), :func:`finding`, ``advice``/``trials`` and
:func:`reconcile`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from tunebook.analysis.data import ExperimentData
from tunebook.analysis.findings import SEVERITIES, Finding, Severity, contradictions
from tunebook.analysis.variance import primary
from tunebook.errors import ConfigError

__all__ = [
    "CHECKS",
    "PROCEDURE_CHECKS",
    "CheckSpec",
    "check",
    "family",
    "finding",
    "procedure_findings",
    "reconcile",
    "registered",
    "resolves",
    "run_checks",
    "thresholds_from_config",
    "thresholds_used",
]


CheckFn = Callable[..., list[Finding]]
F = TypeVar("F", bound=CheckFn)
#: ``resolver(a, b, data) -> findings replacing a and b`` (``a`` is of the first check named).
Resolver = Callable[[Finding, Finding, ExperimentData], list[Finding]]
R = TypeVar("R", bound=Resolver)


@dataclass(frozen=True)
class CheckSpec:
    """One registered check: its name, function, playbook section and threshold family, and
    for a procedure check the procedure whose evidence it reads (None: an experiment check)."""

    name: str
    function: CheckFn
    section: str
    thresholds: type[Any]
    procedure: str | None = None


_SPECS: dict[str, CheckSpec] = {}
_FAMILIES: dict[str, type[Any]] = {}
_FUNCTIONS: dict[str, CheckFn] = {}
_PROCEDURE_FUNCTIONS: dict[str, CheckFn] = {}

CHECKS: Mapping[str, CheckFn] = MappingProxyType(_FUNCTIONS)
"""Every experiment check's function by name, in registration order (``run_checks`` sorts its
output)."""

PROCEDURE_CHECKS: Mapping[str, CheckFn] = MappingProxyType(_PROCEDURE_FUNCTIONS)
"""Every procedure check's function by name, in registration order."""


def check(name: str, *, playbook_section: str, thresholds: type[Any],
          procedure: str | None = None) -> Callable[[F], F]:
    """Register the decorated function as check ``name`` (the function is returned unchanged);
    with ``procedure``, as a check of that procedure's evidence (see the module docstring)."""
    family = thresholds.family
    known = _FAMILIES.get(family)
    if known is not None and known is not thresholds:
        raise ValueError(f"threshold family {family!r} is already {known.__qualname__}")

    def register(fn: F) -> F:
        if name in _SPECS:
            raise ValueError(f"check {name!r} is registered twice")
        _FAMILIES[family] = thresholds
        _SPECS[name] = CheckSpec(name, fn, playbook_section, thresholds, procedure)
        (_FUNCTIONS if procedure is None else _PROCEDURE_FUNCTIONS)[name] = fn
        return fn

    return register


_RESOLVERS: dict[tuple[str, str], Resolver] = {}


def resolves(first: str, second: str) -> Callable[[R], R]:
    """Register the decorated function as the way to combine a finding of check ``first`` with
    a contradicting one of check ``second`` (same scope, opposite advice on a knob): it gets
    both findings and the data and returns what replaces them (usually one finding that
    explains the combination)."""

    def register(fn: R) -> R:
        key = (first, second)
        if key in _RESOLVERS or (second, first) in _RESOLVERS:
            raise ValueError(f"checks {first!r} and {second!r} already have a resolver")
        _RESOLVERS[key] = fn
        return fn

    return register


def family(thresholds: type[Any]) -> type[Any]:
    """Register a threshold family used by analyses that are not checks themselves (e.g.
    :class:`tunebook.analysis.resolution.ResolutionThresholds`), so that the experiment file's
    ``checks:`` section validates it like the others."""
    name = thresholds.family
    known = _FAMILIES.get(name)
    if known is not None and known is not thresholds:
        raise ValueError(f"threshold family {name!r} is already {known.__qualname__}")
    _FAMILIES[name] = thresholds
    return thresholds


def registered() -> Mapping[str, CheckSpec]:
    """Every registered check's :class:`CheckSpec` by name."""
    return dict(_SPECS)


def finding(check: str, severity: Severity, message: str, **kwargs: Any) -> Finding:
    """A :class:`Finding` of registered check ``check``, with its playbook section filled in."""
    return Finding(check=check, severity=severity, message=message,
                   section=_SPECS[check].section, **kwargs)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _value(source: str, key: str, default: object, value: object) -> object:
    """``value`` checked against the type of the field's ``default`` (ConfigError if not)."""
    if isinstance(default, str):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(source, key, f"must be a non-empty string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(source, key, f"must be a number, got {value!r}")
    if isinstance(default, int) and not isinstance(value, int):
        raise ConfigError(source, key, f"must be an integer, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(source, key, f"must be a finite number >= 0, got {value!r}")
    return float(value) if isinstance(default, float) else value


def thresholds_from_config(config: Mapping[str, Any] | None, source: str = "<python>"
                           ) -> dict[str, Any]:
    """Every family's thresholds: the defaults, overridden by an experiment's ``checks:``.

    ``config`` maps a family name to ``{threshold: value}``, e.g.
    ``{"curves": {"overfit_rel_rise": 0.05}}``.

    Raises:
        ConfigError: (with ``source`` and the key ``checks.FAMILY.NAME``) for an unknown family or
            threshold, with the nearest known name, or a value of the wrong type.
    """
    out: dict[str, Any] = {family: cls() for family, cls in _FAMILIES.items()}
    for family, values in (config or {}).items():
        if family not in _FAMILIES:
            raise ConfigError(source, f"checks.{family}", f"unknown check family {family!r}"
                              f"{_did_you_mean(str(family), _FAMILIES)}; one of "
                              f"{', '.join(_FAMILIES)}")
        if not isinstance(values, Mapping):
            raise ConfigError(source, f"checks.{family}",
                              f"must be a mapping of thresholds, got {values!r}")
        default = out[family]
        names = [f.name for f in dataclasses.fields(default)]
        changes: dict[str, Any] = {}
        for name, value in values.items():
            key = f"checks.{family}.{name}"
            if name not in names:
                raise ConfigError(source, key, f"unknown threshold {name!r}"
                                  f"{_did_you_mean(str(name), names)}; one of {', '.join(names)}")
            changes[name] = _value(source, key, getattr(default, name), value)
        out[family] = dataclasses.replace(default, **changes)
    return out


def thresholds_used(data: ExperimentData) -> dict[str, dict[str, Any]]:
    """The thresholds the checks use on ``data``: ``{family: {name: value}}``, for the report."""
    used = thresholds_from_config(data.experiment.checks, data.experiment.source)
    return {family: dataclasses.asdict(t) for family, t in used.items()}


_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def run_checks(data: ExperimentData, only: Iterable[str] | None = None,
               thresholds: Mapping[str, Any] | None = None) -> list[Finding]:
    """Run every check (or those named in ``only``) and sort the findings.

    Thresholds are ``thresholds`` (a family name to its dataclass, as
    :func:`thresholds_from_config` returns) or else the experiment's ``checks:`` section over
    the defaults. Order: severity (problem, warning, info), then check name; findings of one
    check keep the order the check gave them.

    Raises:
        ConfigError: when ``only`` names an unknown check (with the nearest known name) or the
            experiment's ``checks:`` section is invalid.
    """
    names = list(_FUNCTIONS) if only is None else list(only)
    for name in names:
        if name not in _FUNCTIONS:
            raise ConfigError("run_checks", "only", f"unknown check {name!r}"
                              f"{_did_you_mean(str(name), _FUNCTIONS)}; one of "
                              f"{', '.join(_FUNCTIONS)}")
    # With search.seeds the checks read the primary seed's studies: trials are paired by index
    # only within one seed (a no-op for a one-seed experiment).
    data = primary(data)
    if thresholds is None:
        thresholds = thresholds_from_config(data.experiment.checks, data.experiment.source)
    else:
        # Checks also read other families' thresholds through shared analyses (the comparison,
        # the resolution): those must see the thresholds given here, not the file's.
        given = {family: {k: v for k, v in dataclasses.asdict(th).items()}
                 for family, th in thresholds.items()}
        data = dataclasses.replace(data, experiment=dataclasses.replace(
            data.experiment, checks={**data.experiment.checks, **given}))
    findings = []
    for name in names:
        spec = _SPECS[name]
        family = spec.thresholds.family
        findings += spec.function(data, thresholds.get(family, spec.thresholds()))
    return sorted(reconcile(findings, data),
                  key=lambda f: (_SEVERITY_RANK.get(f.severity, len(SEVERITIES)), f.check))


def procedure_findings(procedure: str, evidence: Mapping[str, Any],
                       config: Mapping[str, Any] | None = None, source: str = "<python>"
                       ) -> list[Finding]:
    """Run the checks registered for ``procedure`` on its ``evidence`` and sort the findings
    like :func:`run_checks` (contradictions reconciled).

    ``config`` is the base experiment's ``checks:`` section (thresholds over the defaults;
    ``source`` names its file in errors).

    Raises:
        ConfigError: when ``config`` is invalid.
    """
    thresholds = thresholds_from_config(config, source)
    findings: list[Finding] = []
    for spec in _SPECS.values():
        if spec.procedure == procedure:
            findings += spec.function(evidence, thresholds[spec.thresholds.family])
    return sorted(reconcile(findings, None),
                  key=lambda f: (_SEVERITY_RANK.get(f.severity, len(SEVERITIES)), f.check))


def _supersede(a: Finding, b: Finding) -> list[Finding]:
    """No resolver for the pair: keep the more severe finding (the one registered first on a
    tie) and record the other in its evidence, so nothing is lost but nothing contradicts."""
    order = list(_SPECS)

    def rank(f: Finding) -> tuple[int, int]:
        return (_SEVERITY_RANK.get(f.severity, len(SEVERITIES)),
                order.index(f.check) if f.check in order else len(order))

    keep, drop = (a, b) if rank(a) <= rank(b) else (b, a)
    superseded = [*keep.evidence.get("superseded", []),
                  {"check": drop.check, "severity": drop.severity, "message": drop.message}]
    return [dataclasses.replace(keep, evidence={**keep.evidence, "superseded": superseded})]


def reconcile(findings: Iterable[Finding], data: ExperimentData | None) -> list[Finding]:
    """``findings`` with every contradiction resolved (:func:`~tunebook.analysis.findings.
    contradictions`): a pair is replaced by its checks' registered resolver's output (see
    :func:`resolves`; only with ``data``: resolvers read the experiment), or else by the more
    severe of the two, the other kept in its evidence under ``superseded``. Repeats until no
    pair contradicts (each step removes a finding or a contradiction, so it ends)."""
    out = list(findings)
    for _ in range(len(out) * len(out) + 1):
        pairs = contradictions(out)
        if not pairs:
            return out
        a, b, _knob = pairs[0]
        resolver = _RESOLVERS.get((a.check, b.check))
        if data is None:
            merged = _supersede(a, b)
        elif resolver is not None:
            merged = resolver(a, b, data)
        elif (resolver := _RESOLVERS.get((b.check, a.check))) is not None:
            merged = resolver(b, a, data)
        else:
            merged = _supersede(a, b)
        i = min(out.index(a), out.index(b))
        rest = [f for f in out if f is not a and f is not b]
        out = rest[:i] + merged + rest[i:]
    raise RuntimeError("reconcile did not converge: a resolver keeps re-creating a "
                       "contradiction")
