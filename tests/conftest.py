"""Shared fixtures: a private results store per test and no progress bars."""

import os

import pytest

os.environ["POISONLIB_PROGRESS"] = "0"
os.environ.setdefault("MPLBACKEND", "agg")


@pytest.fixture(autouse=True)
def results_dir(tmp_path, monkeypatch):
    """Every test writes results into its own temporary store."""
    d = tmp_path / "results"
    monkeypatch.setenv("POISONLIB_RESULTS", str(d))
    return d


@pytest.fixture(scope="session")
def mnist():
    from poisonlib.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def gaussian10():
    from poisonlib.data import load_dataset

    return load_dataset("gaussian10")
