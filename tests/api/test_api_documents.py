"""The public API documents: valid OpenAPI 3.1, every route of the stack's route table
documented with the permission the table requires, and the Python and TypeScript clients'
shapes agreeing with the documents' schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from hanzo_client import calls
from hanzo_contract.mcp_tools import MCP_PATH
from iam_sidecar.http.app import create_app
from iam_sidecar.http.openapi import openapi_document as keys_document
from memory_service.grpc.server import SERVICE as GRPC_SERVICE
from memory_service.openapi import openapi_document as memory_document
from tests.sidecar.helpers import make_settings

ROOT = Path(__file__).resolve().parents[2]
ROUTE_TABLE = ROOT / "deploy" / "stack" / "routes.yaml"
TS_TYPES = ROOT / "clients" / "typescript" / "src" / "types.ts"
#: routes of the table served by the inference gateway, which publishes no document yet
#: (named here so that any other undocumented route fails this test)
UNDOCUMENTED = {("POST", "/v1/chat/completions"), ("GET", "/v1/models")}
#: routes of another protocol, each described in its own terms: the gRPC methods by
#: memory.proto (tests/grpc holds the table to it), MCP by its tools/list
OTHER_PROTOCOL_PREFIXES = (f"/{GRPC_SERVICE}/", MCP_PATH)


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    sidecar = create_app(make_settings(tmp_path_factory.mktemp("docs")))
    return {"memory": memory_document(), "keys": keys_document(sidecar.routes)}


def _template(path: str) -> str:
    """Path parameters by position, not by name (``{id}`` and ``{key_id}`` are alike)."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _operations(documents: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for doc in documents.values():
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                out[(method.upper(), _template(path))] = op
    return out


