"""Running the `image-service` command as a user would, against a running service."""

import os
import subprocess
import sys

from tests.support.stack import PROJECT_ROOT


def image_service(*arguments: str, server: str, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "IMAGE_SERVICE_URL": server}
    if api_key:
        environment["IMAGE_SERVICE_API_KEY"] = api_key
    return subprocess.run([sys.executable, "-m", "client", *arguments], cwd=PROJECT_ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
