"""No literal secret anywhere in deploy/ or the image recipe, and the operator's secret
files can reach neither git nor the image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import COMPOSE_DIR, DEPLOY, K8S_DIR, REPO, empty_keys, read_env_file

#: files an operator writes next to the manifests; each holds secrets or site data
OPERATOR_FILES = [
    COMPOSE_DIR / ".env",
    COMPOSE_DIR / "assertion.key",
    K8S_DIR / "secrets.env",
    K8S_DIR / "assertion.key",
    K8S_DIR / "assertion.pub",
    K8S_DIR / "tenants.yaml",
]

PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "hanzo API key": re.compile(r"\bhk-[A-Za-z0-9]{12}_[A-Za-z0-9_-]{16,}"),
    "long hex string": re.compile(r"\b[0-9a-fA-F]{32,}\b"),
    "long base64 string": re.compile(r"\b[A-Za-z0-9+/_-]{40,}={0,2}"),
    "well-known default": re.compile(r"\b(123456|changeme|admin123|password123)\b", re.I),
    # key = value / "key": "value" / key: value, where the value is a literal (not a
    # ${VAR}/$(VAR) reference, a boolean, a <placeholder> or code reading the env)
    "literal credential": re.compile(
        r"""(?ix)(?<![{\w])[\w-]*(password|passwd|secret|token|requirepass)["']?\s*[:=]\s*["']?
        (?!(true|false|null|none)\b|[$<"'\s]|env\[|$)([^\s"',}]{4,})"""
    ),
}


def deploy_files() -> list[Path]:
    """Every file of deploy/ git would take (tracked, or new and not ignored), plus the
    image recipe."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "deploy"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = [REPO / p for p in listed if (REPO / p).is_file()]
    return [*files, REPO / "Dockerfile", REPO / ".dockerignore"]


def test_the_scan_covers_our_files() -> None:
    names = {p.relative_to(REPO).as_posix() for p in deploy_files()}
    for expected in (
        "deploy/compose/compose.yaml",
        "deploy/compose/.env.example",
        "deploy/k8s/kustomization.yaml",
        "deploy/k8s/secrets.env.example",
        "deploy/k8s/casdoor.yaml",
        "deploy/README.md",
    ):
        assert expected in names


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_scan_patterns_catch_what_they_name(name: str) -> None:
    # samples are assembled at run time so the repo itself holds no secret-shaped literal
    begin = "-----BEGIN "
    samples = {
        "private key": [begin + "PRIVATE KEY-----", begin + "RSA PRIVATE KEY-----"],
        "hanzo API key": ["hk-" + "abcdefghijkl" + "_0123456789abcdefABCDEF"],
        "long hex string": ["POSTGRES_PASSWORD=" + "ab12" * 10],
        "long base64 string": ["token: " + "Zm9vYmFy" * 6],
        "well-known default": ["MYSQL_ROOT_PASSWORD: 123456", "password: changeme"],
        "literal credential": [
            'dataSourceName: "user=casdoor password=hunter22 host=x"',
            "radiusSecret = secret",
            '"clientSecret": "s3cr3t-value"',
            "POSTGRES_PASSWORD: hunter22",
        ],
    }
    for sample in samples[name]:
        assert PATTERNS[name].search(sample), sample


def test_scan_lets_references_through() -> None:
    for line in (
        "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}",
        'value: "user=casdoor password=$(POSTGRES_PASSWORD) host=postgres"',
        '"password": "${CASDOOR_ADMIN_PASSWORD}",',
        '"enablePassword": true,',
        "automountServiceAccountToken: false",
        "HANZO_VERIFY_TOKEN=",
    ):
        assert not PATTERNS["literal credential"].search(line), line


def test_no_literal_secret_in_deploy() -> None:
    found = []
    for path in deploy_files():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            for name, pattern in PATTERNS.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{lineno}: {name}: {line.strip()}")
    assert found == []


def test_example_env_files_leave_every_secret_empty() -> None:
    for example in (COMPOSE_DIR / ".env.example", K8S_DIR / "secrets.env.example"):
        values = read_env_file(example)
        secret_like = [k for k in values if re.search(r"PASSWORD|SECRET|TOKEN|CLIENT_ID", k)]
        assert secret_like and set(secret_like) <= set(empty_keys(example)), example


def test_operator_files_are_git_ignored() -> None:
    proc = subprocess.run(
        ["git", "check-ignore", "--no-index", *map(str, OPERATOR_FILES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    ignored = {Path(p) for p in proc.stdout.split()}
    assert ignored == set(OPERATOR_FILES)


def test_operator_files_cannot_enter_the_image() -> None:
    """.dockerignore is an allow-list: only what the Dockerfile copies is in the context."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    for path in OPERATOR_FILES:
        rel = path.relative_to(REPO).as_posix()
        assert not any(rel == a or rel.startswith(a + "/") for a in allowed), rel
    assert not any(a.startswith("deploy/compose") or a.startswith("deploy/k8s") for a in allowed)
    assert DEPLOY.exists()
