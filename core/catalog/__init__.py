"""The SQL catalog: the source of truth for what exists and what state it is in."""
