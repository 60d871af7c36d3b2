"""The demo's page: ``python -m demos.prices --serve`` (its own small Flask app, a
client of the gateway). Upload a CSV of ticks, pick a column, click "Compute low" or
"Compute high": the file is scanned on the cluster and the page shows the answer and
the time, as the original project's GUI did.

Uploads are kept in a temporary folder while the page runs (it is for one user on
their machine: it listens on 127.0.0.1 unless told otherwise).
"""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, abort, redirect, render_template, request, url_for

from demos.prices.compute import columns, on_cluster

MAX_UPLOAD = 2 << 30  # bytes of one CSV
UPLOAD_ID = re.compile(r"[0-9a-f]{32}\Z")


def create_app(folder: Path) -> Flask:
    """The page's app, keeping uploads in ``folder``."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD

    def uploaded(upload_id: str) -> Path:
        path = folder / f"{upload_id}.csv"
        if not UPLOAD_ID.match(upload_id) or not path.is_file():
            abort(404, "that upload is gone: upload the file again")
        return path

    @app.get("/")
    def form() -> Any:
        upload_id = request.args.get("upload", "")
        if not upload_id:
            return render_template("prices.html", upload=None)
        path = uploaded(upload_id)
        names = columns(path)[1:]
        return render_template(
            "prices.html",
            upload=upload_id,
            filename=request.args.get("name", path.name),
            columns=names,
            column=request.args.get("column") or (names[0] if names else ""),
        )

    @app.post("/upload")
    def upload() -> Any:
        sent = request.files.get("file")
        if sent is None or not sent.filename:
            return render_template("prices.html", upload=None, error="Pick a CSV file."), 400
        upload_id = uuid.uuid4().hex
        sent.save(folder / f"{upload_id}.csv")
        return redirect(url_for("form", upload=upload_id, name=Path(sent.filename).name))

    @app.post("/compute")
    def compute() -> Any:
        upload_id = request.form.get("upload", "")
        path = uploaded(upload_id)
        column, wanted = request.form.get("column", ""), request.form.get("op", "low")
        names = columns(path)[1:]
        page = {
            "upload": upload_id,
            "filename": request.form.get("name", path.name),
            "columns": names,
            "column": column,
        }
        try:
            answer = on_cluster(path, column)
        except ValueError as exc:
            return render_template("prices.html", **page, error=str(exc)), 400
        except Exception as exc:  # noqa: BLE001 - the gateway's refusal, shown to the user
            error = f"The cluster could not compute it: {exc}"
            return render_template("prices.html", **page, error=error), 502
        found = answer.extremes
        value, at = (found.low, found.low_at) if wanted == "low" else (found.high, found.high_at)
        return render_template(
            "prices.html", **page, op=wanted, value=value, at=at, answer=answer, found=found
        )

    return app


def serve(host: str, port: int) -> None:
    """Serve the page until Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="prices-") as folder:
        app = create_app(Path(folder))
        print(f"the prices page is at http://{host}:{port}/", flush=True)
        app.run(host=host, port=port, threaded=True)
