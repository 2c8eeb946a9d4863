"""The deploy files hold together: Kubernetes manifests pass the API schemas, the compose file the
Compose Specification, and every alert, dashboard and autoscaling query names metrics the worker
really exports (a live ``WorkerMetrics`` registry). Offline: the schemas are local files."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import Metric
from prometheus_client.metrics import MetricWrapperBase

from streams.metrics import WorkerMetrics
from streams.settings import unknown_variables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = ROOT / "tests" / "fixtures" / "schemas"
#: The oldest Kubernetes the manifests support, and the newest the installed schemas know.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
#: Series Prometheus makes itself (not in the worker's registry).
PROMETHEUS_SERIES = {"up"}
#: Labels Prometheus or the scrape jobs attach, and histograms' bucket label.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "component", "le"}
_SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("", "_sum", "_count", "_created"), "info": ("_info",), "gauge": ("",)}
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan", "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
    "count_values", "bottomk", "topk", "quantile",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_docs() -> dict[str, dict[str, Any]]:
    """``kind/name`` → manifest, for every resource under deploy/k8s."""
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def metric_families() -> list[Metric]:
    metrics = WorkerMetrics()
    metrics.set_model("v1", 8)
    return list(metrics.registry.collect())


def exported_names() -> set[str]:
    """Every sample name the worker's registry can export (labelled metrics included, unset or not)."""
    return {family.name + suffix for family in metric_families()
            for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",))}


def exported_labels() -> set[str]:
    metrics = WorkerMetrics()
    labels = {name for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
              for name in value._labelnames}  # prometheus_client keeps them there
    return labels | TARGET_LABELS | {k for family in metric_families() for s in family.samples for k in s.labels}


def promql_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (strings, label matchers, ranges, groupings and
    function or aggregation names removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end():].lstrip()[:1]
        if before.isdigit() or before in ".$" or after == "(" or match.group() in _PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def promql_grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
            for label in group.split(",") if label.strip()}


def check_expression(expr: str, known: set[str], labels: set[str]) -> None:
    names = promql_metrics(expr)
    assert names, f"no metric in {expr!r}"
    assert names <= known | PROMETHEUS_SERIES, f"unknown metrics {names - known} in {expr!r}"
    unknown_labels = promql_grouping_labels(expr) - labels
    assert not unknown_labels, f"unknown labels {unknown_labels} in {expr!r}"


