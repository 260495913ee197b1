"""Dask clients: an in-process LocalCluster by default, or an existing scheduler."""

from dsa110_contimg.cluster.client import dask_client

__all__ = ["dask_client"]
