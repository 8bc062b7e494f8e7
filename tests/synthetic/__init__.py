"""Tests of synthetic data sets (utils/synthetic/)."""
