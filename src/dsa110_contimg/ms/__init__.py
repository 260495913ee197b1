"""All Measurement Set I/O: dask-ms reads, subtables, summaries."""
