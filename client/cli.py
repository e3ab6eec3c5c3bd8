"""The `image-service` command: upload, status, download, list, cancel, retry, delete (CONTRACT §9).

Exit codes: 0 completed (or accepted, without --wait), 3 completed with errors, 4 failed,
5 cancelled, 2 bad usage or a request the server refused (its errors printed with their lines),
1 the server cannot be reached.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from client.service import FINAL_STATUSES, Refused, Service, Unreachable

EXIT_BY_STATUS = {"completed": 0, "completed_with_errors": 3, "failed": 4, "cancelled": 5}
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 1
# A second or more between polls: the status answer is shared and at most 2 s old anyway.
POLL_SECONDS = 1.0

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# soft_wrap: a long line stays one line, for the people and the programs that read it.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Server = Annotated[
    str, typer.Option("--server", envvar="IMAGE_SERVICE_URL", help="the service's base URL", show_envvar=True)
]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="IMAGE_SERVICE_API_KEY", help="an API key", show_envvar=True)
]


@app.command()
def upload(
    csv_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the product CSV")],
    webhook_url: Annotated[str | None, typer.Option(help="notified with a signed POST when finished")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="show the progress until the request is final")] = False,
    output: Annotated[Path | None, typer.Option(help="with --wait: save the output CSV here")] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="process every image from scratch, reusing nothing of earlier uploads")
    ] = False,
    server: Server = "http://127.0.0.1:8000",
    api_key: ApiKey = None,
) -> None:
    """Upload a product CSV; with --wait, follow it to the end and print a summary."""
    with talking_to(server, api_key) as service:
        accepted = service.upload(csv_file, webhook_url, refresh=refresh)
        request_id = accepted["request_id"]
        err.print(f"accepted: {request_id} ({accepted['products']} products, {accepted['images']} images)")
        if not wait:
            out.print(request_id)
            return
        final = follow(service, request_id)
        print_summary(final)
        if output is not None:
            service.download(request_id, output)
            err.print(f"output CSV saved to {output}")
        raise typer.Exit(EXIT_BY_STATUS[final["status"]])


@app.command()
def status(request_id: str, server: Server = "http://127.0.0.1:8000", api_key: ApiKey = None) -> None:
    """Print a request's state and progress (and its summary once final)."""
    with talking_to(server, api_key) as service:
        body = service.status(request_id)
        if body["status"] in FINAL_STATUSES:
            print_summary(body)
            raise typer.Exit(EXIT_BY_STATUS[body["status"]])
        out.print(progress_line(body))


@app.command()
def download(
    request_id: str,
    output: Annotated[Path, typer.Option(help="where to save the output CSV")],
    server: Server = "http://127.0.0.1:8000",
    api_key: ApiKey = None,
) -> None:
    """Save the output CSV of a finished request."""
    with talking_to(server, api_key) as service:
        service.download(request_id, output)
        err.print(f"output CSV saved to {output}")


@app.command(name="list")
def list_requests(
    status: Annotated[str | None, typer.Option(help="only requests in this state")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 50,
    server: Server = "http://127.0.0.1:8000",
    api_key: ApiKey = None,
) -> None:
    """The requests of your key (every request without keys), newest first: one line each."""
    with talking_to(server, api_key) as service:
        shown, cursor = 0, None
        while shown < limit:
            page = service.requests(status, min(limit - shown, 500), cursor)
            for item in page["requests"]:
                out.print(list_line(item), markup=False)
            shown += len(page["requests"])
            cursor = page["next_cursor"]
            if cursor is None:
                break


@app.command()
def cancel(request_id: str, server: Server = "http://127.0.0.1:8000", api_key: ApiKey = None) -> None:
    """Stop a request: what has not started never starts; it is final, cancelled, within seconds."""
    with talking_to(server, api_key) as service:
        body = service.cancel(request_id)
        err.print(
            f"{request_id}: cancelling ({body['progress']['images_done']}/{body['progress']['images_total']} done)"
        )


@app.command()
def retry(
    request_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="show the progress until the request is final again")] = False,
    server: Server = "http://127.0.0.1:8000",
    api_key: ApiKey = None,
) -> None:
    """Process a finished request's failed images again, in the same request."""
    with talking_to(server, api_key) as service:
        body = service.retry(request_id)
        err.print(f"{request_id}: retrying {body['progress']['images_total'] - body['progress']['images_done']} images")
        if wait:
            final = follow(service, request_id)
            print_summary(final)
            raise typer.Exit(EXIT_BY_STATUS[final["status"]])


