"""Stage 5: what people read (HTML report) and what machines read (JSON, Parquet)."""
