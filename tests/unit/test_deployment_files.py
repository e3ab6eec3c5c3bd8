"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs here)."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification():
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_databases_are_the_real_images_with_healthchecks_and_persistence():
    services = compose()["services"]
    assert services["mongo"]["image"].startswith("mongo:")
    assert services["redis"]["image"].startswith("redis:")
    assert "--appendonly" in services["redis"]["command"]
    for name in ("mongo", "redis"):
        assert services[name]["healthcheck"]["test"]
        assert services[name]["volumes"]


def test_application_services_wait_for_healthy_databases_and_share_settings():
    services = compose()["services"]
    for name in ("api", "worker", "control", "webhooks", "beat"):
        depends = services[name]["depends_on"]
        assert depends == {
            "mongo": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "bucket": {"condition": "service_completed_successfully"},
        }
        environment = services[name]["environment"]
        assert environment["MONGODB_URL"].startswith("mongodb://mongo")
        assert environment["REDIS_URL"].startswith("redis://redis")
        assert environment["STORAGE_BACKEND"] == "s3"
        assert environment["S3_ENDPOINT_URL"] == "http://s3:8333"
        assert "volumes" not in services[name], "images go to the bucket, not to a volume of one host"


def test_the_store_always_has_credentials():
    compose_file = compose()
    assert "-s3.config=/etc/seaweedfs/s3.json" in compose_file["services"]["s3"]["command"]
    assert "secretKey" in compose_file["configs"]["s3-identities"]["content"]


def test_webhook_deliveries_have_a_worker_of_their_own():
    services = compose()["services"]
    queues = {
        name: services[name]["command"][services[name]["command"].index("--queues") + 1]
        for name in ("worker", "control", "webhooks")
    }
    assert queues == {"worker": "images", "control": "control", "webhooks": "webhooks"}


def test_the_worker_can_be_scaled():
    worker = compose()["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "images" in worker["command"]


def test_dockerfile_installs_the_locked_dependencies():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    for package in ("shared", "api_service", "worker_service"):
        assert f"COPY {package}" in dockerfile
