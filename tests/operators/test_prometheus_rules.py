"""``contrib/prometheus``: the rules load, their unit tests pass, every alert is tested, and
every series they read is one resmon exports (or one the rules record)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.prometheus import METRICS

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRIB = REPO_ROOT / "contrib" / "prometheus"
RULES = CONTRIB / "rules.yml"
ALERTS = CONTRIB / "alerts.yml"
TESTS = CONTRIB / "tests.yml"
#: Names Prometheus itself gives every scrape.
PROMETHEUS_SERIES = {"up"}

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool absent")


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: Path = CONTRIB) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def series_names(expr: str) -> set[str]:
    """Metric names an expression reads (identifiers that are not PromQL words or labels)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels
    )
    without_durations = re.sub(r"\[[^\]]*\]|\boffset\s+\w+", "", without_groupings)
    words = {"and", "or", "unless", "bool", "Inf", "NaN"}
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_durations):
        if not without_durations[match.end() :].lstrip().startswith("("):  # a function
            names.add(match.group())
    return names - words


def test_rules_load() -> None:
    result = promtool("check", "rules", RULES.name, ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    for path in (RULES, TESTS):
        shutil.copy(path, tmp_path)
    (tmp_path / ALERTS.name).write_text(ALERTS.read_text().replace("< 0.10", "< 0.01"))
    result = promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ResmonClusterCapacityNearlyExhausted" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    fired = {
        case["alertname"]
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    alerts = {rule["alert"] for rule in rules(ALERTS)}
    assert alerts - fired == set()


def test_rules_read_only_series_that_exist() -> None:
    recorded = {rule["record"] for rule in rules(RULES)}
    known = set(METRICS) | recorded | PROMETHEUS_SERIES
    for rule in rules(RULES) + rules(ALERTS):
        unknown = series_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_series_names_finds_what_an_expression_reads() -> None:
    expr = 'sum by (resource_class) (a_b unless on (target, host_id) c{kind="x"}) / scalar(d)'
    expr += " > (e offset 1h or rate(f[5m]) * 0)"
    assert series_names(expr) == {"a_b", "c", "d", "e", "f"}


def test_scrape_config_example_is_valid(tmp_path: Path) -> None:
    for path in (RULES, ALERTS):
        shutil.copy(path, tmp_path)
    token = tmp_path / "resmon-token"
    token.write_text("a-token\n")
    config = (CONTRIB / "prometheus.yml").read_text()
    assert "/etc/prometheus/resmon-token" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/resmon-token", str(token))
    )
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
