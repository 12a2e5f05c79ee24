"""Callbacks: the sparsity of watched layers every epoch, and a warm-up of
`beta`."""

import collections.abc
import math
import numbers

import keras
import numpy as np

from keras_sparsity import _checks
from keras_sparsity.layers import SparseDense
from keras_sparsity.regularizers import KLSparsityRegularizer
from keras_sparsity.statistics import ACTIVE_THRESHOLD, sparsity_statistics

_LOGGED = ("mean_activation", "kl_penalty", "dead_fraction", "active_fraction")


def _penalty_of(layer, rho):
    """`(regularizer, masked)`: the KL penalty `layer` trains with.

    `SparseDense` layers carry `sparsity_regularizer` and apply the Keras
    mask; a `KLSparsityRegularizer` given as `activity_regularizer` never
    sees the mask (Keras does not pass it). Any other layer gets a stand-in,
    `KLSparsityRegularizer(rho, beta=1.0)`, whose penalty is the plain sum
    of the units' KL divergences from `rho`.
    """
    regularizer = getattr(layer, "sparsity_regularizer", None)
    if isinstance(regularizer, KLSparsityRegularizer):
        return regularizer, True
    if isinstance(layer.activity_regularizer, KLSparsityRegularizer):
        return layer.activity_regularizer, False
    return KLSparsityRegularizer(rho=rho, beta=1.0), False


def _check_layers(layers):
    """`layers` (a layer, a name, or a list of them) as a list."""
    if isinstance(layers, (str, keras.layers.Layer)):
        layers = [layers]
    if not isinstance(layers, (list, tuple)):
        raise TypeError(
            "Invalid type for argument `layers`: expected layers or "
            f"layer names. Received: layers={layers!r}"
        )
    if not layers:
        raise ValueError(
            "Invalid value for argument `layers`: expected a layer or "
            "layer name, or a non-empty list of them. "
            f"Received: layers={layers!r}"
        )
    for layer in layers:
        if not isinstance(layer, (str, keras.layers.Layer)):
            raise TypeError(
                "Invalid type for argument `layers`: expected layers or "
                f"layer names. Received: {layer!r} (of type "
                f"{type(layer).__name__})"
            )
    return list(layers)


def _positive_int(name, value):
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Integral) and value >= 1
    ):
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive int. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def _resolve(model, layers, callback):
    """The layers of `model` that `layers` (layers or names) stand for."""
    resolved = []
    for layer in layers:
        owner = type(callback).__name__
        if isinstance(layer, str):
            names = [candidate.name for candidate in model.layers]
            if layer not in names:
                raise ValueError(
                    f"{owner}: the model has no layer named {layer!r}. "
                    f"Its layers are {names}."
                )
            layer = model.get_layer(layer)
        elif not any(layer is candidate for candidate in model.layers):
            raise ValueError(
                f"{owner}: layer {layer.name!r} is not a layer of the "
                "model being trained."
            )
        resolved.append(layer)
    return resolved


def _inputs(model):
    """The model's symbolic inputs, or None (a subclassed model has none)."""
    try:
        return model.inputs
    except (AttributeError, ValueError):
        return None


def _leading_shapes(data):
    """The shapes of the arrays in `data` (an array, list, tuple or dict)."""
    if isinstance(data, dict):
        data = list(data.values())
    if not isinstance(data, (list, tuple)):
        data = [data]
    return [tuple(np.shape(x)) for x in data]


def _is_dataset(data):
    """Whether `data` is a `tf.data.Dataset` or `keras.utils.PyDataset`,
    which `predict` can read again every epoch."""
    return isinstance(data, keras.utils.PyDataset) or (
        type(data).__module__.startswith("tensorflow")
        and hasattr(data, "element_spec")
    )


def _check_data(data):
    if isinstance(data, collections.abc.Iterator):
        raise TypeError(
            "Invalid type for argument `data` of SparsityMonitor: expected "
            "model inputs that `predict` can read every epoch: an array, a "
            "list or dict of arrays, a `tf.data.Dataset` or a "
            "`keras.utils.PyDataset`. An iterator or generator is used up "
            "after one epoch: wrap it in a `tf.data.Dataset` or a "
            f"`PyDataset`. Received: data of type {type(data).__name__}"
        )
    return data


