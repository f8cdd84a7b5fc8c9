"""Side-by-side speed benchmark: the common tutorial pipeline against lenet's own training path.

    python benchmarks/benchmark.py            # full run (about 5 minutes on 2 cores), prints a markdown table
    python benchmarks/benchmark.py --smoke    # seconds: one short epoch of each, to keep this script working

Each pipeline runs in its own subprocess so that peak memory (max RSS) is its own. Measured:
training images per second, seconds per epoch, training seconds to the first epoch with >= 99.0%
test accuracy, final test accuracy, evaluation throughput, single-image prediction latency with the
model loaded (preprocessing + forward, p50 and p95), and peak memory.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

TARGET = 0.99


def user_like_png(seed: int = 0) -> bytes:
    """A 280x280 RGBA PNG of an MNIST test digit, black ink on white: what a user would upload."""
    from PIL import Image, ImageOps

    from lenet.data import load_torchvision_dataset
    from lenet.inference.images import png_bytes
    digit = load_torchvision_dataset("mnist", train=False).data[seed].numpy()
    return png_bytes(ImageOps.invert(Image.fromarray(digit)).resize((280, 280), Image.LANCZOS).convert("RGBA"))


def latency(function, repeats: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of `function()` over `repeats` calls after a warm-up."""
    for _ in range(5):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def run_tutorial(epochs: int, seed: int, smoke: bool) -> dict:
    """torchvision MNIST, per-sample ToTensor + Normalize, DataLoader(batch_size=64, shuffle=True), Adam 1e-3."""
    from PIL import Image
    from torchvision import transforms

    from lenet.data import torchvision_loader
    from lenet.model import LeNet5
    torch.manual_seed(seed)
    train_loader = torchvision_loader(train=True, batch_size=64, shuffle=True)
    test_loader = torchvision_loader(train=False, batch_size=1000, shuffle=False)
    model = LeNet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    limit = 100 if smoke else None  # batches per epoch in smoke mode

    def test_accuracy() -> float:
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += (model(images).argmax(1) == labels).sum().item()
                total += len(labels)
        return correct / total

    history, seen = [], 0
    for epoch in range(1, epochs + 1):
        model.train()
        start, seen = time.perf_counter(), 0
        for step, (images, labels) in enumerate(train_loader):
            if limit and step == limit:
                break
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(labels)
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "seconds": seconds, "images": seen, "test_accuracy": test_accuracy()})
    start = time.perf_counter()
    test_accuracy()
    eval_seconds = time.perf_counter() - start

    # The tutorial way to predict one image: PIL resize to 28x28, ToTensor, Normalize, forward.
    png = user_like_png()
    transform = transforms.Compose([transforms.Grayscale(), transforms.Resize((28, 28)), transforms.ToTensor(),
                                    transforms.Normalize((0.1307,), (0.3081,))])

    def predict_one():
        with torch.no_grad():
            return model(transform(Image.open(io.BytesIO(png))).unsqueeze(0)).argmax(1)

    p50, p95 = latency(predict_one, 20 if smoke else 200)
    return {"history": history, "final_test_accuracy": history[-1]["test_accuracy"],
            "eval_images_per_second": 10_000 / eval_seconds, "predict_p50_ms": p50, "predict_p95_ms": p95}


def run_lenet(preset: str, epochs: int | None, seed: int, smoke: bool, runs_dir: str,
              overrides: dict | None = None) -> dict:
    """lenet's training path: `fit` with a preset (and overrides); test accuracy is measured after every epoch."""
    import dataclasses

    from lenet.callbacks import Callback
    from lenet.config import PRESETS, Config
    from lenet.inference.predict import load_model, predict
    from lenet.runs import BEST, checkpoint_path
    from lenet.train import evaluate, fit

    class TestAccuracyEachEpoch(Callback):
        def __init__(self) -> None:
            self.accuracies: list[float] = []

        def on_epoch_end(self, state) -> None:
            self.accuracies.append(evaluate(state.model, state.splits.test)[1])
            self.test = state.splits.test
            self.model = state.model

    values = dict(PRESETS[preset], **(overrides or {}))
    values.update(seed=seed, run_name=f"benchmark-{preset}-{seed}", runs_dir=runs_dir, overwrite=True, device="cpu")
    if epochs:
        values["epochs"] = epochs
    config = Config(**values)
    if smoke:
        config = dataclasses.replace(config, epochs=1, val_size=50_000)  # 10k training images, one epoch
    recorder = TestAccuracyEachEpoch()
    result = fit(config, callbacks=[recorder], verbose=False)
    train_images = 60_000 - config.val_size
    history = [{"epoch": r["epoch"], "seconds": r["seconds"], "images": train_images, "test_accuracy": accuracy}
               for r, accuracy in zip(result["history"], recorder.accuracies)]
    start = time.perf_counter()
    evaluate(recorder.model, recorder.test)
    eval_seconds = time.perf_counter() - start

    predictor = load_model(checkpoint_path(result["run_dir"], BEST))
    png = user_like_png()
    p50, p95 = latency(lambda: predict(predictor, [png]), 20 if smoke else 200)
    return {"history": history, "final_test_accuracy": result["test_accuracy"],
            "eval_images_per_second": 10_000 / eval_seconds, "predict_p50_ms": p50, "predict_p95_ms": p95}


