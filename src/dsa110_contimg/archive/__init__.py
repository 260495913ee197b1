"""Archive reprocessing: discovery, the manifest, and the runner."""
