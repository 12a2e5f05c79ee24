"""Pictures of what a sparse autoencoder learned (needs matplotlib)."""

import math
import numbers

import numpy as np

# The colour of a filter whose weights are not all finite.
_NON_FINITE_RGB = (1.0, 0.0, 0.0)


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


def _square(pixels, name):
    """`(side, side)` for `pixels` pixels, or the error naming `name`."""
    side = math.isqrt(pixels)
    if side * side != pixels:
        raise ValueError(
            f"{name} holds images of {pixels} pixels, which is not a square: "
            "pass image_shape=(height, width)."
        )
    return side, side


def _check_title(title):
    if title is not None and not isinstance(title, str):
        raise TypeError(
            "Invalid type for argument `title`: expected a str or None. "
            f"Received: title={title!r} (of type {type(title).__name__})"
        )
    return title


def _check_image_shape(image_shape):
    if (
        not isinstance(image_shape, (tuple, list))
        or len(image_shape) != 2
        or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral)
            for v in image_shape
        )
    ):
        raise TypeError(
            "Invalid type for argument `image_shape`: expected a pair "
            f"(height, width) of ints. Received: image_shape={image_shape!r}"
        )
    if min(image_shape) < 1:
        raise ValueError(
            "Invalid value for argument `image_shape`: expected positive "
            f"sizes. Received: image_shape={tuple(image_shape)}"
        )
    return int(image_shape[0]), int(image_shape[1])


def _kernel_of(layer_or_kernel):
    """The kernel as a NumPy array, from a layer or an array."""
    if hasattr(layer_or_kernel, "weights"):  # a layer
        layer = layer_or_kernel
        if not layer.built:
            raise ValueError(
                f"Layer {layer.name!r} is not built yet, so it has no kernel "
                "to draw: call it on data, or build its model, first."
            )
        if not hasattr(layer, "kernel"):
            raise TypeError(
                f"Layer {layer.name!r} ({type(layer).__name__}) has no "
                "`kernel` to draw: pass a Dense, SparseDense or Conv2D layer, "
                "or a kernel array."
            )
        layer_or_kernel = layer.kernel
    try:
        from keras import ops

        kernel = np.asarray(ops.convert_to_numpy(layer_or_kernel))
    except Exception:
        kernel = np.asarray(layer_or_kernel)
    if kernel.dtype == object or not np.issubdtype(kernel.dtype, np.number):
        raise TypeError(
            "Invalid type for argument `layer_or_kernel`: expected a layer "
            f"or a numeric array. Received: dtype {kernel.dtype}"
        )
    return kernel.astype(np.float64)


def _as_filters(kernel, image_shape):
    """`(pixels, units)` filters and their `(height, width)`."""
    if kernel.ndim == 4:  # Conv2D: (height, width, in_channels, filters)
        height, width, channels, units = kernel.shape
        if channels != 1:
            raise ValueError(
                "plot_filters draws grey-scale filters: a Conv2D kernel needs "
                f"1 input channel. Received: kernel.shape={kernel.shape}"
            )
        if image_shape is not None and tuple(image_shape) != (height, width):
            raise ValueError(
                f"A Conv2D kernel of shape {kernel.shape} has filters of "
                f"shape {(height, width)}. Received: "
                f"image_shape={tuple(image_shape)}"
            )
        return kernel.reshape(height * width, units), (height, width)
    if kernel.ndim != 2:
        raise ValueError(
            "Expected a Dense kernel (pixels, units) or a Conv2D kernel "
            "(height, width, 1, filters). "
            f"Received: kernel.shape={kernel.shape}"
        )
    if image_shape is None:
        image_shape = _square(kernel.shape[0], "The kernel")
    height, width = _check_image_shape(image_shape)
    if kernel.shape[0] != height * width:
        raise ValueError(
            f"Expected a kernel of shape ({height * width}, units) for "
            f"image_shape={(height, width)}. "
            f"Received: kernel.shape={kernel.shape}"
        )
    return kernel, (height, width)


