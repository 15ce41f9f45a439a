"""deploy/k8s: kustomize renders it from the operator's files, every object validates
against the Kubernetes schemas (offline), every container is probed, limited and
non-root, and the NetworkPolicies let only the gateway be reached from outside."""

from __future__ import annotations

import base64
import copy
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hanzo_stack.casdoor.install import CASDOOR_VERSION

from . import service_env
from .conftest import COMPOSE_DIR, K8S_DIR, empty_keys, kustomize_build

#: oldest and newest Kubernetes we validate against (schemas ship in kubernetes-validate)
K8S_VERSIONS = ("1.29.0", "1.33.0")
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
OUR_IMAGE = "hanzo-unified"
SERVICE_PORTS = {"sidecar": 8090, "auth": 8200, "memory": 8600}
#: the cluster's nodes: StatefulSet pods under the headless Service ``valkey``
VALKEY_NODES = ("valkey-0.valkey", "valkey-1.valkey", "valkey-2.valkey")


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in WORKLOADS]


def _pod(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def _generated(objects: list[dict[str, Any]], kind: str, base: str) -> dict[str, str]:
    """Data of the generated ConfigMap/Secret ``base-<hash>``, decoded."""
    (obj,) = [
        o
        for o in objects
        if o["kind"] == kind and re.fullmatch(rf"{base}-[a-z0-9]+", o["metadata"]["name"])
    ]
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    return dict(obj["data"])


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(k8s_objects: list[dict[str, Any]], version: str) -> None:
    kinds = {o["kind"] for o in k8s_objects}
    assert {"Namespace", "Deployment", "StatefulSet", "Job", "Service", "NetworkPolicy"} <= kinds
    for obj in k8s_objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_catches_a_broken_manifest(k8s_objects: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(_by_kind(k8s_objects, "Deployment")["auth"])
    _pod(deployment)["containers"][0]["livenessprobe"] = {"httpGet": {"path": "/healthz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(_by_kind(k8s_objects, "Deployment")["auth"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    "missing", ["secrets.env", "assertion.key", "assertion.pub", "tenants.yaml"]
)
def test_build_refuses_without_an_operator_file(
    k8s_workdir: Path, tmp_path: Path, missing: str
) -> None:
    work = tmp_path / "k8s"
    shutil.copytree(k8s_workdir, work)
    (work / missing).unlink()
    proc = kustomize_build(work)
    assert proc.returncode != 0
    assert missing in proc.stderr


def test_every_container_is_probed_limited_and_non_root(
    k8s_objects: list[dict[str, Any]],
) -> None:
    workloads = _workloads(k8s_objects)
    assert {w["metadata"]["name"] for w in workloads} == {
        "postgres", "postgres-init", "valkey", "valkey-init", "casdoor", "casdoor-bootstrap",
        "sidecar", "auth", "memory", "apisix",
    }  # fmt: skip
    for workload in workloads:
        name = workload["metadata"]["name"]
        pod = _pod(workload)
        pod_sc = pod["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        containers = pod["containers"]
        for container in containers + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            uid = container.get("securityContext", {}).get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(uid, int) and uid > 0, where
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert "readOnlyRootFilesystem" in sc, where
            if container["image"].startswith(OUR_IMAGE):
                assert sc["readOnlyRootFilesystem"] is True, where
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), f"{where} {part}"
        if workload["kind"] != "Job":
            for container in containers:
                where = f"{name}/{container['name']}"
                assert "readinessProbe" in container, where
                assert "livenessProbe" in container, where


def test_images_are_pinned_and_casdoor_matches_the_stack(
    k8s_objects: list[dict[str, Any]],
) -> None:
    images = {
        c["image"]
        for w in _workloads(k8s_objects)
        for c in _pod(w)["containers"] + _pod(w).get("initContainers", [])
    }
    for image in images:
        _, _, tag = image.rpartition(":")
        assert tag and tag != "latest" and "/" not in tag, image
    assert f"casbin/casdoor:{CASDOOR_VERSION}" in images
    assert f"{OUR_IMAGE}:0.1.0" in images


def test_only_the_gateway_is_reachable_from_outside(k8s_objects: list[dict[str, Any]]) -> None:
    for svc in _by_kind(k8s_objects, "Service").values():
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
    policies = list(_by_kind(k8s_objects, "NetworkPolicy").values())
    default = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(default) == 1 and "ingress" not in default[0]["spec"]
    assert default[0]["spec"]["policyTypes"] == ["Ingress"]
    open_to: dict[str, set[str]] = {}
    for policy in policies:
        target = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            if not sources:  # no `from`: any source at all
                open_to.setdefault(target, set()).add("*")
                continue
            for source in sources:
                assert set(source) == {"podSelector"}, f"{target}: only pods of this namespace"
                open_to.setdefault(target, set()).add(
                    source["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                )
    assert {t for t, s in open_to.items() if "*" in s} == {"apisix"}
    # each service is reached by the gateway or by the parts that need it, nothing else
    assert open_to == {
        "apisix": {"*"},
        "auth": {"apisix"},
        "memory": {"apisix"},
        "sidecar": {"apisix", "auth"},
        "casdoor": {"apisix", "sidecar", "auth", "casdoor-bootstrap"},
        "postgres": {"casdoor", "sidecar", "memory", "postgres-init"},
        "valkey": {"auth", "valkey", "valkey-init"},
    }
    # every pod is selected by some allow policy, so none relies on a missing one
    jobs = set(_by_kind(k8s_objects, "Job"))
    assert jobs == {"casdoor-bootstrap", "postgres-init", "valkey-init"}
    names = {w["metadata"]["name"] for w in _workloads(k8s_objects)} - jobs
    assert names == set(open_to)


def test_no_literal_secret_in_any_container_env(k8s_objects: list[dict[str, Any]]) -> None:
    secrets = _generated(k8s_objects, "Secret", "hanzo-secrets")
    secret_values = set(secrets.values())
    for workload in _workloads(k8s_objects):
        pod = _pod(workload)
        for container in pod["containers"] + pod.get("initContainers", []):
            for env in container.get("env", []):
                value = env.get("value", "")
                assert not any(s in value for s in secret_values), env["name"]
                if re.search(r"PASSWORD|SECRET|TOKEN", env["name"]) and "value" in env:
                    pytest.fail(f"{env['name']} is a literal, not a secretKeyRef")


def _resolve_env(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """Container env as the kubelet would set it (refs looked up, $(VAR) expanded)."""
    secrets = _generated(objects, "Secret", "hanzo-secrets")
    config = _generated(objects, "ConfigMap", "hanzo-config")
    out: dict[str, str] = {}
    for env in container.get("env", []):
        if "value" in env:
            out[env["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out.get(m[1], m[0]), env["value"])
            continue
        ref = env["valueFrom"]
        if "secretKeyRef" in ref:
            source, data = ref["secretKeyRef"], secrets
        else:
            source, data = ref["configMapKeyRef"], config
        if source["key"] in data:
            out[env["name"]] = data[source["key"]]
        else:
            assert source.get("optional") is True, env["name"]
    return out


def test_commands_and_env_match_the_services(
    k8s_objects: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    workloads = {w["metadata"]["name"]: w for w in _workloads(k8s_objects)}
    envs = {}
    for name, port in SERVICE_PORTS.items():
        (container,) = _pod(workloads[name])["containers"]
        service_env.check_command(name, container["command"], port)
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
        service_env.probe_paths_exist(name, paths)
        envs[name] = _resolve_env(container, k8s_objects)
    secrets = _generated(k8s_objects, "Secret", "hanzo-secrets")
    origin = _generated(k8s_objects, "ConfigMap", "hanzo-config")["CASDOOR_ORIGIN"]
    service_env.check_agreement(monkeypatch, envs, secrets, origin, set(VALKEY_NODES))


def test_same_settings_as_compose(k8s_objects: list[dict[str, Any]]) -> None:
    """Both deployments configure the same things; only the wiring differs."""
    compose = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())["services"]
    workloads = {w["metadata"]["name"]: w for w in _workloads(k8s_objects)}
    for name in SERVICE_PORTS:
        (container,) = _pod(workloads[name])["containers"]
        ours = {e["name"] for e in container["env"] if e["name"].startswith("HANZO_")}
        assert ours == {k for k in compose[name]["environment"] if k.startswith("HANZO_")}, name
    assert empty_keys(K8S_DIR / "secrets.env.example") == empty_keys(COMPOSE_DIR / ".env.example")
    for shared in ("casdoor/app.conf", "casdoor/init_data.template.json", "apisix/config.yaml"):
        assert (K8S_DIR / shared).read_text() == (COMPOSE_DIR / shared).read_text(), shared
    k8s_routes = yaml.safe_load((K8S_DIR / "apisix" / "apisix.yaml").read_text())
    compose_routes = yaml.safe_load((COMPOSE_DIR / "apisix" / "apisix.yaml").read_text())
    unqualified = yaml.safe_load(yaml.safe_dump(k8s_routes).replace(".hanzo.svc.cluster.local", ""))
    assert unqualified == compose_routes
    namespace = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["namespace"]
    assert namespace == "hanzo"


def test_mounted_config_is_the_repo_config(k8s_objects: list[dict[str, Any]]) -> None:
    casdoor = _generated(k8s_objects, "ConfigMap", "casdoor-config")
    assert casdoor["app.conf"] == (K8S_DIR / "casdoor" / "app.conf").read_text()
    apisix = _generated(k8s_objects, "ConfigMap", "apisix-config")
    assert yaml.safe_load(apisix["apisix.yaml"])["routes"]
    assert _generated(k8s_objects, "Secret", "hanzo-assertion").keys() == {
        "assertion.key",
        "assertion.pub",
    }


def test_topology_is_the_production_profiles(k8s_objects: list[dict[str, Any]]) -> None:
    """Two stateless replicas each of the sidecar, the plugin and memory (Deployments, no
    volume of their own); postgres-init makes their databases; a StatefulSet of three
    Valkey primaries behind a headless Service, formed into one cluster by valkey-init."""
    deployments = _by_kind(k8s_objects, "Deployment")
    for name in ("sidecar", "auth", "memory"):
        assert deployments[name]["spec"]["replicas"] == 2, name
        volumes = _pod(deployments[name]).get("volumes", [])
        assert not any("persistentVolumeClaim" in v for v in volumes), name
    stateful = _by_kind(k8s_objects, "StatefulSet")
    assert set(stateful) == {"postgres", "valkey"}
    (pg,) = _pod(stateful["postgres"])["containers"]
    assert pg["image"].startswith("pgvector/pgvector:")
    jobs = _by_kind(k8s_objects, "Job")
    (init,) = _pod(jobs["postgres-init"])["containers"]
    assert init["command"] == ["python", "-m", "hanzo_stack.deploy_databases"]
    init_env = {e["name"]: e for e in init["env"]}
    assert init_env["POSTGRES_HOST"]["value"] == "postgres"
    assert {"SIDECAR_DB_PASSWORD", "MEMORY_DB_OWNER_PASSWORD"} <= set(init_env)
    valkey = stateful["valkey"]
    assert valkey["spec"]["replicas"] == len(VALKEY_NODES)
    assert valkey["spec"]["serviceName"] == "valkey"
    service = _by_kind(k8s_objects, "Service")["valkey"]
    assert service["spec"]["clusterIP"] == "None"
    (node,) = _pod(valkey)["containers"]
    command = node["command"][-1]
    assert "--cluster-enabled yes" in command
    assert '--cluster-announce-hostname "$VALKEY_NODE"' in command
    assert {"name": "VALKEY_NODE", "value": "$(POD_NAME).valkey"} in node["env"]
    assert "requirepass" in command and "--requirepass" not in command
    (former,) = _pod(jobs["valkey-init"])["containers"]
    create = re.search(r"--cluster create ((?:\S+:6379 ?)+)", former["command"][-1])
    assert create is not None
    assert tuple(create.group(1).replace(":6379", "").split()) == VALKEY_NODES
