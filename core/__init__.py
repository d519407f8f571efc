"""The kernel: settings, ids, image decoding, preprocessing, the encoder, the catalog and the
vector store. It imports nothing from ``ingest``, ``search``, ``workers``, ``migrations`` or
``clipdex`` (the entry layer); everything above it receives what it needs as arguments."""
