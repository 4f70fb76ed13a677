"""The events module, as the kernel sees it: bus, relay, subscribers, webhooks, and their HTTP API.

Modules above fill two ports of the events service in their `wire`: data says
who may see a record's event, auth whether a live stream's session still
holds. Event handlers (of the application, or of a module) are registered
with `Subscriptions`, which this module publishes, and start with it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from typing_extensions import override

from apprun.events.api import EventsController, WebhooksController
from apprun.events.bus import EventBus
from apprun.events.deps import events_dependencies
from apprun.events.envelope import set_default_source
from apprun.events.memory_bus import MemoryBus
from apprun.events.metrics import EventMetrics
from apprun.events.outbox import Relay
from apprun.events.service import Events
from apprun.events.settings import EventsSettings
from apprun.events.subscriptions import DEFAULT_REGISTRY, Registry, Runner, Subscriber
from apprun.events.webhooks import Webhooks
from apprun.kernel.config import KernelSettings, section
from apprun.kernel.doctor import DoctorResult, greeting
from apprun.kernel.module import DoctorCheck, HealthCheck, Module, Wiring
from apprun.kernel.runtime import stop_step
from apprun.rbac.service import Rbac

if TYPE_CHECKING:
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.runtime import Runtime

__all__ = ["WEBHOOK_CONSUMER", "EventsModule", "Subscriptions", "check_nats"]

#: Seconds each part may take to stop; together under the runtime's STOP_TIMEOUT for a module.
_PART_STOP_TIMEOUT = 4.0
_BUS_STOP_TIMEOUT = 6.0

WEBHOOK_CONSUMER = "apprun.webhooks"


class Subscriptions:
    """The event handlers to run: ``@subscribe``'s default registry, then every registry added.

    Add a `Registry` before the events module starts: in a module's `wire`, or
    through ``create_app(subscribers=...)``. A later registry's subscriber
    replaces an earlier one of the same name.
    """

    def __init__(self) -> None:
        self.registries: list[Registry] = [DEFAULT_REGISTRY]

    def add(self, registry: Registry) -> None:
        self.registries.append(registry)


class EventsModule(Module):
    name = "events"
    requires = ("rbac",)
    settings = EventsSettings
    messages = "events"
    tables = "apprun.events.tables"
    migrations = "apprun.events.migrations"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        s = section(runtime.settings, EventsSettings)
        rbac = wiring.get(Rbac)
        set_default_source(f"apprun/{s.instance}")
        self.bus = self._bus(s)
        self.metrics = EventMetrics(runtime.metrics.registry)
        self.relay = Relay(
            runtime.db,
            s.database,
            self.bus,
            batch=s.events_relay_batch,
            retention_days=s.events_retention_days,
            metrics=self.metrics,
        )
        self.runner = Runner(
            runtime.db,
            self.bus,
            default_ack_wait=s.events_ack_wait,
            default_max_deliver=s.events_max_deliver,
            batch=s.events_consumer_batch,
            metrics=self.metrics,
        )
        self.events = Events(runtime.db, self.bus, rbac, recheck_every=s.events_stream_recheck_seconds)
        self.webhooks = Webhooks(s, runtime.db, rbac)
        self.subscriptions = Subscriptions()
        for service in (self.events, self.webhooks, self.subscriptions):
            wiring.provide(service)

    @staticmethod
    def _bus(s: EventsSettings) -> EventBus:
        if s.pubsub_backend == "nats":
            from apprun.events.nats_bus import NatsBus

            return NatsBus(s.pubsub_nats_url, instance=s.instance, retention_days=s.events_retention_days)
        return MemoryBus()

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [EventsController, WebhooksController]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return events_dependencies(self.events, self.webhooks.registry)

    @override
    def health_checks(self) -> Mapping[str, HealthCheck]:
        # Optional: the outbox keeps events while the bus is down; the relay publishes them when it is back.
        return {"bus": (self.bus.check, False)}

    def subscribers(self) -> list[Subscriber]:
        found: dict[str, Subscriber] = {}
        for registry in self.subscriptions.registries:
            found.update(registry.subscribers)
        found[WEBHOOK_CONSUMER] = Subscriber(
            name=WEBHOOK_CONSUMER, types=(), handler=self.webhooks.on_event, accepts=self.webhooks.wants
        )
        return list(found.values())

    @override
    async def start(self, runtime: Runtime) -> None:
        await self.bus.start()
        await self.relay.start()
        for subscriber in self.subscribers():
            await self.runner.start(subscriber)
        await self.webhooks.start()

    @override
    async def stop(self, runtime: Runtime) -> None:
        # Each part bounded on its own, so a hang (seen once in a while in the tests) names its part.
        await stop_step(self.webhooks.close(), "events.webhooks", limit_s=_PART_STOP_TIMEOUT)
        await stop_step(self.relay.close(), "events.relay", limit_s=_PART_STOP_TIMEOUT)
        await stop_step(self.bus.close(), "events.bus", limit_s=_BUS_STOP_TIMEOUT)

    @classmethod
    @override
    def doctor_checks(cls, settings: KernelSettings) -> Sequence[DoctorCheck]:
        s = section(settings, EventsSettings)
        if s.pubsub_backend != "nats":
            return ()
        return [functools.partial(check_nats, s.pubsub_nats_url)]


async def check_nats(urls: str) -> DoctorResult:
    """``apprun doctor``: is a NATS server answering at the first of ``PUBSUB_NATS_URL``'s servers?"""
    parts = urlsplit(urls.split(",", maxsplit=1)[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    try:
        line = await greeting(host, port, None)
    except (OSError, TimeoutError) as exc:
        return DoctorResult(
            "bus (NATS)", False, f"{host}:{port}: {exc}", "start nats-server -js, or fix PUBSUB_NATS_URL"
        )
    if not line.startswith(b"INFO "):
        return DoctorResult("bus (NATS)", False, f"{host}:{port} is not a NATS server", "fix PUBSUB_NATS_URL")
    return DoctorResult("bus (NATS)", True, f"{host}:{port}", "")
