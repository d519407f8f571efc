"""Alembic migrations for the clipdex catalog (a package so installs ship it)."""
