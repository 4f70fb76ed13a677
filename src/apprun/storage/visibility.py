"""Who receives an object's event: a reader who may read its bucket now.

``apprun.object.*`` events carry an object's bucket, name, size, type and
owner. A tenant member who may read the tenant's events but not a bucket
(a role without ``read`` on ``bucket:<name>``) must not learn from them what
the bucket holds, so storage decides these events for the events module's
readers (the history and live streams), as data decides record events:
``read`` on the bucket, asked of RBAC at the moment the event is handed over.
"""

from __future__ import annotations

from apprun.events.envelope import CloudEvent
from apprun.kernel.context import RequestContext
from apprun.rbac.service import Rbac
from apprun.storage.buckets import bucket_object

__all__ = ["OBJECT_EVENT_PREFIX", "ObjectVisibility"]

OBJECT_EVENT_PREFIX = "apprun.object."


class ObjectVisibility:
    """Implements `apprun.events.visibility.EventVisibility` for ``apprun.object.*``: read on the bucket."""

    def __init__(self, rbac: Rbac) -> None:
        self.rbac = rbac

    async def visible(self, ctx: RequestContext, event: CloudEvent) -> CloudEvent | None:
        data = event.data if isinstance(event.data, dict) else {}
        bucket = data.get("bucket")
        if not isinstance(bucket, str):
            return None  # not an event storage wrote: nobody learns what it says
        decision = await self.rbac.authorize(ctx, "read", bucket_object(bucket))
        return event if decision.allowed else None
