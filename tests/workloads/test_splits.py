"""The built-in workloads keep validation and test apart: validation is training data held out
(fixed, seeded), the test split is read only by the final-evaluation entries."""

from __future__ import annotations

from pathlib import Path

import torch

from tunebook.workloads import digits, mnist1d


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_digits_validation_is_held_out_training_data_disjoint_from_test() -> None:
    x_train, y_train, x_val, y_val = digits.load_digits_split()
    x_test, y_test = digits.load_digits_test()
    assert (len(x_train), len(x_val), len(x_test)) == (1079, 359, 359)
    assert len(y_train) + len(y_val) + len(y_test) == 1797
    train, val, test = _rows(x_train), _rows(x_val), _rows(x_test)
    # digits holds a few duplicate images; none crosses from test into validation or training.
    assert not (val & test) and not (train & test) and not (train & val)
    # Fixed: a new process (the cache cleared) gets the very same split.
    digits._split.cache_clear()
    again = (*digits.load_digits_split(), *digits.load_digits_test())
    assert all(torch.equal(a, b) for a, b in zip(again, (x_train, y_train, x_val, y_val,
                                                         x_test, y_test), strict=True))


def test_mnist1d_validation_comes_from_the_4000_training_signals(tmp_path: Path) -> None:
    mnist1d._arrays.cache_clear()
    mnist1d.load_mnist1d.cache_clear()
    x_train, y_train, x_val, y_val = mnist1d.load_mnist1d(str(tmp_path))
    x_test, y_test = mnist1d.load_mnist1d_test(str(tmp_path))
    assert (len(x_train), len(x_val), len(x_test)) == (3000, mnist1d.VAL_SIZE, 1000)
    package = mnist1d._arrays(str(tmp_path))
    assert _rows(x_train) | _rows(x_val) == _rows(package["x"])  # the training signals, split
    assert not (_rows(x_val) & _rows(x_test)) and not (_rows(x_train) & _rows(x_test))
    assert torch.equal(x_test, package["x_test"]) and torch.equal(y_test, package["y_test"])
    assert set(y_val.tolist()) == set(range(10))
    mnist1d._arrays.cache_clear()  # deterministic: read back from the file, split the same
    mnist1d.load_mnist1d.cache_clear()
    again = mnist1d.load_mnist1d(str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(again, (x_train, y_train, x_val, y_val),
                                                 strict=True))
