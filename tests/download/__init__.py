"""Tests of downloading GRID (utils/download/, utils/download_data.py)."""
