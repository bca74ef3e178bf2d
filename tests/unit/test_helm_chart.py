"""The Helm chart (infra/helm/poseidon) and the compose file: `helm lint`, `helm template`
validated by kubeconform against the Kubernetes schemas (helm, kubeconform and the
schemas are made by `make setup` from the Go module proxy, offline from GitHub), every
role `poseidon` knows in both, and what the chart promises per role (probes, the seed's
256 Mi, PDBs, only the Secrets a role needs, TLS). The tools missing is a failure, not
a skip: `make test` installs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from base.settings import Settings
from poseidon import bootstrap, deploy

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "infra" / "helm" / "poseidon"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
HELM = ROOT / ".stack" / "bin" / "helm"
KUBECONFORM = ROOT / ".stack" / "bin" / "kubeconform"


def tool(path: Path) -> str:
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} not found: `make setup` builds it from the Go module proxy")
    return str(path)


def schemas() -> Path:
    made = sorted(ROOT.glob(".stack/k8s-schemas/v*/.complete"))
    if not made:
        pytest.fail("no Kubernetes schemas in .stack/k8s-schemas: `make setup` makes them from the k8s.io/kubernetes module")
    return made[-1].parent


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}{done.stderr}"
    return done.stdout


def render(*values: Path, sets: tuple[str, ...] = ()) -> str:
    args = [tool(HELM), "template", "poseidon", str(CHART), "--namespace", "poseidon"]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    return run(*args)


def kubeconform(manifests: str) -> subprocess.CompletedProcess:
    """Strict (no field the schema does not know), every kind must have a schema (no -ignore-missing-schemas)."""
    location = f"{schemas()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    args = [tool(KUBECONFORM), "-strict", "-summary", "-schema-location", location, "-"]
    return subprocess.run(args, input=manifests, capture_output=True, text=True, cwd=ROOT, timeout=120)


def documents(manifests: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(manifests) if doc]


def deployments(manifests: str) -> dict[str, dict]:
    found = {}
    for doc in documents(manifests):
        if doc["kind"] == "Deployment":
            found[doc["metadata"]["labels"]["poseidon-hub.io/role"]] = doc
    return found


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(deployment).get("env", [])}


def expected_commands() -> set[tuple[str, ...]]:
    """Every long-running role, from bootstrap itself (not from poseidon.deploy's list)."""
    commands = {(role, hub) for hub in bootstrap.hubs() for role in ("processor", "projector", "grpc")}
    commands |= {("spoke", name) for name in bootstrap.spokes()}
    commands |= {("router",), ("saga-driver",), ("ingress",), ("gateway",), ("dashboard",)}
    return commands


@pytest.fixture(scope="module")
def default_chart() -> str:
    return render()


@pytest.fixture(scope="module")
def production_chart() -> str:
    return render(PRODUCTION_VALUES)


def test_the_generated_role_list_and_compose_file_are_current():
    stale = [str(path.relative_to(ROOT)) for path, text in deploy.generated().items() if path.read_text() != text]
    assert stale == [], "run `make docs` (python -m poseidon.deploy)"


def test_helm_lint_passes_with_the_default_and_the_production_values():
    assert "0 chart(s) failed" in run(tool(HELM), "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in run(tool(HELM), "lint", "--strict", str(CHART), "--values", str(PRODUCTION_VALUES))


@pytest.mark.parametrize("chart", ["default_chart", "production_chart"])
def test_the_rendered_chart_is_valid_kubernetes(chart, request):
    done = kubeconform(request.getfixturevalue(chart))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in done.stdout


def test_the_example_manifests_of_kafka_and_postgresql_are_valid_kubernetes():
    manifests = "\n---\n".join(path.read_text() for path in sorted((ROOT / "infra" / "k8s").glob("*.yaml")))
    done = kubeconform(manifests)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubeconform_refuses_a_field_kubernetes_does_not_know(default_chart):
    broken = default_chart.replace("enableServiceLinks: false", "enableServiceLink: false", 1)
    done = kubeconform(broken)
    assert done.returncode != 0 and "enableServiceLink" in done.stdout


def test_every_role_poseidon_knows_runs_in_the_chart_and_in_compose(default_chart):
    in_chart = {tuple(container(d)["args"]) for d in deployments(default_chart).values()}
    compose = yaml.safe_load(deploy.COMPOSE.read_text())
    platform = {name: s for name, s in compose["services"].items() if s.get("image") == "poseidon-hub:local" and "command" in s}
    in_compose = {tuple(service["command"]) for service in platform.values()}
    expected = expected_commands()
    assert in_chart == expected
    assert in_compose - {("topics", "create"), ("tls", "init")} == expected
    assert len(deployments(default_chart)) == len(expected)


def test_each_role_is_probed_on_its_own_ops_port_with_liveness_apart_from_readiness(default_chart):
    s = bootstrap.settings({})
    for name, deployment in deployments(default_chart).items():
        c = container(deployment)
        if name == "dashboard":
            assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
            assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
            continue
        ops = {p["name"]: p["containerPort"] for p in c["ports"]}["ops"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "ops"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": "ops"}
        role, _, rest = name.partition("-")
        if rest in ("processor", "projector", "grpc"):
            assert ops == s.ops_port_for(rest, role), name
        elif role == "spoke":
            assert ops == s.ops_port_at("spoke", bootstrap.spoke(rest).ops_index), name
        assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(ops)


def test_every_role_is_limited_to_256_mi_and_runs_non_root_on_a_read_only_root(default_chart):
    for name, deployment in deployments(default_chart).items():
        c = container(deployment)
        assert c["resources"]["limits"]["memory"] == "256Mi", name
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_roles_with_several_replicas_have_a_disruption_budget(production_chart):
    budgets = {
        d["metadata"]["labels"]["poseidon-hub.io/role"] for d in documents(production_chart) if d["kind"] == "PodDisruptionBudget"
    }
    several = {name for name, d in deployments(production_chart).items() if d["spec"]["replicas"] > 1}
    assert several and budgets == several
    assert deployments(production_chart)["wallet-grpc"]["spec"]["replicas"] == 3


def test_the_chart_holds_no_secret_and_mounts_each_key_only_where_it_is_used(default_chart):
    assert [d for d in documents(default_chart) if d["kind"] == "Secret"] == []
    chart = deployments(default_chart)
    signing = [name for name, d in chart.items() if "POSEIDON_JWT_KEYS_DIR" in env(d)]
    assert signing == ["identity-grpc"]
    assert "POSEIDON_JWT_PUBLIC_KEYS_DIR" in env(chart["gateway"]) and "POSEIDON_JWT_PUBLIC_KEYS_DIR" in env(chart["wallet-grpc"])
    sealing = sorted(name for name, d in chart.items() if "POSEIDON_CREDENTIAL_SEALING_KEYS_DIR" in env(d))
    # Where tenants' credentials are sealed (tenant, app services) or opened (the spokes using them, ingress for bot pushes).
    assert sealing == ["app-grpc", "ingress", "spoke-botpress", "spoke-facebook", "spoke-odoo", "tenant-grpc"]
    event_secrets = {
        v["secret"]["secretName"]
        for v in chart["wallet-processor"]["spec"]["template"]["spec"]["volumes"]
        if v["name"].startswith("event-keys")
    }
    assert event_secrets == {"poseidon-event-keys-wallet"}
    for name, deployment in chart.items():
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["settings"]["secret"]["secretName"] == "poseidon-settings", name


def test_grpc_tls_and_mutual_tls_mount_certificates_and_clients_reach_the_hubs_through_one_service(production_chart):
    chart = deployments(production_chart)
    server, gateway = env(chart["wallet-grpc"]), env(chart["gateway"])
    assert server["POSEIDON_TLS_CERT"].endswith("/tls/tls.crt") and server["POSEIDON_TLS_CA"].endswith("/tls/ca.crt")
    assert gateway["POSEIDON_TLS_CLIENT_CERT"].endswith("/tls-client/tls.crt")
    assert gateway["POSEIDON_GRPC_HOST"] == "poseidon-grpc"
    settings = next(d for d in documents(production_chart) if d["kind"] == "ConfigMap")["data"]
    assert settings["POSEIDON_GRPC_TLS"] == "true" and settings["POSEIDON_GRPC_MTLS"] == "true"
    service = next(d for d in documents(production_chart) if d["kind"] == "Service" and d["metadata"]["name"] == "poseidon-grpc")
    ports = {p["port"] for p in service["spec"]["ports"]}
    assert ports == {Settings().with_topology(bootstrap.hubs().values()).grpc_port(hub) for hub in bootstrap.hubs()}
    for hub in bootstrap.hubs():
        names = {p["name"] for p in container(chart[f"{hub}-grpc"])["ports"]}
        assert f"grpc-{hub}" in names


def test_kafka_and_postgresql_are_endpoints_of_the_installation(default_chart):
    settings = next(d for d in documents(default_chart) if d["kind"] == "ConfigMap")["data"]
    assert "kafka-0.kafka-headless" in settings["POSEIDON_KAFKA_BOOTSTRAP"]
    assert "POSEIDON_PG_DSN" not in settings  # a DSN holds a password: the settings Secret has it
    other = render(sets=("kafka.bootstrap=broker-a:9092\\,broker-b:9092",))
    settings = next(d for d in documents(other) if d["kind"] == "ConfigMap")["data"]
    assert settings["POSEIDON_KAFKA_BOOTSTRAP"] == "broker-a:9092,broker-b:9092"
