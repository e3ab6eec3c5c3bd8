"""Schemathesis over a running stack (issue 19): every operation fuzzed with every check, and the
stateful phase following the schema's links from an accepted upload to its status, images, output
CSV, webhook, cancel, retry and delete. The hooks (tests/support/schemathesis_hooks.py) give half
of the uploads a real catalogue; the configuration (tests/support/schemathesis.toml) says which
schema-valid inputs the service may still refuse, and why.

SCHEMATHESIS_SEED=<n> runs it with another seed; a failure prints the curl command reproducing it.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.models import FINAL_STATUS_VALUES
from tests.support.client import bearer
from tests.support.stack import PROJECT_ROOT, Stack, start_stack, wait_until

KEY = "schemathesis-key"
SEED = os.environ.get("SCHEMATHESIS_SEED", "2026")
CONFIG = PROJECT_ROOT / "tests" / "support" / "schemathesis.toml"
# Per operation and phase: enough for each phase to reach every operation, the run in about 15 s.
EXAMPLES = "25"


def listed(api: httpx.Client) -> list[dict]:
    return api.get("/requests", params={"limit": 500}).json()["requests"]


def under_way(api: httpx.Client) -> bool:
    return any(item["status"] in ("pending", "processing") for item in listed(api))


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {
        # A second key, so that the service must tell the callers apart.
        "API_KEYS": f"{KEY},another-key",
        "RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        "REUSE_OUTPUTS": "true",
    }
    with start_stack(tmp_path_factory.mktemp("fuzzed-stack"), extra) as running:
        yield running


def schemathesis(stack: Stack, image_host: str, report: Path) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(CONFIG), "--no-color", "run", f"{stack.base_url}/openapi.json"]
    command += ["--url", stack.base_url, "-H", f"Authorization: Bearer {KEY}", "--checks", "all"]
    command += ["--max-examples", EXAMPLES, "--seed", SEED, "--workers", "1"]
    command += ["--report", "json", "--report-json-path", str(report)]
    environment = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks",
        "SCHEMATHESIS_IMAGE_HOST": image_host,
    }
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)


def test_schemathesis_walks_the_api_and_finds_nothing(fuzzed_stack, image_server, tmp_path):
    report_path = tmp_path / "schemathesis.json"
    run = schemathesis(fuzzed_stack, image_server.url, report_path)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]

    report = json.loads(report_path.read_text())
    assert report["failures"] == [] and report["errors"] == []
    assert {phase: result["status"] for phase, result in report["phases"].items()} == dict.fromkeys(
        ("examples", "coverage", "fuzzing", "stateful"), "success"
    )
    accepted = Counter()
    for operation, phases in report["valid_rates"].items():
        accepted[operation] = sum(rates["accepted"] for rates in phases.values())
    # The hooks' catalogues were accepted, and the runs that followed reached real requests.
    assert accepted["POST /api/v1/upload"] > 0
    # Cancelled by following an upload's link, some before their slow images were done.
    reached_all = ("GET /api/v1/status/{request_id}", "GET /api/v1/status/{request_id}/images",
                   "POST /api/v1/requests/{request_id}/cancel")  # fmt: skip
    for reached in reached_all:
        assert accepted[reached] > 0, (reached, report["valid_rates"][reached])

    with httpx.Client(base_url=fuzzed_stack.api, headers=bearer(KEY)) as api:
        # A cancel ends its request once the images under way had their grace (5 s): wait for that,
        # since the run may end sooner. A cancelled request may be gone by then, deleted by a link
        # the run followed once its cancel was final, so what is left is counted as final only.
        wait_until(lambda: not under_way(api), timeout=60, message="every request final")
        states = Counter(item["status"] for item in listed(api))
    assert states and set(states) <= set(FINAL_STATUS_VALUES), states
