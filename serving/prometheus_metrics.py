"""Prometheus metrics of the service: requests, errors and latency by route and model version,
and each loaded version's scoring (the champion and a rolling-out challenger)."""

import time

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VERSION_KEY = "served_model_version"
"""Where a handler leaves, in the ASGI scope, the model version that answered the request."""


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("route", "model_version")
        self.requests = Counter(
            "prediction_service_requests", "HTTP requests answered.", (*labels, "status"),
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "prediction_service_errors", "Requests answered with a 4xx or 5xx status.",
            (*labels, "status"), registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "prediction_service_request_duration_seconds", "Time to answer a request.", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_seconds = Histogram(
            "prediction_service_model_scoring_seconds",
            "Time each loaded version took per request: the champion's whole request, the "
            "challenger's scoring beside it.", ("model_version", "role"),
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.model_errors = Counter(
            "prediction_service_model_errors", "Requests a loaded version failed to score.",
            ("model_version", "role"), registry=self.registry,
        )  # fmt: skip
        self.predictions = Counter(
            "prediction_service_predictions", "Items scored.", ("model_version",),
            registry=self.registry,
        )  # fmt: skip


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task) recording every HTTP request."""

    def __init__(self, app, metrics: ServiceMetrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), 500

        async def record_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            version = scope.get(VERSION_KEY) or "none"
            self.metrics.requests.labels(route, version, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, version, str(status)).inc()
            self.metrics.latency.labels(route, version).observe(time.perf_counter() - began)
