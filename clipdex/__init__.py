"""clipdex kernel: settings, catalog, vector store, encoder and image decoding.

Nothing in this package imports from ``ingest``, ``search`` or ``workers``; only entry points
(``clipdex.cli``) wire those subsystems together.
"""

__version__ = "0.1.0"
