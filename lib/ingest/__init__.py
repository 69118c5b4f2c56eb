"""Ingest: data contracts, raw source files, and the ledger of files already ingested."""
