"""Search: the query engine (and, later, the HTTP API and its Python client)."""
