"""Generic data layers: ingest, row triage, per-partition checks, table metadata."""
