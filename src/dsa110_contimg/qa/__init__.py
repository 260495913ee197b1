"""Quality assessment: pure metric kernels and the graphs that map them over an MS."""
