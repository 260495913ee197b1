"""Config precedence, cluster profiles, refant lookup, plan naming, step failure handling."""

from __future__ import annotations

import os
import time

import pytest

from conftest import REPO_ROOT
from dsa110_contimg.calibration.config import resolve_config
from dsa110_contimg.calibration.outcomes import FAILED, OK, SKIPPED, StepOutcome, run_step
from dsa110_contimg.calibration.plan import applied_steps, plan_observation, solve_steps
from dsa110_contimg.cluster.profiles import load_profile, parse_cluster_options, slurm_cluster
from dsa110_contimg.errors import ContimgError
from dsa110_contimg.ms.antennas import resolve_refant


def test_config_precedence_defaults_preset_yaml_flags(tmp_path):
    assert resolve_config().bandpass.minsnr == 5.0
    assert resolve_config("fast").fast.chanbin == 4
    yaml_file = tmp_path / "cal.yaml"
    yaml_file.write_text("fast:\n  chanbin: 8\nbandpass:\n  minsnr: 4\n")
    from_yaml = resolve_config("fast", str(yaml_file))
    assert from_yaml.fast.chanbin == 8 and from_yaml.bandpass.minsnr == 4
    flagged = resolve_config("fast", str(yaml_file), {"fast": {"chanbin": 2}})
    assert flagged.fast.chanbin == 2 and flagged.bandpass.minsnr == 4


