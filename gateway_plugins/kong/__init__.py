"""Kong plugin ``hanzo-auth`` on the Python PDK (``kong-pdk``), run as a plugin server."""
