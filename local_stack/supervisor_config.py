"""The supervisord configuration for the programs of `make run`."""

import hashlib
import shlex
import tempfile
from pathlib import Path

from local_stack.processes import Program

# A Unix socket's path holds at most 107 bytes (108 with its NUL), and supervisord binds its
# socket under a temporary name first, the path and `.<pid>` (up to 8 bytes more).
SOCKET_PATH_LIMIT = 107 - 8


def socket_path(run_dir: Path) -> Path:
    """supervisord's control socket: in the run folder, unless that is too deep for a socket path
    (a long DATA_DIR; pytest's folders), then in the temporary folder, named after the run folder."""
    beside = run_dir / "supervisor.sock"
    if len(str(beside).encode()) <= SOCKET_PATH_LIMIT:
        return beside
    digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"image-service-{digest}.sock"


def quote_environment(environment: dict[str, str]) -> str:
    # supervisord parses KEY="value" pairs and expands %(...)s, so quotes and % are escaped.
    def quoted(value: str) -> str:
        return '"' + value.replace("%", "%%").replace('"', '\\"') + '"'

    return ",".join(f"{key}={quoted(value)}" for key, value in environment.items())


def program_section(program: Program, directory: Path, log_to: str) -> str:
    lines = [
        f"[program:{program.name}]",
        f"command={shlex.join(program.command).replace('%', '%%')}",
        f"directory={directory}",
        f"priority={program.priority}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "startretries=100",
        "stopsignal=TERM",
        f"stopwaitsecs={program.stop_seconds}",
        # Celery's pool processes and uvicorn's children go down with their parent.
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={log_to}",
        "stdout_logfile_maxbytes=0" if log_to == "/dev/stdout" else "stdout_logfile_maxbytes=20MB",
    ]
    if program.environment:
        lines.append(f"environment={quote_environment(program.environment)}")
    return "\n".join(lines)


def render(
    programs: list[Program], environment: dict[str, str], *, directory: Path, run_dir: Path, log_dir: Path | None
) -> str:
    """supervisord.conf text; logs go to the terminal unless `log_dir` is given."""
    sections = [
        "[supervisord]",
        "nodaemon=true",
        f"pidfile={run_dir / 'supervisord.pid'}",
        f"logfile={run_dir / 'supervisord.log'}",
        "logfile_maxbytes=5MB",
        "loglevel=warn",
        f"childlogdir={run_dir}",
        f"environment={quote_environment(environment)}",
        "",
        "[unix_http_server]",
        f"file={socket_path(run_dir)}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{socket_path(run_dir)}",
        "",
    ]
    for program in programs:
        log_to = str(log_dir / f"{program.name}.log") if log_dir else "/dev/stdout"
        sections += [program_section(program, directory, log_to), ""]
    return "\n".join(sections)