def summarize(run: dict) -> dict:
    """Per-run figures: throughput, seconds per epoch, training seconds to the target accuracy."""
    history = run["history"]
    seconds = sum(r["seconds"] for r in history)
    to_target, elapsed = None, 0.0
    for record in history:
        elapsed += record["seconds"]
        if record["test_accuracy"] >= TARGET:
            to_target = elapsed
            break
    return {"images_per_second": sum(r["images"] for r in history) / seconds,
            "seconds_per_epoch": seconds / len(history), "seconds_to_target": to_target,
            "epochs_to_target": next((r["epoch"] for r in history if r["test_accuracy"] >= TARGET), None)}


def child(args: argparse.Namespace) -> None:
    """Run one pipeline for one seed and print its figures as JSON."""
    if args.pipeline == "tutorial":
        run = run_tutorial(args.tutorial_epochs, args.seed, args.smoke)
    else:
        run = run_lenet(args.pipeline, args.epochs, args.seed, args.smoke, args.runs_dir, json.loads(args.overrides))
    run.update(summarize(run))
    run["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(run))


def run_in_subprocess(pipeline: str, seed: int, runs_dir: str, smoke: bool = False, epochs: int | None = None,
                      tutorial_epochs: int = 6, overrides: dict | None = None) -> dict:
    """Run one pipeline ("tutorial" or a preset name) for one seed in a fresh process; its figures as a dict."""
    command = [sys.executable, __file__, "--pipeline", pipeline, "--seed", str(seed), "--runs-dir", runs_dir,
               "--tutorial-epochs", str(tutorial_epochs), "--overrides", json.dumps(overrides or {})]
    command += ["--smoke"] if smoke else []
    command += ["--epochs", str(epochs)] if epochs else []
    print(f"running {pipeline}{' ' + json.dumps(overrides) if overrides else ''}, seed {seed} ...",
          file=sys.stderr, flush=True)
    output = subprocess.run(command, capture_output=True, text=True)
    line = next((l for l in output.stdout.splitlines() if l.startswith("RESULT ")), None)
    if output.returncode != 0 or line is None:
        last = (output.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: the {pipeline} pipeline failed: {last}")
    return json.loads(line[len("RESULT "):])


def machine() -> str:
    """One line about the CPU, core count, torch version and threads."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}")


def mean_or_none(values):
    values = [v for v in values]
    return None if any(v is None for v in values) else statistics.mean(values)


def table(results: dict[str, list[dict]], seeds: int) -> str:
    """The markdown table comparing the pipelines (means over seeds)."""
    def fmt(value, pattern):
        return "not reached" if value is None else pattern.format(value)

    rows = [
        ("training images / s", "images_per_second", "{:,.0f}"),
        ("seconds per epoch", "seconds_per_epoch", "{:.2f}"),
        ("training s to >= 99.0% test accuracy", "seconds_to_target", "{:.1f}"),
        ("epochs to >= 99.0% test accuracy", "epochs_to_target", "{:.1f}"),
        ("final test accuracy", "final_test_accuracy", "{:.2%}"),
        ("evaluation images / s", "eval_images_per_second", "{:,.0f}"),
        ("predict one image, p50 ms", "predict_p50_ms", "{:.2f}"),
        ("predict one image, p95 ms", "predict_p95_ms", "{:.2f}"),
        ("peak memory (max RSS), MB", "peak_memory_mb", "{:,.0f}"),
    ]
    names = list(results)
    lines = ["| measure (mean of %d seed%s) | %s |" % (seeds, "s" if seeds > 1 else "", " | ".join(names)),
             "|---" * (len(names) + 1) + "|"]
    for label, key, pattern in rows:
        cells = [fmt(mean_or_none([run[key] for run in results[name]]), pattern) for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    base, fast = results[names[0]], results[names[-1]]
    ratio = statistics.mean(r["images_per_second"] for r in fast) / statistics.mean(
        r["images_per_second"] for r in base)
    lines.append(f"\nThroughput ratio {names[-1]} / {names[0]}: {ratio:.1f}x")
    reached = [r["seconds_to_target"] for r in fast]
    lines.append(f"Seeds of {names[-1]} reaching 99.0% test accuracy: {sum(v is not None for v in reached)}"
                 f" of {len(reached)}; training seconds each: "
                 + ", ".join("-" if v is None else f"{v:.1f}" for v in reached))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per pipeline (default: 3)")
    parser.add_argument("--tutorial-epochs", type=int, default=6, help="epochs of the tutorial pipeline (default: 6)")
    parser.add_argument("--epochs", type=int, default=None, help="override the lenet presets' epochs (default: keep)")
    parser.add_argument("--presets", default="fast", help="comma-separated lenet presets to measure (default: fast)")
    parser.add_argument("--smoke", action="store_true", help="tiny run that only checks the script works")
    parser.add_argument("--runs-dir", default="runs", help="where the lenet runs are written (default: runs)")
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline:
        return child(args)

    seeds = 1 if args.smoke else args.seeds
    pipelines = ["tutorial"] + args.presets.split(",")
    results: dict[str, list[dict]] = {name: [] for name in pipelines}
    for seed in range(seeds):
        for name in pipelines:
            results[name].append(run_in_subprocess(name, seed, args.runs_dir, smoke=args.smoke, epochs=args.epochs,
                                                   tutorial_epochs=1 if args.smoke else args.tutorial_epochs))
    label = {"tutorial": "tutorial pipeline"}
    print(f"Machine: {machine()}\n")
    print(table({label.get(name, f"lenet --preset {name}"): runs for name, runs in results.items()}, seeds))


if __name__ == "__main__":
    main()
