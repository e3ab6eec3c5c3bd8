"""What `make run` and `make worker` start, by the settings."""

import os
from pathlib import Path

from local_stack.processes import stack_programs, worker_host_problems, worker_host_programs
from local_stack.supervisor_config import SOCKET_PATH_LIMIT, render
from shared.settings import Settings


def names(settings: Settings) -> list[str]:
    return [program.name for program in stack_programs(settings)[0]]


def test_make_run_starts_everything_with_embedded_servers() -> None:
    settings = Settings.load(env_file=None)
    assert names(settings) == ["mongodb", "redis", "api", "worker", "control", "webhooks", "beat"]
    worker = next(p for p in stack_programs(settings)[0] if p.name == "worker")
    assert worker.command[worker.command.index("--concurrency") + 1] == str(8 * (os.cpu_count() or 1))
    assert worker.command[worker.command.index("--pool") + 1] == "threads"


def test_worker_concurrency_zero_is_an_api_only_host() -> None:
    settings = Settings.load(env_file=None, worker_concurrency=0, mongodb_url="mongodb://db", redis_url="redis://r")
    assert names(settings) == ["api", "control", "webhooks", "beat"]


def test_a_worker_host_runs_only_the_image_worker() -> None:
    settings = Settings.load(env_file=None, mongodb_url="mongodb://db", redis_url="redis://r", storage_backend="s3",
                        s3_bucket="images", worker_concurrency=3)  # fmt: skip
    assert worker_host_problems(settings) == []
    programs, environment = worker_host_programs(settings)
    assert [p.name for p in programs] == ["worker"]
    assert programs[0].command[programs[0].command.index("--concurrency") + 1] == "3"
    assert set(environment) == {"DATA_DIR"}


def test_a_worker_host_without_image_workers_is_refused() -> None:
    settings = Settings.load(env_file=None, mongodb_url="mongodb://db", redis_url="redis://r", storage_backend="s3",
                        s3_bucket="images", worker_concurrency=0)  # fmt: skip
    assert worker_host_problems(settings) == [
        "WORKER_CONCURRENCY=0 starts no image worker: a worker host needs at least 1"
    ]


def test_a_worker_host_needs_the_shared_servers_and_a_bucket() -> None:
    problems = worker_host_problems(Settings.load(env_file=None))
    assert [problem.split(" ")[0] for problem in problems] == ["MONGODB_URL", "REDIS_URL", "STORAGE_BACKEND=s3"]


def test_each_program_records_its_metrics_in_a_directory_of_its_own(tmp_path) -> None:
    settings = Settings.load(env_file=None, data_dir=tmp_path)
    directories = {
        program.name: program.environment.get("PROMETHEUS_MULTIPROC_DIR") for program in stack_programs(settings)[0]
    }
    for name in ("api", "worker", "control", "webhooks"):
        assert directories[name] == str(tmp_path / "run" / "metrics" / name)
    assert directories["beat"] is None and directories["mongodb"] is None


def test_flower_runs_only_with_a_port_and_then_the_workers_send_task_events() -> None:
    assert "flower" not in names(Settings.load(env_file=None))
    assert all("--task-events" not in p.command for p in stack_programs(Settings.load(env_file=None))[0])
    programs = {p.name: p for p in stack_programs(Settings.load(env_file=None, flower_port=5555))[0]}
    assert programs["flower"].command[-3:] == ["flower", "--port=5555", "--address=127.0.0.1"]
    assert all("--task-events" in programs[name].command for name in ("worker", "control", "webhooks"))


def test_every_worker_starts_without_asking_its_neighbours_and_ignores_their_events() -> None:
    # A cancel is recorded in MongoDB, never sent as a revoke, so mingle's second at each start
    # would buy nothing; docker-compose.yml runs its workers the same way.
    workers = [p for p in stack_programs(Settings.load(env_file=None))[0] if "worker" in p.command]
    assert {p.name for p in workers} == {"worker", "control", "webhooks"}
    for program in workers:
        assert {"--without-mingle", "--without-gossip"} <= set(program.command)
    compose = (Path(__file__).parents[2] / "docker-compose.yml").read_text()
    assert compose.count('"--without-mingle", "--without-gossip"') == len(workers)


def test_the_control_socket_stays_within_a_socket_path_however_deep_the_data_dir(tmp_path) -> None:
    for run_dir in (tmp_path / "run", tmp_path / ("a-long-folder-name-" * 8) / "data" / "run"):
        config = render([], {}, directory=tmp_path, run_dir=run_dir, log_dir=None)
        [line] = [line for line in config.splitlines() if line.startswith("file=")]
        socket = line.removeprefix("file=")
        assert len(socket.encode()) <= SOCKET_PATH_LIMIT
        assert f"serverurl=unix://{socket}" in config