def test_config_refuses_unknown_settings_and_bad_values(tmp_path):
    with pytest.raises(ContimgError, match="unknown config.bandpass setting"):
        resolve_config(overrides={"bandpass": {"min_snr": 3}})
    with pytest.raises(ContimgError, match="unknown calibration preset"):
        resolve_config("quick")
    with pytest.raises(ContimgError, match="gains.calmode"):
        resolve_config(overrides={"gains": {"calmode": "x"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("bandpass: [1, 2\n")
    with pytest.raises(ContimgError, match="not valid YAML"):
        resolve_config(yaml_path=str(bad))


def test_combining_spws_switches_off_bandpass_phase_normalisation():
    assert resolve_config(overrides={"combine_spw": True}).bandpass.solnorm is False
    assert resolve_config().bandpass.solnorm is True


def test_solve_and_apply_order():
    config = resolve_config(overrides={"delay": {"enabled": True}})
    assert [s for s, _ in solve_steps(config)] == ["prebp", "kcal", "bpcal", "gpcal", "2gcal"]
    assert applied_steps(config) == ["kcal", "bpcal", "2gcal"]
    combined = resolve_config(overrides={"combine_spw": True})
    assert dict(solve_steps(combined)) == {
        "prebp": True,
        "bpcal": False,
        "gpcal": True,
        "2gcal": True,
    }


def test_plan_names_tables_predictably(tmp_path):
    obs = plan_observation(
        "/data/A.ms", "calibrator", [4, 5], 16, resolve_config(), tmp_path, cal_fields=[3]
    )
    assert obs.output_mms == str(tmp_path / "A.cal.mms")
    assert obs.pieces[0].table("bpcal") == str(tmp_path / "A.caltables" / "A_spw04_bpcal")
    assert obs.merged("2gcal") == str(tmp_path / "A_2gcal")


def test_profiles_packaged_then_user_then_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTIMG_CLUSTER_CONFIG", str(tmp_path))
    assert load_profile("slurm")["memory"] == "8GB"
    (tmp_path / "slurm.yaml").write_text("memory: 32GB\nqueue: night\n")
    user = load_profile("slurm")
    assert user["memory"] == "32GB" and user["queue"] == "night" and user["cores"] == 1
    argument = load_profile("slurm", parse_cluster_options(["memory=64GB"]))
    assert argument["memory"] == "64GB" and argument["queue"] == "night"
    with pytest.raises(ContimgError, match="unknown cluster profile"):
        load_profile("kubernetes")


def test_slurm_job_script_runs_single_threaded_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTIMG_CLUSTER_CONFIG", str(tmp_path))
    profile = load_profile(
        "slurm",
        parse_cluster_options(
            [
                "queue=short",
                "account=dsa110",
                "scheduler_options.host=127.0.0.1",
                "scheduler_options.dashboard_address=127.0.0.1:0",
            ]
        ),
    )
    cluster = slurm_cluster(profile)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p short" in script and "#SBATCH -A dsa110" in script
    assert "--nthreads 1" in script and "#SBATCH --cpus-per-task=1" in script
    assert "#SBATCH -t 04:00:00" in script
    assert "export MALLOC_ARENA_MAX=1" in script  # one malloc arena for CASA in worker threads
    assert "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in script
    with pytest.raises(ContimgError, match="cores must equal processes"):
        slurm_cluster({**profile, "cores": 4})


def _worker_casa_state():
    import os

    from distributed import get_worker

    from dsa110_contimg import casa_env

    casa_env.casatools()
    profiling = "profile" in get_worker().periodic_callbacks
    return os.environ.get("MALLOC_ARENA_MAX"), casa_env.keep_large_allocations(), profiling


def test_local_workers_are_set_up_for_casa():
    from dsa110_contimg.cluster.client import dask_client

    with dask_client(n_workers=1) as client:
        arena, tuned, profiling = client.submit(_worker_casa_state, pure=False).result()
        saturation = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.WORKER_SATURATION
        )
    assert saturation == 1.0  # no second CASA task queued behind a running one
    assert arena == "1" and tuned  # one malloc arena, large mmap/trim thresholds
    assert not profiling  # no stack sampling of CASA tasks


def test_local_cluster_keeps_restarting_workers_that_casa_aborts():
    """A worker killed twice, 15 s apart, comes back and the run goes on.

    Dask's lost-worker timer (15 s by default) armed at the first removal fired
    while the second restart was under way and closed the nanny: every later
    task then waited forever (a full disk aborting casacore did this).
    """
    import dask
    from distributed import KilledWorker

    from dsa110_contimg.cluster.client import dask_client

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with dask_client(n_workers=1) as client:
            with pytest.raises(KilledWorker):
                client.submit(os.abort, pure=False).result(timeout=60)
            first_removed = time.monotonic()
            client.wait_for_workers(1, timeout=60)
            # the second worker dies just before the first removal's timer fires
            time.sleep(max(0.0, first_removed + 14.7 - time.monotonic()))
            with pytest.raises(KilledWorker):
                client.submit(os.abort, pure=False).result(timeout=60)
            time.sleep(3.0)  # past the timer
            assert client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def test_refant_by_name_station_and_index(corrupted_small):
    assert resolve_refant(corrupted_small, "DSA103") == "DSA103"
    assert resolve_refant(corrupted_small, "103") == "DSA103"
    assert resolve_refant(corrupted_small, "1") == "DSA001"
    # On DSA-110 data a number is a station, never an index. DSA002 is listed in
    # the ANTENNA table (as every station is) but has no data here.
    with pytest.raises(ContimgError, match=r"DSA002 \(DSA-110 station 2\) has no data"):
        resolve_refant(corrupted_small, "2")
    with pytest.raises(ContimgError, match=r"'200' \(a DSA-110 station number\)"):
        resolve_refant(corrupted_small, "200")
    with pytest.raises(ContimgError, match="try --refant DSA"):
        resolve_refant(corrupted_small, "DSA999")


class _Obs:
    ms, stem = "x.ms", "x"


def test_steps_retry_record_failures_and_skip_dependents():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("table is locked")
        return {"fine": True}

    retried = run_step("bpcal", _Obs, 3, [], flaky, retries=1)
    assert retried.status == OK and retried.attempts == 2 and retried.detail == {"fine": True}

    def broken():
        raise RuntimeError("SEVERE")

    failed = run_step("bpcal", _Obs, 3, [], broken, retries=2)
    assert failed.status == FAILED and failed.attempts == 3 and "SEVERE" in failed.error

    def user_error():
        raise ContimgError("bad refant")

    refused = run_step("bpcal", _Obs, 3, [], user_error, retries=5)
    assert refused.status == FAILED and refused.attempts == 1

    skipped = run_step("apply", _Obs, 3, [failed], lambda: {}, retries=0)
    assert skipped.status == SKIPPED and "bpcal failed" in skipped.error
    upstream_ok = StepOutcome("x.ms", 3, "flag", OK)
    assert run_step("model", _Obs, 3, [upstream_ok], lambda: None, retries=0).ok


def test_a_second_run_on_the_same_outputs_is_refused_while_the_first_runs(tmp_path):
    from types import SimpleNamespace

    from dsa110_contimg.calibration.pipeline import _sole_writer, run_plan

    obs = SimpleNamespace(
        stem="night", work_dir=str(tmp_path / ".night.cal.work"),
        output_mms=str(tmp_path / "night.cal.mms"),
    )  # fmt: skip
    (tmp_path / ".night.cal.work").mkdir()
    with _sole_writer(obs):
        with pytest.raises(ContimgError, match="another calibration of night"):
            run_plan(SimpleNamespace(observations=[obs]), None, tmp_path / "run")
    assert (tmp_path / ".night.cal.work").exists(), "the running run's work was touched"


def test_calibrator_flux_from_the_user():
    from dsa110_contimg.sky.calibrators import (
        CalibratorRequest,
        require_known_flux,
        resolve_calibrator,
    )

    by_position = resolve_calibrator(
        CalibratorRequest(ra_deg=294.85, dec_deg=-63.71, flux_jy=14.9), centre_freq_hz=1.28e9
    )
    assert by_position.flux_jy == 14.9 and by_position.ref_freq_hz == 1.28e9
    assert by_position.spectral_index == 0.0
    assert by_position.flux_at(2.56e9) == pytest.approx(14.9)
    replaced = resolve_calibrator(
        CalibratorRequest(name="3C286", flux_jy=10.0, ref_freq_hz=1e9, spectral_index=-0.5)
    )
    assert replaced.name == "3C286" and replaced.flux_at(4e9) == pytest.approx(5.0)
    unknown = resolve_calibrator(CalibratorRequest(ra_deg=10.0, dec_deg=10.0))
    with pytest.raises(ContimgError, match="--cal-flux"):
        require_known_flux(unknown, "the model")
    catalog = resolve_calibrator(CalibratorRequest(ra_deg=128.7288, dec_deg=55.5725))
    assert catalog.name == "0834+555"  # within an arcminute of a catalog source
    require_known_flux(catalog, "the model")
    for bad, match in [
        (CalibratorRequest(flux_jy=3.0), "--calibrator NAME or --cal-ra"),
        (CalibratorRequest(name="3C286", flux_jy=-1.0), "positive"),
        (CalibratorRequest(name="3C286", spectral_index=-0.7), "need --cal-flux"),
        (CalibratorRequest(name="3C286", flux_jy=1.0, ref_freq_hz=0.0), "positive frequency"),
        (CalibratorRequest(name="3C286", ra_deg=1.0, dec_deg=1.0), "not both"),
    ]:
        with pytest.raises(ContimgError, match=match):
            resolve_calibrator(bad)


def test_casa_log_reason_reads_solve_statistics_and_joins_continued_lines(tmp_path):
    from dsa110_contimg.casa.tasks import log_reason

    log = tmp_path / "casa.log"
    log.write_text(
        "2026-01-01 00:00:00\tINFO\tgaincal::::casa\tstart\n"
        "2026-01-01 00:00:01\tINFO\tCalibrater::solve\t"
        "expected  data_unflagged  above_minblperant  above_minsnr\n"
        "2026-01-01 00:00:01\tINFO\tCalibrater::solve\t[3, 3]  [3, 3]        [0, 0]   [0, 0]\n"
        "2026-01-01 00:00:02\tWARN\tCalibrater::solve\tSpectral window(s) 0,\n"
        "2026-01-01 00:00:02\tWARN\tCalibrater::solve+\t  could not be solved\n"
    )
    assert "none enough baselines per antenna" in log_reason(log)
    log.write_text(
        "2026-01-01 00:00:02\tWARN\tCalibrater::solve\tSpectral window(s) 0,\n"
        "2026-01-01 00:00:02\tWARN\tCalibrater::solve+\t  could not be solved\n"
    )
    assert log_reason(log) == "Spectral window(s) 0, could not be solved"
    assert log_reason(tmp_path / "missing.log") is None


def test_the_readme_catalog_example_reads(tmp_path):
    """The CSV catalog example in the README is a catalog the program reads."""

    from dsa110_contimg.sky.calibrators import read_calibrator_csv

    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("name,ra_deg,dec_deg,flux_jy")[1].split("```")[0]
    path = tmp_path / "catalog.csv"
    path.write_text("name,ra_deg,dec_deg,flux_jy" + block)
    catalog = {c.name: c for c in read_calibrator_csv(path)}
    assert catalog["1934-638"].dec_deg == pytest.approx(-63.7127, abs=1e-3)
    assert catalog["1934-638"].ref_freq_hz == 1.4e9
    assert "J0834+5534" in catalog["0834+555"].aliases


def test_table_reads_work_while_dask_ms_holds_the_table_open(corrupted_small, tmp_path):
    """dask-ms opens tables with user locking; while one of its table objects is alive
    (a write's graph not yet collected), every other opening in the process shares the
    mode and an unlocked read fails. The flag step read the unflagged fraction right
    after the native flag's write and failed this way once in a run."""
    import shutil

    from casacore.tables import table, taql
    from daskms.table_proxy import TableProxy

    from dsa110_contimg.ms import reads

    ms = tmp_path / "open.ms"
    shutil.copytree(corrupted_small, ms)

    def figures():
        return (reads.unflagged_cross_fraction(ms), reads.time_range(ms),
                reads.weights_meaningful(ms), reads.balanced_row_chunk(ms),
                reads.visibility_bytes(ms, [0]),
                len(reads.usable_baselines(ms, [0], ["DATA"])[0]))  # fmt: skip

    expected = figures()
    proxy = TableProxy(table, str(ms), ack=False, readonly=False, lockoptions="user")
    assert proxy.nrows().result() > 0
    with pytest.raises(RuntimeError, match="UserLocking"):  # the failure, as it was
        with table(str(ms), ack=False) as plain:  # noqa: F841 - taql reads $plain
            taql("select FLAG from $plain where ANTENNA1 != ANTENNA2")
    assert figures() == expected
    del proxy
