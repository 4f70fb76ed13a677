"""Builds the events module (bus, relay, subscribers, webhooks) for app.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apprun.events.api import EventsController, WebhooksController
from apprun.events.bus import EventBus
from apprun.events.envelope import set_default_source
from apprun.events.memory_bus import MemoryBus
from apprun.events.metrics import EventMetrics
from apprun.events.outbox import Relay
from apprun.events.service import Events
from apprun.events.streams import SessionCheck
from apprun.events.subscriptions import DEFAULT_REGISTRY, Registry, Runner, Subscriber
from apprun.events.visibility import EventVisibility
from apprun.events.webhooks import Webhooks
from apprun.kernel.runtime import Runtime, stop_step
from apprun.rbac.service import Rbac

__all__ = ["EventsModule", "build_events"]

#: Seconds each part may take to stop; together under the runtime's STOP_TIMEOUT for a module.
_PART_STOP_TIMEOUT = 4.0
_BUS_STOP_TIMEOUT = 6.0

WEBHOOK_CONSUMER = "apprun.webhooks"


@dataclass(eq=False)
class EventsModule:
    bus: EventBus
    relay: Relay
    runner: Runner
    events: Events
    webhooks: Webhooks
    registries: list[Registry]
    metrics: EventMetrics

    def routes(self) -> list[Any]:
        return [EventsController, WebhooksController]

    def state(self) -> dict[str, Any]:
        return {"events": self.events, "webhooks": self.webhooks, "bus": self.bus, "relay": self.relay}

    def wire(self, *, visibility: EventVisibility, sessions: SessionCheck) -> None:
        """The ports the modules above fill (app.py): who may see a record's event, whether a session holds."""
        self.events.use(visibility=visibility, sessions=sessions)

    def subscribers(self) -> list[Subscriber]:
        found: dict[str, Subscriber] = {}
        for registry in self.registries:
            found.update(registry.subscribers)
        found[WEBHOOK_CONSUMER] = Subscriber(
            name=WEBHOOK_CONSUMER, types=(), handler=self.webhooks.on_event, accepts=self.webhooks.wants
        )
        return list(found.values())

    async def start(self, runtime: Runtime) -> None:
        await self.bus.start()
        runtime.health.register("bus", self.bus.check, required=False)
        await self.relay.start()
        for subscriber in self.subscribers():
            await self.runner.start(subscriber)
        await self.webhooks.start()

    async def stop(self, runtime: Runtime) -> None:
        # Each part bounded on its own, so a hang (seen once in a while in the tests) names its part.
        await stop_step(self.webhooks.close(), "events.webhooks", limit_s=_PART_STOP_TIMEOUT)
        await stop_step(self.relay.close(), "events.relay", limit_s=_PART_STOP_TIMEOUT)
        await stop_step(self.bus.close(), "events.bus", limit_s=_BUS_STOP_TIMEOUT)


def build_events(runtime: Runtime, rbac: Rbac, registries: list[Registry] | None = None) -> EventsModule:
    s = runtime.settings
    set_default_source(f"apprun/{s.instance}")
    bus: EventBus
    if s.pubsub_backend == "nats":
        from apprun.events.nats_bus import NatsBus

        bus = NatsBus(s.pubsub_nats_url, instance=s.instance, retention_days=s.events_retention_days)
    else:
        bus = MemoryBus()
    metrics = EventMetrics(runtime.metrics.registry)
    relay = Relay(
        runtime.db,
        s.database,
        bus,
        batch=s.events_relay_batch,
        retention_days=s.events_retention_days,
        metrics=metrics,
    )
    runner = Runner(
        runtime.db,
        bus,
        default_ack_wait=s.events_ack_wait,
        default_max_deliver=s.events_max_deliver,
        metrics=metrics,
    )
    return EventsModule(
        bus=bus,
        relay=relay,
        runner=runner,
        events=Events(runtime.db, bus, rbac, recheck_every=s.events_stream_recheck_seconds),
        webhooks=Webhooks(s, runtime.db, rbac),
        registries=[DEFAULT_REGISTRY, *(registries or [])],
        metrics=metrics,
    )
