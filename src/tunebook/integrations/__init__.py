"""Callbacks that bring a training loop the user already has into a tunebook trial.

Each module adapts one framework's callback API to :class:`tunebook.Trial` (report every
metric at the framework's global step, the unclipped gradient norm, checkpoints inside the
trial's folder so a killed trial resumes, NaN loss -> infeasible) and imports its framework
only when used: ``tunebook.integrations.lightning`` (``pip install 'tunebook[lightning]'``)
and ``tunebook.integrations.transformers`` (``pip install 'tunebook[transformers]'``).
Like the PyTorch helpers they sit beside the floors and use only what a workload sees.
"""
