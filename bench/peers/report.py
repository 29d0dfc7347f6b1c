"""The peers bench's tables: end-to-end rates and ratios, CPU per job by role, the targets."""

from __future__ import annotations

import math
import os

from bench.peers.run import PHASE_LABELS, RunResult
from bench.support.cpu import ROLES
from bench.support.probes import Speed
from bench.support.timing import fmt

OURS = "ledger"
# The targets: (phase, the peer run or None for ours alone, what, at least / at most).
RATIO_TARGETS = (
    ("one", ("bare", "default"), 0.8),
    ("one", ("pgqueuer", "default"), 2.0),
    ("threads", ("bare", "default"), 1.5),
    ("batch", ("pgqueuer", "tuned"), 1.2),
)
TARGET_CALL_P50_MS = 0.6  # one by one: the enqueue call's median, at most
TARGET_CPU_MS = {"one": 1.2, "batch": 0.5}  # CPU per job in all, at most


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs and not math.isnan(ours) and not math.isnan(theirs) else math.nan


def ours_run(runs: list[RunResult]) -> RunResult | None:
    return next((r for r in runs if r.system == OURS), None)


def _run_of(runs: list[RunResult], system: str, setting: str) -> RunResult | None:
    return next((r for r in runs if (r.system, r.setting.name) == (system, setting)), None)


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


Target = tuple[str, float, str, bool | None]  # what, measured, the goal, met (None: not measured)


def target_rows(runs: list[RunResult], phases: tuple[str, ...]) -> list[Target]:
    """The issue's targets (end-to-end ratios ours / theirs, the enqueue call's median, CPU per
    job), then ours against every other run without a target: how far ahead or behind."""
    ours = ours_run(runs)
    if ours is None:
        return []
    rows: list[Target] = []
    targeted = set()
    for phase, (system, setting), goal in RATIO_TARGETS:
        peer = _run_of(runs, system, setting)
        if phase not in phases or peer is None or phase not in peer.phases:
            continue
        targeted.add((phase, system, setting))
        ratio = _ratio(ours.phases[phase].end_to_end_rate, peer.phases[phase].end_to_end_rate)
        label = f"{PHASE_LABELS[phase]}: ours / {peer.label} [{setting}]"
        rows.append((label, ratio, f">= {goal:g}", _met(ratio, ratio >= goal)))
    if "one" in phases:
        p50 = ours.phases["one"].call_p50_ms
        rows.append(
            (
                "one by one: enqueue call p50 [ms]",
                p50,
                f"< {TARGET_CALL_P50_MS:g}",
                _met(p50, p50 < TARGET_CALL_P50_MS),
            )
        )
    for phase, most in TARGET_CPU_MS.items():
        if phase in phases:
            cpu = ours.phases[phase].cpu_total_ms
            label = f"{PHASE_LABELS[phase]}: ours, CPU per job [ms]"
            rows.append((label, cpu, f"<= {most:g}", _met(cpu, cpu <= most)))
    for run in runs:
        for phase in phases:
            if run is ours or phase not in run.phases or (phase, run.system, run.setting.name) in targeted:
                continue
            ratio = _ratio(ours.phases[phase].end_to_end_rate, run.phases[phase].end_to_end_rate)
            rows.append((f"{PHASE_LABELS[phase]}: ours / {run.label} [{run.setting.name}]", ratio, "", None))
    return rows


def _met(value: float, ok: bool) -> bool | None:
    return None if math.isnan(value) else ok


_VERDICTS = {True: "PASS", False: "MISS", None: "n/a"}


def print_targets(rows: list[Target]) -> None:
    if not rows:
        return
    print("\nTargets (ratios: end-to-end, ours / theirs)")
    for label, value, goal, met in rows:
        verdict = "(no target: how far ahead or behind)" if not goal else f"{goal:<7} {_VERDICTS[met]}"
        print(f"  {label:<58} {fmt(value, 2):>7}  {verdict}")


def print_one_by_one_floor(runs: list[RunResult], speed: Speed) -> None:
    """What one enqueuing thread may spend per job to meet the one-by-one target against bare
    Dramatiq, beside what a durable enqueue cannot go below: its commit (the day's probe)."""
    ours = ours_run(runs)
    system, setting = RATIO_TARGETS[0][1]
    bare = _run_of(runs, system, setting)
    if ours is None or bare is None or "one" not in ours.phases or "one" not in bare.phases:
        return
    goal = RATIO_TARGETS[0][2]
    need = goal * bare.phases["one"].end_to_end_rate
    print(
        f"\nOne by one, the floor: {goal:g}x {bare.label} [{setting}] is {fmt(need)} jobs/s, "
        f"{1000 / need:.3f} ms a job for the one enqueuing thread, the call included. A durable "
        f"enqueue returns after its commit: a one-row INSERT with its commit takes {speed.commit_ms:.3f} ms "
        f"on this server unloaded; in the run our call took {ours.phases['one'].call_p50_ms:.3f} ms (p50), "
        f"{bare.label}'s send {bare.phases['one'].call_p50_ms:.3f} ms (a Redis call: {speed.redis_ms:.3f} ms "
        "unloaded)."
    )


def print_cpu_budgets(runs: list[RunResult]) -> None:
    """For each ratio target, the most CPU a job may cost at the rate it asks for, every core
    busy; beside ours, and what the peer's workers and PostgreSQL spent in the same phase (a
    Dramatiq peer's: Dramatiq's own handling and the job's write, with no ledger)."""
    ours = ours_run(runs)
    if ours is None:
        return
    cores = os.cpu_count() or 1
    lines = []
    for phase, (system, setting), goal in RATIO_TARGETS:
        peer = _run_of(runs, system, setting)
        if peer is None or phase not in ours.phases or phase not in peer.phases:
            continue
        mine, theirs = ours.phases[phase], peer.phases[phase]
        if not mine.cpu_ms or not theirs.cpu_ms:
            continue
        need = goal * theirs.end_to_end_rate
        lines.append(
            f"  {PHASE_LABELS[phase]}, {goal:g}x {peer.label} [{setting}]: {fmt(need)} jobs/s allows "
            f"{cores * 1000 / need:.2f} ms; ours {mine.cpu_total_ms:.2f} (workers "
            f"{mine.cpu_ms['workers']:.2f}, postgres {mine.cpu_ms['postgres']:.2f}); theirs "
            f"{theirs.cpu_total_ms:.2f} (workers {theirs.cpu_ms['workers']:.2f}, postgres "
            f"{theirs.cpu_ms['postgres']:.2f})"
        )
    if lines:
        print(f"\nCPU budget per job of each ratio target ({cores} cores, all busy: the most a job may cost)")
        print("\n".join(lines))


def all_writes_ok(runs: list[RunResult]) -> bool:
    return all(outcome.writes_ok for run in runs for outcome in run.phases.values())
