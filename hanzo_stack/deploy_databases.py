"""The deployments' database one-shot: ``python -m hanzo_stack.deploy_databases``.

compose's ``postgres-init`` service and the Kubernetes ``postgres-init`` Job run it once
PostgreSQL is up. It makes the sidecar's and the memory service's databases with their
owner and application roles exactly as ``hanzo up --profile production`` makes them
(:func:`hanzo_stack.postgres.provision_database`, names from
:data:`hanzo_stack.production.DATABASES`), with the passwords the operator's secret file
gives. Everything comes from the environment, so no secret is on a command line:

- ``POSTGRES_HOST``, ``POSTGRES_PORT`` (default 5432), ``POSTGRES_USER``,
  ``POSTGRES_PASSWORD``: a superuser (the image's ``POSTGRES_USER``);
- ``SIDECAR_DB_OWNER_PASSWORD``, ``SIDECAR_DB_PASSWORD``, ``MEMORY_DB_OWNER_PASSWORD``,
  ``MEMORY_DB_PASSWORD``: the owner and application role of each database.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from urllib.parse import quote

from hanzo_stack.postgres import provision_database
from hanzo_stack.production import DATABASES

#: deployed part -> env prefix of its role passwords
PARTS = {"sidecar": "SIDECAR_DB", "memory": "MEMORY_DB"}


def superuser_dsn(env: Mapping[str, str]) -> Callable[..., str]:
    """``dsn(database="postgres")`` as the superuser the environment names."""

    def dsn(database: str = "postgres") -> str:
        user = quote(env["POSTGRES_USER"], safe="")
        secret = quote(env["POSTGRES_PASSWORD"], safe="")
        host, port = env["POSTGRES_HOST"], env.get("POSTGRES_PORT", "5432")
        return f"postgresql://{user}:{secret}@{host}:{port}/{database}"

    return dsn


def main(env: Mapping[str, str]) -> int:
    missing = [
        name
        for name in (
            "POSTGRES_HOST",
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            *(f"{p}{s}" for p in PARTS.values() for s in ("_OWNER_PASSWORD", "_PASSWORD")),
        )
        if not env.get(name)
    ]
    if missing:
        print(f"postgres-init: set {', '.join(missing)}", file=sys.stderr)
        return 2
    dsn = superuser_dsn(env)
    for part, prefix in PARTS.items():
        name = DATABASES[part]
        provision_database(dsn, name, env[f"{prefix}_OWNER_PASSWORD"], env[f"{prefix}_PASSWORD"])
        print(f"postgres-init: database {name} with roles {name}_owner, {name}_app ready")
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
