"""Scoring without MLlib's per-row vectors: linear models as SQL, boosters on Arrow batches."""