def shell_syntax_ok(script: str) -> None:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh to check the script's syntax")
    result = subprocess.run([sh, "-n", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- the expression checker itself ------------------------------------------------------------

def test_promql_metric_extraction_skips_functions_labels_ranges_and_numbers() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(unistate_event_to_redis_seconds_bucket'
            '{job="w"}[$__rate_interval]))) > 1e-9 and on(instance) up == 0')
    assert promql_metrics(expr) == {"unistate_event_to_redis_seconds_bucket", "up"}
    known, labels = exported_names(), exported_labels()
    with pytest.raises(AssertionError, match="unknown metrics"):
        check_expression("sum(rate(unistate_events_consumd_total[5m]))", known, labels)
    with pytest.raises(AssertionError, match="unknown labels"):
        check_expression("sum by (senario) (rate(unistate_events_consumed_total[5m]))", known, labels)


def test_the_registry_exports_the_new_operational_metrics() -> None:
    names = exported_names()
    assert {"unistate_consumer_lag", "unistate_model_info", "process_cpu_seconds_total",
            "process_resident_memory_bytes", "python_info"} <= names


# --- Kubernetes -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_kubernetes_manifest_passes_the_api_schema(version: str) -> None:
    docs = k8s_docs()
    assert {k.split("/")[0] for k in docs} >= {"ConfigMap", "Secret", "Deployment", "Job", "Service",
                                               "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for key, doc in docs.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key}: {exc}")
    broken = copy.deepcopy(docs["Deployment/unistate-worker-cpu"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_manifests_are_namespace_agnostic_and_all_in_the_kustomization() -> None:
    for key, doc in k8s_docs().items():
        assert "namespace" not in doc["metadata"], key
    listed = load_yaml(K8S / "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_every_setting_in_the_configmap_and_pod_env_is_one_the_worker_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = k8s_docs()
    names = set(docs["ConfigMap/unistate-config"]["data"])
    for doc in docs.values():
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        names |= {e["name"] for c in pod.get("containers", []) for e in c.get("env", [])
                  if e["name"].startswith("UNISTATE_")}
    names |= {line.split("=", 1)[0] for line in (DEPLOY / "worker.env").read_text().splitlines()
              if line and not line.startswith("#")}
    for name in names:
        monkeypatch.setenv(name, "1")
    assert unknown_variables() == []
    monkeypatch.setenv("UNISTATE_WORKER_METRICS_PRT", "1")
    assert unknown_variables() == ["UNISTATE_WORKER_METRICS_PRT (did you mean UNISTATE_WORKER_METRICS_PORT?)"]


def test_worker_deployments_probe_health_and_readiness_on_the_metrics_port() -> None:
    docs = k8s_docs()
    port = int(docs["ConfigMap/unistate-config"]["data"]["UNISTATE_WORKER_METRICS_PORT"])
    workers = [d for d in docs.values() if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in workers} == {"unistate-worker-cpu", "unistate-worker-gpu"}
    for deployment in workers:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
        probes = {kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
                  for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {"startupProbe": ("/healthz", "metrics"), "livenessProbe": ("/healthz", "metrics"),
                          "readinessProbe": ("/readyz", "metrics")}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert {next(iter(ref.values()))["name"] for ref in container["envFrom"]} == {
            "unistate-config", "unistate-secrets"}
        assert set(deployment["spec"]["selector"]["matchLabels"].items()) <= set(
            deployment["spec"]["template"]["metadata"]["labels"].items())
        # The grace period covers the producer's flush limit of a last batch.
        assert pod["terminationGracePeriodSeconds"] > 30


def test_gpu_worker_asks_for_a_gpu_node_and_the_cuda_provider() -> None:
    pod = k8s_docs()["Deployment/unistate-worker-gpu"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["UNISTATE_MODEL_PROVIDERS"])[0] == "CUDAExecutionProvider"


def test_pdb_and_service_select_every_worker_and_nothing_else() -> None:
    docs = k8s_docs()
    pod_labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in docs.items()
                  if d["kind"] in ("Deployment", "Job")}
    pdb = docs["PodDisruptionBudget/unistate-worker"]["spec"]["selector"]["matchLabels"]
    service = docs["Service/unistate-worker-metrics"]["spec"]
    for selector in (pdb, service["selector"]):
        selected = {n for n, labels in pod_labels.items() if selector.items() <= labels.items()}
        assert selected == {"Deployment/unistate-worker-cpu", "Deployment/unistate-worker-gpu"}
    assert service["ports"][0]["targetPort"] == "metrics"


def test_hpa_scales_the_cpu_workers_on_the_adapters_lag_metric() -> None:
    docs = k8s_docs()
    hpa = docs["HorizontalPodAutoscaler/unistate-worker-cpu"]["spec"]
    assert f"Deployment/{hpa['scaleTargetRef']['name']}" in docs
    (metric,) = hpa["metrics"]
    (rule,) = load_yaml(DEPLOY / "prometheus" / "adapter-rules.yaml")["externalRules"]
    assert metric["external"]["metric"]["name"] == rule["name"]["as"]
    check_expression(rule["seriesQuery"], exported_names(), exported_labels())
    assert "namespace" in rule["resources"]["overrides"]
    # More workers than partitions would sit idle.
    job = docs["Job/unistate-topics"]["spec"]["template"]["spec"]["containers"][0]
    partitions = int({e["name"]: e["value"] for e in job["env"]}["PARTITIONS"])
    assert hpa["minReplicas"] <= hpa["maxReplicas"] <= partitions


def test_topics_job_script_is_valid_shell_and_retries_only_broker_trouble() -> None:
    container = k8s_docs()["Job/unistate-topics"]["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert "unistate topics create" in script and "[ $rc -ne 1 ] && exit $rc" in script
    shell_syntax_ok(script)


# --- docker compose ---------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "docker-compose.yml")


def test_compose_file_passes_the_compose_specification() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    doc = compose()
    assert list(validator.iter_errors(doc)) == []
    doc["services"]["worker"]["depends_on"]["redis"]["condition"] = "healthy"
    assert list(validator.iter_errors(doc)), "the schema must refuse an unknown depends_on condition"


def test_compose_starts_each_service_after_what_it_needs_is_healthy_or_done() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dep, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert services[dep]["restart"] == "no", f"{dep} must be one-shot"
        expected = "no" if name == "topics" else ("on-failure", "unless-stopped", "always")
        assert services[name].get("restart") in expected, name
    assert services["worker"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
        "topics": {"condition": "service_completed_successfully"}}


def test_compose_worker_healthcheck_asks_healthz_and_readyz_with_python() -> None:
    services = compose()["services"]
    env = dict(line.split("=", 1) for line in (DEPLOY / "worker.env").read_text().splitlines()
               if line and not line.startswith("#"))
    test = services["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"]
    code = test[3]
    port = env["UNISTATE_WORKER_METRICS_PORT"]
    assert f"http://127.0.0.1:{port}/" in code and "'healthz'" in code and "'readyz'" in code
    compile(code, "healthcheck", "exec")  # valid Python
    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    assert str(job["dns_sd_configs"][0]["port"]) == port
    assert job["dns_sd_configs"][0]["names"] == ["worker"]


def test_compose_redis_is_bounded_with_an_eviction_policy() -> None:
    command = compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert re.fullmatch(r"\d+(kb|mb|gb)", options["--maxmemory"])
    assert options["--maxmemory-policy"] in {"volatile-ttl", "volatile-lru", "allkeys-lru"}


def test_compose_topics_job_script_is_valid_shell() -> None:
    topics = compose()["services"]["topics"]
    assert topics["entrypoint"] == ["/bin/sh", "-c"]
    shell_syntax_ok(topics["command"][0].replace("$$", "$"))  # compose unescapes $$


# --- Prometheus -------------------------------------------------------------------------------

def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_pass_the_rule_file_schema() -> None:
    schema = json.loads((SCHEMAS / "prometheus-rules.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    doc = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    assert list(validator.iter_errors(doc)) == []
    broken = copy.deepcopy(doc)
    broken["groups"][0]["rules"][0]["for"] = "two minutes"
    assert list(validator.iter_errors(broken))


def test_every_alert_queries_exported_metrics_and_says_what_to_do() -> None:
    known, labels = exported_names(), exported_labels()
    rules = alert_rules()
    for rule in rules:
        check_expression(rule["expr"], known, labels)
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    watched = set().union(*(promql_metrics(r["expr"]) for r in rules))
    assert {"up", "unistate_consumer_lag", "unistate_event_to_redis_seconds_bucket",
            "unistate_dead_letters_total", "unistate_publish_refused_total"} <= watched
    runbook = (ROOT / "docs" / "operations.md").read_text()
    assert [r["alert"] for r in rules if r["alert"] not in runbook] == []


def test_prometheus_configs_scrape_the_workers_and_load_the_rules() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert {"global", "rule_files", "scrape_configs"} <= set(config)
    for rule_file in config["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).is_file()
    k8s = load_yaml(DEPLOY / "prometheus" / "scrape-kubernetes.yml")
    jobs = [job["job_name"] for job in config["scrape_configs"] + k8s["scrape_configs"]]
    assert jobs == ["unistate-worker", "unistate-worker"]  # the alerts and dashboard select on it
    keep = k8s["scrape_configs"][0]["relabel_configs"][0]
    service = k8s_docs()["Service/unistate-worker-metrics"]
    assert keep["regex"] == f"{service['metadata']['name']};{service['spec']['ports'][0]['name']}"
    assert {r["target_label"] for r in k8s["scrape_configs"][0]["relabel_configs"][1:]} <= TARGET_LABELS


# --- Grafana ----------------------------------------------------------------------------------

def test_dashboard_panels_query_exported_metrics_and_cover_the_essentials() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "unistate.json").read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    known, labels = exported_names(), exported_labels()
    cells: set[tuple[int, int]] = set()
    queried: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            check_expression(target["expr"], known, labels)
            queried |= promql_metrics(target["expr"])
        assert panel["datasource"]["uid"] == "${datasource}"
    assert {"unistate_events_consumed_total", "unistate_users_updated_total", "unistate_consumer_lag",
            "unistate_event_to_redis_seconds_bucket", "unistate_dead_letters_total",
            "unistate_publish_refused_total", "unistate_cached_users"} <= queried


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"])
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "unistate.yml")["providers"][0]
    dashboard_mount = mounts["./grafana/unistate.json"]
    assert Path(dashboard_mount).parent == Path(provider["options"]["path"])
    (source,) = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http://prometheus:")
