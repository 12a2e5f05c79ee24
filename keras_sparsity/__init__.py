"""Correct, serializable KL sparsity for Keras 3 sparse autoencoders."""

from keras_sparsity.callbacks import BetaWarmup, SparsityMonitor
from keras_sparsity.layers import SparseDense
from keras_sparsity.plotting import (
    plot_filters,
    plot_firing_rates,
    plot_reconstructions,
)
from keras_sparsity.regularizers import KLSparsityRegularizer
from keras_sparsity.statistics import ACTIVE_THRESHOLD, sparsity_statistics

__version__ = "0.2.0.dev0"

__all__ = [
    "ACTIVE_THRESHOLD",
    "BetaWarmup",
    "KLSparsityRegularizer",
    "SparseDense",
    "SparsityMonitor",
    "__version__",
    "plot_filters",
    "plot_firing_rates",
    "plot_reconstructions",
    "sparsity_statistics",
]
