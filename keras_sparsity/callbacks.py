"""A callback that records the sparsity of watched layers every epoch."""

import keras

from keras_sparsity.regularizers import KLSparsityRegularizer
from keras_sparsity.statistics import sparsity_statistics


def layer_regularizer(layer, rho=0.05):
    """The KL regularizer that `layer` carries, or a unit-weight stand-in.

    `SparseDense` layers carry `sparsity_regularizer`; other layers may have
    a `KLSparsityRegularizer` as `activity_regularizer`. Any other layer gets
    `KLSparsityRegularizer(rho, beta=1.0)`, whose penalty is the plain sum of
    the units' KL divergences from `rho`.

    Args:
        layer: A Keras layer.
        rho: Target of the stand-in regularizer. Defaults to `0.05`.

    Returns:
        A `KLSparsityRegularizer`.

    Example:

    >>> import keras
    >>> from keras_sparsity import SparseDense
    >>> layer_regularizer(SparseDense(4, rho=0.1)).rho
    0.1
    >>> layer_regularizer(keras.layers.Dense(4), rho=0.2).beta
    1.0
    """
    regularizer = getattr(layer, "sparsity_regularizer", None)
    if isinstance(regularizer, KLSparsityRegularizer):
        return regularizer
    if isinstance(layer.activity_regularizer, KLSparsityRegularizer):
        return layer.activity_regularizer
    return KLSparsityRegularizer(rho=rho, beta=1.0)


class SparsityMonitor(keras.callbacks.Callback):
    """Adds the sparsity of watched layers to the logs at each epoch end.

    For every watched layer it computes, on `data`, the mean activation, the
    KL penalty (with the layer's own `KLSparsityRegularizer` or
    `SparseDense` settings, else the KL sum for `rho` with `beta=1`), the
    fraction of dead units (active on no example) and the fraction of
    active activations (above `active_threshold` once mapped onto (0, 1)),
    and writes them to the epoch `logs` as `<layer>_mean_activation`,
    `<layer>_kl_penalty`, `<layer>_dead_fraction` and
    `<layer>_active_fraction`. `History`, `CSVLogger` and `TensorBoard`
    record them like any metric. Put it before those callbacks in the list.

    It costs one forward pass over `data` per epoch: a few thousand examples
    are plenty (see `benchmarks/monitor_overhead.py`).

    Args:
        layers: List of layers of the model, or their names.
        data: Model inputs to measure on (an array, or anything
            `Model.predict` accepts).
        batch_size: Batch size of the forward pass. Defaults to `256`.
        active_threshold: Level above which a mapped activation counts as
            active. Defaults to `0.5`.
        rho: Target used for the KL figure of layers without a KL
            regularizer of their own. Defaults to `0.05`.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> from keras_sparsity import SparseDense, SparsityMonitor
    >>> x = np.random.rand(64, 8).astype("float32")
    >>> model = keras.Sequential(
    ...     [keras.Input((8,)), SparseDense(4, name="code"),
    ...      keras.layers.Dense(8)]
    ... )
    >>> model.compile(optimizer="adam", loss="mse")
    >>> history = model.fit(
    ...     x, x, epochs=2, verbose=0,
    ...     callbacks=[SparsityMonitor(["code"], data=x)],
    ... )
    >>> len(history.history["code_mean_activation"])
    2
    """

    def __init__(
        self, layers, data, batch_size=256, active_threshold=0.5, rho=0.05
    ):
        super().__init__()
        if not layers:
            raise ValueError(
                "Invalid value for argument `layers`: expected a non-empty "
                f"list of layers or layer names. Received: layers={layers!r}"
            )
        self.layers = list(layers)
        self.data = data
        self.batch_size = batch_size
        self.active_threshold = active_threshold
        self.rho = rho
        self._probe = None

    def on_train_begin(self, logs=None):
        layers = [
            self.model.get_layer(layer) if isinstance(layer, str) else layer
            for layer in self.layers
        ]
        self._watched = [
            (layer, layer_regularizer(layer, self.rho)) for layer in layers
        ]
        self._probe = keras.Model(
            self.model.inputs, [layer.output for layer in layers]
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        outputs = self._probe.predict(
            self.data, batch_size=self.batch_size, verbose=0
        )
        if len(self._watched) == 1:
            outputs = [outputs]
        for (layer, regularizer), activations in zip(self._watched, outputs):
            stats = sparsity_statistics(
                activations,
                value_range=regularizer.value_range,
                active_threshold=self.active_threshold,
                regularizer=regularizer,
            )
            for key in (
                "mean_activation",
                "kl_penalty",
                "dead_fraction",
                "active_fraction",
            ):
                logs[f"{layer.name}_{key}"] = stats[key]
