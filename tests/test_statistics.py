"""sparsity_statistics against figures computed by hand."""

import numpy as np
import pytest

from keras_sparsity import KLSparsityRegularizer, sparsity_statistics


def test_figures_by_hand():
    a = np.array(
        [
            [0.9, 0.0, 0.2, 0.6],
            [0.7, 0.0, 0.4, 0.1],
            [0.2, 0.1, 0.3, 0.8],
        ]
    )
    stats = sparsity_statistics(a)
    assert stats["mean_activation"] == pytest.approx(4.3 / 12)
    # Active (> 0.5): 0.9, 0.7, 0.6, 0.8.
    assert stats["active_fraction"] == pytest.approx(4 / 12)
    assert stats["dead_units"] == 2 and stats["dead_fraction"] == 0.5
    rates = [1.8 / 3, 0.1 / 3, 0.9 / 3, 1.5 / 3]
    np.testing.assert_allclose(stats["firing_rates"], rates)
    assert stats["firing_rate_std"] == pytest.approx(np.std(rates))
    assert stats["firing_rate_min"] == pytest.approx(0.1 / 3)
    assert "kl_penalty" not in stats


def test_value_range_threshold_and_penalty():
    a = np.array([[-1.0, 0.5], [1.0, -0.5]])  # tanh-like, mapped to (0, 1)
    regularizer = KLSparsityRegularizer(0.25, 2.0, value_range=(-1, 1))
    stats = sparsity_statistics(
        a, value_range=(-1, 1), active_threshold=0.7, regularizer=regularizer
    )
    # Mapped: [[0, 0.75], [1, 0.25]] -> active: 0.75 and 1.
    assert stats["active_fraction"] == 0.5 and stats["dead_units"] == 0
    np.testing.assert_allclose(stats["firing_rates"], [0.5, 0.5])
    kl = 0.25 * np.log(0.25 / 0.5) + 0.75 * np.log(0.75 / 0.5)
    assert stats["kl_penalty"] == pytest.approx(2.0 * 2 * kl, rel=1e-5)
