"""Studies from a hand-written list of configurations (``configs:``): reading and rules.

An experiment's studies come either from ``scientific:`` (one study per combination of the
listed values) or from ``configs:`` (one study per listed configuration), never both:

- ``configs`` is a non-empty list of mappings; each entry is one study. Its optional ``name``
  (a string) names the study; every other key is a hyperparameter whose value the study holds
  fixed (the study's scientific values). Without a name the study is named by its values,
  ``key=value`` pairs sorted by key and joined by commas, like a ``scientific:`` study;
- entries may set different keys (``momentum`` only for the Nesterov entry); an entry with no
  value at all (the fixed values as they are: a baseline) must have a name;
- a key of an entry must not also be in ``fixed:`` or ``nuisance:`` (a hyperparameter has
  exactly one role), and ``name`` is not a hyperparameter;
- two entries may not have the same name (given or made from the values) nor the same values
  (compared as in ``scientific:`` lists: ``1``, ``1.0`` and ``true`` are equal);
- ``nuisance:`` is searched by every study as usual; left empty (``nuisance: {}``) every trial
  of a study runs the same configuration with its own training seed: replicates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunebook.experiment.checks import Reader, as_scalar, bad_char, got, show
from tunebook.search.space import Value

if TYPE_CHECKING:
    from tunebook.experiment import Experiment

__all__ = ["NAME_KEY", "check_configs", "config_label", "config_values", "parse_configs",
           "scientific_values"]

#: The key of a ``configs:`` entry that names its study (every other key is a hyperparameter).
NAME_KEY = "name"


def config_values(entry: Mapping[str, Value]) -> dict[str, Value]:
    """The hyperparameter values of one ``configs:`` entry, sorted by name."""
    return {k: entry[k] for k in sorted(entry) if k != NAME_KEY}


def config_label(entry: Mapping[str, Value]) -> str:
    """The study name of one ``configs:`` entry: its ``name``, else ``k=v,k=v`` of its values."""
    name = entry.get(NAME_KEY)
    if isinstance(name, str) and name:
        return name
    return ",".join(f"{k}={v}" for k, v in config_values(entry).items())


def parse_configs(r: Reader, value: object) -> tuple[dict[str, Any], ...]:
    """The ``configs:`` list of a document as plain dicts (1e-4 read as a number); the rules
    are :func:`check_configs`'."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise r.fail("configs", "must be a list of mappings (one study per configuration), "
                     f"{got(value)}")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise r.fail(f"configs[{i}]", "must be a mapping of hyperparameter values (and an "
                         f"optional name), {got(entry)}")
        for k in entry:
            if not isinstance(k, str):
                raise r.fail(f"configs[{i}]", f"keys must be strings, {got(k)}")
        out.append({k: as_scalar(v) for k, v in entry.items()})
    return tuple(out)


def check_configs(exp: Experiment, r: Reader) -> None:
    """Every rule of ``configs:`` (the module docstring); raise ConfigError on the first."""
    if not exp.configs:
        return
    if exp.scientific:
        raise r.fail("configs", "give either 'scientific' (one study per combination of "
                     "values) or 'configs' (one study per listed configuration), not both")
    labels: dict[str, int] = {}
    seen: list[dict[str, Value]] = []
    for i, entry in enumerate(exp.configs):
        where = f"configs[{i}]"
        name = entry.get(NAME_KEY)
        if name is not None:
            if not isinstance(name, str):
                raise r.fail(f"{where}.name", f"must be a string, {got(name)}")
            r.name(f"{where}.name", name)
        values = config_values(entry)
        if not values and name is None:
            raise r.fail(where, "has no hyperparameter value: give it a name (a study of the "
                         "fixed values as they are) or some values")
        for k, v in values.items():
            key = f"{where}.{r.key(k)}"
            r.name(key, k)
            r.scalar(key, v)
            if name is None and bad_char(f"{k}={v}", names=True) is not None:
                r.text(key, str(v), names=True)  # the study is named by its values
            for role, other in (("fixed", exp.fixed), ("nuisance", exp.nuisance)):
                if k in other:
                    shown = (f"{other[k]!r}" if role == "fixed"
                             else exp.nuisance[k].describe())
                    raise r.fail(key, f"{k}={show(v)} is also {role} ({k}: {shown}): a "
                                 "hyperparameter has exactly one role; drop it from one")
        for j, earlier in enumerate(seen):
            if values == earlier:  # 1, 1.0 and true are equal, as in scientific: lists
                raise r.fail(where, f"has the same values as configs[{j}] "
                             f"({show(values)}): each entry must be its own configuration")
        seen.append(values)
        label = config_label(entry)
        if label in labels:
            raise r.fail(f"{where}.name" if name is not None else where,
                         f"gives the study name {show(label)}, already configs["
                         f"{labels[label]}]'s: give the entries distinct names")
        labels[label] = i


def scientific_values(studies: Sequence[Mapping[str, Value]]) -> dict[str, tuple[Value, ...]]:
    """Every key of the studies' values with its distinct values in order of appearance."""
    out: dict[str, list[Value]] = {}
    for values in studies:
        for k, v in values.items():
            vs = out.setdefault(k, [])
            if not any(type(x) is type(v) and x == v for x in vs):
                vs.append(v)
    return {k: tuple(vs) for k, vs in sorted(out.items())}
