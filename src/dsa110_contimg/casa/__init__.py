"""One leaf wrapper per CASA task: explicit paths in, a small result record out."""
