"""Plotting helpers on kernels whose pictures are known."""

import sys

import keras
import numpy as np
import pytest

from keras_sparsity import (
    plot_filters,
    plot_firing_rates,
    plot_reconstructions,
)
from keras_sparsity.plotting import filter_mosaic


def test_filter_mosaic_tiles_and_normalizes_each_filter():
    # Three 2x3 filters: a ramp, the same ramp scaled by -10, and a constant.
    ramp = np.arange(6.0)
    kernel = np.stack([ramp, -10.0 * ramp, np.full(6, 7.0)], axis=1)
    mosaic = filter_mosaic(kernel, (2, 3))
    # 3 units -> 2 columns, 2 rows of 2x3 tiles with 1 pixel of padding.
    assert mosaic.shape == (5, 7)
    expected_ramp = (ramp / 5.0).reshape(2, 3)
    np.testing.assert_allclose(mosaic[0:2, 0:3], expected_ramp)
    np.testing.assert_allclose(mosaic[0:2, 4:7], 1.0 - expected_ramp)
    np.testing.assert_allclose(mosaic[3:5, 0:3], 0.5)
    np.testing.assert_allclose(mosaic[2, :], 1.0)  # padding
    np.testing.assert_allclose(mosaic[3:5, 4:7], 1.0)  # empty slot


def test_plot_filters_from_a_layer_shows_its_kernel():
    layer = keras.layers.Dense(
        5, kernel_initializer=keras.initializers.RandomNormal(seed=1)
    )
    layer.build((None, 784))
    figure = plot_filters(layer, (28, 28))
    shown = figure.axes[0].images[0].get_array()
    # 5 units -> 3 columns and 2 rows of 28x28 tiles.
    assert shown.shape == (57, 86)
    kernel = np.asarray(layer.kernel.numpy(), np.float64)
    first = kernel[:, 0]
    np.testing.assert_allclose(
        shown[:28, :28],
        ((first - first.min()) / (first.max() - first.min())).reshape(28, 28),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        shown, filter_mosaic(kernel, (28, 28)), rtol=1e-6
    )


def test_grid_follows_unit_count_and_columns():
    # 200 units -> ceil(sqrt(200)) = 15 columns and 14 rows of 28x28 tiles.
    shown = plot_filters(np.ones((784, 200))).axes[0].images[0].get_array()
    assert shown.shape == (14 * 29 - 1, 15 * 29 - 1)
    figure = plot_filters(np.ones((4, 6)), (2, 2), columns=6)
    assert figure.axes[0].images[0].get_array().shape == (2, 17)


def test_wrong_kernel_shape_is_refused():
    with pytest.raises(ValueError) as info:
        filter_mosaic(np.ones((10, 3)), (28, 28))
    assert str(info.value) == (
        "Expected a kernel of shape (784, units) for image_shape=(28, 28). "
        "Received: kernel.shape=(10, 3)"
    )


def test_reconstructions_and_firing_rates(tmp_path):
    figure = plot_reconstructions(np.zeros((4, 784)), np.ones((4, 784)))
    assert len(figure.axes) == 8
    np.testing.assert_array_equal(
        figure.axes[5].images[0].get_array(), np.ones((28, 28))
    )
    figure.savefig(tmp_path / "r.png")
    figure = plot_firing_rates([0.01, 0.02, 0.03, 0.9], rho=0.05, bins=10)
    counts = [patch.get_height() for patch in figure.axes[0].patches]
    assert counts == [3, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    figure.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_missing_matplotlib_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError) as info:
        plot_filters(np.ones((4, 1)), (2, 2))
    assert "need matplotlib" in str(info.value)
    assert "pip install keras-sparsity[examples]" in str(info.value)
