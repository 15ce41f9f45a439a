"""gateway_plugins."""
