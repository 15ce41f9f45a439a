"""Casdoor as the sidecar sees it: the REST client, its errors, owner resolution, scopes."""
