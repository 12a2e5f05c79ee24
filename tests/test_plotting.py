"""Plotting helpers on kernels whose pictures are known."""

import keras
import numpy as np
import pytest

from keras_sparsity import (
    SparseDense,
    plot_filters,
    plot_firing_rates,
    plot_reconstructions,
)
from keras_sparsity.plotting import _NON_FINITE_RGB, _filter_mosaic


def shown(figure):
    return figure.axes[0].images[0].get_array()


def test_filter_mosaic_tiles_and_normalizes_each_filter():
    # Three 2x3 filters: a ramp, the same ramp scaled by -10, and a constant.
    ramp = np.arange(6.0)
    kernel = np.stack([ramp, -10.0 * ramp, np.full(6, 7.0)], axis=1)
    mosaic, non_finite = _filter_mosaic(kernel, (2, 3), columns=2)
    # 3 units in 2 columns: 2 rows of 2x3 tiles with 1 pixel of padding.
    assert mosaic.shape == (5, 7, 3) and non_finite == 0
    expected_ramp = (ramp / 5.0).reshape(2, 3, 1)
    np.testing.assert_allclose(mosaic[0:2, 0:3], np.repeat(expected_ramp, 3, 2))
    np.testing.assert_allclose(mosaic[0:2, 4:7, 0], 1.0 - expected_ramp[..., 0])
    np.testing.assert_allclose(mosaic[3:5, 0:3], 0.5)
    np.testing.assert_allclose(mosaic[2, :], 1.0)  # padding
    np.testing.assert_allclose(mosaic[3:5, 4:7], 1.0)  # empty slot


def test_plot_filters_from_a_layer_shows_its_kernel():
    layer = keras.layers.Dense(
        5, kernel_initializer=keras.initializers.RandomNormal(seed=1)
    )
    layer.build((None, 784))
    figure = plot_filters(layer)  # 784 pixels: 28x28 tiles
    image = shown(figure)
    # 5 units -> 3 columns and 2 rows of 28x28 tiles.
    assert image.shape == (57, 86, 3)
    first = np.asarray(layer.kernel.numpy(), np.float64)[:, 0]
    np.testing.assert_allclose(
        image[:28, :28, 0],
        ((first - first.min()) / (first.max() - first.min())).reshape(28, 28),
        rtol=1e-6,
    )
    assert "5 filters of layer" in figure.texts[0].get_text()


def test_grid_follows_unit_count_and_columns():
    # 200 units -> ceil(sqrt(200)) = 15 columns and 14 rows of 28x28 tiles.
    assert shown(plot_filters(np.ones((784, 200)))).shape[:2] == (
        14 * 29 - 1,
        15 * 29 - 1,
    )
    figure = plot_filters(np.ones((4, 6)), (2, 2), columns=6)
    assert shown(figure).shape[:2] == (2, 17)


def test_conv2d_kernels_are_drawn_with_their_own_size():
    layer = keras.layers.Conv2D(4, (5, 3))
    layer.build((None, 12, 12, 1))
    image = shown(plot_filters(layer))
    assert image.shape == (11, 7, 3)  # 2x2 tiles of 5x3
    kernel = np.asarray(layer.kernel.numpy(), np.float64)[:, :, 0, 3]
    tile = image[6:11, 4:7, 0]
    np.testing.assert_allclose(
        tile, (kernel - kernel.min()) / (kernel.max() - kernel.min()), 1e-6
    )


def test_non_finite_filters_are_flagged_in_red():
    kernel = np.random.default_rng(0).random((4, 3))
    kernel[1, 2] = np.nan
    kernel[0, 0] = np.inf
    figure = plot_filters(kernel, (2, 2), columns=3)
    image = shown(figure)
    np.testing.assert_allclose(
        image[:2, 0:2], np.broadcast_to(_NON_FINITE_RGB, (2, 2, 3))
    )
    np.testing.assert_allclose(
        image[:2, 6:8], np.broadcast_to(_NON_FINITE_RGB, (2, 2, 3))
    )
    assert image[0, 3, 0] == image[0, 3, 1]  # a finite filter stays grey
    assert "2 with NaN or inf weights (red)" in figure.texts[0].get_text()


