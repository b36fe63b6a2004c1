"""The shipped observability: Prometheus scrape config and alert rules, Grafana dashboard.

Fast checks need only promtool: the config and the rules pass ``promtool check``, the rules'
unit tests pass ``promtool test rules``, every alert is unit-tested and documented, and the
dashboard JSON has what Grafana needs to provision and import it (schema version, unique
panel ids, a grid position each, the provisioned datasource uid everywhere).

The broker test runs the real thing: a tiny model, the daemon in-process fed at 1 Hz through
a real Mosquitto, and Debian's ``prometheus`` on a free loopback port scraping it every
second with the shipped rules loaded. Every dashboard query and every rule expression then
goes through Prometheus's HTTP API. A dashboard query must return series: a panel showing
"no data" on a healthy daemon is a bug. An alert condition is empty while all is well, so a
rule must parse, evaluate without error in the server, and every metric selector in it, and
the condition with its final comparison removed, must return series.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from aewatch.cli import main
from aewatch.config import Config, load_config
from aewatch.daemon.service import Daemon
from tests.polling import wait_until

from .conftest import Broker

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy/prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules/aewatch.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests/aewatch.rules.test.yml"
GRAFANA_DIR = REPO / "deploy/grafana"
DASHBOARD = GRAFANA_DIR / "dashboards/aewatch.json"
DATASOURCES = GRAFANA_DIR / "provisioning/datasources/aewatch.yaml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning/dashboards/aewatch.yaml"
METRICS_DOC = REPO / "docs/metrics.md"
ALERTMANAGER_CONFIG = REPO / "deploy/alertmanager/alertmanager.yml"

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: Debian's prometheus package (make setup)"
)
needs_amtool = pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool missing: Debian's prometheus-alertmanager package (make setup-test)",
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: Debian's prometheus package (make setup)"
)

GRAFANA_SCHEMA_VERSION = 39
GRID_COLUMNS = 24
# Panel types that ship with Grafana (no plugin to install).
GRAFANA_PANEL_TYPES = {"row", "stat", "timeseries", "table", "heatmap", "bargauge", "gauge", "text"}
# What Grafana substitutes itself; the test gives each a value fit for a 1 s scrape.
GRAFANA_BUILTINS = {"$__rate_interval": "10s", "$__interval": "1s", "$__range": "1m"}
# The dashboard's variables as Grafana fills them with "All" (allValue) or the one job.
VARIABLE_VALUES = {"$job": "aewatch", "$instance": ".+", "$asset": ".+"}
MULTI_VALUE_VARIABLES = ("instance", "asset")

CHANNELS = ("flow_kg_s", "whp_bar", "wht_c", "vibration_mm_s")
ASSETS = ("well-1", "well-2", "well-3")
# Sent at once on start. An asset's first grid slot waits for a complete slot more than
# limits.max_late_s (30 s) later, so a backlog longer than that plus a window (10 samples)
# gives scored windows at once, not half a minute later.
BACKLOG_S = 45
SCRAPES = 8  # scrapes seen before the queries run
WAIT_S = 60.0


# -- fast checks: promtool and the files themselves --------------------------------------


@needs_promtool
def test_prometheus_config_and_rules_pass_promtool_check() -> None:
    config = _promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert RULES.name in config, "rule_files does not pick up the rules:\n" + config
    _promtool("check", "rules", str(RULES))


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    _promtool("test", "rules", str(RULE_TESTS))


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "AewatchAssetAnomaly", "site": "rotokawa"}, "rotokawa-on-call"),
        ({"alertname": "AewatchAssetAnomaly", "site": "mine"}, "plant-operators"),
        ({"alertname": "AewatchDaemonDown", "severity": "critical"}, "aewatch-ops-page"),
        ({"alertname": "AewatchQueueFilling", "severity": "warning"}, "aewatch-ops-ticket"),
    ],
)
def test_alertmanager_example_routes_anomalies_by_site(
    labels: dict[str, str], receiver: str
) -> None:
    assert AMTOOL is not None
    checked = subprocess.run(
        [AMTOOL, "check-config", str(ALERTMANAGER_CONFIG)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routed = subprocess.run(
        [
            AMTOOL,
            "config",
            "routes",
            "test",
            f"--config.file={ALERTMANAGER_CONFIG}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == [receiver], routed.stdout


def test_the_anomaly_route_groups_by_the_site_the_rule_sets() -> None:
    route = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["route"]
    (anomalies,) = [
        r for r in route["routes"] if 'alertname="AewatchAssetAnomaly"' in r["matchers"]
    ]
    assert anomalies["group_by"] == ["site"]
    (rule,) = [r for r in _alert_rules() if r["alert"] == "AewatchAssetAnomaly"]
    assert '"site"' in rule["expr"], "the rule must set the label the route groups by"


def test_every_alert_fires_in_a_unit_test_and_is_documented() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    anchors = _anchors(METRICS_DOC.read_text())
    for rule in _alert_rules():
        name = rule["alert"]
        assert name in fired, f"{name}: no unit test in {RULE_TESTS.name} sees it fire"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/metrics.md#{name.lower()}", name
        assert name.lower() in anchors, f"{name}: no section ### {name} in docs/metrics.md"


def test_dashboard_has_what_grafana_needs() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] == GRAFANA_SCHEMA_VERSION
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard["title"]
    # Importable into any Grafana: no database id of the instance it came from.
    assert dashboard.get("id") is None
    panels = list(_all_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"panel ids repeat: {sorted(ids)}"
    _assert_grid_tiles(dashboard["panels"])
    uid = _datasource_uid()
    for p in panels:
        assert p["type"] in GRAFANA_PANEL_TYPES, f"panel {p['id']}: type {p['type']}"
        assert p.get("title"), f"panel {p['id']} has no title"
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], p["title"]
            assert t["expr"].strip(), p["title"]
    variables = dashboard["templating"]["list"]
    for v in variables:
        assert v["datasource"] == {"type": "prometheus", "uid": uid}, v["name"]
    assert {f"${v['name']}" for v in variables} == set(VARIABLE_VALUES)
    for expr in _dashboard_exprs(dashboard):
        used = set(re.findall(r"\$\w+", expr))
        assert used <= set(VARIABLE_VALUES) | set(GRAFANA_BUILTINS), expr
        for name in MULTI_VALUE_VARIABLES:
            # Grafana writes several values (or All) as a regex: only =~ matches them.
            assert not re.search(rf'[^~]="\${name}"', expr), expr


def test_grafana_provisioning_points_at_the_dashboard_and_the_datasource() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http")
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()
    assert json.loads(DASHBOARD.read_text())["uid"]


# -- the real thing: daemon, broker, Prometheus -----------------------------------------


@dataclass(frozen=True)
class Model:
    """A trained bundle (1 s period) and the first normal rows it was trained on."""

    bundle: Path
    rows: list[dict[str, float]]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """Simulate an hour of a well at 1 s and train the default (pca) model on it."""
    folder = tmp_path_factory.mktemp("observability-model")
    data, bundle = folder / "well.csv", folder / "well.aew"
    simulate = ["simulate", "--scenario", "well", "--hours", "1", "--period", "1"]
    assert main([*simulate, "--seed", "1", "--out", str(data)]) == 0
    train = ["train", "--data", str(data), "--out", str(bundle), "--name", "well"]
    assert main([*train, "--quiet"]) == 0
    with data.open(newline="") as fh:
        rows = list(itertools.islice(csv.DictReader(fh), 600))
    return Model(bundle, [{c: float(row[c]) for c in CHANNELS} for row in rows])


@pytest.mark.broker
@needs_prometheus
def test_prometheus_runs_every_dashboard_query_and_rule_against_a_live_daemon(
    broker: Broker, model: Model, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    config = load_config(_daemon_config(tmp_path, broker, model, prefix), environ={})
    with _running(config) as daemon, _feed(broker, model, prefix) as feed:
        assert daemon.status_server is not None
        target = f"127.0.0.1:{daemon.status_server.port}"
        _wait_until(lambda: daemon.pipeline.counts.windows > 0, "the first windows scored")
        with _prometheus(tmp_path / "prometheus", target) as api:
            _wait_until(lambda: _has_scraped(api), f"{SCRAPES} scrapes of a busy daemon")
            exposition = _get(f"http://{target}/metrics")
            problems = [
                *_dashboard_problems(api),
                *_rule_problems(api),
                *_asset_gauge_problems(api),
                *_documentation_problems(exposition),
            ]
        assert feed.errors == []
    assert problems == [], "\n".join(problems)


def _dashboard_problems(api: PrometheusApi) -> list[str]:
    """Every panel query and variable query of the dashboard, with what is wrong with it."""
    dashboard = json.loads(DASHBOARD.read_text())
    problems = []
    for p in _all_panels(dashboard):
        for t in p.get("targets", []):
            expr = _grafana_substituted(t["expr"])
            result = api.query(expr)
            if result.error or not result.series:
                problems.append(f"panel {p['title']!r} {t['refId']}: {result.why} for {expr}")
    for v in dashboard["templating"]["list"]:
        # label_values(SELECTOR, LABEL) is Grafana's; it lists LABEL over SELECTOR's series.
        found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", v["definition"])
        assert found, v["definition"]
        selector, label = _grafana_substituted(found[1]), found[2]
        result = api.query(selector)
        if result.error or not any(label in s["metric"] for s in result.series):
            problems.append(f"variable ${v['name']}: {result.why} or no {label} in {selector}")
    # The live feed shows up as traffic, not as zero-valued series.
    for what, expr in {
        "readings/s": "sum(rate(aewatch_readings_aligned_total[10s]))",
        "windows/s": "sum(rate(aewatch_windows_scored_total[10s]))",
        "p50 decision latency": "histogram_quantile(0.5, sum by (le) "
        "(rate(aewatch_decision_latency_seconds_bucket[10s])))",
    }.items():
        values = [float(s["value"][1]) for s in api.query(expr).series]
        if not (values and all(math.isfinite(x) and x > 0 for x in values)):
            problems.append(f"{what}: expected a positive value from the feed, got {values}")
    return problems


def _rule_problems(api: PrometheusApi) -> list[str]:
    """Each rule: evaluates in the test, is healthy in the server, and its parts have data.

    The full condition is usually empty (healthy daemon). What must not be empty: each
    metric selector it reads (a misspelt name or label value returns nothing, silently
    disarming the rule), and the condition without its final ``OP NUMBER`` comparison.
    """
    problems = []
    health = {r["name"]: r for group in api.rules() for r in group["rules"]}
    for rule in _alert_rules():
        name, expr = rule["alert"], rule["expr"].strip()
        state = health.get(name)
        if state is None or state["health"] != "ok" or state.get("lastError"):
            problems.append(f"rule {name}: not healthy in Prometheus: {state}")
        if (result := api.query(expr)).error:
            problems.append(f"rule {name}: {result.why}")
        for selector in _selectors(expr):
            if not (result := api.query(selector)).series:
                problems.append(f"rule {name}: {result.why} for its selector {selector}")
        if comparison := _FINAL_COMPARISON.fullmatch(expr):
            inner = comparison["inner"]
            if not (result := api.query(inner)).series:
                problems.append(f"rule {name}: {result.why} without its comparison: {inner}")
    return problems


def _asset_gauge_problems(api: PrometheusApi) -> list[str]:
    """The per-asset gauges: one series per fed asset, and severity never below the ratio.

    Severity is the worst of score / threshold and the channel checks' ratios, so it is at
    least score / threshold; the three come from the same scrape, so the check is exact but
    for float32 rounding.
    """
    problems = []
    for name in ("aewatch_asset_score", "aewatch_asset_threshold", "aewatch_asset_severity"):
        assets = sorted(s["metric"].get("asset", "") for s in api.query(name).series)
        if assets != sorted(ASSETS):
            problems.append(f"{name}: series for {assets}, expected one for each of {ASSETS}")
    below = "aewatch_asset_severity < 0.9999 * aewatch_asset_score / aewatch_asset_threshold"
    if (result := api.query(below)).error or result.series:
        problems.append(f"severity below score / threshold: {result.why}: {result.series}")
    return problems


def _documentation_problems(exposition: str) -> list[str]:
    """aewatch metric families exported but not in docs/metrics.md's tables, and back;
    and, for each, labels (and enumerated label values) other than the table says."""
    exported: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name.startswith("aewatch_"):
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            labels = exported.setdefault(family.name + suffix, {})
            for sample in family.samples:
                for label, value in sample.labels.items():
                    labels.setdefault(label, set()).add(value)
    documented = _documented_labels(METRICS_DOC.read_text())
    problems = [f"{name} is exported but not documented" for name in exported.keys() - documented]
    problems += [f"{name} is documented but not exported" for name in documented - exported.keys()]
    for name in exported.keys() & documented.keys():
        labels, listed = exported[name], documented[name]
        if labels.keys() != listed.keys():
            problems.append(
                f"{name}: exported labels {sorted(labels)}, documented {sorted(listed)}"
            )
            continue
        for label, values in listed.items():
            if values and labels[label] != values:
                problems.append(f"{name}{{{label}}}: exported {labels[label]}, documented {values}")
    return problems


def _documented_labels(markdown: str) -> dict[str, dict[str, set[str]]]:
    """Each metric of the page's tables: its labels, with their values where listed.

    A labels cell names labels in backticks, or one label, a colon and every value it takes
    in backticks; an empty value set means the values are not listed.
    """
    found: dict[str, dict[str, set[str]]] = {}
    for name, cell in re.findall(r"^\| `(aewatch_\w+)` \|[^|]*\|([^|]*)\|", markdown, re.MULTILINE):
        names, _, values = cell.partition(":")
        listed = set(re.findall(r"`(\w+)`", values))
        found[name] = {label: listed for label in re.findall(r"`(\w+)`", names)}
    return found


# -- Prometheus ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """One instant query's series, or why it failed."""

    series: list[dict[str, Any]]
    error: str | None = None

    @property
    def why(self) -> str:
        return self.error or ("no series" if not self.series else "ok")


