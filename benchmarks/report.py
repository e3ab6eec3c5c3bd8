"""The benchmark's figures as markdown: one table per corpus, then the burst and the API's own figures."""

RUN_HEADER = [
    "| images | host latency | seconds | images/s | MP/s | ratio to ceiling | ratio to codec ceiling "
    "| image latency p50 / p95 | last stored → final (status / webhook) | output/input bytes | worker CPU "
    "| peak memory (PSS) API / worker |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
BURST_HEADER = [
    "| requests × products × images | upload p50 / max | first upload → last final (status / webhook) "
    "| images/s | ratio to ceiling | ratio to codec ceiling | status p50 / p99 "
    "| last stored → final, p50 / max | images failed | peak worker PSS |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def number(value: float | None, digits: int = 2) -> str:
    """A figure, or a dash where it is unknown (a webhook that never came, say)."""
    return "–" if value is None else f"{value:.{digits}f}"


def sections(report: dict) -> dict[str, dict]:
    """The report's corpora; a report from before there were several has its one corpus at the top."""
    if "corpora" in report:
        return report["corpora"]
    return {"mixed": {"corpus": report["corpus"], "ceiling": report["ceiling"], "runs": report["runs"]}}


def corpus_line(corpus: dict) -> str:
    kinds = ", ".join(f"{count} {kind}" for kind, count in corpus.get("formats", {}).items())
    return f"{corpus['images']} images{f' ({kinds})' if kinds else ''}, mean {corpus['mean_megapixels']:.2f} MP"


def ceiling_line(ceiling: dict) -> str:
    idle = ceiling.get("stack_cpu_share")
    beside = f" (the idle stack beside it: {100 * idle:.1f} % of the machine)" if idle is not None else ""
    return (
        f"Ceiling (Pillow alone, one process per core): {ceiling['plain_pillow_images_per_second']:.1f} images/s; "
        f"with the service's codec (same Pillow calls plus its metadata rules): "
        f"{ceiling['service_codec_images_per_second']:.1f} images/s{beside}."
    )


def run_row(run: dict) -> str:
    rss = run["peak_memory_mb"]
    final = f"{number(run.get('last_stored_to_final_status_s'))} / {number(run.get('last_stored_to_webhook_s'))} s"
    return (
        f"| {run['images']} | {run['latency_ms']} ms | {run['seconds']:.1f} | {run['images_per_second']:.1f} "
        f"| {run['megapixels_per_second']:.1f} | {number(run['ratio_to_ceiling'])} "
        f"| {number(run['ratio_to_codec_ceiling'])} "
        f"| {run['image_latency_p50_s']:.2f} / {run['image_latency_p95_s']:.2f} s | {final} "
        f"| {run['output_to_input_bytes']:.2f} | {100 * run['worker_cpu_utilisation']:.0f} % "
        f"| {rss.get('api', 0):.0f} / {rss.get('worker', 0):.0f} MB |"
    )


def growth_lines(runs: list[dict]) -> list[str]:
    lines = []
    for latency in sorted({run["latency_ms"] for run in runs}):
        seconds = {run["images"]: run["seconds"] for run in runs if run["latency_ms"] == latency}
        if len(seconds) > 1:
            smallest, largest = min(seconds), max(seconds)
            lines.append(
                f"Growth at {latency} ms: {largest} images cost {seconds[largest] / seconds[smallest]:.2f}× "
                f"what {smallest} cost ({largest / smallest:.0f}× the images)."
            )
    return lines


def host_cpu_line(runs: list[dict]) -> list[str]:
    """The image host's CPU in each run: a process of its own beside the service, as a share of the machine."""
    shares = [
        f"{run['images']} images at {run['latency_ms']} ms {100 * run['cpu_share']['image_host']:.1f} %"
        for run in runs
        if "image_host" in run.get("cpu_share", {})
    ]
    return [f"Image host CPU, as a share of the whole machine: {', '.join(shares)}."] if shares else []


def corpus_section(name: str, section: dict) -> list[str]:
    corpus = section["corpus"]
    heading = f"## Corpus “{name}”" + (f": {corpus['description']}" if corpus.get("description") else "")
    lines = [heading, "", f"{corpus_line(corpus)}.", ceiling_line(section["ceiling"]), "", *RUN_HEADER]
    lines += [run_row(run) for run in section["runs"]]
    notes = host_cpu_line(section["runs"]) + growth_lines(section["runs"])
    return [*lines, *(["", *notes] if notes else []), "", *reimport_lines(section.get("reimports", []))]


REIMPORT_HEADER = [
    "| images | host | first upload | second upload | second faster by | bodies downloaded again "
    "| 304s | reused | failed |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def reimport_row(run: dict) -> str:
    first, second = run["first"], run["second"]
    host = "validators" if run["validators"] else "no validators"
    return (
        f"| {run['images']} | {host} | {first['seconds']:.2f} s | {second['seconds']:.2f} s | {run['speedup']:.1f}× "
        f"| {second['bodies_downloaded']} | {second['not_modified']} | {second['images_reused']} "
        f"| {second['images_failed']} |"
    )


def reimport_lines(runs: list[dict]) -> list[str]:
    if not runs:
        return []
    return [
        "Re-import: the same catalogue uploaded twice (a new request each time, the second reusing the first's "
        "outputs); bodies, 304s and reused images are those of the second upload.",
        "",
        *REIMPORT_HEADER,
        *(reimport_row(run) for run in runs),
        "",
    ]


def spread(figures: dict) -> str:
    return f"{number(figures['p50'])} / {number(figures['max'])}"


def burst_section(burst: dict) -> list[str]:
    corpus = burst["corpus"]
    pollers = burst["status_under_pollers"]
    programs = {name: share for name, share in burst["cpu_share"].items() if name != "image_host"}
    shares = ", ".join(f"{name} {100 * share:.1f} %" for name, share in programs.items())
    host = burst["cpu_share"].get("image_host")
    host_line = f" Image host CPU: {100 * host:.1f} % of the machine." if host is not None else ""
    to_final = f"{number(burst['seconds_to_last_final_status'], 1)} / {number(burst['seconds_to_last_webhook'], 1)} s"
    row = (
        f"| {burst['requests']} × {burst['products_per_request']} × 2 = {burst['images']} "
        f"| {spread(burst['upload_seconds'])} s | {to_final} | {number(burst['images_per_second'], 1)} "
        f"| {number(burst['ratio_to_ceiling'])} | {number(burst['ratio_to_codec_ceiling'])} "
        f"| {pollers['p50_ms']:.1f} / {pollers['p99_ms']:.1f} ms "
        f"| status {spread(burst['last_stored_to_final_status_s'])}, "
        f"webhook {spread(burst['last_stored_to_webhook_s'])} s "
        f"| {burst['images_failed']} | {burst['peak_worker_pss_mb']:.0f} MB |"
    )
    return [
        f"## Burst: {burst['requests']} requests of {burst['products_per_request']} products uploaded at once",
        "",
        f"{corpus_line(corpus)}: {corpus['description']}. {pollers['pollers']} pollers, each every "
        f"{pollers['interval_s']:g} s, on the requests' status until every one is final "
        f"({pollers['requests']} requests); the status figures are as those pollers saw them.",
        ceiling_line(burst["ceiling"]),
        "",
        *BURST_HEADER,
        row,
        "",
        f"CPU during the burst, by program, as a share of the whole machine (every core busy = 100 %): {shares}."
        + host_line,
        "",
    ]


def sharing_section(sharing: dict) -> list[str]:
    behind, owners = sharing["small_behind_large"], sharing["owners"]
    alone = sharing["small_alone_seconds"]
    bound = 3 * alone + 2
    share = owners["b_share"]
    return [
        f"## Sharing the workers ({sharing['corpus']} corpus)",
        "",
        "| small request (10 images) alone | behind a large one of the same owner | bound (3 × alone + 2 s) "
        "| the large one's images/s | owner B's share beside A's five requests | B's request, seconds |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {alone:.2f} s | {number(behind['small_seconds'])} s ({behind['large_images']} images ahead) "
        f"| {bound:.2f} s | {behind['large_images_per_second']:.1f} "
        f"| {'–' if share is None else f'{share:.2f}'} ({owners['b_images_in_window']} of "
        f"{owners['a_images_in_window'] + owners['b_images_in_window']} images in "
        f"{owners['window_seconds']:.1f} s) | {number(owners['b_seconds'], 1)} |",
        "",
    ]


WORKER_HOST_STEPS = (
    ("download", "download"),
    ("codec_handoff", "codec hand-off"),
    ("store", "store"),
    ("database", "database"),
    ("logging", "logging"),
    ("metrics", "metrics"),
    ("celery_and_rest", "Celery and the rest"),
)


def first_request_line(first: dict | None) -> list[str]:
    if not first:  # a report from before the worker host was warmed up
        return []
    return [
        f"Before it was timed, its first request ({first['images']} images), uploaded as soon as the host was up, "
        f"took {first['seconds']:.2f} s to be final.",
        "",
    ]


def worker_host_section(host: dict) -> list[str]:
    cores = ", ".join(map(str, host["worker_cores"]))
    cpu = host["cpu_ms_per_image"]
    service = host["main_process_ms_per_image"]
    steps = " | ".join(f"{cpu[key]:.2f}" for key, _ in WORKER_HOST_STEPS)
    return [
        f"## A worker host alone on core(s) {cores} ({host['corpus']} corpus)",
        "",
        "`make worker` on its core(s), with one codec process per core; the API host, MongoDB, Redis, SeaweedFS "
        "(the bucket) and the image host on the others. Against Pillow alone on the same core(s), "
        "the mean of its rates just before and just after the run "
        "({:.1f} and {:.1f} images/s).".format(*host["pillow_images_per_second_before_after"]),
        "",
        "| images | seconds | images/s | Pillow alone | ratio to Pillow | ratio to the service's codec "
        "| Pillow, ms an image | codec processes, ms an image (Pillow's part) | main process, ms an image |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {host['images']} | {host['seconds']:.1f} | {host['images_per_second']:.1f} "
        f"| {host['pillow_images_per_second']:.1f} | {host['ratio_to_pillow']:.2f} | {host['ratio_to_codec']:.2f} "
        f"| {host['pillow_ms_per_image']:.2f} | {cpu['codec_processes']:.2f} ({cpu['codec']:.2f}) | {service:.2f} |",
        "",
        f"The other cores were {host['other_cores_busy']:.0%} busy during the run. Pillow alone beside them "
        f"spinning (a busy loop on each): {host['pillow_beside_busy_images_per_second']:.1f} images/s; "
        f"the worker host's ratio to that: {host['ratio_to_pillow_beside_busy']:.2f}.",
        "",
        *first_request_line(host.get("first_request")),
        "The main process's CPU by step, ms an image:",
        "",
        "| " + " | ".join(label for _, label in WORKER_HOST_STEPS) + " |",
        "| " + " | ".join("---:" for _ in WORKER_HOST_STEPS) + " |",
        f"| {steps} |",
        "",
    ]


def markdown(report: dict) -> str:
    lines = [f"Machine: {report['cores']} cores. {report['per_product']} images per product.", ""]
    for name, section in sections(report).items():
        lines += corpus_section(name, section)
    if report.get("burst"):
        lines += burst_section(report["burst"])
    if report.get("sharing"):
        lines += sharing_section(report["sharing"])
    if report.get("worker_host"):
        lines += worker_host_section(report["worker_host"])
    pollers = report.get("status_under_50_pollers")
    if pollers:
        lines.append(
            f"Status latency with {pollers['pollers']} pollers (each every {pollers['interval_s']:g} s) while "
            f"processing: p50 {pollers['p50_ms']:.1f} ms, p99 {pollers['p99_ms']:.1f} ms "
            f"({pollers['requests']} requests)."
        )
    first_images = report.get("accept_first_image_seconds", {})
    for products, seconds in report.get("accept_seconds", {}).items():
        first = first_images.get(products)
        stored = f"; its first image stored {first:.2f} s after the upload began" if first is not None else ""
        lines.append(f"Accepting a {int(products):,}-product CSV: {seconds:.2f} s{stored}.")
    return "\n".join(lines) + "\n"