@pytest.mark.parametrize(
    "args,kwargs,error,fragment",
    [
        ((np.ones((10, 3)), (28, 28)), {}, ValueError, r"\(784, units\)"),
        ((np.ones((10, 3)),), {}, ValueError, "10 pixels, which is not a"),
        ((np.ones((784, 3)),), {"title": 3}, TypeError, "argument `title`"),
        ((np.ones(784),), {}, ValueError, "Dense kernel"),
        ((np.ones((784, 0)),), {}, ValueError, "0 filters"),
        ((np.ones((784, 3)), (28,)), {}, TypeError, "image_shape"),
        ((np.ones((784, 3)), (28, 28.0)), {}, TypeError, "image_shape"),
        ((np.ones((784, 3)),), {"columns": 0}, ValueError, "columns"),
        ((np.ones((3, 3, 2, 4)),), {}, ValueError, "1 input channel"),
        ((np.array([["a"]]),), {}, TypeError, "numeric array"),
        ((keras.layers.Dense(3),), {}, ValueError, "not built yet"),
    ],
)
def test_plot_filters_misuse_gets_a_clear_error(args, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        plot_filters(*args, **kwargs)


def test_a_layer_without_kernel_is_refused():
    layer = keras.layers.Dropout(0.1)
    layer.build((None, 3))
    with pytest.raises(TypeError, match="has no `kernel`"):
        plot_filters(layer)


def test_unbuilt_sparse_dense_is_refused():
    with pytest.raises(ValueError, match="'code' is not built yet"):
        plot_filters(SparseDense(3, name="code"))


def test_reconstructions(tmp_path):
    figure = plot_reconstructions(np.zeros((4, 784)), np.ones((4, 784)))
    assert len(figure.axes) == 8
    np.testing.assert_array_equal(
        figure.axes[5].images[0].get_array(), np.ones((28, 28))
    )
    figure.savefig(tmp_path / "r.png")
    with pytest.raises(ValueError, match="same shape"):
        plot_reconstructions(np.zeros((4, 784)), np.zeros((3, 784)))
    with pytest.raises(ValueError, match="Expected images of 400 pixels"):
        plot_reconstructions(np.zeros((4, 784)), np.zeros((4, 784)), (20, 20))
    with pytest.raises(ValueError, match="n >= 1 images"):
        plot_reconstructions(np.zeros((0, 784)), np.zeros((0, 784)))
    with pytest.raises(ValueError, match="99 pixels, which is not a square"):
        plot_reconstructions(np.zeros((2, 99)), np.zeros((2, 99)))
    with pytest.raises(TypeError, match="argument `originals`"):
        plot_reconstructions([["a"]], [["b"]])


@pytest.mark.parametrize(
    "shape,expected", [((3, 100), (10, 10)), ((3, 12, 16), (12, 16))]
)
def test_reconstructions_infer_the_image_shape(shape, expected):
    # As plot_filters does: square for flattened images, and the images'
    # own shape for (n, height, width).
    images = np.random.default_rng(2).random(shape)
    figure = plot_reconstructions(images, images)
    np.testing.assert_array_equal(
        figure.axes[1].images[0].get_array(), images[1].reshape(expected)
    )


def test_firing_rates_are_zoomed_to_where_they_are(tmp_path):
    rates = np.random.default_rng(1).normal(0.052, 0.006, 200)
    figure = plot_firing_rates(rates, rho=0.05, bins=10)
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    assert low > 0.0 and high < 0.2  # not 0..1 with two bars at the left
    assert low < min(rates.min(), 0.05) and high > rates.max()
    assert sum(patch.get_height() for patch in axes.patches) == 200
    assert axes.get_title().startswith("Firing rates of 200 units")
    assert axes.get_legend().get_texts()[0].get_text() == "rho = 0.05"
    figure.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "rates,kwargs,fragment",
    [
        ([], {}, "empty"),
        ([0.1, np.nan], {}, "1 NaN or inf"),
        ([0.1, 0.2], {"bins": 0}, "bins"),
        ([0.1, 0.2], {"rho": float("nan")}, "argument `rho`.*rho=nan"),
    ],
)
def test_firing_rate_misuse(rates, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        plot_firing_rates(rates, **kwargs)


@pytest.mark.parametrize(
    "rates,kwargs,message",
    [
        (
            [0.1],
            {"rho": "0.05"},
            "Invalid type for argument `rho`: expected a float or None. "
            "Received: rho='0.05' (of type str)",
        ),
        (
            [0.1],
            {"title": ["a"]},
            "Invalid type for argument `title`: expected a str or None. "
            "Received: title=['a'] (of type list)",
        ),
        (
            ["a", "b"],
            {},
            "Invalid type for argument `firing_rates`: expected a sequence "
            "of floats. Received: firing_rates=['a', 'b']",
        ),
    ],
)
def test_firing_rate_arguments_of_the_wrong_type(rates, kwargs, message):
    with pytest.raises(TypeError) as info:
        plot_firing_rates(rates, **kwargs)
    assert str(info.value) == message
