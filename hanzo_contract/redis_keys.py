"""Every Redis key prefix of every part, in one place.

Parts may share one Redis (or Valkey) database; a prefix named here belongs to exactly one
part, so two features never collide on a key. Prefixes end with ``:``.
"""

from __future__ import annotations

#: memory service: hashes ``hm:<tenant hex>:<id>`` and their per-tenant search indexes
MEMORY_PREFIX = "hm:"
#: gateway limiter: rate-limit windows and quota counters
LIMITER_PREFIX = "hanzo:gw:"

ALL_PREFIXES = (MEMORY_PREFIX, LIMITER_PREFIX)
