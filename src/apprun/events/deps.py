"""The events module's handler dependencies: the parameter names its handlers take, and their types.

``events: EventsDep`` in a handler is the `Events` service,
``webhook_registry: WebhookRegistryDep`` the webhooks' `WebhookRegistry`
(see `apprun.kernel.http`).
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.events.service import Events
from apprun.events.webhook_registry import WebhookRegistry
from apprun.kernel.http import provide_service

__all__ = ["EventsDep", "WebhookRegistryDep", "events_dependencies"]

EventsDep = NamedDependency[Events]
WebhookRegistryDep = NamedDependency[WebhookRegistry]


def events_dependencies(events: Events, webhook_registry: WebhookRegistry) -> dict[str, Provide]:
    """What `EventsModule.dependencies` returns: each service under its handlers' parameter name."""
    return {"events": provide_service(events), "webhook_registry": provide_service(webhook_registry)}
