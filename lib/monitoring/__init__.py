"""Monitoring: drift against the training profile, and the over-time page."""
