"""The Hanzo memory service: a Starlette API over SQLite, LanceDB or Redis.

Every memory belongs to a tenant (the caller's organization) and, unless shared at
organization level, to a user. Identity comes only from the gateway's signed assertion.
"""
