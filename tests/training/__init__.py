"""Tests of training runs (trainer.py, model/training/)."""
