"""Prometheus metrics: requests by route and status, their latency, queue depth, jobs by status."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    """One registry per app, so two apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedq_http_requests",
            "HTTP requests answered, by method, route and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "embedq_http_request_seconds",
            "Time to answer an HTTP request, by route",
            ("route",),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "embedq_queue_depth", "Batches waiting in the broker's queue", registry=self.registry
        )
        self.jobs = Gauge(
            "embedq_jobs", "Jobs in the ledger, by status", ("status",), registry=self.registry
        )

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        # the route's template, not the path: job ids must not become label values
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)
        return response
