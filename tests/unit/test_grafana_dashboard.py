"""The Grafana dashboard (config/grafana/iot-platform.json): importable as it is (its
Prometheus is a template variable), every panel titled and with a unit, every query valid
PromQL for promtool and naming only metrics the gateway or the worker export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.promql import exported, metric_names, promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "iot-platform.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

SHOWN = {
    "up": "readiness of each gateway and worker",
    "ALERTS": "active alerts",
    "iot_gateway_pubacks_total": "ingest rate",
    "iot_streams_events_applied_total": "applied events",
    "iot_streams_consumer_lag": "consumer lag and freshness",
    "iot_gateway_dlq_total": "DLQ rejections by reason",
    "iot_streams_outbox_backlog": "outbox backlog",
    "iot_streams_events_skipped_total": "undecodable and misrouted records",
    "iot_gateway_clock_steps_back": "clock steps back",
}
"""What an operator looks at, by the metric that shows it."""


def _panels() -> list[dict[str, Any]]:
    """Every panel, those folded into rows too."""
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [panel for panel in found if panel["type"] != "row"]


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def test_the_prometheus_data_source_is_a_template_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = (v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS")
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in _panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"])


def test_every_panel_has_a_title_a_unit_and_a_query() -> None:
    panels = _panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel.get("title"), panel
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]


def test_every_metric_a_panel_names_is_exported_and_each_subject_is_shown() -> None:
    used = set().union(*map(metric_names, _exprs()))
    assert used <= exported(), sorted(used - exported())
    missing = {what for metric, what in SHOWN.items() if metric not in used}
    assert not missing, missing


def test_promtool_accepts_every_query(tmp_path: Path) -> None:
    """Each query as a recording rule (Grafana's ``$__rate_interval`` as one minute)."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": expr.replace("$__rate_interval", "1m")}
        for n, expr in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
