"""Search: what the trials' hyperparameters are.

``space`` (hyperparameter kinds, their scales and the unit cube), ``rng`` (seeded generators),
``halton`` (shifted, scrambled Halton sequences) and ``designers`` (the designer seam: every
search algorithm is a registered :class:`~tunebook.search.designers.Designer`).
"""
