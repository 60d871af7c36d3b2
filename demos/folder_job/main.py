"""A folder job: summarise the temperature readings in data/, write a CSV and a chart.

Run it on the cluster with `computethis run demos/folder_job` (or `python
demos/folder_job/run.py`); it also runs as it is, here: `python main.py`. Only the
standard library: the chart is a PNG written by hand, so workers need nothing installed.
"""

import csv
import statistics
import struct
import sys
import zlib
from collections import defaultdict
from pathlib import Path

WIDTH, HEIGHT, MARGIN = 480, 240, 20


def read(path: Path) -> dict[str, list[float]]:
    """Temperatures by city."""
    by_city: dict[str, list[float]] = defaultdict(list)
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            by_city[row["city"]].append(float(row["temperature_c"]))
    return dict(sorted(by_city.items()))


def write_png(path: Path, means: list[float]) -> None:
    """A bar chart of ``means``: one bar per city, scaled to the warmest."""
    top = max(max(means), 1.0)
    pixels = [[(255, 255, 255)] * WIDTH for _ in range(HEIGHT)]
    slot = (WIDTH - 2 * MARGIN) // len(means)
    for index, mean in enumerate(means):
        height = int((HEIGHT - 2 * MARGIN) * max(mean, 0.0) / top)
        left = MARGIN + index * slot + slot // 6
        for y in range(HEIGHT - MARGIN - height, HEIGHT - MARGIN):
            for x in range(left, left + slot * 2 // 3):
                pixels[y][x] = (46, 110, 180)
    raw = b"".join(b"\0" + bytes(v for pixel in row for v in pixel) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def main() -> int:
    by_city = read(Path("data/measurements.csv"))
    print(f"read {sum(map(len, by_city.values()))} readings of {len(by_city)} cities", flush=True)
    out = Path("out")
    out.mkdir(exist_ok=True)
    with open(out / "summary.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["city", "readings", "mean_c", "min_c", "max_c"])
        for city, values in by_city.items():
            mean = statistics.fmean(values)
            writer.writerow([city, len(values), f"{mean:.2f}", min(values), max(values)])
            print(f"{city:<10} mean {mean:5.1f} C over {len(values)} days", flush=True)
    write_png(out / "chart.png", [statistics.fmean(v) for v in by_city.values()])
    print("wrote out/summary.csv and out/chart.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
