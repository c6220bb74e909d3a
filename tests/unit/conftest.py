"""Fixtures shared by unit tests."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def restore_logging():
    """For tests that run `kubelite …` in-process: its --log-level reconfigures the root logger."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