class SparsityMonitor(keras.callbacks.Callback):
    """Adds the sparsity of watched layers to the logs at each epoch end.

    For every watched layer it computes, on `data`, the mean activation, the
    KL penalty the layer trains with (its own `KLSparsityRegularizer` or
    `SparseDense` settings, with the same feature axis, value range and, for
    `SparseDense`, Keras mask; else the KL sum for `rho` with `beta=1`), the
    fraction of dead units and the fraction of active activations (see
    `sparsity_statistics`), and writes them to the epoch `logs` as
    `<layer>_mean_activation`, `<layer>_kl_penalty`, `<layer>_dead_fraction`
    and `<layer>_active_fraction`. `History`, `CSVLogger` and `TensorBoard`
    record them like any metric; put the monitor before them in the list.
    The full figures of the latest epoch, per-unit firing rates included,
    are in `monitor.statistics[layer_name]`.

    It needs a functional or `Sequential` model, whose layers have symbolic
    outputs. When training starts it checks the layers and the shape of
    `data`, and measures once: activations outside the penalty's value
    range (a ReLU code) raise the `ValueError` of `sparsity_statistics`
    before the first step. A layer called more than once in the model (a
    shared layer) is measured at its first call. It costs one forward pass
    over `data` per epoch: a few thousand examples are plenty (see
    `benchmarks/monitor_overhead.py`).

    Args:
        layers (str, keras.layers.Layer or list of them): A layer of the model
            or its name, or a list of them.
        data (array, list or dict of arrays, tf.data.Dataset or PyDataset):
            Model inputs to measure on, which `predict` reads every epoch: an
            array, a list or dict of arrays for a model with several inputs, a
            `tf.data.Dataset` or a `keras.utils.PyDataset` (not a generator,
            which one epoch would use up).
        batch_size (int): Batch size of the forward pass over arrays. Defaults
            to `256`.
        active_threshold (float): Level above which a mapped activation counts
            as active. Defaults to `ACTIVE_THRESHOLD` (0.1).
        rho (float): Target used for the KL figure of layers without a KL
            regularizer of their own. Defaults to `0.05`.

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> from keras_sparsity import SparseDense, SparsityMonitor
        >>> x = np.random.rand(64, 8).astype("float32")
        >>> model = keras.Sequential(
        ...     [keras.Input((8,)), SparseDense(4, name="code"),
        ...      keras.layers.Dense(8)]
        ... )
        >>> model.compile(optimizer="adam", loss="mse")
        >>> monitor = SparsityMonitor("code", data=x)
        >>> history = model.fit(x, x, epochs=2, verbose=0, callbacks=[monitor])
        >>> len(history.history["code_mean_activation"])
        2
        >>> len(monitor.statistics["code"]["firing_rates"])
        4
    """

    def __init__(
        self,
        layers,
        data,
        batch_size=256,
        active_threshold=ACTIVE_THRESHOLD,
        rho=0.05,
    ):
        super().__init__()
        layers = _check_layers(layers)
        batch_size = _positive_int("batch_size", batch_size)
        if isinstance(active_threshold, bool) or not (
            isinstance(active_threshold, numbers.Real)
            and math.isfinite(active_threshold)
        ):
            raise ValueError(
                "Invalid value for argument `active_threshold`: expected a "
                f"finite float. Received: active_threshold={active_threshold!r}"
            )
        self.layers = layers
        self.data = _check_data(data)
        self.batch_size = batch_size
        self.active_threshold = float(active_threshold)
        self.rho = _checks.rho(rho)
        self.statistics = {}
        self._probe = None

    def on_train_begin(self, logs=None):
        model = self.model
        if (
            isinstance(model, keras.Sequential)
            and not _inputs(model)
            and not _is_dataset(self.data)
        ):
            # A Sequential without keras.Input gets its symbolic graph from
            # the shape of the data (on TensorFlow, fit builds it later).
            shapes = _leading_shapes(self.data)
            if len(shapes) == 1 and len(shapes[0]) >= 2:
                model.build((None,) + shapes[0][1:])
        inputs = _inputs(model)
        if not inputs:
            raise ValueError(
                "SparsityMonitor needs a functional or Sequential model, whose "
                "layers have symbolic outputs to read; "
                f"{type(model).__name__} has none. Build the model with "
                "keras.Input (keras.Model(inputs, outputs) or a Sequential "
                "starting with keras.Input), or compute the activations "
                "yourself and call sparsity_statistics."
            )
        layers = _resolve(self.model, self.layers, self)
        if not _is_dataset(self.data):
            self._check_shapes(inputs)
        self._watched = []
        outputs = [layer.output for layer in layers]
        for layer in layers:
            regularizer, masked = _penalty_of(layer, self.rho)
            # The mask Keras passes to the layer's call, as a symbolic
            # tensor of the model (None without masking); SparseDense
            # passes it on unchanged, so it is its output's mask.
            mask = (
                getattr(layer.output, "_keras_mask", None) if masked else None
            )
            self._watched.append(
                (layer, regularizer, None if mask is None else len(outputs))
            )
            if mask is not None:
                outputs.append(mask)
        self._probe = keras.Model(inputs, outputs)
        # Measured once before training, so that activations the penalty
        # cannot use (a ReLU code) are refused before any step.
        self._measure()

    def _check_shapes(self, inputs):
        shapes = _leading_shapes(self.data)
        expected = [tuple(tensor.shape) for tensor in inputs]
        if len(shapes) != len(expected) or any(
            len(got) != len(want)
            or any(w is not None and g != w for g, w in zip(got[1:], want[1:]))
            for got, want in zip(shapes, expected)
        ):
            raise ValueError(
                "Invalid value for argument `data` of SparsityMonitor: "
                f"expected model inputs of shape {expected}. "
                f"Received: shapes {shapes}"
            )
        if any(not got or got[0] == 0 for got in shapes):
            raise ValueError(
                "Invalid value for argument `data` of SparsityMonitor: "
                "expected at least one example."
            )

    def on_epoch_end(self, epoch, logs=None):
        self._measure()
        if logs is not None:
            for layer, _, _ in self._watched:
                stats = self.statistics[layer.name]
                for key in _LOGGED:
                    logs[f"{layer.name}_{key}"] = stats[key]

    def _measure(self):
        """Fills `statistics` from one forward pass over `data`."""
        batch_size = None if _is_dataset(self.data) else self.batch_size
        outputs = self._probe.predict(
            self.data, batch_size=batch_size, verbose=0
        )
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for index, (layer, regularizer, mask_index) in enumerate(self._watched):
            activations = np.asarray(outputs[index])
            mask = None if mask_index is None else outputs[mask_index]
            if not np.all(np.isfinite(activations)):
                stats = {key: float("nan") for key in _LOGGED}
            else:
                stats = sparsity_statistics(
                    activations,
                    active_threshold=self.active_threshold,
                    regularizer=regularizer,
                    mask=mask,
                )
            self.statistics[layer.name] = stats


