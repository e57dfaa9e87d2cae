"""The Prometheus rules and scrape config (config/prometheus/): valid for promtool, and every
metric a rule names is one the gateway or the worker exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from iot_gateway.metrics import GatewayMetrics
from streams.worker.metrics import WorkerMetrics

CONFIG = Path(__file__).resolve().parents[2] / "config" / "prometheus"
PROMTOOL = shutil.which("promtool") or "promtool"  # scripts/bootstrap.sh --tests installs it
FUNCTIONS = {"sum", "rate", "increase", "delta", "clamp_min", "by", "up"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    rules = _promtool("check", "rules", str(CONFIG / "rules.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 10 rules found" in rules.stdout
    config = _promtool("check", "config", str(CONFIG / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(\n")
    assert _promtool("check", "rules", str(broken)).returncode != 0


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _exported(registry: CollectorRegistry) -> set[str]:
    """The series names each metric family exports (labelled ones too, before a sample)."""
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def test_every_metric_a_rule_names_is_exported() -> None:
    names = _exported(GatewayMetrics().registry) | _exported(WorkerMetrics().registry)
    groups = yaml.safe_load((CONFIG / "rules.yml").read_text())["groups"]
    used = set()
    for rule in (rule for group in groups for rule in group["rules"]):
        expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", rule["expr"])
        used |= {word for word in re.findall(r"[a-z_]+", expr) if word not in FUNCTIONS}
    used -= {"instance", "job"}
    assert used, "the rules name no metric"
    assert used <= names, sorted(used - names)
