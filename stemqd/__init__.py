"""stemqd: quantitative ADF-STEM of perovskite nanocrystals."""

__version__ = "0.1.0"
