"""Scores of readings: sentence metrics (CER/WER) and evaluation, word metrics, the HTML and CSV report. No
MXNet.
"""