def _filter_mosaic(filters, image_shape, columns=None, padding=1):
    """Tiles the columns of `filters` into one RGB image.

    Each filter (a column of the `(pixels, units)` array) is reshaped to
    `image_shape` and normalized on its own to [0, 1] by its minimum and
    maximum, in grey; a constant filter becomes 0.5, and a filter with NaN
    or inf weights is drawn in red. Padding between tiles is white.

    Returns:
        A float array `(rows * (height + padding) - padding,
        columns * (width + padding) - padding, 3)` and the number of
        non-finite filters.
    """
    height, width = image_shape
    units = filters.shape[1]
    rows = math.ceil(units / columns)
    mosaic = np.ones(
        (
            rows * (height + padding) - padding,
            columns * (width + padding) - padding,
            3,
        )
    )
    finite = np.all(np.isfinite(filters), axis=0)
    safe = np.where(np.isfinite(filters), filters, 0.0)
    low, high = safe.min(axis=0), safe.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    tiles = np.where(high > low, (safe - low) / span, 0.5)
    for unit in range(units):
        row, column = divmod(unit, columns)
        top, left = row * (height + padding), column * (width + padding)
        tile = tiles[:, unit].reshape(height, width, 1)
        if not finite[unit]:
            tile = np.broadcast_to(_NON_FINITE_RGB, (height, width, 3))
        mosaic[top : top + height, left : left + width] = tile
    return mosaic, int(np.sum(~finite))


def plot_filters(layer_or_kernel, image_shape=None, columns=None, title=None):
    """Draws the filters of an encoder layer as a grid of images.

    The classic picture of Ng's notes and MATLAB's `plotWeights`: the input
    weights of every hidden unit, shown as an image, each tile normalized on
    its own. Filters whose weights are not all finite are drawn in red and
    counted in the title.

    Args:
        layer_or_kernel (keras.layers.Layer or array): A built layer with a
            `kernel` (`Dense` or `SparseDense` on flattened images, `Conv2D` on
            one-channel images), or that kernel as an array: `(pixels, units)`
            or `(height, width, 1, filters)`.
        image_shape (tuple of two ints or None): `(height, width)` of one
            filter. Defaults to the kernel's own for `Conv2D`, and to a square
            for `Dense` (28x28 for 784 pixels).
        columns (int or None): Tiles per row, a positive int. Defaults to
            `ceil(sqrt(units))`.
        title (str or None): Optional title. Defaults to the number of filters
            and the layer's name.

    Returns:
        matplotlib.figure.Figure: A `matplotlib.figure.Figure`; save it with
        `fig.savefig(path)`.

    Examples:
        >>> import numpy as np
        >>> fig = plot_filters(np.random.rand(784, 200))
        >>> fig.axes[0].images[0].get_array().shape
        (405, 434, 3)
    """
    title = _check_title(title)
    kernel = _kernel_of(layer_or_kernel)
    filters, image_shape = _as_filters(kernel, image_shape)
    units = filters.shape[1]
    if units == 0:
        raise ValueError("The kernel has no units (0 filters) to draw.")
    if columns is None:
        columns = math.ceil(math.sqrt(units))
    elif isinstance(columns, bool) or not (
        isinstance(columns, numbers.Integral) and columns >= 1
    ):
        raise ValueError(
            "Invalid value for argument `columns`: expected a positive int. "
            f"Received: columns={columns!r}"
        )
    mosaic, non_finite = _filter_mosaic(filters, image_shape, int(columns))
    if title is None:
        name = getattr(layer_or_kernel, "name", None)
        title = f"{units} filters" + (f" of layer {name!r}" if name else "")
        title += ", each scaled to its own range"
    if non_finite:
        title += f"\n{non_finite} with NaN or inf weights (red)"
    height = 8 * mosaic.shape[0] / mosaic.shape[1]
    title_height = 0.3 * (1 + title.count("\n"))
    figure = _figure_class()(figsize=(8, height + title_height))
    axes = figure.add_axes((0, 0, 1, height / (height + title_height)))
    axes.imshow(mosaic, interpolation="nearest")
    axes.set_axis_off()
    figure.suptitle(title, y=0.995, va="top")
    return figure


def _images(name, images):
    """`images` as a float64 array of at least one image, or the error."""
    try:
        array = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Invalid type for argument `{name}`: expected a numeric array of "
            f"images. Received: {name} of type {type(images).__name__}"
        ) from error
    if array.ndim not in (2, 3) or len(array) == 0:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected n >= 1 images, "
            f"(n, pixels) or (n, height, width). Received: {name}.shape="
            f"{array.shape}"
        )
    return array


