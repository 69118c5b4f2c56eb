"""Data batchml brings along: the demo's sample files and scalable synthetic datasets."""
