"""Data sets on disk: clip stores, sentence and word clips, splits, manifests. No MXNet.
"""