def _schema(documents: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    for doc in documents.values():
        if name in doc["components"]["schemas"]:
            return doc["components"]["schemas"][name]
    raise AssertionError(f"no schema {name}")


@pytest.mark.parametrize("name", ["memory", "keys"])
def test_documents_validate(documents, name: str) -> None:
    doc = documents[name]
    validate(doc)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert "hk-" in schemes["bearer"]["bearerFormat"]
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and all(ids)
    # the internal assertion header is not a credential a client can send
    assert "X-Hanzo-Identity" not in str(doc)
    for ops in doc["paths"].values():
        for op in ops.values():
            if op.get("x-permission"):
                assert op["security"] == [{"bearer": []}, {"apiKey": []}], op["operationId"]
                assert "429" in op["responses"] and "401" in op["responses"]
            else:
                assert op["security"] == []


def test_internal_sidecar_endpoints_stay_out_of_the_public_document(documents) -> None:
    paths = set(documents["keys"]["paths"])
    assert not {p for p in paths if "verify" in p or "report" in p or p.startswith("/readyz")}
    assert {"/v1/keys", "/v1/keys/{key_id}", "/v1/usage"} <= paths


def test_every_route_of_the_route_table_is_documented_with_its_permission(documents) -> None:
    table = yaml.safe_load(ROUTE_TABLE.read_text())["routes"]
    documented = _operations(documents)
    missing = set()
    for route in table:
        if route["path"].startswith(OTHER_PROTOCOL_PREFIXES):
            continue
        for method in route["methods"]:
            op = documented.get((method, _template(route["path"])))
            if op is None:
                missing.add((method, route["path"]))
                continue
            assert op.get("x-permission") == route["permission"], (method, route["path"])
    assert missing == UNDOCUMENTED


def test_documented_public_operations_are_public_in_the_route_table(documents) -> None:
    """A document that says "no credential" where the gateway wants one would mislead."""
    table = yaml.safe_load(ROUTE_TABLE.read_text())["routes"]
    public = {
        (m, _template(r["path"])) for r in table if r["permission"] is None for m in r["methods"]
    }
    for (method, path), op in _operations(documents).items():
        if not op.get("x-permission") and path != "/openapi.json":
            assert (method, path) in public, (method, path)


# ---- the Python client: every call is a documented operation with a documented body ----

PYTHON_CALLS = [
    calls.store([{"content": "x", "tags": ["a"]}]),
    calls.get("m1"),
    calls.listing(namespace="n", limit=10, cursor=None),
    calls.search("q", top_k=3),
    calls.delete("m1"),
    calls.capabilities(),
    calls.create_key("k", ["memory:read"], expires_in_seconds=60),
    calls.list_keys(),
    calls.show_key("k1"),
    calls.rotate_key("k1", grace_seconds=5),
    calls.revoke_key("k1"),
]


def _template_of(documents: dict[str, dict[str, Any]], method: str, path: str) -> dict[str, Any]:
    for (m, template), op in _operations(documents).items():
        pattern = "^" + re.escape(template).replace(r"\{\}", "[^/]+") + "$"
        if m == method and re.match(pattern, path):
            return op
    raise AssertionError(f"{method} {path} is not documented")


@pytest.mark.parametrize("call", PYTHON_CALLS, ids=lambda c: f"{c.method} {c.path}")
def test_python_client_calls_are_documented(documents, call: calls.Call) -> None:
    op = _template_of(documents, call.method, call.path)
    assert set(call.expect) & {int(code) for code in op["responses"]}
    if call.json is not None:
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = _schema(documents, ref.split("/")[-1])
        assert set(call.json) <= set(schema["properties"]), (call.json, ref)
        assert set(schema.get("required", ())) <= set(call.json)
        if "memories" in call.json:
            item = _schema(documents, "MemoryIn")["properties"]
            assert all(set(m) <= set(item) for m in call.json["memories"])
    if call.params:
        names = {p["name"] for p in op.get("parameters", ())}
        assert set(call.params) <= names, (call.params, names)


# ---- the TypeScript client: interface fields against the schemas ----

#: TypeScript interface -> the schema it mirrors, and whether it is an answer (every
#: always-present field must be typed) or a request (no field the API lacks)
TS_SCHEMAS = {
    "MemoryInput": ("MemoryIn", "request"),
    "StoreItemResult": ("StoreItemResult", "answer"),
    "StoreResponse": ("StoreResponse", "answer"),
    "Memory": ("MemoryOut", "answer"),
    "ListResponse": ("ListResponse", "answer"),
    "Filters": ("Filters", "request"),
    "SearchHit": ("SearchHit", "answer"),
    "SearchResponse": ("SearchResponse", "answer"),
    "UpdateRequest": ("UpdateRequest", "request"),
    "DeleteResponse": ("DeleteResponse", "answer"),
    "ImportResponse": ("ImportResponse", "answer"),
    "Capabilities": ("Capabilities", "answer"),
    "Limits": ("Limits", "request"),
    "CreateKeyRequest": ("CreateKey", "request"),
    "KeyRecord": ("KeyView", "answer"),
    "MintedKey": ("MintedKey", "answer"),
    "UsageRow": ("UsageRow", "answer"),
}


def _ts_interfaces(source: str) -> dict[str, set[str]]:
    """Field names of each top-level ``export interface`` (nested object types skipped)."""
    out: dict[str, set[str]] = {}
    for match in re.finditer(r"export interface (\w+)[^{]*\{(.*?)\n\}", source, re.S):
        fields = re.findall(r"^  (\w+)\??:", match.group(2), re.M)
        out[match.group(1)] = set(fields)
    return out


def test_typescript_types_agree_with_the_documents(documents) -> None:
    interfaces = _ts_interfaces(TS_TYPES.read_text())
    for interface, (schema_name, role) in TS_SCHEMAS.items():
        fields = interfaces[interface]
        schema = _schema(documents, schema_name)
        properties = set(schema["properties"])
        assert fields <= properties, (interface, fields - properties)
        if role == "answer":
            required = set(schema.get("required", ()))
            assert required <= fields, (interface, required - fields)
    # an import line is a memory plus its timestamps
    line = set(_schema(documents, "ImportLine")["properties"])
    assert interfaces["ImportLine"] <= line
