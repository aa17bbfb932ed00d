"""Runnable end-to-end jobs; the CLI calls them."""
