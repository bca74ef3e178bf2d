"""The shipped Prometheus rules: `promtool` (Debian's, installed by `make setup`)
checks them and runs their unit tests (infra/prometheus/rules_test.yml: each alert
fires on the series it is for and stays quiet on healthy ones); every metric they
name is one the platform registers; the generated scrape configuration is valid and
names every role once."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from base.settings import Settings
from poseidon import bootstrap
from poseidon.devstack import prometheus_config, scrape_targets

RULES = Path(__file__).resolve().parents[2] / "infra" / "prometheus"


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: `make setup` installs Debian's prometheus package")
    done = subprocess.run([tool, *args], capture_output=True, text=True, cwd=RULES, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_are_valid_and_every_alert_passes_its_unit_tests():
    assert "SUCCESS" in promtool("check", "rules", "rules.yml")
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def test_every_alert_has_a_unit_test_and_a_runbook_entry():
    alerts = set(re.findall(r"- alert: (\w+)", (RULES / "rules.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "rules_test.yml").read_text()))
    readme = (RULES.parents[1] / "README.md").read_text()
    assert alerts and alerts == tested
    assert [a for a in sorted(alerts) if f"`{a}`" not in readme] == []


def test_every_metric_the_rules_name_is_registered_by_the_platform():
    import hubs.message.router  # noqa: F401  (registers the router's metrics)
    import infra.ingress  # noqa: F401
    import infra.metrics  # noqa: F401
    import infra.spoke  # noqa: F401

    registered = {metric.name for metric in REGISTRY.collect()}  # counters without their `_total`
    named = set(re.findall(r"\b(poseidon_[a-z_]+)", (RULES / "rules.yml").read_text()))
    assert named and sorted(n for n in named if n.removesuffix("_total") not in registered) == []


def test_the_scrape_configuration_is_valid_and_names_every_role_once(tmp_path):
    settings = Settings().with_topology(bootstrap.hubs().values())
    targets = scrape_targets(settings)
    processes = [p for p, _ in targets]
    expected = [f"{h}-{r}" for h in bootstrap.hubs() for r in ("processor", "projector", "grpc")]
    expected += ["ingress", "gateway", "router", "saga-driver", *(f"spoke-{s}" for s in bootstrap.spokes())]
    assert sorted(processes) == sorted(expected)
    assert len({t for _, t in targets}) == len(targets), "two roles on one ops port"
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(settings, str(RULES / "rules.yml")))
    assert "SUCCESS" in promtool("check", "config", str(config))
