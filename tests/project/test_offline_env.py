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


REGISTRY_PROBE = """
import json, logging, os, socket, sys, threading
import psutil
from dsa110_contimg import casa_env
closed = []
class Closes(logging.Handler):
    def emit(self, record):
        if "closed casatools' registry listener" in record.getMessage():
            closed.append(record.getMessage())
logging.getLogger("dsa110_contimg.casa_env").addHandler(Closes())
logging.getLogger("dsa110_contimg.casa_env").setLevel(logging.DEBUG)
if sys.argv[1] == "host-network":
    casa_env._private_network_thread = lambda work: work()
seen, done = set(), threading.Event()
def watch():
    while not done.is_set():
        for c in psutil.Process().net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN:
                seen.add(c.laddr.ip)
watcher = threading.Thread(target=watch)
watcher.start()
tools = casa_env.casatools()
done.set()
watcher.join()
port = int(tools.ctsys.registry()["uri"].rsplit(":", 1)[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    reachable = True
except OSError:
    reachable = False
namespaces = {os.readlink(f"/proc/self/task/{t}/ns/net") for t in os.listdir("/proc/self/task")}
print(json.dumps({
    "seen_while_importing": sorted(seen),
    "closed": closed,
    "left": [c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
             if c.status == psutil.CONN_LISTEN],
    "registry_reachable": reachable,
    "private_namespace": len(namespaces) > 1,
    "tool_works": tools.quanta().convert("1km", "m")["value"] == 1000.0,
}))
"""


def _registry_probe(mode):
    result = subprocess.run(
        [sys.executable, "-c", REGISTRY_PROBE, mode], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_casa_registry_never_listens_on_the_host_network():
    """casatools' gRPC registry binds 0.0.0.0 inside its import. Made in a network
    namespace of its own, it is never in the process's listening sockets, not even for
    the instant before it could be closed, and nothing on the host reaches its port."""
    found = _registry_probe("private")
    if not found["private_namespace"]:
        import pytest

        pytest.skip("this system refuses a network namespace: the registry is closed instead")
    assert found["seen_while_importing"] == [], found
    # nothing had to be closed, and nothing is left: it never was on the host's network
    assert found["closed"] == [] and found["left"] == [], found
    assert not found["registry_reachable"]
    assert found["tool_works"]


def test_casa_registry_is_closed_where_no_namespace_can_be_made():
    """Imported on the host's network, the registry listens on every interface until
    its socket is replaced: afterwards nothing listens and CASA still works."""
    found = _registry_probe("host-network")
    assert not found["private_namespace"]
    assert len(found["closed"]) == 1, found  # 0.0.0.0, or :: where IPv6 is on
    assert found["left"] == [] and not found["registry_reachable"]
    assert found["tool_works"]
