"""The Prometheus rules and scrape config (config/prometheus/): valid for promtool, and every
metric a rule names is one the gateway or the worker exports."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.promql import exported, metric_names, promtool

CONFIG = Path(__file__).resolve().parents[2] / "config" / "prometheus"


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    rules = promtool("check", "rules", str(CONFIG / "rules.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 10 rules found" in rules.stdout
    config = promtool("check", "config", str(CONFIG / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(\n")
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_every_metric_a_rule_names_is_exported() -> None:
    groups = yaml.safe_load((CONFIG / "rules.yml").read_text())["groups"]
    used = set()
    for rule in (rule for group in groups for rule in group["rules"]):
        used |= metric_names(rule["expr"])
    assert used, "the rules name no metric"
    assert used <= exported(), sorted(used - exported())


def test_metric_names_are_what_an_expression_selects() -> None:
    expr = (
        'sum by (reason) (rate(iot_gateway_dlq_total{reason=~"a|b"}[$__rate_interval]))'
        ' / ignoring(reason) group_left clamp_min(sum(up{job="x"}), 1) > bool 0'
        " or vector(0) unless ALERTS offset 5m"
    )
    assert metric_names(expr) == {"iot_gateway_dlq_total", "up", "ALERTS"}
