"""Shared fixtures: the real recordings in ../shared/data/recordings (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Property tests draw the same examples on every run (derandomized), so `make test` and CI
# give the same verdict every time. Exploring new examples (e.g. to fuzz the readers harder):
#   python -m pytest tests --hypothesis-profile=explore [--hypothesis-seed=N]
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("repeatable")

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT.parent / "shared" / "data" / "recordings"
TEST_DATA = Path(__file__).resolve().parent / "data"


def recording(name: str) -> Path:
    """Path of a shared real recording, or skip the test with a reason when it is absent."""
    p = RECORDINGS / name
    if not p.exists():
        pytest.skip(f"real recording {name} not available ({RECORDINGS} is absent in a user's clone)")
    return p


@pytest.fixture
def recordings_dir() -> Path:
    if not RECORDINGS.is_dir():
        pytest.skip(f"real recordings folder {RECORDINGS} is absent (a user's clone has none)")
    return RECORDINGS
