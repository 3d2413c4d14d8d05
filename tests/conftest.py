"""Test session set-up: run from a scratch directory so mktemp() leaves no clutter."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratch_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test runs with a fresh temporary working directory."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("work"))
    try:
        yield
    finally:
        os.chdir(here)
