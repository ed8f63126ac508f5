"""Data: read and validate IDX files, ingest dataset versions, analyse them, build features and AutoML exports."""
