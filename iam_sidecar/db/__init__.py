"""The sidecar's store: one interface (``database``), SQLite and PostgreSQL behind it."""
