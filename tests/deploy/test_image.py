"""The Dockerfile (not built here: no engine) copies what the services import, runs as a
non-root user, and installs the locked dependencies with the project's Python."""

from __future__ import annotations

import re
import tomllib

from packaging.specifiers import SpecifierSet

from .conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    return re.findall(rf"(?m)^{name}\s+(.+)$", DOCKERFILE)


def _copied_sources() -> list[str]:
    sources = []
    for args in _instructions("COPY"):
        if "--from=" in args:  # from an earlier stage, not the build context
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        sources += parts[:-1]
    return sources


def test_every_python_package_of_the_repo_is_copied() -> None:
    packages = {
        p.parent.name
        for p in REPO.glob("*/__init__.py")
        if p.parent.name not in {"tests", "scripts"}
    }
    wheel = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    assert set(wheel) <= packages
    assert packages <= set(_copied_sources())


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for source in _copied_sources():
        assert (REPO / source).exists(), source
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
    # the baked-in route table the deployments point HANZO_GATEWAY_ROUTES_FILE at
    assert "deploy/stack/routes.yaml" in _copied_sources()


def test_locked_runtime_dependencies_and_matching_python() -> None:
    assert re.search(r"uv sync --frozen --no-dev --no-install-project", DOCKERFILE)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains("3.11")  # the image's Python
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim-bookworm", DOCKERFILE)
    assert re.search(r'"uv==\$\{UV_VERSION\}"', DOCKERFILE)
    assert re.search(r"ARG UV_VERSION=\d+\.\d+\.\d+", DOCKERFILE)


def test_runs_as_a_numeric_non_root_user() -> None:
    users = _instructions("USER")
    assert users == ["${HANZO_UID}:${HANZO_UID}"]
    (uid,) = re.findall(r"ARG HANZO_UID=(\d+)", DOCKERFILE)
    assert int(uid) == 10001  # the runAsUser of deploy/k8s and compose's group_add
    # the user's home and state dir are the only writable places the services need
    assert "HANZO_STATE_DIR=/var/lib/hanzo" in DOCKERFILE
