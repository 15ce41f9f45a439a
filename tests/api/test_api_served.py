"""The API documents and the docs page, served through the stack's own nginx config
(``deploy/nginx/stack.conf.template``) and the stack's route table, in front of the real
sidecar and the real memory service: public, valid, and the same as the services build."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from hanzo_contract.openapi import DOCS_PATH, KEYS_OPENAPI_PATH, MEMORY_OPENAPI_PATH
from hanzo_stack.casdoor.state import CASDOOR_STATIC_DIR
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok, tcp_open
from hanzo_stack.servers import ForwardAuthServer, SidecarServer
from hanzo_stack.stack import write_nginx_config
from iam_sidecar.http.app import create_app
from iam_sidecar.http.openapi import openapi_document as keys_document
from memory_service.openapi import openapi_document as memory_document
from tests.gateway.conftest import gateway_env
from tests.sidecar.helpers import make_settings

ROOT = Path(__file__).resolve().parents[2]
NGINX_DIR = ROOT / "deploy" / "nginx"


@dataclass
class Front:
    url: str


def _memory(work: Path, public_key: Path) -> ManagedProcess:
    port = free_port()
    env = {
        "HANZO_MEMORY_BACKEND": "sqlite",
        "HANZO_MEMORY_DATA_DIR": str(work / "memory"),
        "HANZO_MEMORY_EMBEDDER": "deterministic",
        "HANZO_MEMORY_ASSERTION_PUBLIC_KEY": str(public_key),
    }
    argv = [sys.executable, "-m", "memory_service.cli", "serve", "--host", LOOPBACK,
            "--port", str(port)]  # fmt: skip
    proc = ManagedProcess("memory", argv, log_path=work / "memory.log", env=env).start()
    proc.wait_ready(lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), timeout=60)
    proc.addr = f"{LOOPBACK}:{port}"  # type: ignore[attr-defined]
    return proc


def _nginx(prefix: Path, auth: str, memory: str, sidecar: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    values = {
        "USER": "",
        "PREFIX": str(prefix),
        "LISTEN": f"{LOOPBACK}:{port}",
        "AUTH": auth,
        "MEMORY": memory,
        "SIDECAR": sidecar,
        "INFERENCE": f"{LOOPBACK}:{free_port()}",  # nothing there: not under test
        "CASDOOR_STATIC": str(CASDOOR_STATIC_DIR),
        "GRPC_LISTEN": f"{LOOPBACK}:{free_port()}",
        "MEMORY_GRPC": f"{LOOPBACK}:{free_port()}",  # nothing there: not under test
    }
    # the Casdoor front: nothing behind it, not under test
    write_nginx_config(prefix, values, f"{LOOPBACK}:{free_port()}", f"{LOOPBACK}:{free_port()}")
    argv = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    proc = ManagedProcess("nginx", argv, log_path=prefix / "stdout.log").start()
    proc.wait_ready(lambda: tcp_open(port), 15)
    return proc, f"http://{LOOPBACK}:{port}"


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, sidecar_server: SidecarServer
) -> Iterator[Front]:
    work = tmp_path_factory.mktemp("api-served")
    started: list[Any] = []
    try:
        env = gateway_env(
            sidecar_server, work, HANZO_GATEWAY_ROUTES_FILE=str(ROOT / "deploy/stack/routes.yaml")
        )
        auth = ForwardAuthServer(work, env).start()
        started.append(auth)
        memory = _memory(work, work / "state" / "assertion.pub")
        started.append(memory)
        nginx, url = _nginx(work / "nginx", auth.addr, memory.addr, sidecar_server.addr)
        started.append(nginx)
        yield Front(url)
    finally:
        for part in reversed(started):
            part.stop()


@pytest.fixture(scope="module")
def keys_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return keys_document(create_app(make_settings(tmp_path_factory.mktemp("k"))).routes)


def test_documents_are_public_and_valid_through_the_gateway(front: Front, keys_doc) -> None:
    with httpx.Client(timeout=10) as http:
        memory = http.get(front.url + MEMORY_OPENAPI_PATH)
        keys = http.get(front.url + KEYS_OPENAPI_PATH)
    for answer in (memory, keys):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers.get("x-request-id")
        validate(answer.json())
    # what the running services serve is what their routes build
    assert memory.json() == memory_document()
    assert keys.json() == keys_doc


def test_docs_page_is_public_and_loads_nothing_from_elsewhere(front: Front) -> None:
    with httpx.Client(timeout=10) as http:
        page = http.get(front.url + DOCS_PATH)
        documents = sorted(set(re.findall(r'"(/v1/openapi/[a-z]+\.json)"', page.text)))
        fetched = [http.get(front.url + path).status_code for path in documents]
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    # no asset from another origin: every src/href is same-origin
    for url in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page.text):
        assert url.startswith("/") and not url.startswith("//"), url
    assert sorted(documents) == [KEYS_OPENAPI_PATH, MEMORY_OPENAPI_PATH]
    assert fetched == [200, 200]


def test_public_documents_do_not_open_the_api(front: Front) -> None:
    """Only the listed paths are public: the API next to them still wants a key."""
    with httpx.Client(timeout=10) as http:
        for method, path in (
            ("GET", "/v1/usage"),
            ("GET", "/v1/keys"),
            ("GET", "/v1/memory/capabilities"),
            ("GET", "/v1/openapi/other.json"),
            ("GET", "/v1/docs/x"),
        ):
            answer = http.request(method, front.url + path)
            assert answer.status_code in (401, 403, 404), (path, answer.status_code)
            assert answer.headers["content-type"].startswith("application/json")
