"""Data: reading images and videos, datasets, the built-in synthetic tasks."""
