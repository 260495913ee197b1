"""Cluster profiles: local, ssh and slurm, with dask-jobqueue's precedence.

A profile is a YAML mapping with a ``kind`` and that kind's settings. For a
profile NAME the settings are merged, lowest first, from

1. the packaged default ``dsa110_contimg/cluster/profiles/NAME.yaml``
   (also at ``cluster/NAME.yaml`` in the repository);
2. the user's ``$CONTIMG_CLUSTER_CONFIG/NAME.yaml`` (default
   ``~/.config/dsa110_contimg/cluster/NAME.yaml``);
3. arguments (``--cluster-option key=value`` or keyword arguments).

NAME may also be a path to a YAML file, which then takes the place of 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
from importlib import resources
from pathlib import Path

import yaml

from dsa110_contimg.cluster.client import (
    casa_worker_environment,
    casa_worker_exports,
    dask_client,
)
from dsa110_contimg.errors import ContimgError

log = logging.getLogger(__name__)

KINDS = ("local", "ssh", "slurm")
USER_CONFIG_ENV = "CONTIMG_CLUSTER_CONFIG"


def packaged_profiles() -> list[str]:
    folder = resources.files("dsa110_contimg.cluster") / "profiles"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def _read_yaml(path) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ContimgError(f"cannot read cluster profile {path}: {err}") from err
    if not isinstance(loaded, dict):
        raise ContimgError(f"cluster profile {path} must be a mapping")
    return loaded


def _user_dir() -> Path:
    return Path(
        os.environ.get(USER_CONFIG_ENV, Path.home() / ".config" / "dsa110_contimg" / "cluster")
    )


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_profile(name: str = "local", overrides: dict | None = None) -> dict:
    """The merged settings of profile ``name`` (see the module docstring)."""
    as_path = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not as_path.is_file():
            raise ContimgError(f"cluster profile file {name} does not exist")
        user = _read_yaml(as_path)
        base_name = user.get("kind", "local")
    else:
        base_name = name
        user_file = _user_dir() / f"{name}.yaml"
        user = _read_yaml(user_file) if user_file.is_file() else {}
    if base_name not in packaged_profiles():
        raise ContimgError(
            f"unknown cluster profile {base_name!r}; packaged: {', '.join(packaged_profiles())} "
            "(or give a YAML file)"
        )
    packaged = _read_yaml(
        resources.files("dsa110_contimg.cluster") / "profiles" / f"{base_name}.yaml"
    )
    profile = _merge(_merge(packaged, user), overrides or {})
    if profile.get("kind") not in KINDS:
        raise ContimgError(
            f"cluster profile kind must be one of {KINDS}, not {profile.get('kind')!r}"
        )
    known = _known_settings(profile["kind"], packaged)
    unknown = sorted(set(user) - known - {"kind"}) + sorted(set(overrides or {}) - known)
    if unknown:
        raise ContimgError(
            f"unknown {profile['kind']} cluster setting(s) {unknown}; known: {sorted(known)}"
        )
    n_workers = profile.get("n_workers")
    if n_workers is not None and (
        isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1
    ):
        raise ContimgError(f"cluster setting n_workers must be at least 1, not {n_workers!r}")
    return profile


def _known_settings(kind: str, packaged: dict) -> set[str]:
    """Settings a profile of ``kind`` takes: the packaged ones, and dask-jobqueue's for SLURM."""
    known = set(packaged)
    if kind == "slurm":
        import inspect

        from dask_jobqueue.core import Job, JobQueueCluster
        from dask_jobqueue.slurm import SLURMJob

        for function in (SLURMJob.__init__, Job.__init__, JobQueueCluster.__init__):
            known |= set(inspect.signature(function).parameters) - {"self", "args", "kwargs"}
    return known


def parse_cluster_options(items) -> dict:
    """``["memory=16GB", "worker_options.nthreads=1"]`` -> nested dict (YAML values)."""
    result: dict = {}
    for item in items or ():
        if "=" not in item:
            raise ContimgError(f"--cluster-option {item!r} must look like key=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text)
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def slurm_cluster(profile: dict):
    """A dask-jobqueue SLURMCluster from a slurm profile (not yet scaled)."""
    from dask_jobqueue import SLURMCluster

    if int(profile.get("cores", 1)) != int(profile.get("processes", 1)):
        raise ContimgError(
            "slurm profile: cores must equal processes (one thread per worker; "
            "CASA is not thread-safe)"
        )
    settings = {k: v for k, v in profile.items() if k not in ("kind", "jobs") and v is not None}
    prologue = list(settings.get("job_script_prologue") or [])
    settings["job_script_prologue"] = casa_worker_exports() + prologue
    return SLURMCluster(**settings)


@contextlib.contextmanager
def open_profile_client(profile: dict):
    """Yield a ``distributed.Client`` on the cluster the profile describes."""
    from distributed import Client

    kind = profile["kind"]
    if kind == "local":
        with dask_client(
            n_workers=profile.get("n_workers"),
            memory_limit=profile.get("memory_limit", "auto"),
            dashboard_address=profile.get("dashboard_address", "127.0.0.1:0"),
        ) as client:
            yield client
        return
    if kind == "ssh":
        from distributed import SSHCluster

        if int(profile.get("worker_options", {}).get("nthreads", 1)) != 1:
            raise ContimgError(
                "ssh profile: worker_options.nthreads must be 1 (CASA is not thread-safe)"
            )
        with casa_worker_environment():  # SSHCluster hands this config to the remote nannies
            cluster = SSHCluster(
                profile["hosts"],
                connect_options=profile.get("connect_options") or {},
                worker_options=profile.get("worker_options") or {},
                scheduler_options=profile.get("scheduler_options") or {},
                remote_python=profile.get("remote_python"),
            )
    else:
        cluster = slurm_cluster(profile)
        cluster.scale(jobs=int(profile.get("jobs", 1)))
    client = Client(cluster)
    log.info("Dask %s cluster; dashboard %s", kind, client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
