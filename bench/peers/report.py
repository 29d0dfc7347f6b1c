"""The peers bench's tables: end-to-end rates and ratios, CPU per job by role, the targets."""

from __future__ import annotations

import math
import os

from bench.peers.run import PHASE_LABELS, RunResult
from bench.support.cpu import ROLES
from bench.support.timing import fmt

OURS = "ledger"
# The targets: ours / procrastinate and ours / pgqueuer at its default settings.
TARGET_VS_PROCRASTINATE = 5.0
TARGET_VS_PGQUEUER_DEFAULT = 1.0


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs and not math.isnan(ours) and not math.isnan(theirs) else math.nan


def ours_run(runs: list[RunResult]) -> RunResult | None:
    return next((r for r in runs if r.system == OURS), None)


def print_table(runs: list[RunResult], phases: tuple[str, ...]) -> None:
    ours = ours_run(runs)
    head = f"{'system [setting]':<40}"
    for phase in phases:
        head += f" {PHASE_LABELS[phase] + ': enq/s':>20} {'end-to-end/s':>13} {'ours/it':>8}"
    print(f"\n{head}")
    for run in runs:
        line = f"{run.label + ' [' + run.setting.name + ']':<40}"
        for phase in phases:
            outcome = run.phases.get(phase)
            if outcome is None:
                line += f" {'-':>20} {'-':>13} {'':>8}"
                continue
            ratio = _ratio(ours.phases[phase].end_to_end_rate, outcome.end_to_end_rate) if ours else math.nan
            line += (
                f" {fmt(outcome.enqueue_rate):>20} {fmt(outcome.end_to_end_rate):>13}"
                f" {fmt(ratio, 2) if run is not ours else '':>8}"
            )
        print(line)
    for run in runs:
        print(f"  {run.label} [{run.setting.name}]: {run.setting.summary}")


def print_cpu_table(runs: list[RunResult], phases: tuple[str, ...]) -> None:
    """CPU per job by role, and the rate the machine's cores would allow at that cost."""
    cores = os.cpu_count() or 1
    print(f"\nCPU ms per job, end-to-end phases ({cores} cores: at most {cores * 1000:,} / total jobs/s)")
    print(
        f"{'system [setting]':<40} {'phase':<11}"
        + "".join(f" {role:>9}" for role in ROLES)
        + "     total   cap/s"
    )
    for run in runs:
        for phase in phases:
            outcome = run.phases.get(phase)
            if outcome is None or not outcome.cpu_ms:
                continue
            print(
                f"{run.label + ' [' + run.setting.name + ']':<40} {PHASE_LABELS[phase]:<11}"
                + "".join(f" {outcome.cpu_ms[role]:>9.2f}" for role in ROLES)
                + f" {outcome.cpu_total_ms:>9.2f} {fmt(cores * 1000 / outcome.cpu_total_ms):>7}"
            )


def target_rows(runs: list[RunResult], phases: tuple[str, ...]) -> list[tuple[str, float, float]]:
    """(what, measured ratio ours/theirs, the target); for each phase and each peer setting."""
    ours = ours_run(runs)
    rows = []
    if ours is None:
        return rows
    for phase in phases:
        mine = ours.phases[phase].end_to_end_rate
        for run in runs:
            if run.system == "procrastinate" or (run.system == "pgqueuer" and run.setting.name == "default"):
                goal = (
                    TARGET_VS_PROCRASTINATE if run.system == "procrastinate" else TARGET_VS_PGQUEUER_DEFAULT
                )
                ratio = _ratio(mine, run.phases[phase].end_to_end_rate)
                rows.append((f"{PHASE_LABELS[phase]}: ours / {run.label} [{run.setting.name}]", ratio, goal))
            elif run.system == "pgqueuer":
                ratio = _ratio(mine, run.phases[phase].end_to_end_rate)
                rows.append(
                    (f"{PHASE_LABELS[phase]}: ours / {run.label} [{run.setting.name}]", ratio, math.nan)
                )
    return rows


def print_targets(rows: list[tuple[str, float, float]]) -> None:
    if not rows:
        return
    print("\nTargets (end-to-end, ours / theirs)")
    for label, ratio, goal in rows:
        if math.isnan(goal):
            verdict = "(no target: how far ahead or behind)"
        else:
            verdict = f">= {goal:g}  {'PASS' if ratio >= goal else 'MISS'}"
        print(f"  {label:<58} {fmt(ratio, 2):>7}  {verdict}")


def all_writes_ok(runs: list[RunResult]) -> bool:
    return all(outcome.writes_ok for run in runs for outcome in run.phases.values())
