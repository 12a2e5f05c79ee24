"""Pictures of what a sparse autoencoder learned (needs matplotlib)."""

import math

import numpy as np


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_sparsity's plotting functions need matplotlib. Install it "
            "with `pip install matplotlib` or `pip install "
            "keras-sparsity[examples]`."
        ) from error
    return Figure


def filter_mosaic(kernel, image_shape, columns=None, padding=1):
    """Tiles the columns of `kernel` into one image, each tile in [0, 1].

    Each filter (a column of the `(pixels, units)` kernel) is reshaped to
    `image_shape` and normalized on its own to [0, 1] by its minimum and
    maximum; a constant filter becomes 0.5. Padding between tiles is 1.

    Args:
        kernel: Array of shape `(prod(image_shape), units)`.
        image_shape: `(height, width)` of one filter.
        columns: Tiles per row. Defaults to `ceil(sqrt(units))`.
        padding: Pixels between tiles. Defaults to `1`.

    Returns:
        A float array `(rows * (height + padding) - padding,
        columns * (width + padding) - padding)`.

    Example:

    >>> import numpy as np
    >>> mosaic = filter_mosaic(np.eye(4), (2, 2))
    >>> mosaic.shape
    (5, 5)
    >>> mosaic[:2, :2].tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    height, width = image_shape
    if kernel.ndim != 2 or kernel.shape[0] != height * width:
        raise ValueError(
            f"Expected a kernel of shape ({height * width}, units) for "
            f"image_shape={tuple(image_shape)}. "
            f"Received: kernel.shape={kernel.shape}"
        )
    units = kernel.shape[1]
    columns = columns or math.ceil(math.sqrt(units))
    rows = math.ceil(units / columns)
    mosaic = np.ones(
        (
            rows * (height + padding) - padding,
            columns * (width + padding) - padding,
        )
    )
    low, high = kernel.min(axis=0), kernel.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    tiles = np.where(high > low, (kernel - low) / span, 0.5)
    for unit in range(units):
        row, column = divmod(unit, columns)
        top, left = row * (height + padding), column * (width + padding)
        mosaic[top : top + height, left : left + width] = tiles[
            :, unit
        ].reshape(height, width)
    return mosaic


def plot_filters(layer_or_kernel, image_shape=(28, 28), columns=None):
    """Draws the filters of an encoder layer as a grid of images.

    The classic picture of Ng's notes and MATLAB's `plotWeights`: the input
    weights of every hidden unit, shown as an image, each tile normalized on
    its own.

    Args:
        layer_or_kernel: A layer with a `kernel` of shape
            `(prod(image_shape), units)` (`Dense`, `SparseDense`), or that
            kernel as an array.
        image_shape: `(height, width)` of one input image. Defaults to
            `(28, 28)`.
        columns: Tiles per row. Defaults to `ceil(sqrt(units))`.

    Returns:
        A `matplotlib.figure.Figure`; save it with `fig.savefig(path)`.

    Example:

    >>> import numpy as np
    >>> fig = plot_filters(np.random.rand(784, 200))
    >>> fig.axes[0].images[0].get_array().shape
    (405, 434)
    """
    kernel = getattr(layer_or_kernel, "kernel", layer_or_kernel)
    kernel = np.asarray(kernel.numpy() if hasattr(kernel, "numpy") else kernel)
    mosaic = filter_mosaic(kernel, image_shape, columns)
    figure = _figure_class()(figsize=(8, 8 * mosaic.shape[0] / mosaic.shape[1]))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(
        mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest"
    )
    axes.set_axis_off()
    return figure


def plot_reconstructions(originals, reconstructions, image_shape=(28, 28)):
    """Draws images (top row) above their reconstructions (bottom row).

    Args:
        originals: Array `(n, prod(image_shape))` of pixels in [0, 1].
        reconstructions: Array of the same shape.
        image_shape: `(height, width)` of one image.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    >>> import numpy as np
    >>> fig = plot_reconstructions(np.zeros((3, 4)), np.ones((3, 4)), (2, 2))
    >>> len(fig.axes)
    6
    """
    originals = np.asarray(originals)
    n = len(originals)
    figure = _figure_class()(figsize=(1.2 * n, 2.6))
    for row, images in enumerate((originals, np.asarray(reconstructions))):
        for i in range(n):
            axes = figure.add_subplot(2, n, row * n + i + 1)
            axes.imshow(
                images[i].reshape(image_shape), cmap="gray", vmin=0.0, vmax=1.0
            )
            axes.set_axis_off()
    figure.suptitle("test images (top) and their reconstructions (bottom)")
    return figure


def plot_firing_rates(firing_rates, rho=None, bins=40):
    """Draws the histogram of per-unit firing rates (mean activations).

    Args:
        firing_rates: One mean activation per unit, in [0, 1].
        rho: Optional target, drawn as a vertical line.
        bins: Number of histogram bins. Defaults to `40`.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    >>> fig = plot_firing_rates([0.01, 0.02, 0.5], rho=0.05)
    >>> fig.axes[0].get_xlabel()
    'firing rate (mean activation of a unit)'
    """
    figure = _figure_class()(figsize=(6, 4))
    axes = figure.add_subplot()
    axes.hist(np.asarray(firing_rates), bins=bins, range=(0.0, 1.0))
    if rho is not None:
        axes.axvline(rho, color="red", linestyle="--", label=f"rho = {rho}")
        axes.legend()
    axes.set_xlabel("firing rate (mean activation of a unit)")
    axes.set_ylabel("units")
    return figure
