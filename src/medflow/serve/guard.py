"""What stands in front of every endpoint: API keys, a per-key rate limit, a body-size limit, and the Prometheus
counters the service exposes at /metrics."""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

disable_created_metrics()  # the *_created series double every counter and nobody graphs them

__all__ = ["RateLimiter", "ServiceMetrics", "BodyLimit"]


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute on average, bursts up to `burst`."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst or max(1, int(per_minute // 6) or 1))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token) for one request under `key`."""
        if self.rate <= 0:
            return True, 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1 - tokens) / self.rate


class ServiceMetrics:
    """Requests, latency and errors per model and endpoint, in a registry of the app's own (Prometheus text)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("medflow_requests", "Requests answered", ["endpoint", "model", "status"],
                                registry=self.registry)
        self.latency = Histogram("medflow_request_latency_seconds", "Time from request to response",
                                 ["endpoint", "model"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.errors = Counter("medflow_errors", "Requests refused or failed", ["endpoint", "model", "kind"],
                              registry=self.registry)
        self.records = Counter("medflow_predicted_records", "Records predicted", ["model", "version"],
                               registry=self.registry)
        self.batches = Histogram("medflow_batch_requests", "Requests predicted together (micro-batching)",
                                 ["model"], registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64))
        self._children: dict[tuple, tuple[Any, Any]] = {}  # label lookups cached: they take a lock each

    def observe(self, endpoint: str, model: str, status: int, seconds: float, kind: str = "") -> None:
        key = (endpoint, model, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (self.requests.labels(endpoint, model, str(status)),
                                           self.latency.labels(endpoint, model))
        child[0].inc()
        child[1].observe(seconds)
        if status >= 400:
            self.errors.labels(endpoint, model, kind or str(status)).inc()


class BodyLimit:
    """ASGI middleware: bodies over `max_bytes` get 413 (by Content-Length, or while streaming without it)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or {}).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        seen = 0
        too_big = False

        async def limited() -> dict:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    import json

    body = json.dumps({"error": f"the request body is over the service's limit of {limit:,} bytes; send fewer "
                                "records per request", "problems": [{"field": "body", "problem": "too large"}]}
                      ).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
