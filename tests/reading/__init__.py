"""Tests of reading with a trained network (infer.py, utils/reading/)."""
