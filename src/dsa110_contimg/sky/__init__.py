"""Sky: calibrator catalog, coordinates, primary beam, visibility prediction."""
