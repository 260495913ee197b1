"""Shared synthetic observations (built once per session, small presets)."""

from __future__ import annotations

import os

import pytest

from dsa110_contimg.simulate import preset, simulate_observation


@pytest.fixture(scope="session", autouse=True)
def _run_logs_in_tmp(tmp_path_factory):
    os.environ["CONTIMG_RUN_ROOT"] = str(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def make_observation(tmp_path_factory):
    """Build (and cache by parameters) a synthetic MS; returns its path."""
    cache = {}

    def build(name="small", stem=None, **overrides):
        key = (name, stem, tuple(sorted(overrides.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("obs") / f"{stem or name}.ms"
            simulate_observation(out, preset(name, **overrides))
            cache[key] = out
        return cache[key]

    return build


@pytest.fixture(scope="session")
def clean_small(make_observation):
    """Noiseless, uncorrupted small observation (beam on)."""
    return make_observation("small", noise=False, corrupt=False)


@pytest.fixture(scope="session")
def corrupted_small(make_observation):
    """Noisy, corrupted small observation: the usual test input."""
    return make_observation("small")
