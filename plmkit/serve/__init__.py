"""`plmkit serve`: model directories behind an HTTP API with dynamic batching (the `serve` extra).

config.py holds the settings (no web imports, so `plmkit --help` works without the extra); batching.py the
request grouping; models.py what each directory is and what it answers; app.py the FastAPI application.
"""
