"""Which metrics a PromQL expression names, and which series the platform's processes export.

The Prometheus rules (``config/prometheus/rules.yml``) and the Grafana dashboard
(``config/grafana/iot-platform.json``) are both checked against the code with these, so a
metric renamed in the code fails the tests instead of leaving a rule that never fires or a
panel that stays empty.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from prometheus_client import CollectorRegistry

from iot_gateway.metrics import GatewayMetrics
from streams.query.metrics import QueryMetrics
from streams.worker.metrics import WorkerMetrics

PROMTOOL = shutil.which("promtool") or "promtool"  # scripts/bootstrap.sh --tests installs it

BUILTIN = frozenset({"up", "ALERTS"})
"""Series Prometheus makes itself: each target's scrape result, the alerts its rules fire."""

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}

_NOT_NAMES = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # label values, regexes
    r"|\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # ranges (Grafana's $__rate_interval too)
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"  # label lists
)
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "group_left", "group_right"})


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: every name left once label matchers, ranges,
    strings and label lists are taken out, that is not a function (followed by ``(``)."""
    bare = _NOT_NAMES.sub(" ", expr)
    names = re.findall(r"(?<![\w:$])([A-Za-z_:][\w:]*)\b(?!\s*\()", bare)
    return set(names) - _KEYWORDS


def _series(registry: CollectorRegistry) -> set[str]:
    """The series names each metric family exports (labelled ones too, before a sample)."""
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def exported() -> set[str]:
    """Every series the gateway and the worker (with its query API) export, and Prometheus's
    own."""
    worker = WorkerMetrics()
    QueryMetrics(worker.registry)  # the query API registers in the worker's registry
    return _series(GatewayMetrics().registry) | _series(worker.registry) | BUILTIN
