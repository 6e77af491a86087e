"""Training data: reading, checking and shaping rows before any model is loaded."""

from training.data.load import build_datasets, demo_names, load_conversations, load_rows

__all__ = ["build_datasets", "demo_names", "load_conversations", "load_rows"]