@app.command()
def delete(request_id: str, server: Server = "http://127.0.0.1:8000", api_key: ApiKey = None) -> None:
    """Delete a finished request with its images."""
    with talking_to(server, api_key) as service:
        service.delete(request_id)
        err.print(f"{request_id}: deleted")


def list_line(item: dict[str, Any]) -> str:
    progress = item["progress"]
    return (
        f"{item['request_id']}  {item['status']:<21}  {item['created_at']}  "
        f"{progress['images_done']}/{progress['images_total']} images, {progress['images_failed']} failed"
    )


@contextmanager
def talking_to(server: str, api_key: str | None) -> Iterator[Service]:
    """A service client whose failures end the command with the contract's exit code."""
    service = Service(server, api_key)
    try:
        yield service
    except Unreachable as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except Refused as refused:
        print_refusal(refused)
        raise typer.Exit(EXIT_REFUSED) from None
    finally:
        service.close()


def print_refusal(refused: Refused) -> None:
    err.print(f"error: HTTP {refused.status_code}: {refused.detail}", markup=False)
    for item in refused.errors:
        column = f", {item['column']}" if item.get("column") else ""
        err.print(f"  line {item['line']}{column}: {item['message']}", markup=False)


def follow(service: Service, request_id: str) -> dict[str, Any]:
    """Poll until the request is final: a progress bar on a terminal, plain lines otherwise."""
    if err.is_terminal:
        return follow_with_bar(service, request_id)
    return poll(service, request_id, lambda body: err.print(progress_line(body), markup=False))


def poll(service: Service, request_id: str, show: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    last = None
    while True:
        # Progress needs no products: the smallest page, the one every poller shares.
        body = service.status(request_id, products=1)
        if body["progress"] != last:
            show(body)
            last = body["progress"]
        if body["status"] in FINAL_STATUSES:
            return service.status(request_id)  # with its products, for the summary
        time.sleep(POLL_SECONDS)


def follow_with_bar(service: Service, request_id: str) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[failed]} failed · {task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("images", total=None, failed=0, rate="")
        started = time.monotonic()

        def show(body: dict[str, Any]) -> None:
            progress = body["progress"]
            rate = progress["images_done"] / max(time.monotonic() - started, 1e-3)
            bar.update(task, total=progress["images_total"], completed=progress["images_done"],
                       failed=progress["images_failed"], rate=f"{rate:.1f} images/s")  # fmt: skip

        return poll(service, request_id, show)


def progress_line(body: dict[str, Any]) -> str:
    progress = body["progress"]
    return (
        f"{body['request_id']}: {body['status']} {progress['percentage']:.1f} % "
        f"({progress['images_done']}/{progress['images_total']} images, {progress['images_failed']} failed)"
    )


def print_summary(body: dict[str, Any]) -> None:
    progress = body["progress"]
    stored = progress["images_done"] - progress["images_failed"]
    reused = progress.get("images_reused", 0)
    unchanged = f" ({reused} unchanged since an earlier upload, reused)" if reused else ""
    out.print(
        f"{body['request_id']}: {body['status']}: {stored} images stored{unchanged}, {progress['images_failed']} failed"
    )
    for product in body["products"]:
        for error in product["errors"]:
            out.print(f"  failed: {product['product_name']} {error['url']}: {error['message']}", markup=False)
    saved = saving(progress)
    if saved:
        out.print(saved)


def saving(progress: dict[str, Any]) -> str | None:
    bytes_in, bytes_out = progress.get("bytes_in"), progress.get("bytes_out")
    if not bytes_in or bytes_out is None:
        return None
    return f"  {megabytes(bytes_in)} downloaded, {megabytes(bytes_out)} stored: {1 - bytes_out / bytes_in:.0%} saved"


def megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
