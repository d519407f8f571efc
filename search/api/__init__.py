"""The versioned HTTP API (FastAPI). ``create_app`` is an entry point that wires the kernel."""
