"""fac: small, diverse post-training datasets by Feature Activation Coverage (arXiv 2602.10388)."""

__version__ = "0.1.0"
