"""Procedures: the playbook's recipes that take more than one experiment to answer a question.

A procedure (which batch size, how long to warm up, how many steps, whether a retrain is
needed...) builds one or more experiments from a base experiment (:meth:`Procedure.plan`),
has the runner run each (:func:`run_procedure`), and concludes with a
:class:`Recommendation`: the advice in words, the numbers it rests on, and any findings. The
recommendation is stored against the base experiment's name (``Store.add_recommendation``),
read back with :func:`recommendations`, written beside the reports as Markdown, and shown
at the top of the base experiment's HTML report.

To add one: write a :class:`Procedure` subclass decorated with ``@procedure("name")`` in a
new module of this package and import that module below; test it end to end with a tiny
workload as ``tests/procedures/test_procedure_base.py`` does (plan, run, conclude, read back).
"""

from __future__ import annotations

# ruff: noqa: I001
# The package's surface is base's; the procedures' own modules are imported below it.
from tunebook.procedures.base import *  # noqa: F403
from tunebook.procedures.base import __all__ as __all__
from tunebook.procedures import steps as _steps  # noqa: F401
from tunebook.procedures import stability as _stability  # noqa: F401
from tunebook.procedures import clip as _clip  # noqa: F401
