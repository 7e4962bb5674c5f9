"""Residual vector quantisation: EMA codebooks with k-means initialisation and dead-code replacement."""

from .vq import EuclideanCodebook, QuantizedResult, ResidualVectorQuantizer

__all__ = ["EuclideanCodebook", "QuantizedResult", "ResidualVectorQuantizer"]
