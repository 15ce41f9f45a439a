"""Casdoor JWT verification: the verifier, its settings and its factory."""
