"""``resources``: what one trial needs from a cluster scheduler (the Ray executor).

::

    resources:
      num_cpus: 2        # CPUs per trial (default 1)
      num_gpus: 1        # GPUs per trial, fractions allowed (0.5: two trials share one)
      memory: 4e9        # bytes of memory Ray reserves for the trial
      custom: {node2: 1} # Ray custom resources, by name

Rules: only these keys; every amount a finite number >= 0 (``memory`` > 0, at most 2**63 - 1
bytes); custom resource names are non-empty one-line strings. The Ray executor gives each worker
actor these amounts (``.options(...)``); local worker processes take one CPU each and ignore
them (``tunebook run`` says so once). The key is not part of the experiment's identity: where a
trial runs does not change what it computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tunebook.experiment.checks import Reader, show

if TYPE_CHECKING:
    from tunebook.experiment import Experiment
    from tunebook.experiment.parse import DocumentReader

__all__ = ["RESOURCE_KEYS", "check_resources", "parse_resources"]

RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "custom")
MAX_MEMORY = 2**63 - 1


def parse_resources(r: DocumentReader, value: object) -> dict[str, Any]:
    """The ``resources`` mapping of a document, its keys checked (the values are checked by
    :func:`check_resources`)."""
    if value is None:
        return {}
    out = r.mapping("resources", value, RESOURCE_KEYS)
    if "custom" in out and out["custom"] is not None:
        out["custom"] = r.mapping("resources.custom", out["custom"], ())
    return out


def check_resources(exp: Experiment, r: Reader) -> None:
    """Every amount a finite number >= 0, ``memory`` > 0 bytes, custom names one line."""
    res = exp.resources
    if not isinstance(res, Mapping):
        raise r.fail("resources", f"must be a mapping, got {show(res)}")
    for key, value in res.items():
        if key not in RESOURCE_KEYS:
            raise r.fail(f"resources.{r.key(key)}", f"unknown key {show(key)}; one of "
                                                   f"{', '.join(RESOURCE_KEYS)}")
        if key == "custom":
            if not isinstance(value, Mapping):
                raise r.fail("resources.custom", f"must be a mapping of resource names to "
                                                 f"amounts, got {show(value)}")
            for name, amount in value.items():
                r.name("resources.custom", name)
                _amount(r, f"resources.custom.{r.key(name)}", amount)
        elif key == "memory":
            memory = _amount(r, "resources.memory", value)
            if memory <= 0 or memory > MAX_MEMORY:
                raise r.fail("resources.memory", f"must be a number of bytes > 0 and <= "
                                                 f"2**63 - 1, got {show(value)}")
        else:
            _amount(r, f"resources.{key}", value)


def _amount(r: Reader, key: str, value: object) -> float | int:
    number = r.number(key, value)
    if number < 0:
        raise r.fail(key, f"must be >= 0, got {show(value)}")
    return number
