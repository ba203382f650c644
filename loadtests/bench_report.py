"""docs/benchmarks.md and docs/benchmarks-surge.png from a `make bench` run.

    .venv/bin/python loadtests/bench_report.py [var/bench/latest/results.json]

Rewrites the whole document from the run's results.json, except the hand-written block
between the markers `<!-- notes:begin -->` and `<!-- notes:end -->` (analysis, the
profile findings and the service fixes they call for), which is carried over as it is.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTES_BEGIN, NOTES_END = "<!-- notes:begin -->", "<!-- notes:end -->"

# The targets (issue 7).
TARGET_SUBMIT_RATIO = 0.50
TARGET_BOARD_RATIO = 0.80
TARGET_ATTEMPTS_PER_S = 150.0
TARGET_SUBMIT_P99_MS = 50.0
TARGET_LAG_P99_S = 1.0
TARGET_DRAIN_S = 10.0
TARGET_WORKER_RSS_MIB = 150.0

ENDPOINT_ORDER = [
    "noop (ceiling)", "login", "start attempt (new)", "start attempt (resume)", "autosave", "submit", "result",
    "leaderboard top-100", "leaderboard top-100 (cache miss)", "my rank",
]
COMPONENTS = [
    ("nginx", ["nginx (gateway)"]),
    ("registration API", ["registration API"]),
    ("quiz API", ["quiz API"]),
    ("scoring API", ["scoring API"]),
    ("scoring worker", ["scoring-worker"]),
    ("relays", ["relay-registration", "relay-quiz", "relay-scoring"]),
    ("PostgreSQL", ["PostgreSQL (whole server)"]),
    ("Redis", ["Redis (whole server)"]),
    ("RabbitMQ", ["RabbitMQ (whole server)"]),
    ("wrk / Locust", ["load generator"]),
]
# Frames whose share of a profile says something about a fix (inclusive, % of busy samples).
MARKERS = [
    ("sync dependency run in a thread (anyio)", "run_in_threadpool (starlette/concurrency.py)"),
    ("asyncpg pool reset query on release", "Connection.reset (asyncpg/connection.py)"),
    ("asyncpg BEGIN + COMMIT round trips", "Transaction."),
    ("Redis reply parsing (pure-Python RESP parser)", "_AsyncRESP3Parser.read_response"),
    ("pydantic response models built in the route", "BaseModel.__init__ (pydantic/main.py)"),
    ("FastAPI response serialisation", "serialize_response (fastapi/routing.py)"),
    ("FastAPI native telemetry check (env lookups)", "NativeTelemetry.enabled"),
    ("our RequestContext middleware (own frames)", None),
]
IDLE_LEAVES = ("Condition.wait (threading.py", "EpollSelector.select", "Queue.get (queue.py", "select (selectors.py")


# --- helpers ------------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _verdict(ok: bool | None, detail: str) -> str:
    if ok is None:
        return f"not measured {detail}".strip()
    return f"**met** {detail}".strip() if ok else f"**missed** {detail}".strip()


def _cpu_ms(run: dict[str, Any], groups: list[str]) -> float:
    return 1000 * sum(run.get("cpu_s", {}).get(g, 0.0) for g in groups) / max(1, run.get("requests", 0))


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def profile_markers(path: Path) -> dict[str, Any]:
    """Busy samples (idle waits left out) and the inclusive share of each marker."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # "function (module/path.py:123)" → "function (module/path.py)"
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if f]
            if frames and not frames[-1].startswith(IDLE_LEAVES):
                rows.append((frames, int(count)))
    busy = sum(n for _, n in rows)
    shares: dict[str, float] = {}
    for label, needle in MARKERS:
        if needle is None:
            hit = sum(n for frames, n in rows if frames[-1].startswith("RequestContext.__call__ (services/core/http"))
        else:
            hit = sum(n for frames, n in rows if any(needle in f for f in frames))
        shares[label] = round(100 * hit / busy, 1) if busy else 0.0
    ours: dict[str, int] = {}
    for frames, n in rows:
        for name in {f for f in frames if "(services/" in f}:
            ours[name] = ours.get(name, 0) + n
    top = sorted(ours.items(), key=lambda kv: -kv[1])[:8]
    return {"busy": busy, "markers": shares,
            "ours": [(name, round(100 * n / busy, 1)) for name, n in top] if busy else []}


# --- the plot -------------------------------------------------------------------------------

