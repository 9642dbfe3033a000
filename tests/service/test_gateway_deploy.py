"""deploy/: Docker is not available to CI, so the manifests are checked as data: each YAML
file parses, pods run as a non-root user with no privilege escalation, the HPA scales the
service Deployment on CPU, the key comes from a secret reference and never as a literal,
the environment variables set are ones the service reads, and the Dockerfile installs
through .ci/install, the script CI runs, pinned by deploy/constraints.txt."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _docs(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / rel).read_text()) if d]


def _k8s() -> list[dict]:
    return [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in _docs(f"k8s/{f.name}")]


def _workloads() -> list[dict]:
    return [d for d in _k8s() if d["kind"] in ("Deployment", "StatefulSet")]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_yaml_parses() -> None:
    files = sorted(DEPLOY.rglob("*.y*ml"))
    assert {f.relative_to(DEPLOY).as_posix() for f in files} >= {
        "docker-compose.yml", "k8s/service.yaml", "k8s/dask.yaml", "k8s/gateway.yaml", "cloudrun/service.yaml"}
    for f in files:
        assert [d for d in yaml.safe_load_all(f.read_text()) if d], f


def test_pods_run_unprivileged() -> None:
    workloads = _workloads()
    assert {w["metadata"]["name"] for w in workloads} == {
        "phiscrub", "phiscrub-dask-scheduler", "phiscrub-dask-worker", "phiscrub-gateway"}
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, w["metadata"]["name"]
        for c in pod["containers"]:
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False and csc["readOnlyRootFilesystem"] is True
            assert csc["capabilities"]["drop"] == ["ALL"]
            assert not c["image"].endswith(":latest") and ":" in c["image"]
            assert "memory" in c["resources"]["limits"]


def test_hpa_scales_the_service_on_cpu() -> None:
    docs = _k8s()
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    deployment = next(d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"])
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # a CPU utilisation target needs a CPU request to be measured against
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "phiscrub")
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_key_only_by_secret_reference() -> None:
    """Service and gateway read PHISCRUB_KEY from the phiscrub-key Secret; no manifest
    anywhere holds a literal key value."""
    by_name = {w["metadata"]["name"]: w for w in _workloads()}
    for name in ("phiscrub", "phiscrub-gateway"):
        (c,) = by_name[name]["spec"]["template"]["spec"]["containers"]
        ref = _env(c)["PHISCRUB_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "phiscrub-key", "key": "key"}
    for f in DEPLOY.rglob("*.y*ml"):
        for d in yaml.safe_load_all(f.read_text()):
            for e in _walk_env(d):
                if e.get("name") in ("PHISCRUB_KEY", "PHISCRUB_SERVE_TOKENS", "PHISCRUB_BROKER_KEY"):
                    assert "value" not in e and "valueFrom" in e, f
    compose = _docs("docker-compose.yml")[0]
    assert compose["secrets"]["phiscrub_key"] == {"file": "./secrets/phiscrub.key"}
    assert compose["services"]["phiscrub"]["environment"]["PHISCRUB_KEY_FILE"] == "/run/secrets/phiscrub_key"
    assert not any("PHISCRUB_KEY" == k for s in compose["services"].values() for k in (s.get("environment") or {}))


def _walk_env(node):
    if isinstance(node, dict):
        if isinstance(node.get("env"), list):
            yield from (e for e in node["env"] if isinstance(e, dict))
        for v in node.values():
            yield from _walk_env(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_env(v)


def test_dask_workers_reach_the_scheduler_service() -> None:
    docs = _docs("k8s/dask.yaml")
    sched = next(d for d in docs if d["metadata"]["name"] == "phiscrub-dask-scheduler" and d["kind"] == "Deployment")
    svc = next(d for d in docs if d["metadata"]["name"] == "phiscrub-dask-scheduler" and d["kind"] == "Service")
    worker = next(d for d in docs if d["metadata"]["name"] == "phiscrub-dask-worker")
    assert sched["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["dask", "scheduler"]
    assert svc["spec"]["selector"] == sched["spec"]["selector"]["matchLabels"]
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "comm")
    cmd = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:2] == ["dask", "worker"] and f"tcp://phiscrub-dask-scheduler:{port}" in cmd


def test_cloud_run_service() -> None:
    (svc,) = _docs("cloudrun/service.yaml")
    assert svc["apiVersion"] == "serving.knative.dev/v1" and svc["kind"] == "Service"
    assert svc["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    spec = svc["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    env = _env(c)
    assert env["PHISCRUB_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "phiscrub-key", "key": "latest"}
    assert c["ports"][0]["containerPort"] == 8080 and c["args"] == ["serve"]
    # every PHISCRUB_SERVE_* set here is one the service reads
    settings = (ROOT / "src/phiscrub/service/settings.py").read_text()
    read = set(re.findall(r'_env\("([A-Z_]+)"', settings)) | set(re.findall(r'_int\("([A-Z_]+)"', settings))
    read |= set(re.findall(r'envvar="PHISCRUB_SERVE_([A-Z_]+)"', (ROOT / "src/phiscrub/cli_service.py").read_text()))
    for name in env:
        if name.startswith("PHISCRUB_SERVE_"):
            assert name[len("PHISCRUB_SERVE_"):] in read, name


def test_compose_stack() -> None:
    compose = _docs("docker-compose.yml")[0]
    services = compose["services"]
    assert set(services) >= {"phiscrub", "gateway", "orthanc", "gcs", "s3"}
    for name in ("phiscrub", "gateway"):
        s = services[name]
        assert s["build"]["dockerfile"] == "deploy/Dockerfile" and s["user"] == "10001:10001" and s["read_only"] is True
    assert services["phiscrub"]["command"] == ["serve"]
    gw = services["gateway"]["command"]
    assert gw[0] == "gateway" and "--allow" in gw and gw[gw.index("--forward") + 1] == "dicom://ORTHANC@orthanc:4242"
    assert services["orthanc"]["environment"]["ORTHANC__DICOM_WEB__ENABLE"] == "true"
    assert all(":" in services[s]["image"] and not services[s]["image"].endswith(":latest") for s in ("orthanc", "gcs", "s3"))


def test_dockerfile_installs_through_the_ci_script() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    base = next(ln for ln in lines if ln.startswith("FROM "))
    assert re.match(r"FROM python:3\.11\.\d+-slim-\w+$", base)  # a pinned base, not :latest
    runs = " ".join(ln for ln in lines if ln.startswith("RUN"))
    assert "bash .ci/install runtime" in runs
    assert "COPY deploy/constraints.txt ./deploy/constraints.txt" in lines and "COPY .ci/install ./.ci/install" in lines
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert lines.index(next(ln for ln in lines if ln.startswith("USER "))) > lines.index(next(ln for ln in lines if ln.startswith("RUN")))
    ci_run = (ROOT / ".ci/run").read_text()
    assert "bash .ci/install\n" in ci_run  # CI installs with the very same script
    install = (ROOT / ".ci/install").read_text()
    assert install.count("-c deploy/constraints.txt") == 2  # both modes pinned


def test_constraints_pin_every_dependency() -> None:
    """Each direct dependency (and the test extra) is pinned, at a version its range allows;
    run `python deploy/lock.py` after changing pyproject.toml."""
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and re.match(r"^[A-Za-z0-9._-]+$", name), line
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in pins:
            pytest.fail(f"{req.name} is not pinned in deploy/constraints.txt: run python deploy/lock.py")
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is outside {req.specifier}"
