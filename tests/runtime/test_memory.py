"""Freed memory handed back to the system (utils/runtime/memory.py), as a live read does after each utterance."""
from __future__ import annotations

import ctypes.util
import platform

import pytest

from utils.runtime import memory


def test_free_memory_is_handed_back_with_glibc():
    assert memory.return_free_memory() is (platform.libc_ver()[0] == "glibc")


def test_without_malloc_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    memory._malloc_trim.cache_clear()
    try:
        assert memory.return_free_memory() is False
    finally:
        memory._malloc_trim.cache_clear()