@dataclass(frozen=True)
class PrometheusApi:
    """The HTTP API of a Prometheus on ``url``."""

    url: str

    def query(self, expr: str) -> QueryResult:
        """Evaluate ``expr`` now: the instant vector, or the server's error."""
        try:
            body = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        except urllib.error.HTTPError as err:  # 400 (bad query) or 422 (evaluation failed)
            with err:
                reply = json.loads(err.read())
            return QueryResult([], f"{reply['errorType']}: {reply['error']}")
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        data = reply["data"]
        if data["resultType"] == "scalar":
            return QueryResult([{"metric": {}, "value": data["result"]}])
        return QueryResult(data["result"])

    def rules(self) -> list[dict[str, Any]]:
        """The rule groups the server loaded, with each rule's health."""
        groups: list[dict[str, Any]] = json.loads(_get(f"{self.url}/api/v1/rules"))["data"][
            "groups"
        ]
        return groups


@contextmanager
def _prometheus(folder: Path, target: str) -> Iterator[PrometheusApi]:
    """Debian's prometheus scraping ``target`` every second with the shipped rules loaded.

    The configuration is the shipped one with the intervals shortened, the rule paths made
    absolute, the target replaced and no Alertmanager; the data goes to ``folder``.
    """
    assert PROMETHEUS is not None
    folder.mkdir()
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    config.pop("alerting", None)
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port, log = _free_port(), folder / "prometheus.log"
    command = [
        PROMETHEUS,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        api = PrometheusApi(f"http://127.0.0.1:{port}")

        def is_ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited: {log.read_text()[-2000:]}")
            try:
                _get(f"{api.url}/-/ready", timeout_s=1.0)
            except OSError:  # not listening yet, or 503 while it replays its (empty) WAL
                return False
            return True

        _wait_until(is_ready, "prometheus to be ready")
        yield api
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _has_scraped(api: PrometheusApi) -> bool:
    """Enough scrapes for every range in the queries, and every rule evaluated once."""
    scrapes = api.query('count_over_time(up{job="aewatch"}[1m])').series
    busy = api.query("rate(aewatch_windows_scored_total[10s]) > 0").series
    evaluated = all(
        not r["lastEvaluation"].startswith("0001-") for g in api.rules() for r in g["rules"]
    )
    return bool(scrapes) and float(scrapes[0]["value"][1]) >= SCRAPES and bool(busy) and evaluated


# -- the daemon and its feed --------------------------------------------------------------


def _daemon_config(folder: Path, broker: Broker, model: Model, prefix: str) -> Path:
    """A config serving ``model`` to well-*, metrics on a free port, with a state folder
    (journal and state key) as the shipped configurations have."""
    data = {
        "broker": {"url": broker.url, "client_id": prefix, "reconnect_min_s": 1},
        "inputs": [{"topic": f"{prefix}/in/{{asset}}/{{channel}}", "payload": "json"}],
        "models": [{"path": str(model.bundle), "assets": "well-*", "name": "well"}],
        "outputs": {"topic_prefix": prefix},
        "metrics": {"port": 0},
        "state_dir": str(folder / "state"),
    }
    path = folder / "aewatch.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@contextmanager
def _running(config: Config) -> Iterator[Daemon]:
    """A started daemon, stopped (drained, disconnected) afterwards."""
    daemon = Daemon(config)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


class Feed:
    """Sensors of ``ASSETS`` publishing one JSON reading per channel each second.

    Once the daemon is online, a backlog of ``BACKLOG_S`` seconds goes out at once (so the
    windows fill at once); then each second's readings go out as that second starts, stamped
    with it, so the decision latency is what a live plant sees.
    """

    def __init__(self, broker: Broker, model: Model, prefix: str) -> None:
        self.rows = model.rows
        self.prefix = prefix
        self.errors: list[str] = []
        self.is_online = threading.Event()
        self.is_stopping = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = self._on_status
        client.connect("127.0.0.1", broker.port)
        client.subscribe(f"{prefix}/status", qos=1)
        client.loop_start()
        self.client = client
        self.thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def _on_status(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload == b"online":
            self.is_online.set()

    def _run(self) -> None:
        try:
            if not self.is_online.wait(WAIT_S):
                raise AssertionError("the daemon never published online")
            now = int(time.time())
            for ts in range(now - BACKLOG_S, now):
                self._send(ts)
            ts = now
            while not self.is_stopping.wait(max(0.0, ts - time.time())):
                self._send(ts)
                ts += 1
        except Exception as err:  # the test thread reports it
            self.errors.append(repr(err))

    def _send(self, ts: int) -> None:
        for k, asset in enumerate(ASSETS):
            row = self.rows[(ts + 97 * k) % len(self.rows)]
            for channel in CHANNELS:
                payload = json.dumps({"ts": ts, "value": row[channel]})
                info = self.client.publish(f"{self.prefix}/in/{asset}/{channel}", payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise AssertionError(f"publish failed: {mqtt.error_string(info.rc)}")

    def close(self) -> None:
        self.is_stopping.set()
        self.thread.join(10)
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def _feed(broker: Broker, model: Model, prefix: str) -> Iterator[Feed]:
    feed = Feed(broker, model, prefix)
    feed.thread.start()
    try:
        yield feed
    finally:
        feed.close()


# -- the files ----------------------------------------------------------------------------


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to -."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def _datasource_uid() -> str:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uid: str = source["uid"]
    return uid


def _all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])


def _assert_grid_tiles(panels: list[dict[str, Any]]) -> None:
    """Each panel has a position inside the 24 columns, and no two overlap."""
    taken: dict[tuple[int, int], str] = {}
    for p in panels:
        grid = p["gridPos"]
        x, y, w, h = (grid[k] for k in ("x", "y", "w", "h"))
        assert all(isinstance(v, int) for v in (x, y, w, h)), p["title"]
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= GRID_COLUMNS, p["title"]
        for cell in ((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h)):
            assert cell not in taken, f"{p['title']!r} overlaps {taken[cell]!r}"
            taken[cell] = p["title"]


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    targets = [t["expr"] for p in _all_panels(dashboard) for t in p.get("targets", [])]
    return targets + [v["definition"] for v in dashboard["templating"]["list"]]


def _grafana_substituted(expr: str) -> str:
    """``expr`` as Grafana sends it: built-ins and variables (All) filled in."""
    for name, value in sorted({**GRAFANA_BUILTINS, **VARIABLE_VALUES}.items(), reverse=True):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_STRING_OR_MATCHERS = re.compile(r'(\{[^{}]*\})|"[^"]*"')
_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*(\{[^{}]*\})?(\s*\()?")
_FINAL_COMPARISON = re.compile(
    r"(?P<inner>.*\S)\s*(?:==|!=|>=|<=|>|<)\s*[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?\s*", re.DOTALL
)


def _selectors(expr: str) -> list[str]:
    """The instant-vector selectors ``expr`` reads (``name{matchers}``), ranges dropped.

    Enough PromQL for these rules: grouping label lists and range durations are removed,
    and a name followed by ``(`` is a function.
    """
    text = re.sub(r"\[[^\]]*\]", "", _GROUPING.sub(" ", expr))
    # A string argument (label_replace's) is no selector; a matcher's string stays.
    text = _STRING_OR_MATCHERS.sub(lambda m: m.group(1) or '""', text)
    found = []
    for name, matchers, call in _SELECTOR.findall(text):
        if not call and name not in _KEYWORDS:
            found.append(name + matchers)
    return found


def _promtool(*args: str) -> str:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


# -- plumbing -----------------------------------------------------------------------------


def _get(url: str, *, timeout_s: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


_wait_until = functools.partial(wait_until, timeout_s=WAIT_S, every_s=0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
