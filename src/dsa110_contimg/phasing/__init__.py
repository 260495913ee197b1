"""Phase-centre check, field selection, rephasing and the per-field calibrator model."""
