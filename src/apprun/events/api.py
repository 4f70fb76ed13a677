"""HTTP for events (publish, history, live tail) and webhooks."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from apprun.events.envelope import encode
from apprun.events.service import Events
from apprun.events.streams import STREAM_CLOSED, StreamClosed
from apprun.events.webhook_registry import WebhookRegistry
from apprun.events.webhooks import Webhooks
from apprun.kernel.errors import BadRequest
from apprun.kernel.http import ctx_of

__all__ = ["EventsController", "WebhooksController"]

_HEARTBEAT = 15.0


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    data: Any = None
    subject: str | None = None


def _events(state: State) -> Events:
    service: Events = state.events
    return service


def _webhooks(state: State) -> WebhookRegistry:
    service: Webhooks = state.webhooks
    return service.registry


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
    async def publish(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[PublishBody]
    ) -> dict[str, Any]:
        event = await _events(state).publish(
            ctx_of(request), event_type=data.type, subject=data.subject, data=data.data
        )
        return {"id": event.id, "type": event.type, "time": event.time}

    @get(summary="The tenant's recent events, newest first")
    async def history(
        self,
        request: Request[Any, Any, Any],
        state: State,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> list[dict[str, Any]]:
        # `type` is read by hand: it would shadow the builtin as a parameter name.
        return await _events(state).history(
            ctx_of(request),
            event_type=request.query_params.get("type"),
            since=_time(since, "since"),
            until=_time(until, "until"),
            limit=limit,
        )

    @get("/stream", summary="Live tail of the tenant's events (Server-Sent Events)")
    async def stream(self, request: Request[Any, Any, Any], state: State) -> ServerSentEvent:
        types = tuple(t for t in request.query_params.getall("type", []) if t)
        # Permission is checked here, and listening begun, before the 200 goes out.
        stream = await _events(state).open_stream(ctx_of(request), types)

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
    async def list_webhooks(self, request: Request[Any, Any, Any], state: State) -> list[dict[str, Any]]:
        return await _webhooks(state).all(ctx_of(request))

    @post(summary="Register a webhook; the signing secret is in the reply, once")
    async def create_webhook(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await _webhooks(state).create(ctx_of(request), data)

    @get("/{webhook_id:str}", summary="One webhook")
    async def get_webhook(
        self, request: Request[Any, Any, Any], state: State, webhook_id: FromPath[str]
    ) -> dict[str, Any]:
        return await _webhooks(state).get(ctx_of(request), webhook_id)

    @patch("/{webhook_id:str}", summary="Change URL, event types, description or active")
    async def update_webhook(
        self, request: Request[Any, Any, Any], state: State, webhook_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> dict[str, Any]:
        return await _webhooks(state).update(ctx_of(request), webhook_id, data)

    @delete("/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT, summary="Delete a webhook")
    async def delete_webhook(self, request: Request[Any, Any, Any], state: State, webhook_id: FromPath[str]) -> None:
        await _webhooks(state).delete(ctx_of(request), webhook_id)

    @post(
        "/{webhook_id:str}/rotate-secret",
        status_code=HTTP_200_OK,
        summary="A new signing secret (the old one stops at once)",
    )
    async def rotate(self, request: Request[Any, Any, Any], state: State, webhook_id: FromPath[str]) -> dict[str, Any]:
        return await _webhooks(state).rotate_secret(ctx_of(request), webhook_id)

    @get("/{webhook_id:str}/deliveries", summary="Recent deliveries with every attempt")
    async def deliveries(
        self, request: Request[Any, Any, Any], state: State, webhook_id: FromPath[str], limit: FromQuery[int] = 50
    ) -> list[dict[str, Any]]:
        return await _webhooks(state).deliveries(ctx_of(request), webhook_id, limit)

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/redeliver",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a delivery again",
    )
    async def redeliver(
        self, request: Request[Any, Any, Any], state: State, webhook_id: FromPath[str], delivery_id: FromPath[str]
    ) -> dict[str, Any]:
        return await _webhooks(state).redeliver(ctx_of(request), webhook_id, delivery_id)
