"""The Flask application factory: the API blueprint, authentication, errors, metrics."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Flask

from gateway.api.auth import authenticate, is_admin
from gateway.api.errors import ApiError, install_error_handlers
from gateway.api.routes import PUBLIC_ENDPOINTS, create_blueprint
from gateway.config import GatewayConfig
from gateway.dashboard import install_dashboard
from gateway.services import EXTENSION, Services, services


def create_app(config: GatewayConfig, scheduler: Any) -> Flask:
    """Build the gateway app. ``scheduler`` is an address or a Dask cluster object.

    The caller starts the background work (``app.extensions["computethis"].start()``,
    a :class:`~gateway.services.Services`) once the app is about to serve, and closes
    it on shutdown.
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body
    shared = app.extensions[EXTENSION] = Services.create(config, scheduler)
    shared.metrics.install(app)
    app.add_url_rule("/metrics", "metrics", _metrics)
    install_error_handlers(app)
    app.register_blueprint(create_blueprint())
    dashboard = install_dashboard(app)  # its pages check a session cookie instead
    app.before_request(partial(authenticate, PUBLIC_ENDPOINTS | dashboard))
    return app


def _metrics() -> Any:
    """Prometheus metrics; they describe every tenant's work, so admin token only."""
    if not is_admin():
        raise ApiError(403, "forbidden", "/metrics needs the admin token")
    return services().metrics.render()
