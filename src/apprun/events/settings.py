"""The events module's settings section: the bus, the relay, consumers, live streams, webhooks.

The names are the environment variables (``PUBSUB_*``, ``EVENTS_*``,
``WEBHOOK_*``); see docs/configuration.md, "Events", and docs/events.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from apprun.kernel.config import KernelSettings, split_csv

__all__ = ["EventsSettings"]


class EventsSettings(KernelSettings):
    """The events module's section of the settings."""

    pubsub_backend: Literal["memory", "nats"] = "memory"
    pubsub_nats_url: str = "nats://127.0.0.1:4222"
    events_retention_days: int = Field(7, ge=1, description="days published events stay in the history")
    events_relay_batch: int = Field(500, ge=1, le=10_000)
    events_ack_wait: float = Field(30.0, gt=0, description="seconds a handler may take before redelivery")
    events_max_deliver: int = Field(5, ge=1, description="deliveries before an event goes to the dead letters")
    events_consumer_batch: int = Field(
        100, ge=1, le=1000, description="events a subscriber takes from the bus at once, handled in one transaction"
    )
    #: Bounded, so a setting cannot let a stream outlive its session by long.
    events_stream_recheck_seconds: float = Field(
        15.0, gt=0, le=300, description="seconds between a live event stream's checks of its session"
    )
    webhook_timeout: float = Field(10.0, gt=0)
    webhook_retry_period: int = Field(86400, ge=1, description="seconds a delivery is retried before it is abandoned")
    webhook_backoff_base: float = Field(10.0, gt=0, description="first retry delay, doubling after")
    webhook_disable_after: int = Field(5, ge=1, description="abandoned deliveries in a row that switch a webhook off")
    webhook_allowlist: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("webhook_allowlist", mode="before")
    @classmethod
    def _events_csv(cls, value: Any) -> Any:
        return split_csv(value)
