"""The events module's Prometheus metrics (in the app's registry, multi-worker aware)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["EventMetrics"]


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._published = Counter(
            "apprun_events_published_total", "Events the relay handed to the bus.", ["type"], registry=registry
        )
        self._delivered = Counter(
            "apprun_events_delivered_total",
            "Deliveries to apprun's consumers, by outcome (ok, duplicate, skipped, retry, dead_letter).",
            ["consumer", "outcome"],
            registry=registry,
        )
        # Only the relay leader measures; the others report 0, so max and sum agree.
        self._lag = Gauge(
            "apprun_events_outbox_lag_seconds",
            "Age of the oldest event not yet published.",
            registry=registry,
            multiprocess_mode="max",
        )
        self._pending = Gauge(
            "apprun_events_outbox_pending",
            "Events waiting in the outbox (up to one relay batch).",
            registry=registry,
            multiprocess_mode="max",
        )

    def published(self, event_type: str) -> None:
        self._published.labels(event_type).inc()

    def delivered(self, consumer: str, outcome: str) -> None:
        self._delivered.labels(consumer, outcome).inc()

    def lag(self, seconds: float, pending: int) -> None:
        self._lag.set(seconds)
        self._pending.set(pending)
