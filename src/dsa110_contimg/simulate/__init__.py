"""Synthetic DSA-110 observations with known truth."""

from dsa110_contimg.simulate.config import PRESETS, SimulationConfig, preset
from dsa110_contimg.simulate.observation import SimulationResult, simulate_observation
from dsa110_contimg.simulate.truth import SimulationTruth, load_truth, truth_path

__all__ = [
    "PRESETS",
    "SimulationConfig",
    "SimulationResult",
    "SimulationTruth",
    "load_truth",
    "preset",
    "simulate_observation",
    "truth_path",
]
