"""Timing a process tree: wall and CPU seconds and peak memory of a command and every process
it starts, sampled from ``/proc``. A library for the benchmarks (no ``--quick`` mode: it
measures nothing itself)."""

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _common import PROJECT_ROOT


@dataclass
class Measured:
    """One timed process tree: wall and CPU seconds, peak summed RSS and PSS, largest process's
    peak."""

    started_at: float
    """Unix time the process was started, to line it up with Dagster's event timestamps."""
    wall_s: float
    cpu_s: float
    peak_tree_mb: float
    peak_process_mb: float
    peak_tree_pss_mb: float
    stdout: str


def _memory_kb(pid: int) -> tuple[int, int]:
    """Current and peak (high-water mark) resident memory of ``pid``, in KiB."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    found[line[:5]] = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found.get("VmRSS", 0), found.get("VmHWM", 0)


def _pss_kb(pid: int) -> int:
    """Proportional set size of ``pid`` in KiB: its private pages plus its share of each page
    it shares (e.g. with the forkserver it was forked from); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def run_measured(command: list[str], env: dict[str, str], log: Path) -> Measured:
    """Run ``command`` to completion; time it and sample its process tree's memory.

    The tree's peaks are the largest sums of current RSS and of PSS seen (sampled every 0.1 s;
    PSS counts a page shared by several processes once in all, RSS once per process); the largest
    process's peak is exact, from each process's high-water mark (``VmHWM``). ``ru_maxrss`` is
    not used: Linux carries it across ``exec`` from the forked parent, so a child of this
    (large) process would report this process's size. CPU time is the sum over the tree's
    processes of the last CPU time sampled: ``RUSAGE_CHILDREN`` would miss the step processes,
    which a forkserver, not the run, waits for.
    """
    peak_tree_kb = peak_process_kb = peak_pss_kb = 0
    cpu_by_pid: dict[int, float] = {}
    started_at, started = time.time(), time.perf_counter()
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_tree_kb, peak_process_kb, peak_pss_kb
            while not done.wait(0.1):
                tree = _tree(process.pid)
                memory = [_memory_kb(pid) for pid in tree]
                cpu_by_pid.update({pid: max(_cpu_s(pid), cpu_by_pid.get(pid, 0.0)) for pid in tree})
                peak_tree_kb = max(peak_tree_kb, sum(rss for rss, _ in memory))
                peak_process_kb = max(peak_process_kb, *(hwm for _, hwm in memory), 0)
                peak_pss_kb = max(peak_pss_kb, sum(_pss_kb(pid) for pid in tree))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, _ = process.communicate()
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} … failed ({process.returncode}); see {log}")
    cpu = sum(cpu_by_pid.values())
    return Measured(
        started_at,
        wall,
        cpu,
        peak_tree_kb / 1024,
        peak_process_kb / 1024,
        peak_pss_kb / 1024,
        stdout,
    )
