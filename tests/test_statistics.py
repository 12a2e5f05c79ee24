"""sparsity_statistics against figures computed by hand."""

import numpy as np
import pytest

from keras_sparsity import (
    ACTIVE_THRESHOLD,
    KLSparsityRegularizer,
    sparsity_statistics,
)

from conftest import kl_penalty_reference


def test_figures_by_hand():
    a = np.array(
        [
            [0.9, 0.0, 0.2, 0.6],
            [0.7, 0.0, 0.4, 0.1],
            [0.2, 0.05, 0.3, 0.8],
        ]
    )
    stats = sparsity_statistics(a, active_threshold=0.5)
    assert stats["mean_activation"] == pytest.approx(4.25 / 12)
    # Active (> 0.5): 0.9, 0.7, 0.6, 0.8.
    assert stats["active_fraction"] == pytest.approx(4 / 12)
    assert stats["dead_units"] == 2 and stats["dead_fraction"] == 0.5
    rates = [1.8 / 3, 0.05 / 3, 0.9 / 3, 1.5 / 3]
    np.testing.assert_allclose(stats["firing_rates"], rates)
    assert stats["firing_rate_std"] == pytest.approx(np.std(rates))
    assert stats["firing_rate_min"] == pytest.approx(0.05 / 3)
    assert stats["active_threshold"] == 0.5
    assert "kl_penalty" not in stats


def test_default_threshold_is_the_documented_one():
    assert ACTIVE_THRESHOLD == 0.1
    a = np.array([[0.09, 0.11], [0.0, 0.0]])
    stats = sparsity_statistics(a)
    assert stats["dead_units"] == 1 and stats["active_fraction"] == 0.25
    assert stats["active_threshold"] == ACTIVE_THRESHOLD


def test_value_range_threshold_and_penalty():
    a = np.array([[-1.0, 0.5], [1.0, -0.5]])  # tanh-like, mapped to (0, 1)
    regularizer = KLSparsityRegularizer(0.25, 2.0, value_range=(-1, 1))
    stats = sparsity_statistics(
        a, active_threshold=0.7, regularizer=regularizer
    )
    # Mapped with the regularizer's range: [[0, 0.75], [1, 0.25]]; active:
    # 0.75 and 1.
    assert stats["active_fraction"] == 0.5 and stats["dead_units"] == 0
    np.testing.assert_allclose(stats["firing_rates"], [0.5, 0.5])
    kl = 0.25 * np.log(0.25 / 0.5) + 0.75 * np.log(0.75 / 0.5)
    assert stats["kl_penalty"] == pytest.approx(2.0 * 2 * kl, rel=1e-12)


def test_kl_penalty_is_float64_and_agrees_with_the_rates():
    # Issue: the penalty came from the float32 regularizer while the rates
    # were float64, so the two disagreed. Now both are float64.
    rng = np.random.default_rng(0)
    a = rng.random((20000, 7)) ** 6
    regularizer = KLSparsityRegularizer(0.05, 3.0)
    stats = sparsity_statistics(a, regularizer=regularizer)
    assert stats["kl_penalty"] == pytest.approx(
        kl_penalty_reference(a, 0.05, 3.0), rel=1e-12
    )
    q = np.asarray(stats["firing_rates"])
    from_rates = 3.0 * np.sum(
        0.05 * np.log(0.05 / q) + 0.95 * np.log(0.95 / (1 - q))
    )
    assert stats["kl_penalty"] == pytest.approx(from_rates, rel=1e-12)


def test_channels_first_axis_and_mask():
    rng = np.random.default_rng(1)
    maps = rng.random((4, 3, 5, 5))  # (batch, channels, height, width)
    regularizer = KLSparsityRegularizer(0.1, 1.0, axis=1)
    stats = sparsity_statistics(maps, regularizer=regularizer)
    np.testing.assert_allclose(
        stats["firing_rates"], maps.mean(axis=(0, 2, 3)), rtol=1e-12
    )
    assert stats["units"] == 3
    sequences = rng.random((3, 6, 2))
    mask = np.ones((3, 6), bool)
    mask[0, 4:] = False
    stats = sparsity_statistics(sequences, mask=mask)
    np.testing.assert_allclose(
        stats["firing_rates"], sequences[mask].mean(axis=0), rtol=1e-12
    )


@pytest.mark.parametrize(
    "activations,kwargs,error,fragment",
    [
        (np.zeros(5), {}, ValueError, "rank >= 2"),
        (np.zeros((0, 5)), {}, ValueError, "at least one example"),
        (np.zeros((3, 0)), {}, ValueError, "at least one example"),
        (np.array([[0.1, np.nan]]), {}, ValueError, "1 activations are NaN"),
        (np.array([["a", "b"]]), {}, TypeError, "numeric array"),
        (
            np.zeros((3, 4)),
            {"mask": np.ones((3, 1), bool)},
            ValueError,
            "argument `mask`",
        ),
        (
            np.zeros((3, 4)),
            {"mask": np.zeros(3, bool)},
            ValueError,
            "at least one example",
        ),
        (
            np.zeros((3, 4)),
            {"value_range": (1, 0)},
            ValueError,
            "argument `value_range`",
        ),
        (np.zeros((3, 4)), {"axis": 2}, ValueError, "Invalid axis 2"),
    ],
)
def test_bad_input_is_refused(activations, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        sparsity_statistics(activations, **kwargs)


def test_an_activation_at_the_threshold_is_not_active():
    # "Active" means above the threshold, as documented: a unit at exactly
    # 0.1 on every example is dead.
    a = np.array([[ACTIVE_THRESHOLD, 0.5], [ACTIVE_THRESHOLD, 0.0]])
    stats = sparsity_statistics(a)
    assert stats["dead_units"] == 1 and stats["active_fraction"] == 0.25


def test_kl_penalty_of_a_silent_unit_is_finite_and_the_library_s():
    # A hard_sigmoid unit can be exactly 0 on every example: its rate is
    # clipped as the penalty clips it, not logged as inf.
    a = np.random.default_rng(3).random((32, 3))
    a[:, 0] = 0.0
    a[:, 1] = 1.0
    regularizer = KLSparsityRegularizer(0.05, 0.5)
    stats = sparsity_statistics(a, regularizer=regularizer)
    assert np.isfinite(stats["kl_penalty"])
    assert stats["kl_penalty"] == pytest.approx(
        kl_penalty_reference(a, 0.05, 0.5), rel=1e-12
    )


@pytest.mark.parametrize(
    "activations,value_range,shown",
    [
        (
            [[0.5, 3.0], [0.0, 1.2]],
            None,
            "2 of 4 lie outside the value range "
            "(0.0, 1.0) (they range from 0 to 3)",
        ),
        ([[0.5, -0.25], [0.0, 0.2]], None, "1 of 4 lie outside"),
        ([[-1.5, 0.2], [0.0, 0.9]], (-1, 1), "the value range (-1.0, 1.0)"),
    ],
)
def test_activations_outside_the_value_range_are_refused(
    activations, value_range, shown
):
    # ReLU or softplus codes: the penalty would clip them silently.
    with pytest.raises(ValueError) as info:
        sparsity_statistics(np.array(activations), value_range=value_range)
    message = str(info.value)
    assert message.startswith("Invalid value for argument `activations`: ")
    assert shown in message
    assert "`value_range`" in message and "keras.regularizers.L1" in message
    # Within its range, a bounded activation is measured.
    relu6 = np.array([[0.0, 6.0], [3.0, 0.6]])
    stats = sparsity_statistics(relu6, value_range=(0, 6))
    np.testing.assert_allclose(stats["firing_rates"], [0.25, 0.55])
