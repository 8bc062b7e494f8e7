"""Tests of data sets on disk and their loaders (utils/data/, data_loader.py)."""
