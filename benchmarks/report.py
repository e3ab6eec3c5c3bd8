"""The benchmark's figures as a markdown table."""


def markdown(report: dict) -> str:
    ceiling = report["ceiling"]
    lines = [
        f"Machine: {report['cores']} cores. Corpus: {report['corpus']['images']} images, "
        f"mean {report['corpus']['mean_megapixels']:.2f} MP, {report['per_product']} images per product.",
        f"Ceiling (Pillow alone, one process per core): {ceiling['plain_pillow_images_per_second']:.1f} images/s; "
        f"with the service's codec (same Pillow calls plus its metadata rules): "
        f"{ceiling['service_codec_images_per_second']:.1f} images/s.",
        "",
        "| images | host latency | seconds | images/s | MP/s | ratio to ceiling | ratio to codec ceiling "
        "| image latency p50 / p95 | output/input bytes | worker CPU | peak memory (PSS) API / worker |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in report["runs"]:
        rss = run["peak_memory_mb"]
        lines.append(
            f"| {run['images']} | {run['latency_ms']} ms | {run['seconds']:.1f} | {run['images_per_second']:.1f} "
            f"| {run['megapixels_per_second']:.1f} | {run['ratio_to_ceiling']:.2f} "
            f"| {run['ratio_to_codec_ceiling']:.2f} "
            f"| {run['image_latency_p50_s']:.2f} / {run['image_latency_p95_s']:.2f} s "
            f"| {run['output_to_input_bytes']:.2f} | {100 * run['worker_cpu_utilisation']:.0f} % "
            f"| {rss.get('api', 0):.0f} / {rss.get('worker', 0):.0f} MB |"
        )
    lines.append("")
    for latency in sorted({run["latency_ms"] for run in report["runs"]}):
        runs = {run["images"]: run["seconds"] for run in report["runs"] if run["latency_ms"] == latency}
        if len(runs) > 1:
            smallest, largest = min(runs), max(runs)
            lines.append(
                f"Growth at {latency} ms: {largest} images cost {runs[largest] / runs[smallest]:.2f}× "
                f"what {smallest} cost ({largest / smallest:.0f}× the images)."
            )
    pollers = report.get("status_under_50_pollers")
    if pollers:
        lines.append(
            f"Status latency with {pollers['pollers']} pollers (each every {pollers['interval_s']:g} s) while "
            f"processing: p50 {pollers['p50_ms']:.1f} ms, p99 {pollers['p99_ms']:.1f} ms "
            f"({pollers['requests']} requests)."
        )
    for products, seconds in report.get("accept_seconds", {}).items():
        lines.append(f"Accepting a {int(products):,}-product CSV: {seconds:.2f} s.")
    return "\n".join(lines) + "\n"
