"""CPU time and peak memory of every process of the benchmark, read from Linux's /proc
(no psutil): a thread samples each group of processes once a second.

- CPU: utime + stime of each pid, kept per pid so that a process that exits (a gunicorn
  worker removed with TTOU) still counts; a phase's CPU is the difference of two
  snapshots. Machine-wide busy time comes from /proc/stat.
- Memory: VmHWM (the kernel's own peak resident set) of each pid, the highest seen.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TICK_S = 1 / os.sysconf("SC_CLK_TCK")

PidSource = Callable[[], list[int]]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (field 2) may contain spaces; the fields after it are fixed.
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S  # utime, stime


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB."""
    text = _read(f"/proc/{pid}/status")
    if text is None:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":", 1)
            values[name] = int(value.split()[0])
    if "VmHWM" not in values:
        return None  # a kernel thread or a zombie
    return values.get("VmRSS", 0), values["VmHWM"]


def command_name(pid: int) -> str:
    return (_read(f"/proc/{pid}/comm") or "").strip()


def pids_named(*names: str) -> list[int]:
    wanted = set(names)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and command_name(int(entry)) in wanted:
            found.append(int(entry))
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot."""
    line = (_read("/proc/stat") or "cpu 0 0 0 0").splitlines()[0].split()[1:]
    ticks = [int(v) for v in line]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    total = sum(ticks[:8])
    return (total - idle) * TICK_S, total * TICK_S


@dataclass
class ProcessPeak:
    group: str
    pid: int
    command: str
    hwm_kib: int
    rss_kib: int


@dataclass
class Snapshot:
    at: float
    cpu: dict[str, float]  # group → CPU seconds so far
    busy_s: float
    total_s: float


@dataclass
class Sampler:
    groups: dict[str, PidSource]
    interval_s: float = 1.0
    _cpu: dict[tuple[str, int], float] = field(default_factory=dict)
    peaks: dict[tuple[str, int], ProcessPeak] = field(default_factory=dict)
    series: list[Snapshot] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def set_group(self, name: str, source: PidSource) -> None:
        with self._lock:
            self.groups[name] = source

    def sample(self) -> Snapshot:
        # The sampling thread and the orchestrator (phase boundaries) both call this.
        with self._lock:
            return self._sample()

    def _sample(self) -> Snapshot:
        for name, source in self.groups.items():
            try:
                pids = source()
            except Exception:
                pids = []
            for pid in pids:
                cpu = cpu_seconds(pid)
                if cpu is not None:
                    self._cpu[(name, pid)] = cpu
                memory = memory_kib(pid)
                if memory is not None:
                    rss, hwm = memory
                    old = self.peaks.get((name, pid))
                    if old is None or hwm > old.hwm_kib or rss > old.rss_kib:
                        self.peaks[(name, pid)] = ProcessPeak(
                            name, pid, command_name(pid), max(hwm, old.hwm_kib if old else 0),
                            max(rss, old.rss_kib if old else 0),
                        )
        totals: dict[str, float] = {}
        for (name, _), cpu in self._cpu.items():
            totals[name] = totals.get(name, 0.0) + cpu
        busy, total = machine_busy()
        snap = Snapshot(time.time(), totals, busy, total)
        self.series.append(snap)
        return snap

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.sample()

        self.sample()
        self._thread = threading.Thread(target=loop, name="proc-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()


def cpu_between(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds each group used between two snapshots, and the machine's busy share."""
    used = {name: after.cpu.get(name, 0.0) - before.cpu.get(name, 0.0) for name in after.cpu}
    return {name: round(value, 3) for name, value in used.items() if value > 0.0005}


def busy_share(before: Snapshot, after: Snapshot) -> float:
    total = after.total_s - before.total_s
    return (after.busy_s - before.busy_s) / total if total > 0 else 0.0
