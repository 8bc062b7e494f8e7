"""Tests of MXNet networks, checkpoints and ONNX export (model/)."""