class BetaWarmup(keras.callbacks.Callback):
    """Raises the `beta` of `SparseDense` layers from 0 to their own value.

    During epoch `e` of `fit` (counted from 0, `initial_epoch` included),
    each layer trains with `beta * min(1, e / epochs)`, where `beta` is the
    layer's own value when training starts: the first epoch trains the
    plain autoencoder, and from epoch `epochs` on the penalty has its full
    weight. A penalty at full weight from the first step can pull every
    unit to `rho` before the code has learned anything; a warm-up lets the
    units first find features, then makes them sparse.

    It sets `layer.beta`, a variable of the layer that compiled steps read,
    so it works on every backend with `jit_compile` or not. The current
    value is logged as `<layer>_beta`; the layer's own `beta` is set back
    when training ends. A `KLSparsityRegularizer` on another layer holds
    `beta` as a float that a compiled step does not read again: such a
    layer is refused (use `SparseDense`).

    Args:
        layers (str, SparseDense or list of them): A `SparseDense` layer of the
            model or its name, or a list of them.
        epochs (int): Positive int, the length of the warm-up in epochs.

    Examples:
        >>> import numpy as np
        >>> import keras
        >>> from keras_sparsity import BetaWarmup, SparseDense
        >>> x = np.random.rand(64, 8).astype("float32")
        >>> model = keras.Sequential(
        ...     [keras.Input((8,)), SparseDense(4, beta=0.02, name="code"),
        ...      keras.layers.Dense(8)]
        ... )
        >>> model.compile(optimizer="adam", loss="mse")
        >>> warmup = BetaWarmup("code", epochs=2)
        >>> history = model.fit(x, x, epochs=3, verbose=0, callbacks=[warmup])
        >>> [round(beta, 4) for beta in history.history["code_beta"]]
        [0.0, 0.01, 0.02]
    """

    def __init__(self, layers, epochs):
        super().__init__()
        layers = _check_layers(layers)
        epochs = _positive_int("epochs", epochs)
        self.layers = layers
        self.epochs = epochs
        self._targets = {}

    def on_train_begin(self, logs=None):
        self._targets = {}
        for layer in _resolve(self.model, self.layers, self):
            if not isinstance(layer, SparseDense):
                raise ValueError(
                    f"BetaWarmup: layer {layer.name!r} is a "
                    f"{type(layer).__name__}, not a SparseDense. It sets a "
                    "SparseDense's beta, a variable that compiled steps "
                    "read; a KLSparsityRegularizer's beta is a float that a "
                    "compiled step keeps. Use SparseDense for that layer."
                )
            self._targets[layer] = layer.beta

    def on_epoch_begin(self, epoch, logs=None):
        fraction = min(1.0, epoch / self.epochs)
        for layer, beta in self._targets.items():
            layer.beta = beta * fraction

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for layer in self._targets:
                logs[f"{layer.name}_beta"] = layer.beta

    def on_train_end(self, logs=None):
        for layer, beta in self._targets.items():
            layer.beta = beta
