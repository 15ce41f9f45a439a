"""The sidecar's HTTP surface: the app, gateway-facing verify routes, self-service keys, ops."""
