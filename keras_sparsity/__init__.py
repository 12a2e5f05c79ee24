"""Correct, serializable KL sparsity for Keras 3 sparse autoencoders."""

from keras_sparsity.layers import SparseDense
from keras_sparsity.regularizers import EPSILON, KLSparsityRegularizer

__version__ = "0.1.0"

__all__ = ["EPSILON", "KLSparsityRegularizer", "SparseDense", "__version__"]
