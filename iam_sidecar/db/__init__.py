"""The sidecar's SQLite database and its ordered schema migrations."""
