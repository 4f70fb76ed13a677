"""Webhooks: a tenant's events POSTed to its own HTTPS endpoints.

A webhook has a URL, the event types it wants (empty: all), a secret and an
active flag. For every event of its tenant that matches, a *delivery* is
recorded — by a durable event consumer, in the transaction that marks the
event processed, so each event makes each delivery exactly once — and a
worker POSTs it:

- body: the CloudEvent in JSON structured mode
  (``Content-Type: application/cloudevents+json``);
- headers of the Standard Webhooks scheme: ``webhook-id`` (the event id,
  the same on every retry), ``webhook-timestamp`` (Unix seconds) and
  ``webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>``
  where the key is the base64 part of the ``whsec_…`` secret;
- a 2xx answer is a success; anything else, a timeout or a refused address
  is a failed attempt, retried after 10 s, 20 s, 40 s … (doubling, at most
  6 h apart) until ``WEBHOOK_RETRY_PERIOD`` has passed since the first
  attempt; then the delivery is abandoned. After ``WEBHOOK_DISABLE_AFTER``
  abandoned deliveries in a row the webhook is switched off.

Every attempt is logged with its status code, error and duration, readable
by the tenant; a delivery can be sent again on request (``admin`` on
``webhooks``, like every change). Targets are checked against server-side
request forgery (see `apprun.events.ssrf`), at registration and again at
every attempt; the request ignores proxy variables and ``.netrc`` of the
server, follows no redirect and never reads the answer's body.

An inactive webhook gets no new deliveries, and the worker holds back the
ones it still has until it is switched on again. Each event makes at most one
delivery per webhook even if the consumer sees it again after its
de-duplication marker is gone (see `WebhookDelivery.on_event`).

The parts, composed here:

- `apprun.events.webhook_registry`: the management API (`Webhooks.registry`);
- `apprun.events.webhook_delivery`: the consumer and the worker
  (`Webhooks.delivery`);
- `apprun.events.webhook_targets`: the SSRF check both consult;
- `apprun.events.webhook_signing`: secrets and signatures.
"""

from __future__ import annotations

from apprun.events.envelope import CloudEvent
from apprun.events.settings import EventsSettings
from apprun.events.ssrf import Allowlist, Resolver
from apprun.events.subscriptions import HandlerContext
from apprun.events.webhook_delivery import WebhookDelivery
from apprun.events.webhook_registry import WebhookRegistry
from apprun.events.webhook_signing import sign
from apprun.events.webhook_targets import WebhookTargets
from apprun.kernel.db import Database
from apprun.rbac.service import Rbac

__all__ = ["Webhooks", "sign"]


class Webhooks:
    """The webhooks of the events module: a registry and a delivery worker sharing one target check.

    The HTTP handlers use `registry`; the module wires the consumer and the
    worker's start and stop through the methods below, which hand over to
    `delivery`.
    """

    def __init__(self, settings: EventsSettings, db: Database, rbac: Rbac) -> None:
        self.targets = WebhookTargets(Allowlist(settings.webhook_allowlist))
        self.delivery = WebhookDelivery(settings, db, self.targets)
        self.registry = WebhookRegistry(db, rbac, self.targets, wake=self.delivery.wake, changed=self.delivery.forget)

    @property
    def resolver(self) -> Resolver:
        """The DNS port asked at registration and before every attempt (tests replace it)."""
        return self.targets.resolver

    @resolver.setter
    def resolver(self, resolver: Resolver) -> None:
        self.targets.resolver = resolver

    async def wants(self, event: CloudEvent) -> bool:
        return await self.delivery.wants(event)

    async def on_event(self, event: CloudEvent, ctx: HandlerContext) -> None:
        await self.delivery.on_event(event, ctx)

    async def start(self) -> None:
        await self.delivery.start()

    async def close(self) -> None:
        await self.delivery.close()
