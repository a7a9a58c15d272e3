"""Base experiment files of the procedure tests, on workloads with known answers (shared by
tests/procedures and tests/report)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def warmup_base(folder: Path, **overrides: Any) -> Path:
    """``base.yaml`` on tests/procedures/warmup_workload.py (copied beside it, so workers
    import it): unstable above learning rate 0.5 unless warmed up for 30 steps."""
    shutil.copy(HERE / "procedures" / "warmup_workload.py", folder / "warmup_workload.py")
    doc: dict[str, Any] = {
        "name": "base", "workload": "warmup_workload:train",
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "max_train_steps": 1000, "eval_every": 100,
        "search": {"algorithm": "quasi_random", "trials": 3, "seed": 0},
        "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 0.1,
                                       "scale": "log"}},
        "fixed": {}}
    doc.update(overrides)
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def scaling_base(folder: Path, **top: Any) -> Path:
    """``scale.yaml`` on tests/batchload.py: steps to val_loss 0.5 are 320/q at batch size 16,
    halving per doubling up to 96 and flat above it; time per step flat up to 128, doubling
    above it."""
    doc = {"name": "scale", "workload": "batchload:saturating",
           "objective": {"metric": "val_loss", "goal": "minimize"},
           "max_train_steps": 480, "eval_every": 4,
           "search": {"algorithm": "quasi_random", "trials": 1, "seed": 0},
           "nuisance": {"learning_rate": {"type": "float", "low": 0.01, "high": 1.0,
                                          "scale": "log"}},
           "fixed": {"batch_size": 16, "knee": 128, "critical": 96, "steps16": 320,
                     "base_seconds": 0.002}, **top}
    path = folder / "scale.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
