"""Shared fixtures: where the offline benchmark data lives, and skipping cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("R1EXP_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline copies of MATH-500 / GSM8K / AIME24 (../shared/data); skip when absent."""
    if not (SHARED_DATA / "math500.jsonl").is_file():
        pytest.skip(f"benchmark data not found at {SHARED_DATA} (set R1EXP_SHARED_DATA)")
    return SHARED_DATA
