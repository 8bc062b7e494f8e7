"""Downloading: archive verification and unpacking, and short causes of network errors (utils/download_data.py)."""
