"""The Markdown report of one benchmark run: ratios first, goals next to them, met or not."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]

APPRUN = ("apprun_sqlite", "apprun_postgres")
PEER = "pocketbase_tuned"
#: Workload -> (minimum apprun(SQLite) ÷ PocketBase (skipTotal=1, log off), minimum apprun ÷ ceiling or None).
GOALS: dict[str, tuple[float, float | None]] = {
    "list_public": (1.5, 0.7),
    "list_auth": (1.5, 0.7),
    "view": (1.0, None),
    "create": (1.0, None),
    "login": (1.0, None),
}
FIXED_RATE_P99_MS = 50.0
MEMORY_MB = 200.0
CACHED_DECISIONS = 50_000.0
#: The issue's goal for the events' end-to-end lag at a steady 1,000 events/s.
STEADY_LAG_P99_MS = 500.0


def _rps(results: dict[str, Any], workload: str, system: str) -> float | None:
    run = results["http"].get(workload, {}).get(system)
    return float(run["rps"]) if run else None


def _p99(results: dict[str, Any], workload: str, system: str) -> str:
    run = results["http"].get(workload, {}).get(system)
    return f"{run['p99_ms']:,.1f}" if run else "–"


def _n(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "–"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _r(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "–"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**not met**")


def _http_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | apprun SQLite | apprun PG | PocketBase tuned | PocketBase defaults | ceiling SQLite "
        "| ceiling PG | apprun SQLite ÷ PB | apprun SQLite ÷ ceiling | apprun PG ÷ ceiling "
        "| P99 ms (apprun SQLite / PG / PB) | goal | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for workload, (vs_peer, vs_ceiling) in GOALS.items():
        lite, pg = _rps(results, workload, "apprun_sqlite"), _rps(results, workload, "apprun_postgres")
        peer = _rps(results, workload, PEER)
        ceil_lite, ceil_pg = _rps(results, workload, "ceiling_sqlite"), _rps(results, workload, "ceiling_postgres")
        to_peer, to_ceiling = _ratio(lite, peer), _ratio(lite, ceil_lite)
        goal = f"≥ {vs_peer:g} × PB" + (f", ≥ {vs_ceiling:g} × ceiling" if vs_ceiling else "")
        ok: bool | None = None
        if to_peer is not None:
            ok = to_peer >= vs_peer and (vs_ceiling is None or (to_ceiling or 0) >= vs_ceiling)
        errors = sum(int(r["errors"]) for r in results["http"].get(workload, {}).values())
        note = f" ({errors} errors)" if errors else ""
        lines.append(
            f"| {workload}{note} | {_n(lite)} | {_n(pg)} | {_n(peer)} | {_n(_rps(results, workload, 'pocketbase'))} "
            f"| {_n(ceil_lite)} | {_n(ceil_pg)} | {_r(to_peer)} | {_r(to_ceiling)} | {_r(_ratio(pg, ceil_pg))} "
            f"| {_p99(results, workload, 'apprun_sqlite')} / {_p99(results, workload, 'apprun_postgres')} / "
            f"{_p99(results, workload, PEER)} | {goal} | {_met(ok)} |"
        )
    return lines


def _fixed_rate_table(results: dict[str, Any], rate: int, seconds: int) -> list[str]:
    lines = [
        f"Fixed rate: {rate} req/s for {seconds} s on the authenticated list (hey).",
        "",
        "| system | achieved req/s | P50 ms | P95 ms | P99 ms | errors | goal | met |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for system, run in results["fixed_rate"].items():
        is_apprun = system in APPRUN
        ok = run["p99_ms"] < FIXED_RATE_P99_MS and run["errors"] == 0 if is_apprun else None
        goal = f"P99 < {FIXED_RATE_P99_MS:g} ms, 0 errors" if is_apprun else "(peer)"
        lines.append(
            f"| {results['labels'].get(system, system)} | {run['rps']:,.0f} | {run['p50_ms']:.1f} "
            f"| {run['p95_ms'] or 0:.1f} | {run['p99_ms']:.1f} | {run['errors']} | {goal} | {_met(ok)} |"
        )
    return lines


def _memory_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "Memory of all a system's processes, as PSS (a page shared by n processes counts 1/n; the fair sum for "
        "forked workers), with the plain RSS sum (shared pages counted in every process) in brackets.",
        "",
        "| system (all processes) | idle MB | peak under load MB | goal | met |",
        "|---|---:|---:|---|---|",
    ]
    for system, mem in results["memory"].items():
        if system == "pocketbase":
            continue  # the same process as pocketbase_tuned
        is_apprun = system in APPRUN
        ok = mem["load_mb"] < MEMORY_MB if is_apprun else None
        lines.append(
            f"| {results['labels'].get(system, system)} | {mem['idle_mb']:.0f} ({mem.get('idle_rss_mb', 0):.0f}) "
            f"| {mem['load_mb']:.0f} ({mem.get('load_rss_mb', 0):.0f}) "
            f"| {f'< {MEMORY_MB:g} MB' if is_apprun else ''} | {_met(ok)} |"
        )
    return lines


def _seed_targets(results: dict[str, Any]) -> list[str]:
    cores = int(results["meta"]["machine"]["cores"] or 1)
    scale = cores / 4
    fixed = results["fixed_rate"]
    worst_p95 = max((fixed[s]["p95_ms"] or 0 for s in APPRUN if s in fixed), default=None)
    worst_mem = max((results["memory"][s]["load_mb"] for s in APPRUN if s in results["memory"]), default=None)
    gets = max((_rps(results, "list_public", s) or 0 for s in APPRUN), default=0)
    posts = max((_rps(results, "create", s) or 0 for s in APPRUN), default=0)
    authz = results.get("authorization", {})
    events = results.get("events", {})
    rate = int(results["meta"]["mode"]["rate"])
    rows = [
        ("P95 < 200 ms at 500+ req/s",
         f"{worst_p95:.1f} ms at {rate} req/s (worst apprun)" if worst_p95 is not None else "–",
         None if worst_p95 is None or rate < 500 else worst_p95 < 200),
        ("< 512 MB for the core service", f"{worst_mem:.0f} MB (worst apprun)" if worst_mem is not None else "–",
         None if worst_mem is None else worst_mem < 512),
        ("> 1,000 authorization checks/s", f"{authz.get('uncached_per_s', 0):,.0f}/s uncached",
         authz.get("uncached_per_s", 0) > 1000 if authz else None),
        (f"45,000 simple GETs/s on 4 CPUs ({45_000 * scale:,.0f} on {cores})", f"{gets:,.0f}/s (list 20)",
         gets >= 45_000 * scale),
        (f"8,000 DB-backed POSTs/s on 4 CPUs ({8_000 * scale:,.0f} on {cores})", f"{posts:,.0f}/s (create)",
         posts >= 8_000 * scale),
        (f"50,000 pub/sub messages/s on 4 CPUs ({50_000 * scale:,.0f} on {cores})",
         f"{events.get('delivered_per_s', 0):,.0f}/s delivered", events.get("delivered_per_s", 0) >= 50_000 * scale
         if events else None),
        ("WASM cold start < 100 ms, hot call < 1 ms", "not measured: the Functions module is not built yet", None),
    ]  # fmt: skip
    lines = ["| the seed's target | measured | met |", "|---|---|---|"]
    lines += [f"| {target} | {measured} | {_met(ok)} |" for target, measured, ok in rows]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The report of one run, as appended to RESULTS.md."""
    meta = results["meta"]
    m = meta["machine"]
    mode = meta["mode"]
    authz = results.get("authorization", {})
    events = results.get("events", {})
    labels = results["labels"]
    out = [
        f"### make bench — {meta['started'][:10]} ({mode['name']} mode)",
        "",
        f"Command: `{meta['command']}` · machine: {m['cores']} cores, {m['cpu']}, {m['os']} · commit "
        f"`{meta['commit']}` · {meta['seconds']} s · {mode['records']:,} records per collection · wrk, "
        f"64 connections, {mode['warmup']} s warm-up, median of {mode['runs']} × {mode['duration']} s",
        "",
        "Systems: " + "; ".join(f"`{k}` = {v}" for k, v in labels.items()) + ".",
        "",
        *_http_table(results),
        "",
        *_fixed_rate_table(results, mode["rate"], mode["rate_seconds"]),
        "",
        *_memory_table(results),
        "",
        f"Authorization in-process: {authz.get('cached_per_s', 0):,.0f} cached decisions/s (goal > "
        f"{CACHED_DECISIONS:,.0f}: {_met(authz.get('cached_per_s', 0) > CACHED_DECISIONS if authz else None)}), "
        f"{authz.get('uncached_per_s', 0):,.0f} uncached (Casbin evaluates each).",
        "",
        f"Events: {mode['events']:,} records created through the data API (bulk POSTs of 100, SQLite) at "
        f"{events.get('created_per_s', 0):,.0f} records/s, their events through the outbox, the relay and NATS "
        f"JetStream to a subscriber at {events.get('delivered_per_s', 0):,.0f} events/s "
        f"({_r(_ratio(events.get('delivered_per_s'), events.get('raw_publish_per_s')))} of raw JetStream publishes, "
        f"{events.get('raw_publish_per_s', 0):,.0f} msg/s); end-to-end lag P50 {events.get('lag_p50_ms', 0):,.0f} ms "
        f"/ P99 {events.get('lag_p99_ms', 0):,.0f} ms (all created at once, so the lag includes the queue). "
        f"At a steady {events.get('steady_rate', 0):,.0f} records/s (bulk POSTs of 20 every 20 ms, "
        f"{events.get('steady_delivered', 0):,.0f} of {events.get('steady_sent', 0):,.0f} events handled): lag P50 "
        f"{events.get('steady_lag_p50_ms', 0):,.0f} ms / P99 {events.get('steady_lag_p99_ms', 0):,.0f} ms (goal "
        f"P99 < {STEADY_LAG_P99_MS} ms: "
        f"{_met(events['steady_lag_p99_ms'] < STEADY_LAG_P99_MS if 'steady_lag_p99_ms' in events else None)}).",
        "",
        *_seed_targets(results),
        "",
        f"Password hashes — apprun: {results['notes'].get('apprun_hash', '?')}. "
        f"{results['notes'].get('pocketbase_hash', '')}",
        "",
    ]  # fmt: skip
    workers = {k: v for k, v in results["notes"].items() if k.startswith("workers_")}
    if workers:
        out += [f"Worker calibration (list_auth req/s by worker count): {workers}.", ""]
    return "\n".join(out)
