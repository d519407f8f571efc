"""Bulk ingest: sources, scanning + dedup, the batch pipeline."""
