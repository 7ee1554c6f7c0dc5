"""Datasets (arrays + schema) and the synthetic Taobao-like generator."""

from pfd_ref.data.dataset import Dataset, MultiIds
from pfd_ref.data.synthetic import SyntheticConfig, bayes_logits, generate, schema_for

__all__ = ["Dataset", "MultiIds", "SyntheticConfig", "bayes_logits", "generate", "schema_for"]