def plot(results: dict[str, Any], png: Path) -> str:
    surge = results.get("surge")
    if not surge:
        return "no surge in this run"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (add it with the dev lock), so no plot"
    series = surge["series"]
    t = [p["t"] for p in series]
    fig, axes = plt.subplots(4, 1, figsize=(11, 12), sharex=True, constrained_layout=True)
    ax = axes[0]
    ax.plot(t, [p["rps"] or 0 for p in series], label="requests/s (all)", color="tab:blue")
    ax.plot(t, [10 * (p["submit_rps"] or 0) for p in series], label="completed attempts/s × 10 (202 submits)",
            color="tab:green")
    ax.set_ylabel("per second")
    twin = ax.twinx()
    twin.plot(t, [p["users"] for p in series], label="simulated users", color="tab:gray", linestyle="--")
    twin.set_ylabel("users")
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper left", fontsize=8)
    ax.set_title(f"Deadline surge on {results['machine']['cores']} cores: Locust DeadlineSurge, peak "
                 f"{surge['peak_users']} users, round closes at the dotted line")

    ax = axes[1]
    for key, label, style in (("submit_p50_ms", "submit p50", "-"), ("submit_p95_ms", "submit p95", "-"),
                              ("submit_p99_ms", "submit p99", "-"), ("p95_ms", "all requests p95", ":")):
        ax.plot(t, [p[key] if p[key] else float("nan") for p in series], label=label, linestyle=style)
    ax.axhline(TARGET_SUBMIT_P99_MS, color="red", linewidth=0.8, label="target: submit p99 50 ms")
    ax.set_yscale("log")
    ax.set_ylabel("ms (Locust, last 10 s)")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[2]
    backlog = surge.get("backlog", [])
    ax.plot([b["t"] for b in backlog], [b["submitted"] - b["scored"] for b in backlog],
            label="submitted, not yet scored", color="tab:purple")
    ax.plot([b["t"] for b in backlog], [b["outbox"] for b in backlog], label="quiz outbox rows", color="tab:orange")
    ax.set_ylabel("attempts")
    twin = ax.twinx()
    lag = surge.get("lag_after_202", {}).get("per_second", [])
    twin.plot([p["t"] for p in lag], [p["p99_s"] for p in lag], color="tab:red", label="scoring lag p99 after 202 (s)")
    twin.axhline(TARGET_LAG_P99_S, color="red", linewidth=0.8, linestyle=":")
    twin.set_ylabel("seconds")
    lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(lines, labels, loc="upper left", fontsize=8)

    ax = axes[3]
    cpu = surge.get("cpu_series", [])
    ct = [c["t"] for c in cpu]
    stacks, names = [], []
    for label, groups in COMPONENTS:
        values = [100 * sum(c["groups"].get(g, 0.0) for g in groups) for c in cpu]
        if max(values, default=0) > 0.5:
            stacks.append(values)
            names.append(label)
    # What the processes of the benchmark do not account for: other work on the machine.
    ours = [sum(sum(c["groups"].get(g, 0.0) for g in groups) for _, groups in COMPONENTS) for c in cpu]
    stacks.append([max(0.0, 100 * (c["busy"] - o)) for c, o in zip(cpu, ours, strict=True)])
    names.append("other processes (not the benchmark)")
    if stacks:
        colors = [f"C{i}" for i in range(len(stacks) - 1)] + ["lightgray"]
        ax.stackplot(ct, *stacks, labels=names, colors=colors)
    ax.plot(ct, [100 * c["busy"] for c in cpu], color="black", linewidth=1, label="machine busy")
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of the machine's CPU")
    ax.set_xlabel("seconds since the surge started")
    ax.legend(loc="upper left", fontsize=7, ncol=4)

    quarter = surge["surge_s"] / 4
    for axis in axes:
        for x in (quarter, 2 * quarter):
            axis.axvline(x, color="gray", linewidth=0.6)
        axis.axvline(surge["closes_at"] - surge["started_at"], color="black", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return ""


# --- the document ---------------------------------------------------------------------------

def _targets(results: dict[str, Any]) -> tuple[str, list[list[str]]]:
    wrk = results.get("wrk", {})
    surge = results.get("surge") or {}
    rows = []
    submit = wrk.get("submit")
    if submit:
        ratio = submit["ratio"]
        rows.append(["submit ≥ 50 % of the no-op endpoint", f"{_pct(ratio)} ({_num(submit['rps'])} vs "
                     f"{_num(submit['ceiling_rps'])} req/s)",
                     _verdict(ratio >= TARGET_SUBMIT_RATIO, f"({TARGET_SUBMIT_RATIO / ratio:.0f}× short)"
                              if ratio < TARGET_SUBMIT_RATIO else "")])
    for name, label in (("leaderboard top-100", "as deployed (gateway micro-cache)"),
                        ("leaderboard top-100 (cache miss)", "every read a cache miss (the scoring API)")):
        board = wrk.get(name)
        if board:
            ratio = board["ratio"]
            short = f"({TARGET_BOARD_RATIO / ratio:.1f}× short)" if ratio < TARGET_BOARD_RATIO else ""
            rows.append([f"leaderboard top-100 ≥ 80 % of no-op, {label}",
                         f"{_pct(ratio)} ({_num(board['rps'])} vs {_num(board['ceiling_rps'])} req/s)",
                         _verdict(ratio >= TARGET_BOARD_RATIO, short)])
    if surge:
        rate = surge.get("completed_per_s_peak_sql")
        rows.append(["mixed surge completes ≥ 150 attempts/s", f"{_num(rate, 1)} attempts/s at the peak",
                     _verdict(rate is not None and rate >= TARGET_ATTEMPTS_PER_S,
                              f"({TARGET_ATTEMPTS_PER_S / rate:.1f}× short)" if rate and rate < TARGET_ATTEMPTS_PER_S
                              else "")])
        p99 = surge.get("submit_p99_at_70pct_ms")
        by_rate = surge.get("submit_p99_at_70pct_rate_ms")
        rows.append(["submit p99 ≤ 50 ms at 70 % of the peak",
                     f"{_ms(p99)} ms at {surge.get('at_70pct_users')} of {surge['peak_users']} users; "
                     f"{_ms(by_rate)} ms when completions first reached 70 % of their peak rate "
                     f"({surge.get('at_70pct_rate_users')} users)",
                     _verdict(None if p99 is None else p99 <= TARGET_SUBMIT_P99_MS,
                              f"({p99 / TARGET_SUBMIT_P99_MS:.0f}× over)" if p99 and p99 > TARGET_SUBMIT_P99_MS
                              else "")])
        lag = surge.get("lag_after_202", {}).get("peak", {})
        lag_p99 = lag.get("p99_s")
        rows.append(["scoring lag (202 → scored) p99 ≤ 1 s at the peak",
                     f"{_num(lag_p99, 3)} s over {lag.get('n', 0)} submits (p50 {_num(lag.get('p50_s'), 3)} s)",
                     _verdict(None if lag_p99 is None else lag_p99 <= TARGET_LAG_P99_S,
                              f"({lag_p99 / TARGET_LAG_P99_S:.1f}× over)" if lag_p99 and lag_p99 > TARGET_LAG_P99_S
                              else "")])
        drained = surge.get("drained_after_close_s")
        rows.append(["queue drained within 10 s after the peak",
                     f"{_num(drained, 1)} s after the close (largest backlog before it: "
                     f"{surge.get('max_backlog_before_close')})",
                     _verdict(None if drained is None else drained <= TARGET_DRAIN_S, "")])
        integrity = _integrity(surge)
        rows.append(["integrity: 202s = submitted = scored = on the board; 0 lost, 0 twice",
                     "; ".join(f"{k} {v}" for k, v in integrity["counts"].items()),
                     _verdict(integrity["ok"], "")])
    workers = [r for r in results.get("rss", []) if r["process"] == "gunicorn worker (uvicorn)"]
    if workers:
        top = max(workers, key=lambda r: r["peak_rss_mib"])
        rows.append(["each API worker ≤ 150 MB RSS", f"largest {top['peak_rss_mib']:.0f} MiB ({top['group']})",
                     _verdict(top["peak_rss_mib"] <= TARGET_WORKER_RSS_MIB, "")])
    return "", rows


def _integrity(surge: dict[str, Any]) -> dict[str, Any]:
    sql = surge["sql"]
    counts = {
        "202 submits (Locust)": surge["submits_202"],
        "submitted in quiz.attempts": sql["quiz_submitted"],
        "rows in scoring.results": sql["results"],
        "distinct attempts there": sql["results_distinct_attempts"],
        "round.closed's count": sql["scoring_submitted_count"],
        "board entries (ZCARD)": surge["board_zcard"],
        "distinct participants scored": sql["counting_participants"],
    }
    ok = (surge["submits_202"] == sql["quiz_submitted"] == sql["results"] == sql["results_distinct_attempts"]
          == sql["scoring_submitted_count"] and surge["board_zcard"] == sql["counting_participants"]
          and surge["server_errors_5xx"] == 0 and sql["accepted_after_deadline"] == 0)
    return {"counts": counts, "ok": ok}


def render(results: dict[str, Any], notes: str, png_name: str, plot_note: str) -> str:
    m = results["machine"]
    options = results["options"]
    stack = results.get("stack", {})
    wrk = results.get("wrk", {})
    out: list[str] = []
    when = results.get("started_at", datetime.now(UTC).isoformat())
    out.append("# Benchmarks: the deadline peak on one machine\n")
    out.append(f"Written by `make bench` (loadtests/bench.py) from the run of {when} "
               f"({results.get('total_s', '?')} s in all); every figure below is from that one run, on the machine "
               "described here, with every server co-located. Raw data (wrk and Locust output, py-spy stacks, "
               "results.json) stays in `var/bench/<time>/`. Comparisons are ratios within the run: the machine is "
               "shared and noisy, so absolute figures move by ±20 % between runs.\n")

    out.append("## Targets (issue 7)\n")
    _, rows = _targets(results)
    out.append(_table(["target", "measured", "verdict"], rows, "lll"))
    out.append("")

    out.append("## The machine and the stack\n")
    out.append(_table(["", ""], [
        ["CPU", f"{m['cores']} cores, {m['cpu_model']}"],
        ["memory", f"{m['memory_gib']} GiB"],
        ["OS / kernel", f"{m['os']} / Linux {m['kernel']}"],
        ["Python", m["python"]],
        ["PostgreSQL", f"{m['postgresql']} ({m.get('postgresql_settings', '')})"],
        ["Redis", m["redis"]],
        ["RabbitMQ", m["rabbitmq"]],
        ["nginx", m["nginx"]],
        ["load generators", f"{m['wrk']}; Locust {m['packages'].get('locust')}"],
        ["libraries", ", ".join(f"{k} {v}" for k, v in m["packages"].items() if k != "locust")],
        ["gunicorn workers", ", ".join(f"{k} {v}" for k, v in stack.get("workers", {}).items())
         + " (uvicorn workers, uvloop + httptools)"],
        ["settings", ", ".join(f"{k}={v}" for k, v in stack.get("env", {}).items())
         + "; access logs off (nginx and uvicorn)"],
    ], "ll"))
    out.append("")
    out.append(
        "All of it on this one machine: nginx, the four APIs, the consumers, relays and clock, PostgreSQL, Redis, "
        "RabbitMQ and the load generator share the same cores, so every figure is what is left after the others "
        "took their share (the CPU tables say who took what). PostgreSQL keeps `synchronous_commit=on`: a 202 "
        "means the submission is on disk.\n")

    out.append("## How it is measured\n")
    out.append(
        f"- **One load generator for all endpoints: wrk** (C, one event loop per thread; it used well under 0.1 ms "
        f"of CPU per request here, 10–50× less than Locust), {options['wrk_threads']} threads, "
        f"{options['connections']} connections, {options['duration_s']} s per endpoint, `--latency`, driven by "
        "`loadtests/wrk/replay.lua`, which replays request lines the orchestrator wrote (tokens, attempt ids, "
        "bodies) and prints p50/p95/p99 as JSON. Requests carry `Accept-Encoding: gzip` like a browser.\n"
        "- **The ceiling** is `GET /_noop/quiz`: the gateway proxies it to the quiz API's `/healthz`, a FastAPI "
        "route that does nothing, behind the same nginx and gunicorn config. Each endpoint is measured right "
        "after a short no-op run, and its ratio is to that neighbouring ceiling.\n"
        "- **Each submit and each new attempt happens once**: `start attempt (new)` starts one attempt per "
        f"(participant, round) ({options['users']} participants × {options['rounds']} open rounds) until the time "
        "is up; `submit` submits two thirds of the attempts that exist, each once, and stops when they are used "
        "up (its rate counts to the last answer). `resume` is the second start of a running attempt (what most "
        "starts at the deadline are); autosave, result and my rank cycle through the attempts.\n"
        "- **Participants are registered and logged in up front** (so that Argon2 does not drown the hot paths), "
        "with a cheap Argon2id (t=1, m=8 MiB) for the benchmark's own accounts; `login` is measured with that "
        "cost. What the production cost (t=2, m=19 MiB) does to sign-ups and logins is measured per core by "
        "bench_registration.py, below.\n"
        "- **CPU by component** comes from /proc (utime + stime of every process of each component, before and "
        "after each run); PostgreSQL, Redis and RabbitMQ are counted whole (other databases on the same server "
        "included, which the idle rows show is little).\n")

    out.append("## Hot paths (wrk)\n")
    header = ["endpoint", "req/s", "p50 ms", "p95 ms", "p99 ms", "ceiling next to it", "ratio", "non-2xx"]
    rows = []
    for name in ENDPOINT_ORDER:
        run = wrk.get(name)
        if not run:
            continue
        bad = {k: v for k, v in run["statuses"].items() if not k.startswith("2")}
        rows.append([name, _num(run["rps"]), _ms(run["p50_ms"]), _ms(run["p95_ms"]), _ms(run["p99_ms"]),
                     _num(run.get("ceiling_rps", run["rps"])), _pct(run.get("ratio", 1.0)),
                     ", ".join(f"{k}: {v}" for k, v in bad.items()) or "0"])
    out.append(_table(header, rows))
    out.append("")
    created = results.get("attempts_created")
    drain = results.get("submit_drain", {})
    out.append(f"{created} attempts were created by `start attempt (new)`; after the `submit` run "
               f"{drain.get('pending_at_end_of_load', '?')} submissions were waiting to be scored and all were "
               f"scored {drain.get('drained_in_s', '?')} s later. Latencies are at {options['connections']} "
               "connections kept busy, i.e. mostly queueing: at a rate R, p50 ≈ connections / R.\n")

    out.append("### CPU per request by component (ms)\n")
    out.append("What each request cost every process of the stack, in CPU milliseconds (all processes of the "
               "component, all cores). 1000 / (sum of the service's and its database's share) is roughly what one "
               "core sustains; docs/scaling.md builds on these figures.\n")
    header = ["endpoint", *[label for label, _ in COMPONENTS], "total", "not ours (noise), % of machine"]
    rows = []
    for name in ENDPOINT_ORDER:
        run = wrk.get(name)
        if not run:
            continue
        values = [_cpu_ms(run, groups) for _, groups in COMPONENTS]
        total = 1000 * sum(run.get("cpu_s", {}).values()) / max(1, run["requests"])
        cores = results["machine"]["cores"] or 1
        other = run.get("other_cpu_s", 0.0) / max(0.001, run.get("wall_s", 1.0)) / cores
        rows.append([name, *[f"{v:.2f}" if v >= 0.005 else "·" for v in values], f"{total:.2f}", _pct(other)])
    out.append(_table(header, rows))
    out.append("")
    idle = wrk.get("noop (ceiling)")
    if idle:
        relays = sum(idle["cpu_s"].get(g, 0) for g in ("relay-registration", "relay-quiz", "relay-scoring"))
        out.append(f"Idle, the three outbox relays back off to one look every 250 ms (services/core/relay.py): "
                   f"during the no-op run (no events at all) they used {relays / idle['wall_s']:.3f} of a core "
                   "between them (0.09 when they polled every 20 ms).\n")

    tuning = results.get("tuning") or {}
    out.append("## Tuning, measured in this run\n")
    if tuning.get("workers"):
        out.append("**gunicorn workers of the quiz API** (changed live with TTIN/TTOU, the rest of the stack "
                   "unchanged; autosave is the most frequent call at the deadline):\n")
        out.append(_table(["quiz workers", "no-op req/s", "no-op p99 ms", "autosave req/s", "autosave p99 ms",
                           "quiz CPU ms / autosave"],
                          [[str(w["workers"]), _num(w["noop_rps"]), _ms(w["noop_p99_ms"]), _num(w["autosave_rps"]),
                            _ms(w["autosave_p99_ms"]), f"{w['quiz_cpu_ms_per_autosave']:.2f}"]
                           for w in tuning["workers"]]))
        out.append("")
    if tuning.get("keepalive") or tuning.get("gzip") or tuning.get("cache lock"):
        out.append("**Gateway settings**, one changed at a time (nginx re-reads its config on SIGHUP):\n")
        rows = []
        for kind, label in (("keepalive", "upstream keepalive"), ("gzip", "gzip_comp_level"),
                            ("cache lock", "proxy_cache_lock")):
            for v in tuning.get(kind, []):
                rows.append([f"{label}: {v[kind]}", v["what"], _num(v["rps"]), _ms(v["p99_ms"]),
                             f"{v['nginx_cpu_ms']:.3f}"])
        out.append(_table(["setting", "measured on", "req/s", "p99 ms", "nginx CPU ms / request"], rows, "llrrr"))
        out.append("")
    cached, missed = wrk.get("leaderboard top-100"), wrk.get("leaderboard top-100 (cache miss)")
    if cached and missed:
        out.append(f"**Gateway micro-cache for the public leaderboard** (new in deploy/nginx/hoithi.conf.template; "
                   f"scoring already marks the public board `Cache-Control: public, max-age=2`): "
                   f"{_num(cached['rps'])} req/s (p99 {_ms(cached['p99_ms'])} ms) from the cache against "
                   f"{_num(missed['rps'])} req/s (p99 {_ms(missed['p99_ms'])} ms) when every read misses it, "
                   f"{cached['rps'] / max(1, missed['rps']):.0f}× more, with scoring's CPU per read down from "
                   f"{_cpu_ms(missed, ['scoring API']):.2f} ms to {_cpu_ms(cached, ['scoring API']):.3f} ms.\n")

    out.append(_surge_section(results, png_name, plot_note))
    out.append(_rss_section(results))
    out.append(_profiles_section(results))
    out.append(NOTES_BEGIN)
    out.append(notes.strip("\n") if notes else "\n_(hand-written analysis goes here; `make bench` keeps it)_\n")
    out.append(NOTES_END)
    out.append("")
    out.append(_micro_section(results))
    out.append("## Run it again\n")
    out.append("```sh\nmake bench        # ~10 minutes on 2 cores; installs wrk as root when missing\n"
               ".venv/bin/python loadtests/bench.py --help          # durations, users, surge shape, workers\n"
               ".venv/bin/python loadtests/bench_report.py          # rewrite this file from var/bench/latest\n```\n")
    out.append(f"This run: `{_command(options)}`.\n")
    return "\n".join(out) + "\n"


def _command(options: dict[str, Any]) -> str:
    return (f"bench.py --users {options['users']} --rounds {options['rounds']} --duration-s {options['duration_s']} "
            f"--connections {options['connections']} --workers {options['workers']} --surge-s {options['surge_s']} "
            f"--peak-users {options['peak_users']} --baseline-users {options['baseline_users']} "
            f"--think-scale {options['think_scale']}")


def _surge_section(results: dict[str, Any], png_name: str, plot_note: str) -> str:
    surge = results.get("surge")
    if not surge:
        return "## The surge\n\nNot run this time.\n"
    out = ["## The deadline surge (Locust)\n"]
    q = surge["surge_s"] / 4
    out.append(
        f"`loadtests/locustfile.py`, shape `DeadlineSurge`, headless, {surge['locust_processes']} Locust process "
        f"(FastHttpUser): {surge['baseline_users']} participants for {q:.0f} s, a ramp to {surge['peak_users']} over "
        f"{q:.0f} s, the peak for {q:.0f} s, then the round closes (its `closes_at`) and participants keep "
        f"arriving for {q:.0f} s more. Think times ×{surge['think_scale']} (fewer simulated people for the same "
        "request mix). Each participant signs up (or logs in), starts an attempt, answers 20 questions autosaving "
        "every 4, predicts, submits, polls the result, reads their rank and the top 100; two organisers poll the "
        "participation report. The surge round has its own contest, a 60 s time limit, 5 s grace and unlimited "
        "attempts (people take it again), so the peak does not fade as people run out of attempts.\n")
    if plot_note:
        out.append(f"_{plot_note}_\n")
    else:
        out.append(f"![throughput, latency, backlog and CPU over the surge]({png_name})\n")
        out.append("Grey lines: end of the baseline, start of the peak; dotted: the close. Latencies are Locust's "
                   "over the preceding 10 s.\n")
    lag = surge.get("lag_after_202", {})
    sql = surge["sql"]
    rows = [
        ["completed attempts per second at the peak", f"{_num(surge['completed_per_s_peak_sql'], 1)} "
         f"(PostgreSQL: submitted in the peak quarter / {q:.0f} s); Locust's 202s: "
         f"{_num(surge['completed_per_s_peak_locust'], 1)}/s"],
        ["submit p99 at 70 % of the peak users", f"{_ms(surge['submit_p99_at_70pct_ms'])} ms, at "
         f"{surge['at_70pct_users']} users (t = {_num(surge['at_70pct_t'])} s)"],
        ["submit p99 when completions first reached 70 % of their peak rate",
         f"{_ms(surge.get('submit_p99_at_70pct_rate_ms'))} ms, at {surge.get('at_70pct_rate_users')} users "
         f"(t = {_num(surge.get('at_70pct_rate_t'))} s; peak rate {_num(surge.get('peak_rate_5s'), 1)}/s over 5 s)"],
        ["scoring lag after the 202, at the peak (negative: scoring had begun before Locust read the 202)",
         f"p50 {_num(lag.get('peak', {}).get('p50_s'), 3)} s, p99 "
         f"{_num(lag.get('peak', {}).get('p99_s'), 3)} s, max {_num(lag.get('peak', {}).get('max_s'), 2)} s "
         f"({lag.get('peak', {}).get('n', 0)} submits)"],
        ["scoring lag after the 202, whole run", f"p50 {_num(lag.get('all', {}).get('p50_s'), 3)} s, p99 "
         f"{_num(lag.get('all', {}).get('p99_s'), 3)} s"],
        ["scoring lag from the gateway's arrival stamp (includes the submit's own wait), peak",
         f"p50 {_num(sql['lag_peak']['p50_s'], 3)} s, p99 {_num(sql['lag_peak']['p99_s'], 3)} s "
         "(`percentile_cont` over `scored_at − submitted_at`)"],
        ["backlog (submitted − scored): largest before the close; drained after the close",
         f"{surge['max_backlog_before_close']}; {_num(surge['drained_after_close_s'], 1)} s; last submit → all "
         f"scored: {_num(surge['last_submit_to_all_scored_s'], 1)} s"],
        ["after the close: starts refused (409) / late submits refused (409) / 5xx answers",
         f"{surge.get('starts_409_refused', '–')} / {surge['submits_409_late']} / {surge['server_errors_5xx']}"],
        ["round final in quiz and scoring",
         f"{sql['quiz_finalised_at'] or 'no'} / {sql['scoring_finalised_at'] or 'no'}; {sql['winners']} winners"],
        ["CPU used by other processes on the machine while the load ran (noise)",
         _pct(surge.get("other_share_load"))],
        ["CPU while the load ran", f"machine {_pct(surge['busy_share_load'])} busy; "
         + ", ".join(f"{label} {_share(surge['cpu_load_s'], groups, surge)}" for label, groups in COMPONENTS)],
    ]
    out.append(_table(["", ""], rows, "ll"))
    out.append("")
    integrity = _integrity(surge)
    out.append(f"**Integrity check: {'passed' if integrity['ok'] else 'FAILED'}.** " + "; ".join(
        f"{k}: {v}" for k, v in integrity["counts"].items())
        + f"; accepted after deadline + grace: {sql['accepted_after_deadline']}.\n")
    out.append("Per endpoint over the whole surge (Locust):\n")
    out.append(_table(["request", "count", "failures", "p50 ms", "p95 ms", "p99 ms"],
                      [[e["name"], _num(e["requests"]), str(e["failures"]), _ms(e["p50_ms"]), _ms(e["p95_ms"]),
                        _ms(e["p99_ms"])] for e in surge["endpoints"]]))
    out.append("")
    if surge.get("failures"):
        out.append("Failures Locust recorded: " + "; ".join(
            f"{f.get('Method')} {f.get('Name')}: {f.get('Error')} ×{f.get('Occurrences')}" for f in surge["failures"])
            + ".\n")
    return "\n".join(out)


def _share(cpu: dict[str, float], groups: list[str], surge: dict[str, Any]) -> str:
    seconds = surge["ended_at"] - surge["started_at"]
    cores = sum(cpu.get(g, 0.0) for g in groups) / seconds if seconds else 0.0
    return f"{cores:.2f}"


def _rss_section(results: dict[str, Any]) -> str:
    rows = results.get("rss", [])
    if not rows:
        return ""
    out = ["## Peak memory (RSS) of every process\n",
           "VmHWM (the kernel's peak resident set) of each process of the stack over the whole run; the shared "
           "servers as a whole (all their processes, other databases included).\n"]
    grouped: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["group"] in ("load generator", "bench orchestrator"):
            continue
        grouped.setdefault((r["group"], r["process"]), []).append(r["peak_rss_mib"])
    table = []
    for (group, process), values in grouped.items():
        if group.endswith("(whole server)"):
            # Summing would count shared memory (shared_buffers) once per process.
            table.append([group, f"{len(values)} processes seen", "–", f"{max(values):.0f}"])
        else:
            table.append([group, process + (f" ×{len(values)}" if len(values) > 1 else ""), f"{max(values):.0f}",
                          f"{max(values):.0f}"])
    out.append(_table(["component", "process", "peak RSS MiB", "largest single process MiB"], table, "llrr"))
    out.append("")
    return "\n".join(out)


def _profiles_section(results: dict[str, Any]) -> str:
    profiles = results.get("profiles") or {}
    if not profiles:
        return ""
    out = ["## Profiles (py-spy)\n",
           "`py-spy record --nonblocking --rate 100 --format raw` on one process for "
           f"{max(4, results['options']['duration_s'] - 2)} s while wrk drove the endpoint (a separate run, so the "
           "profiler does not colour the figures above). Shares are of the samples where the process was busy "
           "(threads waiting on a lock or in epoll left out); `Runner.run` is the uvloop event loop's own C code "
           "(socket reads and writes, HTTP parsing). The stacks are in `var/bench/<time>/profiles/` (collapsed "
           "format: speedscope.app or flamegraph.pl open them).\n"]
    rows = []
    for label, info in profiles.items():
        path = ROOT / info["file"] if "file" in info else None
        if path is None or not path.exists():
            rows.append([label, info.get("skipped", "?"), *["" for _ in MARKERS]])
            continue
        markers = profile_markers(path)
        info["markers"] = markers
        rows.append([label, str(markers["busy"]), *[f"{markers['markers'][m]:.1f}" for m, _ in MARKERS]])
    out.append(_table(["profile", "busy samples", *[m for m, _ in MARKERS]], rows))
    out.append("")
    for label, info in profiles.items():
        summary = info.get("summary") or {}
        if not summary.get("samples"):
            continue
        ours = info.get("markers", {}).get("ours", [])
        libs = ", ".join(f"{name} {share:.0f} %" for name, share in summary.get("libraries", [])[:8])
        out.append(f"- **{label}**: leaf frames by library: {libs}.")
        if ours:
            out.append("  Our code, inclusive: " + ", ".join(f"`{name.split(' (')[0]}` {share:.0f} %"
                                                             for name, share in ours[:6]) + ".")
    out.append("")
    return "\n".join(out)


def _micro_section(results: dict[str, Any]) -> str:
    micro = results.get("micro")
    out = ["## Micro-benchmarks by colleagues (run by `make bench` before the stack starts)\n"]
    if not micro:
        out.append("Not run this time (`--skip-micro`).\n")
        return "\n".join(out)
    for name, title in (("registration", "Sign-up and login per core (loadtests/bench_registration.py)"),
                        ("notify", "Notifications (loadtests/bench_notify.py)"),
                        ("imports", "Other requests while an organiser's file is read (loadtests/bench_imports.py)")):
        info = micro.get(name, {})
        out.append(f"### {title}\n")
        text = info.get("markdown", "").strip()
        text = re.sub(r"^### .*\n+", "", text)
        out.append(text if info.get("ok") else f"Failed: {text[-500:]}")
        out.append("")
    return "\n".join(out)


def notes_of(doc: Path) -> str:
    if not doc.exists():
        return ""
    text = doc.read_text(encoding="utf-8")
    start, end = text.find(NOTES_BEGIN), text.find(NOTES_END)
    if start < 0 or end < start:
        return ""
    return text[start + len(NOTES_BEGIN) : end]


def write(results: dict[str, Any], doc: Path, png: Path, run_dir: Path | None = None) -> None:
    plot_note = plot(results, png)
    text = render(results, notes_of(doc), png.name, plot_note)
    doc.write_text(text, encoding="utf-8")
    if run_dir is not None:
        (run_dir / "benchmarks.md").write_text(text, encoding="utf-8")


def summary(results: dict[str, Any]) -> str:
    """The figures as a Markdown table on stdout (what `make bench` prints at the end)."""
    wrk = results.get("wrk", {})
    lines = ["", "| endpoint | req/s | p50 ms | p95 ms | p99 ms | ratio to no-op |", "|---|---:|---:|---:|---:|---:|"]
    for name in ENDPOINT_ORDER:
        run = wrk.get(name)
        if run:
            lines.append(f"| {name} | {run['rps']:,.0f} | {_ms(run['p50_ms'])} | {_ms(run['p95_ms'])} | "
                         f"{_ms(run['p99_ms'])} | {_pct(run.get('ratio', 1.0))} |")
    _, rows = _targets(results)
    if rows:
        lines += ["", "| target | measured | verdict |", "|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else ROOT / "var" / "bench" / "latest" / "results.json"
    results = json.loads(path.read_text())
    write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks-surge.png")
    print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
