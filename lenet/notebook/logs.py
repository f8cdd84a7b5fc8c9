"""Reading a run's TensorBoard event files back into plain Python: scalars and histograms.

TensorBoard is only a viewer; the numbers live in the run folder's `events.out.tfevents.*` files.
tensorboard's own `EventAccumulator` reads them, and these functions return what it finds as numpy
arrays, so a notebook or a report can plot or check them. Nothing here writes to a run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Histogram:
    """One logged histogram: bucket i counts values in (limits[i-1], limits[i]]; counts[0] is the left edge."""

    step: int
    limits: np.ndarray
    counts: np.ndarray
    min: float
    max: float
    num: float
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        """The mean of the logged values."""
        return self.sum / self.num

    @property
    def std(self) -> float:
        """The standard deviation of the logged values."""
        return math.sqrt(max(self.sum_squares / self.num - self.mean ** 2, 0.0))

    def on_grid(self, edges: np.ndarray) -> np.ndarray:
        """Counts re-binned onto `edges`, spreading each bucket evenly over its width."""
        # TensorBoard's buckets grow geometrically away from 0, so counts per bucket mislead the eye;
        # interpolating the cumulative count onto an even grid gives comparable bars.
        cumulative = np.cumsum(self.counts)
        return np.diff(np.interp(edges, self.limits, cumulative, left=0.0, right=cumulative[-1]))


def _accumulator(run_dir: str | os.PathLike):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 keeps every event; the default samples scalars and histograms down.
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag in a run folder's event files, as tag -> (steps, values)."""
    accumulator = _accumulator(run_dir)
    result = {}
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        result[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return result


def read_histograms(run_dir: str | os.PathLike, prefix: str = "") -> dict[str, list[Histogram]]:
    """Every histogram tag starting with `prefix` in a run folder's event files, as tag -> one Histogram per step."""
    accumulator = _accumulator(run_dir)
    result = {}
    for tag in accumulator.Tags()["histograms"]:
        if tag.startswith(prefix):
            result[tag] = [Histogram(e.step, np.array(h.bucket_limit), np.array(h.bucket), h.min, h.max, h.num,
                                     h.sum, h.sum_squares)
                           for e in accumulator.Histograms(tag) for h in [e.histogram_value]]
    return result
