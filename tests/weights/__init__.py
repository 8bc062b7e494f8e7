"""Tests of reading other projects' weight files (utils/weights/) and importing them (utils/import_weights.py)."""
