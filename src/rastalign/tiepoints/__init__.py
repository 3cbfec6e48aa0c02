"""Tie-point sources: windowed correlation (VHR) and star detections + quads (astronomy)."""
