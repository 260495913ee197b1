"""Same seed, same MS; bad input gives one clear line, exit 2, nothing left behind."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from casacore.tables import table

from conftest import one_error_line
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.publish import publish_directory, publish_file
from dsa110_contimg.simulate import load_truth, preset, simulate_observation
from dsa110_contimg.simulate import observation as observation_module


def _data(ms):
    with table(str(ms), ack=False) as main:
        return main.getcol("DATA")


def test_same_seed_gives_the_same_ms(tmp_path):
    config = preset("tiny", seed=11, n_rfi_spikes=2, zero_row_fraction=0.01)
    a = simulate_observation(tmp_path / "a.ms", config)
    b = simulate_observation(tmp_path / "b.ms", config)
    c = simulate_observation(tmp_path / "c.ms", config.replace(seed=12))
    assert np.array_equal(_data(a.ms_path), _data(b.ms_path))
    assert not np.array_equal(_data(a.ms_path), _data(c.ms_path))
    ta, tb = load_truth(a.ms_path), load_truth(b.ms_path)
    assert np.array_equal(ta.bandpass, tb.bandpass)
    assert ta.meta == tb.meta


def _contimg(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "dsa110_contimg", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _assert_one_line_error(result):
    assert result.returncode == 2
    line = one_error_line(result)
    assert result.stderr.strip() == line and line.startswith("contimg")


@pytest.mark.parametrize(
    "args",
    [
        ["--n-antennas", "0"],
        ["--n-chan", "-3"],
        ["--n-spw", "17"],
        ["--n-times", "0"],
        ["--start-time", "yesterday-ish"],
        ["--dead-antenna", "DSA999"],
        ["--calibrator", "NOT_A_SOURCE"],
        ["--preset", "enormous"],
        ["--n-antennas", "many"],
    ],
)
def test_nonsense_parameters_are_refused(tmp_path, args):
    result = _contimg("simulate", str(tmp_path / "x.ms"), *args, cwd=tmp_path)
    _assert_one_line_error(result)
    assert not any(p.name.startswith(("x.ms", ".x.ms")) for p in tmp_path.iterdir())


def test_unwritable_or_missing_output_directory(tmp_path):
    for target in ("/proc/x.ms", str(tmp_path / "no" / "such" / "x.ms")):
        _assert_one_line_error(_contimg("simulate", target, "--preset", "tiny", cwd=tmp_path))


def test_existing_output_needs_overwrite_and_is_left_untouched(tmp_path):
    first = _contimg("simulate", "obs.ms", "--preset", "tiny", "--seed", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = _data(tmp_path / "obs.ms")
    again = _contimg("simulate", "obs.ms", "--preset", "tiny", "--seed", "2", cwd=tmp_path)
    _assert_one_line_error(again)
    assert "--overwrite" in again.stderr
    assert np.array_equal(_data(tmp_path / "obs.ms"), before)
    replaced = _contimg(
        "simulate", "obs.ms", "--preset", "tiny", "--seed", "2", "--overwrite", cwd=tmp_path
    )
    assert replaced.returncode == 0, replaced.stderr
    assert not np.array_equal(_data(tmp_path / "obs.ms"), before)
    assert load_truth(tmp_path / "obs.ms").meta["config"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "obs"))) == [
        "obs.ms",
        "obs.ms.truth.npz",
    ]


def test_failure_mid_write_leaves_no_product(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk fell off")

    monkeypatch.setattr(observation_module, "fill_visibilities", explode)
    with pytest.raises(RuntimeError):
        simulate_observation(tmp_path / "broken.ms", preset("tiny"))
    assert list(tmp_path.iterdir()) == []


def test_existing_non_ms_is_never_replaced(tmp_path):
    victim = tmp_path / "notes.ms"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    with pytest.raises(ContimgError, match="not a Measurement Set"):
        simulate_observation(victim, preset("tiny"), overwrite=True)
    assert (victim / "precious.txt").read_text() == "keep me"


def test_publishing_removes_what_killed_writers_on_this_host_left(tmp_path):
    final = tmp_path / "product"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now free
    host = socket.gethostname()
    dead = tmp_path / f".product.partial-{host}-{child.pid}"
    live = tmp_path / f".product.partial-{host}-{os.getppid()}"
    elsewhere = tmp_path / ".product.partial-otherhost-1"
    for leftover in (dead, live, elsewhere):
        leftover.mkdir()
    with publish_directory(final) as partial:
        partial.mkdir()
    assert final.is_dir()
    assert not dead.exists()
    assert live.exists() and elsewhere.exists()
    stale_file = tmp_path / f".report.json.partial-{host}-{child.pid}"
    stale_file.write_text("{")
    publish_file(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").read_text() == "{}" and not stale_file.exists()
