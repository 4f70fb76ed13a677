"""HTTP for events (publish, history, live tail) and webhooks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from apprun.events.deps import EventsDep, WebhookRegistryDep
from apprun.events.envelope import encode
from apprun.events.streams import STREAM_CLOSED, StreamClosed
from apprun.kernel.errors import BadRequest
from apprun.kernel.http import CtxDep

__all__ = ["EventsController", "WebhooksController"]

_HEARTBEAT = 15.0


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    data: Any = None
    subject: str | None = None


def _time(value: str | None, name: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("request.invalid", details={"field": name, "expected": "RFC 3339 time"}) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class EventsController(Controller):
    path = "/api/v1/events"
    tags = ("events",)

    @post(status_code=HTTP_202_ACCEPTED, summary="Publish an event of your own (type under `app.`)")
    async def publish(self, ctx: CtxDep, events: EventsDep, data: JSONBody[PublishBody]) -> dict[str, Any]:
        event = await events.publish(ctx, event_type=data.type, subject=data.subject, data=data.data)
        return {"id": event.id, "type": event.type, "time": event.time}

    @get(summary="The tenant's recent events, newest first")
    async def history(
        self,
        *,
        request: Request[Any, Any, Any],
        ctx: CtxDep,
        events: EventsDep,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> list[dict[str, Any]]:
        # `type` is read by hand: it would shadow the builtin as a parameter name.
        return await events.history(
            ctx,
            event_type=request.query_params.get("type"),
            since=_time(since, "since"),
            until=_time(until, "until"),
            limit=limit,
        )

    @get("/stream", summary="Live tail of the tenant's events (Server-Sent Events)")
    async def stream(self, request: Request[Any, Any, Any], ctx: CtxDep, events: EventsDep) -> ServerSentEvent:
        types = tuple(t for t in request.query_params.getall("type", []) if t)
        # Permission is checked here, and listening begun, before the 200 goes out.
        stream = await events.open_stream(ctx, types)

        async def messages() -> AsyncIterator[ServerSentEventMessage]:
            try:
                # Comments (no data field: browsers would fire an empty message otherwise).
                yield ServerSentEventMessage(comment="apprun event stream", data=None)
                while True:
                    item = await stream.next(_HEARTBEAT)
                    if item is None:
                        yield ServerSentEventMessage(comment="keep-alive", data=None)
                    elif isinstance(item, StreamClosed):
                        yield ServerSentEventMessage(data=json.dumps({"reason": item.reason}), event=STREAM_CLOSED)
                        return
                    else:
                        yield ServerSentEventMessage(data=encode(item).decode(), event=item.type, id=item.id)
            finally:
                await stream.close()

        return ServerSentEvent(messages(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


class WebhooksController(Controller):
    path = "/api/v1/webhooks"
    tags = ("webhooks",)

    @get(summary="The tenant's webhooks")
    async def list_webhooks(self, ctx: CtxDep, webhook_registry: WebhookRegistryDep) -> list[dict[str, Any]]:
        return await webhook_registry.all(ctx)

    @post(summary="Register a webhook; the signing secret is in the reply, once")
    async def create_webhook(
        self, ctx: CtxDep, webhook_registry: WebhookRegistryDep, data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await webhook_registry.create(ctx, data)

    @get("/{webhook_id:str}", summary="One webhook")
    async def get_webhook(
        self, ctx: CtxDep, webhook_registry: WebhookRegistryDep, webhook_id: FromPath[str]
    ) -> dict[str, Any]:
        return await webhook_registry.get(ctx, webhook_id)

    @patch("/{webhook_id:str}", summary="Change URL, event types, description or active")
    async def update_webhook(
        self,
        ctx: CtxDep,
        webhook_registry: WebhookRegistryDep,
        webhook_id: FromPath[str],
        data: JSONBody[dict[str, Any]],
    ) -> dict[str, Any]:
        return await webhook_registry.update(ctx, webhook_id, data)

    @delete("/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a webhook")
    async def delete_webhook(
        self, ctx: CtxDep, webhook_registry: WebhookRegistryDep, webhook_id: FromPath[str]
    ) -> None:
        await webhook_registry.delete(ctx, webhook_id)

    @post(
        "/{webhook_id:str}/rotate-secret",
        status_code=HTTP_200_OK,
        summary="A new signing secret (the old one stops at once)",
    )
    async def rotate(
        self, ctx: CtxDep, webhook_registry: WebhookRegistryDep, webhook_id: FromPath[str]
    ) -> dict[str, Any]:
        return await webhook_registry.rotate_secret(ctx, webhook_id)

    @get("/{webhook_id:str}/deliveries", summary="Recent deliveries with every attempt")
    async def deliveries(
        self, ctx: CtxDep, webhook_registry: WebhookRegistryDep, webhook_id: FromPath[str], limit: FromQuery[int] = 50
    ) -> list[dict[str, Any]]:
        return await webhook_registry.deliveries(ctx, webhook_id, limit)

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a delivery again",
    )
    async def redeliver(
        self, ctx: CtxDep, webhook_registry: WebhookRegistryDep, webhook_id: FromPath[str], delivery_id: FromPath[str]
    ) -> dict[str, Any]:
        return await webhook_registry.redeliver(ctx, webhook_id, delivery_id)
