"""CASA and astropy configured for offline use on import; CASA's log off the terminal."""

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, os, sys
import dsa110_contimg
from dsa110_contimg import casa_env
casa_env.casatools()
import casaconfig.config as config
from astropy.utils import iers
print(json.dumps({
    "site": os.environ.get("CASASITECONFIG"),
    "measurespath": config.measurespath,
    "measures_auto_update": config.measures_auto_update,
    "data_auto_update": config.data_auto_update,
    "astropy_auto_download": bool(iers.conf.auto_download),
    "casarc": os.environ.get("CASARCFILES"),
}))
"""


def _probe(env_extra=None):
    env = dict(os.environ)
    env.pop("CASASITECONFIG", None)
    env.update(env_extra or {})
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def test_import_points_casa_at_casadata_without_updates():
    import casadata

    found, result = _probe()
    assert Path(found["measurespath"]).resolve() == Path(casadata.datapath).resolve()
    assert found["measures_auto_update"] is False
    assert found["data_auto_update"] is False
    assert found["astropy_auto_download"] is False
    assert "measures.directory" in Path(found["casarc"]).read_text()
    assert "SEVERE" not in result.stderr and "INFO" not in result.stderr


def test_user_site_config_is_kept(tmp_path):
    import casadata

    own = tmp_path / "mysite.py"
    own.write_text(
        f"measurespath = {str(Path(casadata.datapath).resolve())!r}\n"
        "measures_auto_update = False\ndata_auto_update = False\n"
        f"logfile = {str(tmp_path / 'mine.log')!r}\n"
    )
    found, _ = _probe({"CASASITECONFIG": str(own)})
    assert found["site"] == str(own)
    assert (tmp_path / "mine.log").exists()


def test_cli_run_keeps_casa_log_in_run_directory(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsa110_contimg",
            "--log-dir",
            str(tmp_path / "run"),
            "simulate",
            str(tmp_path / "obs.ms"),
            "--preset",
            "tiny",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "NewMSSimulator" not in result.stdout + result.stderr
    casa_log = (tmp_path / "run" / "casa.log").read_text()
    assert "NewMSSimulator" in casa_log
    assert (tmp_path / "run" / "contimg.log").exists()
