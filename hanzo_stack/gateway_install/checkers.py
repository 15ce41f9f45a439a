"""Each gateway's own checker, where it is installed: ``nginx -t``, ``caddy validate``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hanzo_stack.gateway_install.errors import InstallError


def _argv(gateway: str, out: Path) -> list[str] | None:
    if gateway == "nginx" and shutil.which("nginx"):
        return ["nginx", "-t", "-q", "-p", str(out), "-c", str(out / "nginx.conf")]
    if gateway == "caddy" and shutil.which("caddy"):
        return ["caddy", "validate", "--config", str(out / "Caddyfile"), "--adapter", "caddyfile"]
    if gateway == "envoy" and shutil.which("envoy"):
        return ["envoy", "--mode", "validate", "-c", str(out / "envoy.yaml")]
    return None


def validate(gateway: str, out: Path) -> str:
    """What was checked, or an ``InstallError`` with the checker's own words."""
    argv = _argv(gateway, out)
    if argv is None:
        return f"{gateway}: no checker installed here; rendered only"
    env = {"HOME": str(out), "XDG_DATA_HOME": str(out / ".data"), "PATH": "/usr/sbin:/usr/bin:/bin"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    if proc.returncode != 0:
        raise InstallError(f"{' '.join(argv[:2])} refused the config:\n{proc.stderr}{proc.stdout}")
    return f"{gateway}: {' '.join(argv[:2])} accepted {out}"
