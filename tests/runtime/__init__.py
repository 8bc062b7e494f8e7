"""Tests of command lines, configs, GPUs (utils/runtime/)."""
