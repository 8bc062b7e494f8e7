"""Tests of metrics and reports (utils/scoring/)."""
