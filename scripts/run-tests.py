#!/usr/bin/env python3
"""Runs every test binary cargo built, several at a time, longest first.

Why: `cargo test --workspace` runs test binaries one after another, and most of the
suite's time is real-peer tests waiting on real-time media (ffmpeg, GStreamer,
Kamailio), not using a core. Running a few binaries at once keeps the suite short
without touching how each binary runs its own tests.

Input: the JSON lines of `cargo test --workspace --no-run --message-format=json`.
Each binary runs as cargo would run it: from its package's directory, with
CARGO_MANIFEST_DIR set. Its output goes to a log; a line per finished binary says how
it went, and a failing binary's whole output is printed at the end. The durations are
kept in target/test-times.json so the next run starts the longest binaries first.

Exit status: 0 when every binary passed, 1 otherwise.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TIMES = os.path.join("target", "test-times.json")
# A binary that runs longer than this is killed and counted as failed: a hang must not
# eat CI's whole budget.
BINARY_TIMEOUT_S = 900


def binaries(json_lines):
    found = []
    for line in json_lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        package = msg["package_id"]
        manifest_dir = os.path.dirname(msg["manifest_path"])
        name = f"{os.path.basename(manifest_dir)}/{target['name']}"
        # A crate's library and its program of the same name both have unit tests.
        if "lib" in target["kind"]:
            name += " (unit)"
        elif "bin" in target["kind"]:
            name += " (bin)"
        found.append({"name": name, "exe": msg["executable"], "dir": manifest_dir, "package": package})
    return found


def load_times():
    try:
        with open(TIMES) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_one(b, logdir, print_lock):
    log_path = os.path.join(logdir, b["name"].replace("/", "_").replace(" ", "_") + ".log")
    env = dict(os.environ, CARGO_MANIFEST_DIR=b["dir"])
    start = time.monotonic()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run([b["exe"]], cwd=b["dir"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, timeout=BINARY_TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            log.write(f"\n*** killed after {BINARY_TIMEOUT_S} s ***\n")
            rc = -1
    took = time.monotonic() - start
    with open(log_path) as log:
        text = log.read()
    results = [l for l in text.splitlines() if l.startswith("test result:")]
    summary = results[-1] if results else "(no test result line)"
    with print_lock:
        print(f"{'ok  ' if rc == 0 else 'FAIL'} {took:7.1f}s  {b['name']}: {summary}", flush=True)
    return b, rc, took, text


def main():
    jobs = int(os.environ.get("TEST_JOBS", "3"))
    with open(sys.argv[1]) as f:
        found = binaries(f)
    if not found:
        print("no test binaries in cargo's output", file=sys.stderr)
        return 1
    times = load_times()
    # Unknown binaries (a fresh clone) count as long, so new real-peer tests start early.
    found.sort(key=lambda b: -times.get(b["name"], 60.0))
    print(f"{len(found)} test binaries, {jobs} at a time", flush=True)
    lock = threading.Lock()
    failed = []
    with tempfile.TemporaryDirectory(prefix="mediagate-tests-") as logdir:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(lambda b: run_one(b, logdir, lock), found))
    for b, rc, took, text in outcomes:
        times[b["name"]] = round(took, 1)
        if rc != 0:
            failed.append((b, text))
    try:
        with open(TIMES, "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
    except OSError:
        pass
    for b, text in failed:
        print(f"\n======== {b['name']} failed; its output:\n{text}", flush=True)
    total = sum(t for _, _, t, _ in outcomes)
    print(f"\n{len(found) - len(failed)} of {len(found)} test binaries passed "
          f"({total:.0f} s of test time)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
