"""``python -m gateway_plugins.kong``: the dedicated plugin server Kong starts."""

from kong_pdk.cli import start_dedicated_server

from gateway_plugins.kong.hanzo_auth import NAME, Plugin, Schema, priority, version

start_dedicated_server(NAME, Plugin, version, priority, list(Schema))
