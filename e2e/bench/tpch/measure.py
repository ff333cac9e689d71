#!/usr/bin/env python3
"""Run one command and report its wall time, CPU time and peak memory as JSON.

    measure.py [--timeout SECONDS] [--out FILE] -- COMMAND [ARG...]

The command runs in a session of its own. Two measurements are taken and both are reported:

* getrusage(RUSAGE_CHILDREN) after the wait: user+sys CPU of the child and of every descendant
  that was waited for (a JVM that PySpark's driver starts and reaps is included; one that is
  orphaned and reaped by init is not), and ru_maxrss, the peak RSS of the largest single process.
* /proc sampling every 50 ms of every process in the command's session (found by session id, so
  orphaned descendants are still seen): the summed RSS of the whole tree (peak_tree_rss), and the
  last utime+stime seen per process, summed (cpu_sampled_s: misses at most the last 50 ms of each
  process).

`cpu_s` is the larger of the two CPU figures and `peak_rss_mib` the larger of ru_maxrss and the
sampled tree sum, so a process that escapes one method is still counted by the other.
Exit status: the command's (124 on timeout, after the session is killed).
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
INTERVAL = 0.05


def session_processes(sid):
    """(pid, utime+stime seconds, rss bytes) of every live process whose session id is sid."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is field 3 (state): session is field 6, utime 14, stime 15, rss 24.
        try:
            if int(fields[3]) != sid:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
            rss = int(fields[21]) * PAGE
        except (IndexError, ValueError):
            continue
        found.append((int(name), cpu, rss))
    return found


def kill_session(sid):
    """TERM every process of the session, then KILL whatever is still there 2 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(sid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(
            not is_zombie(pid) for pid, _, _ in session_processes(sid)
        ):
            time.sleep(INTERVAL)


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=3600, help="kill the command after this many seconds")
    parser.add_argument("--out", help="write the JSON here as well as to stdout")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    child = subprocess.Popen(command, start_new_session=True)
    sid = child.pid  # the child leads its new session
    cpu_by_pid = {}
    peak = {"tree": 0, "samples": 0}

    def sample():
        procs = session_processes(sid)
        peak["samples"] += 1
        peak["tree"] = max(peak["tree"], sum(rss for _, _, rss in procs))
        for pid, cpu, _ in procs:
            cpu_by_pid[pid] = max(cpu, cpu_by_pid.get(pid, 0.0))
        return [pid for pid, _, _ in procs]

    timed_out = False
    while True:
        sample()
        if child.poll() is not None:
            break
        if time.monotonic() - start > args.timeout:
            timed_out = True
            wall = time.monotonic() - start
            kill_session(sid)
            child.wait()
            break
        time.sleep(INTERVAL)
    if not timed_out:
        wall = time.monotonic() - start
    # Descendants the command left behind in its session: give them a moment (their CPU and
    # memory still count), then end them, so they neither skew the next measurement nor hold
    # files open.
    deadline = time.monotonic() + 10
    leftover = sample()
    while leftover and time.monotonic() < deadline:
        time.sleep(INTERVAL)
        leftover = sample()
    if leftover:
        kill_session(sid)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)

    rusage_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampled_cpu = sum(cpu_by_pid.values())
    maxrss = after.ru_maxrss * 1024  # KiB on Linux
    result = {
        "command": command,
        "exit_code": 124 if timed_out else child.returncode,
        "timed_out": timed_out,
        "wall_s": round(wall, 3),
        "cpu_s": round(max(rusage_cpu, sampled_cpu), 3),
        "cpu_rusage_s": round(rusage_cpu, 3),
        "user_rusage_s": round(after.ru_utime - before.ru_utime, 3),
        "sys_rusage_s": round(after.ru_stime - before.ru_stime, 3),
        "cpu_sampled_s": round(sampled_cpu, 3),
        "peak_rss_mib": round(max(maxrss, peak["tree"]) / 2**20, 1),
        "maxrss_rusage_mib": round(maxrss / 2**20, 1),
        "peak_tree_rss_mib": round(peak["tree"] / 2**20, 1),
        "processes_seen": len(cpu_by_pid),
        "leftover_processes_killed": len(leftover),
        "samples": peak["samples"],
    }
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return result["exit_code"] if result["exit_code"] >= 0 else 128 - result["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
