"""How long do the commands take to start? `lenet-train --help` and `lenet-predict` of one image against a bare
`python -c "import torch"`, each run as a fresh process, interleaved round by round, median of the rounds.

    python benchmarks/startup.py --checkpoint runs/<run>/checkpoints/best.pt     # 5 rounds

The goal (issue 13): both within 1.25x of importing torch, since torchvision and TensorBoard are only
imported by the code that needs them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from lenet.cli import add_model_arguments  # noqa: E402
from lenet.runs import default_checkpoint  # noqa: E402

GOAL = 1.25


def wall_time(command: list[str]) -> float:
    """Seconds from start to exit of one fresh process (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the three commands (default: 5)")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or default_checkpoint(args.runs_dir)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as folder:
        digit = Path(folder) / "seven.png"
        image = Image.new("L", (280, 280), 255)
        ImageDraw.Draw(image).line([(90, 60), (190, 60), (120, 230)], fill=0, width=18)
        image.save(digit)
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "lenet-train --help": [str(bin_dir / "lenet-train"), "--help"],
            "lenet-predict one image": [str(bin_dir / "lenet-predict"), str(digit), "--checkpoint", str(checkpoint)],
        }
        for command in commands.values():  # warm the file cache once
            wall_time(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(wall_time(command))
    baseline = statistics.median(times['python -c "import torch"'])
    print(f"| command | median of {args.rounds} (s) | runs (s) | x import torch |\n|---|---|---|---|")
    for name, values in times.items():
        ratio = statistics.median(values) / baseline
        print(f"| `{name}` | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} | "
              f"{ratio:.2f}{'' if ratio <= GOAL or name.startswith('python') else ' (over the goal)'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
