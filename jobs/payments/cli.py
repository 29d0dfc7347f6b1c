"""`skyport simulate payments`: the gateway simulator against a running web process.

skyport simulate payments [--url URL] [--provider P] [--events N] [--rate R] [--duplicates P]
                          [--out-of-order P] [--failures P] [--refunds P] [--create-shipments K]
                          [--shipments K] [--seed S] [--wait S]
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

# Where the simulator posts unless told otherwise (`skyport web`'s default).
DEFAULT_URL = "http://127.0.0.1:8000"


def add_commands(subparsers: Any) -> None:
    simulate = subparsers.add_parser("simulate", help="simulators for the demo and tests").add_subparsers(
        title="simulate commands", metavar="CMD"
    )
    cmd = simulate.add_parser(
        "payments", help="post signed payment-gateway callbacks to a running web process"
    )
    cmd.add_argument(
        "--url", default=None, help=f"web process (default: http://127.0.0.1:$PORT or {DEFAULT_URL})"
    )
    cmd.add_argument(
        "--provider", default="simulator", help="provider name in the URL (default: %(default)s)"
    )
    cmd.add_argument(
        "--events", type=int, default=1000, help="deliveries, duplicates included (default: %(default)s)"
    )
    cmd.add_argument(
        "--rate", type=float, default=0.0, help="events per second (default: as fast as possible)"
    )
    cmd.add_argument(
        "--duplicates", type=float, default=0.05, help="share re-delivered (default: %(default)s)"
    )
    cmd.add_argument(
        "--out-of-order", type=float, default=0.1, help="share delivered late (default: %(default)s)"
    )
    cmd.add_argument("--failures", type=float, default=0.05, help="share of payments that fail first")
    cmd.add_argument("--refunds", type=float, default=0.05, help="share of payments refunded then paid again")
    cmd.add_argument(
        "--create-shipments",
        type=int,
        default=0,
        metavar="K",
        help="create K demo shipments (tracking SIMPAY-...) and pay those",
    )
    cmd.add_argument(
        "--shipments",
        type=int,
        default=100,
        metavar="K",
        help="without --create-shipments: pay the K newest USD shipments with a balance due",
    )
    cmd.add_argument("--concurrency", type=int, default=16)
    cmd.add_argument("--seed", type=int, default=None)
    cmd.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="then wait up to S seconds for processing and check every shipment's amount_paid",
    )
    cmd.set_defaults(run=_simulate_payments)


def _simulate_payments(args: argparse.Namespace) -> int:
    import config
    from db import pool
    from jobs.payments import inbox
    from jobs.payments.simulator import (
        create_demo_shipments,
        mismatches,
        payable_shipments,
        plan_events,
        post_events,
    )
    from workers.cli import CommandError

    secret = config.get().payments.secret_for(args.provider)
    if secret is None:
        raise CommandError(
            f"no webhook secret for provider {args.provider!r}: set PAYMENT_WEBHOOK_SECRET "
            f"(or PAYMENT_WEBHOOK_SECRET_{args.provider.upper()}) for both the web process and this command"
        )
    url = args.url or f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
    with pool.connection() as conn:
        if args.create_shipments > 0:
            shipments = create_demo_shipments(conn, args.create_shipments, args.seed)
        else:
            shipments = payable_shipments(conn, args.shipments)
        if not shipments:
            raise CommandError("no shipment to pay: use --create-shipments K")
        plan = plan_events(
            shipments,
            events=args.events,
            duplicates=args.duplicates,
            out_of_order=args.out_of_order,
            failures=args.failures,
            refunds=args.refunds,
            seed=args.seed,
        )
        before = inbox.count_by_status(conn)
    print(
        f"posting {len(plan.bodies)} events ({plan.unique_events} unique, {plan.payments} payments) "
        f"for {len(shipments)} shipments to {url}"
    )
    stats = post_events(url, args.provider, secret, plan.bodies, rate=args.rate, concurrency=args.concurrency)
    print(
        f"posted in {stats.elapsed_s:.1f}s ({len(plan.bodies) / max(stats.elapsed_s, 1e-9):.0f}/s); "
        f"statuses {stats.statuses}; latency p50 {stats.percentile_ms(0.5):.1f} ms, "
        f"p99 {stats.percentile_ms(0.99):.1f} ms"
    )
    for error in stats.errors[:5]:
        print(f"  error: {error}")
    if args.wait <= 0:
        return 0 if set(stats.statuses) == {200} else 1
    deadline = time.monotonic() + args.wait
    with pool.connection() as conn:
        while time.monotonic() < deadline:
            counts = inbox.count_by_status(conn)
            if not counts.get("received") and not counts.get("processing"):
                break
            time.sleep(0.5)
        wrong = mismatches(conn, plan.expected_paid)
        counts = inbox.count_by_status(conn)
    print(f"inbox: {counts} (before: {before})")
    if wrong:
        for sid, want, got in wrong[:10]:
            print(f"  shipment {sid}: expected {want} paid, has {got}")
        raise CommandError(f"{len(wrong)} shipment(s) do not match the expected ledger")
    print(f"all {len(plan.expected_paid)} shipments match the expected ledger")
    return 0
