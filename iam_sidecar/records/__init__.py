"""What the sidecar records: the append-only audit log and the per-day usage counters."""
