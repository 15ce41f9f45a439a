"""API keys: the store (hashed, rotated, revoked, batched last-used), issuing, principals."""
