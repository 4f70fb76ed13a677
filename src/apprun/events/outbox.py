"""The transactional outbox and its relay.

`emit(conn, event)` inserts the event into ``apprun_event_outbox`` inside
the caller's transaction: it exists if and only if the change that caused
it committed. The relay then publishes unpublished rows to the bus in id
order (ids are time-ordered), waits for the bus to acknowledge them, and
marks them published. If the bus is down it retries with exponential
backoff; if apprun dies between publishing and marking, the rows are
published again after restart and the bus drops the duplicates (JetStream by
``Nats-Msg-Id``), and consumers de-duplicate by event id as well.

One relay is active per database at a time — a leader, elected by a lock
that dies with its holder: a PostgreSQL advisory lock on a dedicated
connection, or an exclusive lock on a file beside the SQLite database. Any
number of apprun processes can run; the others stand by and take over
within a second or two when the leader goes away. A single publisher is what
keeps each tenant's events in order, with no duplicates and no gaps.

The leader wakes at once for events committed in its own process, by
PostgreSQL ``NOTIFY`` for events committed elsewhere, and polls every
``poll`` seconds as a backstop. Published rows are deleted after
``EVENTS_RETENTION_DAYS``: until then they are the tenant's event history.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import math
import os
import time
from typing import IO, Any

import asyncpg

from apprun.events.bus import BusUnavailable, EventBus, StoredEvent
from apprun.events.envelope import CloudEvent, encode
from apprun.kernel.config import DatabaseConfig
from apprun.kernel.db import Connection, Database
from apprun.kernel.errors import ApiError
from apprun.kernel.logging import get_logger
from apprun.kernel.times import to_datetime, utcnow

__all__ = ["NOTIFY_CHANNEL", "Relay", "allow_emitting", "emit", "emit_grant"]

NOTIFY_CHANNEL = "apprun_outbox"
_PG_RELAY_LOCK = 0x61707072756E02  # "apprun" + 2: the relay leader's advisory lock
_log = get_logger("apprun.events.relay")
#: Wakes the relay of this process after a commit that emitted (set by the Relay).
_waker: list[asyncio.Event] = []


async def emit(conn: Connection, event: CloudEvent) -> CloudEvent:
    """Write ``event`` to the outbox in the caller's transaction; published after commit.

    The row is written at the latest with the ``COMMIT`` (`Connection.execute_at_commit`:
    in the COMMIT's round trip, in a data write on PostgreSQL): nothing reads the outbox
    in the transaction that emits.
    """
    await conn.execute_at_commit(
        "INSERT INTO apprun_event_outbox (id, tenant_id, type, subject, payload, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        event.id,
        event.tenantid,
        event.type,
        event.subject,
        encode(event).decode(),
        utcnow(),
    )
    if not conn.tx_state.get("apprun.outbox.wakes"):  # once per transaction is enough
        conn.tx_state["apprun.outbox.wakes"] = True
        # PostgreSQL: delivered at commit (and only then) to the leader, in whatever process it
        # runs; in a data write (a transaction with settings) sent with the COMMIT itself.
        await conn.notify(NOTIFY_CHANNEL)
        conn.on_commit(_wake)
    return event


def emit_grant(role: str) -> str:
    """The statement that lets PostgreSQL role ``role`` emit events (insert into the outbox).

    ``role`` is a configured role name (``DB_DATA_ROLE``), quoted here as an identifier.
    """
    return f'GRANT INSERT ON apprun_event_outbox TO "{role}"'


async def allow_emitting(conn: Connection, role: str) -> None:
    """Let ``role`` emit events (PostgreSQL; a grant already in place is not repeated).

    The data module's requests run as their own role, and a write emits its
    record event in the same transaction, under that role.
    """
    if not await conn.fetchval("SELECT has_table_privilege($1, 'apprun_event_outbox', 'INSERT')", role):
        await conn.execute(emit_grant(role))


def _bytes(payload: str | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else payload.encode()


def _wake() -> None:
    for event in _waker:
        event.set()


class _Leadership:
    """Holds (or tries to hold) the one relay lock of a database."""

    def __init__(self, config: DatabaseConfig, on_notify: asyncio.Event) -> None:
        self.config = config
        self.on_notify = on_notify
        self._pg: asyncpg.Connection | None = None
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        if self._pg is not None:
            return not self._pg.is_closed()
        return self._file is not None

    async def try_acquire(self) -> bool:
        if self.held:
            return True
        await self.release()
        if self.config.dialect == "postgres":
            return await self._try_pg()
        return self._try_file()

    async def _try_pg(self) -> bool:
        c = self.config
        try:
            conn = await asyncpg.connect(
                host=c.host, port=c.port, user=c.user, password=c.password, database=c.name, ssl=c.sslmode, timeout=3
            )
        except (OSError, TimeoutError, asyncpg.PostgresError):
            return False
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _PG_RELAY_LOCK):
                await conn.close()
                return False
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self.on_notify.set())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            with contextlib.suppress(Exception):
                await conn.close()
            return False
        self._pg = conn
        return True

    def _try_file(self) -> bool:
        if self.config.path is None:  # pragma: no cover - SQLite always has a path
            return False
        path = self.config.path.with_name(self.config.path.name + ".relay.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 - held open for as long as we lead
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._file = fh
        return True

    async def release(self) -> None:
        if self._pg is not None:
            conn, self._pg = self._pg, None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await conn.close()
        if self._file is not None:
            fh, self._file = self._file, None
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


class Relay:
    """Publishes the outbox to the bus; one leader per database."""

    def __init__(
        self,
        db: Database,
        config: DatabaseConfig,
        bus: EventBus,
        *,
        batch: int = 500,
        poll: float = 0.5,
        retention_days: int = 7,
        metrics: Any = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.batch = batch
        self.poll = poll
        self.retention = dt.timedelta(days=retention_days)
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._leader = _Leadership(config, self._wake)
        self._task: asyncio.Task[None] | None = None
        # Never pruned yet: -inf, not 0.0 (the monotonic clock starts near 0 on a freshly booted machine).
        self._last_prune = -math.inf
        self.published = 0

    async def start(self) -> None:
        _waker.append(self._wake)
        self._task = asyncio.create_task(self._run(), name="apprun-outbox-relay")

    async def close(self) -> None:
        if self._wake in _waker:
            _waker.remove(self._wake)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._leader.release()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            if not await self._leader.try_acquire():
                await self._sleep(1.0)  # stand by; retry the lock
                continue
            try:
                sent = await self.relay_once()
                backoff = 0.5
            except (BusUnavailable, ApiError) as exc:
                _log.warning("relay_retry", code=getattr(exc, "code", None), retry_in=backoff)
                await self._sleep(backoff, wakeable=False)
                backoff = min(backoff * 2, 30.0)
                continue
            except Exception:  # noqa: BLE001 - the relay must outlive any single failure
                _log.exception("relay_failed")
                await self._sleep(backoff, wakeable=False)
                backoff = min(backoff * 2, 30.0)
                continue
            await self._maybe_prune()
            if sent < self.batch:
                await self._sleep(self.poll)

    async def _sleep(self, seconds: float, *, wakeable: bool = True) -> None:
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that races the event being set, and the relay would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events went out."""
        async with self.db.read() as conn:
            rows = await conn.fetch(
                "SELECT id, tenant_id, type, payload, created_at FROM apprun_event_outbox WHERE published_at IS NULL "
                "ORDER BY id LIMIT $1",
                self.batch,
            )
        self._report_lag(rows)
        if not rows:
            return 0
        # The stored bytes go out as they are: the subject and the de-duplication id come from the columns.
        events = [StoredEvent(r["id"], r["tenant_id"], r["type"], _bytes(r["payload"])) for r in rows]
        try:
            await self.bus.publish_stored(events)
        except BusUnavailable:
            await self._record_failure([r["id"] for r in rows])
            raise
        async with self.db.transaction() as conn:
            now = utcnow()
            await conn.executemany(
                "UPDATE apprun_event_outbox SET published_at = $2 WHERE id = $1", [(r["id"], now) for r in rows]
            )
        self.published += len(events)
        if self.metrics is not None:
            for event in events:
                self.metrics.published(event.type)
        return len(events)

    async def _record_failure(self, ids: list[str]) -> None:
        with contextlib.suppress(ApiError):
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "UPDATE apprun_event_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    [(i, "bus unavailable") for i in ids],
                )

    def _report_lag(self, rows: list[Any]) -> None:
        if self.metrics is None:
            return
        if not rows:
            self.metrics.lag(0.0, 0)
            return
        oldest = to_datetime(rows[0]["created_at"])
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        self.metrics.lag(max(age, 0.0), len(rows))

    async def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < 300:
            return
        self._last_prune = time.monotonic()
        cutoff = utcnow() - self.retention
        with contextlib.suppress(ApiError):
            async with self.db.transaction() as conn:
                await conn.execute(
                    "DELETE FROM apprun_event_outbox WHERE published_at IS NOT NULL AND published_at < $1", cutoff
                )
                await conn.execute("DELETE FROM apprun_event_processed WHERE processed_at < $1", cutoff)
