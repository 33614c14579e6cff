"""Stage 5: what people read (``report.html``, ``report.pdf``, the cohort summary), what machines read
(``differential.json``, ``cells.parquet``, QuPath's ``cells.geojson``) and the hematologist's review loop."""