def plot_reconstructions(originals, reconstructions, image_shape=None):
    """Draws images (top row) above their reconstructions (bottom row).

    Args:
        originals (array): Array `(n, height * width)` or `(n, height, width)`
            of pixels in [0, 1], n >= 1.
        reconstructions (array): Array of the same shape.
        image_shape (tuple of two ints or None): `(height, width)` of one image.
            Defaults to the images' own for `(n, height, width)` arrays, and to
            a square for flattened ones (28x28 for 784 pixels).

    Returns:
        matplotlib.figure.Figure: A `matplotlib.figure.Figure`.

    Examples:
        >>> import numpy as np
        >>> originals, reconstructions = np.zeros((3, 4)), np.ones((3, 4))
        >>> fig = plot_reconstructions(originals, reconstructions, (2, 2))
        >>> len(fig.axes)
        6
    """
    originals = _images("originals", originals)
    reconstructions = _images("reconstructions", reconstructions)
    if originals.shape != reconstructions.shape:
        raise ValueError(
            "`originals` and `reconstructions` must have the same shape. "
            f"Received: {originals.shape} and {reconstructions.shape}"
        )
    if image_shape is None:
        image_shape = (
            originals.shape[1:]
            if originals.ndim == 3
            else _square(originals.shape[1], "`originals`")
        )
    height, width = _check_image_shape(image_shape)
    n = len(originals)
    if originals[0].size != height * width:
        raise ValueError(
            f"Expected images of {height * width} pixels for "
            f"image_shape={(height, width)}. Received: "
            f"originals.shape={originals.shape}"
        )
    figure = _figure_class()(figsize=(1.2 * n, 2.8))
    for row, images in enumerate((originals, reconstructions)):
        for i in range(n):
            axes = figure.add_subplot(2, n, row * n + i + 1)
            axes.imshow(
                images[i].reshape(height, width),
                cmap="gray",
                vmin=0.0,
                vmax=1.0,
            )
            axes.set_axis_off()
    figure.suptitle("test images (top) and their reconstructions (bottom)")
    return figure


def plot_firing_rates(firing_rates, rho=None, bins=40, title=None):
    """Draws the histogram of per-unit firing rates (mean activations).

    The x axis spans the rates (and `rho`), so that a code whose units all
    fire near `rho` shows its spread instead of one bar at the left.

    Args:
        firing_rates (sequence of floats): One mean activation per unit, finite,
            at least one.
        rho (float or None): Optional target, drawn as a vertical line.
        bins (int): Number of histogram bins, a positive int. Defaults to `40`.
        title (str or None): Optional title. Defaults to the number of units and
            the mean and spread of their rates.

    Returns:
        matplotlib.figure.Figure: A `matplotlib.figure.Figure`.

    Examples:
        >>> fig = plot_firing_rates([0.01, 0.02, 0.5], rho=0.05)
        >>> fig.axes[0].get_xlabel()
        'firing rate (mean activation of a unit)'
    """
    title = _check_title(title)
    try:
        rates = np.asarray(firing_rates, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise TypeError(
            "Invalid type for argument `firing_rates`: expected a sequence of "
            f"floats. Received: firing_rates={firing_rates!r}"
        ) from error
    if rho is not None:
        if isinstance(rho, bool) or not isinstance(rho, numbers.Real):
            raise TypeError(
                "Invalid type for argument `rho`: expected a float or None. "
                f"Received: rho={rho!r} (of type {type(rho).__name__})"
            )
        if not math.isfinite(rho):
            raise ValueError(
                "Invalid value for argument `rho`: expected a finite float. "
                f"Received: rho={rho!r}"
            )
        rho = float(rho)
    if rates.size == 0:
        raise ValueError("`firing_rates` is empty: there is nothing to draw.")
    if not np.all(np.isfinite(rates)):
        raise ValueError(
            f"`firing_rates` holds {int(np.sum(~np.isfinite(rates)))} NaN or "
            "inf values: the activations they came from were not finite."
        )
    if isinstance(bins, bool) or not (
        isinstance(bins, numbers.Integral) and bins >= 1
    ):
        raise ValueError(
            "Invalid value for argument `bins`: expected a positive int. "
            f"Received: bins={bins!r}"
        )
    points = rates if rho is None else np.append(rates, rho)
    low, high = float(points.min()), float(points.max())
    margin = max(0.05 * (high - low), 1e-3)
    # Constrained layout: `tight_layout` warns when tick labels crowd.
    figure = _figure_class()(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    axes.hist(rates, bins=int(bins), range=(low - margin, high + margin))
    if rho is not None:
        axes.axvline(rho, color="red", linestyle="--", label=f"rho = {rho:g}")
        axes.legend()
    axes.set_xlim(low - margin, high + margin)
    axes.set_xlabel("firing rate (mean activation of a unit)")
    axes.set_ylabel("units")
    axes.set_title(
        title
        or f"Firing rates of {rates.size} units: mean {rates.mean():.4f}, "
        f"std {rates.std():.4f}"
    )
    axes.locator_params(axis="x", nbins=6)
    return figure
