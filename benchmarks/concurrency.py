"""Two commands at once: does each of two `lenet-train --preset fast --epochs 1` started together take at most
2.5x the time of one alone? Measures solo and pair rounds, interleaved, with lenet's default threading (the short
OpenMP spin `import lenet` sets) and, with --baseline, with OpenMP's own default (OMP_WAIT_POLICY set empty, so
lenet leaves OpenMP alone), so both are measured on the same machine in the same minutes.

    python benchmarks/concurrency.py --data-dir $LENET_DATA_DIR               # 2 rounds, lenet's default
    python benchmarks/concurrency.py --data-dir $LENET_DATA_DIR --baseline    # and OpenMP's default beside it
    python benchmarks/concurrency.py --baseline --also OMP_WAIT_POLICY=PASSIVE   # and any other setting

Run it on an otherwise idle machine: it is the contention between its own processes it measures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 2.5  # each of two at once, against one alone


def train_command(data_dir: str | None, runs_dir: Path, name: str) -> list[str]:
    """One `lenet-train --preset fast --epochs 1` into its own run folder."""
    command = [sys.executable, "-m", "lenet.cli.train", "--preset", "fast", "--epochs", "1", "--runs-dir",
               str(runs_dir), "--run-name", name, "--device", "cpu"]
    return command + (["--data-dir", data_dir] if data_dir else [])


def wall_times(commands: list[list[str]], env: dict[str, str]) -> list[float]:
    """Start `commands` together; seconds from the common start to each one's exit (each must succeed)."""
    start = time.perf_counter()
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    ended: dict[int, float] = {}
    while len(ended) < len(processes):
        for i, process in enumerate(processes):
            if i not in ended and process.poll() is not None:
                ended[i] = time.perf_counter() - start
        time.sleep(0.02)
    for process in processes:
        if process.returncode != 0:
            raise SystemExit(f"error: a training run failed: {process.stderr.read().strip()}")
    return [ended[i] for i in range(len(processes))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR"),
                        help="where MNIST lives (default: $LENET_DATA_DIR, else lenet's own default)")
    parser.add_argument("--rounds", type=int, default=2, help="solo and pair rounds per setting (default: 2)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure OpenMP's own default wait policy (default: off)")
    parser.add_argument("--also", metavar="NAME=VALUE[,NAME=VALUE]", action="append", default=[],
                        help="also measure with these environment variables set, e.g. GOMP_SPINCOUNT=10000 "
                             "(repeatable; default: none)")
    args = parser.parse_args(argv)
    settings = {"lenet default": {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}}
    if args.baseline:
        settings["OpenMP default"] = {**settings["lenet default"], "OMP_WAIT_POLICY": ""}
    for extra in args.also:
        pairs = dict(item.split("=", 1) for item in extra.split(",") if "=" in item)
        settings[extra] = {**settings["lenet default"], **pairs}
    results: dict[str, dict[str, list[float]]] = {name: {"solo": [], "pair": []} for name in settings}
    with tempfile.TemporaryDirectory() as folder:
        runs_dir, count = Path(folder), 0
        for _ in range(args.rounds):
            for name, env in settings.items():
                for kind, n in (("solo", 1), ("pair", 2)):
                    commands = [train_command(args.data_dir, runs_dir, f"r{count + i}") for i in range(n)]
                    count += n
                    results[name][kind] += wall_times(commands, env)
    print(f"| setting | one alone (s) | each of two at once (s) | ratio | goal <= {GOAL}x |\n|---|---|---|---|---|")
    for name, times in results.items():
        solo, pair = statistics.median(times["solo"]), statistics.median(times["pair"])
        print(f"| {name} | {solo:.1f} ({', '.join(f'{t:.1f}' for t in times['solo'])}) | {pair:.1f} "
              f"({', '.join(f'{t:.1f}' for t in times['pair'])}) | {pair / solo:.2f}x | "
              f"{'met' if pair / solo <= GOAL else 'not met'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
