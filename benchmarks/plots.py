"""PNG plots (matplotlib, Agg): throughput vs workers x functions; per-worker timelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend


def throughput_plot(data: dict[str, Any], path: Path) -> Path:
    """Jobs/s against workers, one line per functions-per-worker factor, with W/s ideal."""
    rows = data["throughput"]
    seconds = data["sleep_seconds"]
    workers = sorted({row["workers"] for row in rows})
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for factor in sorted({row["factor"] for row in rows}):
        points = sorted((r["workers"], r["jobs_per_s"]) for r in rows if r["factor"] == factor)
        axes.plot(*zip(*points, strict=True), marker="o", label=f"F = {factor} x W")
    largest = max(row["factor"] for row in rows)
    reference = sorted(
        (r["workers"], r["dask_jobs_per_s"])
        for r in rows
        if r["factor"] == largest and r["dask_jobs_per_s"]
    )
    if reference:
        axes.plot(*zip(*reference, strict=True), "s", color="grey", label="direct Dask, largest F")
    axes.plot(workers, [w / seconds for w in workers], "k--", label="ideal W / s")
    axes.plot(workers, [0.9 * w / seconds for w in workers], "k:", label="target 0.9 W / s")
    if len(workers) > 1:
        axes.set_xscale("log", base=2)
        axes.set_yscale("log", base=2)
    axes.set_xticks(workers, [str(w) for w in workers])
    axes.set_xlabel("workers (W)")
    axes.set_ylabel("jobs / s")
    axes.set_title(f"Throughput of time.sleep({seconds:g}) jobs")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def timeline_plot(data: dict[str, Any], path: Path) -> Path:
    """For each worker count, which worker ran which job when (one bar per job)."""
    runs = data["timelines"]
    heights = [max(1, len({job["worker"] for job in run["jobs"]})) for run in runs]
    figure, axes_list = plt.subplots(
        len(runs),
        1,
        figsize=(9, 1.2 + 0.22 * sum(heights) + 0.7 * len(runs)),
        gridspec_kw={"height_ratios": [h + 2 for h in heights]},
        squeeze=False,
    )
    colors = plt.get_cmap("tab20").colors
    for axes, run in zip(axes_list[:, 0], runs, strict=True):
        jobs = [job for job in run["jobs"] if job["started"] and job["finished"]]
        origin = min((job["created"] for job in jobs), default=0.0)
        names = sorted({job["worker"] for job in jobs})
        for index, job in enumerate(sorted(jobs, key=lambda job: job["started"])):
            row = names.index(job["worker"])
            axes.broken_barh(
                [(job["started"] - origin, job["finished"] - job["started"])],
                (row - 0.4, 0.8),
                facecolors=colors[index % len(colors)],
                edgecolor="white",
                linewidth=0.5,
            )
        axes.set_yticks(range(len(names)), [name.rsplit(":", 1)[-1] for name in names])
        axes.set_ylim(-0.7, len(names) - 0.3)
        axes.set_ylabel("worker port", fontsize=8)
        axes.tick_params(axis="y", labelsize=6 if len(names) > 8 else 8)
        axes.set_title(f"W = {run['workers']}, F = {run['functions']} jobs", fontsize=9)
        axes.grid(True, axis="x", alpha=0.3)
    axes_list[-1, 0].set_xlabel("seconds since the first job was created")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
