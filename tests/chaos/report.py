"""docs/reliability.md from a fault suite run (tests/chaos/suite.py's results)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Causes already found, shown under a fault while it fails (the figures come from the run).
KNOWN_CAUSES = {
    "rabbitmq": (
        "A consumer (scoring-worker, notify-worker) exits when the broker dies while it acks a "
        "batch: `Bus._dispatch` acks on a channel that is gone (`ChannelInvalidStateError`), "
        "`consume`'s `finally` then cancels the consumer on that channel and raises again, and "
        "the exception ends the worker's `main()` (services/core/bus.py). Its events wait in the "
        "queue, none is lost, but nothing consumes them until the process is started again "
        "(under honcho, one exited process stops the whole stack). It depends on where the kill "
        "lands: about half the runs."
    ),
}


def _statuses(counts: dict[str, int], ok: tuple[str, ...] = ("200", "201", "202")) -> str:
    bad = {k: v for k, v in counts.items() if k not in ok}
    return ", ".join(f"{k}×{v}" for k, v in bad.items()) or "–"


def _client_errors(fault: dict[str, Any]) -> str:
    parts = []
    for step, counts in fault["client"]["statuses"].items():
        shown = _statuses(counts)
        if shown != "–":
            parts.append(f"{step} {shown}")
    return "; ".join(parts) or "none"


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _verdict(fault: dict[str, Any]) -> str:
    return "**pass**" if not fault["failures"] else "**FAIL**"


def table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| # | fault | clients saw (non-2xx) | retries | gave up | longest wait s (step) | back / healthy / "
        "recovered s | drained s | 2xx submits | stored | scored | doubled | lost | board mismatches | "
        "queues left | letters sent / doubled / missing | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in results["faults"]:
        if "error" in f:
            lines.append(f"| {f['number']} | {f['fault']} | could not run: {f['error'][:150]} |" + " |" * 14
                         + " **FAIL** |")
            continue
        c, t, s, m = f["client"], f["timeline_s"], f["submits"], f["mail"]
        gave_up = sum(v for k, v in c["outcomes"].items() if k not in ("202", "409"))
        lost = s["n_lost"] + s["n_unscored"] + s["n_altered"]
        doubled = s["n_doubled"] + s["n_phantom"] + m["n_doubled"]
        boards = f["boards"].get("mismatches", "?")
        queues = sum(f["queues_left"].values()) + sum(f["outbox_left"].values())
        lines.append(
            f"| {f['number']} | {f['fault']} | {_client_errors(f)} | {sum(c['retries'].values())} | {gave_up} | "
            f"{c['longest_wait_s']:g} ({c['longest_wait_step'] or '–'}) | {_s(t['back_after'])} / "
            f"{_s(t['healthy_after'])} / {_s(t['recovered_after'])} | {_s(t['drained_after_load_s'])} | "
            f"{s['acknowledged']} | {s['stored']} | {s['scored']} | {doubled} | {lost} | {boards} | {queues} | "
            f"{m['delivered']}/{m['expected']} / {m['n_doubled']} / {m['n_missing']} | {_verdict(f)} |"
        )
    return lines


def details(fault: dict[str, Any]) -> list[str]:
    if "error" in fault:
        return [f"### {fault['number']}. {fault['fault']} — FAIL", "", f"The suite could not run it: "
                f"`{fault['error']}`.", ""]
    c, t = fault["client"], fault["timeline_s"]
    out = [
        f"### {fault['number']}. {fault['fault']} — {'pass' if not fault['failures'] else 'FAIL'}",
        "",
        f"{fault['what']} ({fault['detail']}). Struck {t['fault_at']} s into the load; the load ended at "
        f"{t['load_ended_at']} s.",
        "",
    ]
    if fault["failures"]:
        out += ["Failed:", ""] + [f"- {reason}" for reason in fault["failures"]]
        cause = KNOWN_CAUSES.get(fault["fault"].split(",")[0])
        if cause:
            out += ["", f"Known cause: {cause}"]
        out.append("")
    out += [
        "| step | answers (whole load) | after the fault struck |",
        "|---|---|---|",
    ]
    after = c["statuses_after_fault"]
    for step, counts in c["statuses"].items():
        fmt = ", ".join(f"{k}×{v}" for k, v in counts.items())
        fmt_after = ", ".join(f"{k}×{v}" for k, v in after.get(step, {}).items()) or "–"
        out.append(f"| {step} | {fmt} | {fmt_after} |")
    out += [
        "",
        f"Outcomes: {', '.join(f'{k}: {v}' for k, v in c['outcomes'].items())}. Submit wait: median "
        f"{_s(c['median_submit_wait_s'])} s, longest {c['longest_submit_wait_s']:g} s; results seen by "
        f"{c['results_seen']} of {c['participants']} within the poll, the slowest {c['longest_result_lag_s']:g} s "
        "after the 202.",
        f"Unhealthy while it lasted: {', '.join(fault['unhealthy_seen']) or 'nothing'}"
        + (f"; started again before it (left dead by the fault before): {', '.join(fault['revived_before'])}"
           if fault.get("revived_before") else "")
        + f". Machine load (1 min) median {_s(_round(fault['load_1m']['median']))}, max "
        f"{_s(_round(fault['load_1m']['max']))}. Boards exact "
        f"{_s(t['boards_exact_after_drain_s'])} s after the drain; final {fault['final'].get('final_after_s')} s "
        f"after the close; {fault['final'].get('winners', 0)} winners.",
        "",
    ]
    return out


def markdown(results: dict[str, Any]) -> str:
    plan = results["plan"]
    failed = [f for f in results["faults"] if f["failures"]]
    when = datetime.fromisoformat(results["started_at"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: what a crash costs",
        "",
        f"Written by `make chaos` (tests/chaos), run of {when}: {len(results['faults'])} faults, "
        f"{len(results['faults']) - len(failed)} passed, {len(failed)} failed; "
        f"{results['total_s'] / 60:.1f} minutes on {results['cores']} cores. Do not edit by hand: run it again.",
        "",
        "## What was done",
        "",
        "The suite starts its own PostgreSQL, Redis (without persistence, the harshest case: a kill loses "
        "everything in it) and RabbitMQ node on private ports "
        "(services/core/private_servers.py), a real SMTP server, and every process of the Procfile "
        f"(loadtests/bench_stack.py; gunicorn workers {results['workers']}, retry ladder "
        f"{results['retry_delays_s']} s). For each fault, a round of its own and {plan['participants']} "
        f"participants arriving over {plan['arrival_s']:g} s, through the gateway, who sign up, log in, start, "
        "autosave twice, submit and poll their result, retrying as the web app does (no answer, 429 and 5xx: "
        "1, 2, 4, 8, 16, 30 s, at least Retry-After; a 409 `already_submitted` after a retry counts as sent). "
        f"{plan['fault_at'] * 100:.0f} % into the arrivals (or later, as each fault below says) the fault "
        "strikes: a server gets SIGKILL (its whole "
        f"process group) and is started again {plan['server_down_s']:g} s later on the same data and port; a "
        f"process likewise after {plan['process_down_s']:g} s; a gunicorn worker is killed and its master "
        "replaces it. After the load: the drain, the boards, the organiser closes the round, waits for `final`, "
        "announces the winners, and the mailbox is read.",
        "",
        "Columns: *clients saw* are the answers other than 200/201/202 over the whole load (`no answer`: "
        "refused, reset or timed out); *gave up*: participants without an acknowledged submit; *longest wait*: "
        "the longest a participant spent on one step, first try to success; *back*: fault to the killed "
        "part running again; *healthy*: to every service's readiness answering 200 through the gateway; "
        "*recovered*: to healthy and caught up (no submission older than 2 s unscored, nothing in a retry or "
        "dead-letter queue); *drained*: after the load ended, until every stored submission was scored and "
        "the outboxes and queues were empty; *stored*, *scored*: the round's rows in PostgreSQL; *doubled*: "
        "a second result, a second submitted attempt of one participant, or a second letter to one person; "
        "*lost*: acknowledged but not stored, stored with other answers, or stored but never scored; *board "
        "mismatches*: entries of the Redis boards (overall and every unit's) and of the public leaderboard "
        "route (top 100, with names) that differ from the ranking computed from PostgreSQL; *letters*: the "
        "sign-up and winner emails the SMTP server received of those due.",
        "",
        "## Results",
        "",
        *table(results),
        "",
    ]
    if results.get("not_running_at_end"):
        lines += [f"Not running at the end of the run: {results['not_running_at_end']}.", ""]
    lines += ["## Each fault", ""]
    for fault in results["faults"]:
        lines += details(fault)
    return "\n".join(lines).rstrip() + "\n"
