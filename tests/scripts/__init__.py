"""Tests of the entry scripts end to end, their options, and the docs."""
