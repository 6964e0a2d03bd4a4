"""The fast median must give numpy's answer exactly: preprocessing relies on it."""

from __future__ import annotations

import numpy as np

from service.imaging.histograms import median


def _samples() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    arrays: list[np.ndarray] = []
    for size in (1, 2, 3, 4, 5, 10, 111, 784, 785, 1000, 2048):
        noise = (rng.random(size) * 255).astype(np.float32)
        arrays += [noise, np.round(noise), noise.astype(np.float64), np.zeros(size, np.float32)]
        arrays.append(rng.random((size, 3)).astype(np.float32))  # 2-D: flattened like numpy
    return arrays


def test_median_equals_numpy_bit_for_bit() -> None:
    for values in _samples():
        assert median(values) == float(np.median(values)), (values.shape, values.dtype)


def test_inputs_are_not_modified() -> None:
    values = np.arange(10, 0, -1, dtype=np.float32)
    before = values.copy()
    median(values)
    np.testing.assert_array_equal(values, before)
