"""CPU speed ratios of RADAR's inference fast paths, robust to a busy machine.

``bench speed`` measures one variant after the other; on a shared CPU whose load changes by
the minute that turns load changes into speed differences. This script interleaves instead:
every round calls each variant once per batch size, in a fresh random order, so that the load
of the moment hits all of them alike, and reports each variant's median time as a ratio to the
plain path. All variants share one trained U-Net (the quick preset's, trained once through the
run cache), so only inference differs. CPU ratios only say what each path costs on a CPU; the
GPU numbers come from results/perf/gpu_run.sh.

    python results/perf/cpu_ratios.py --rounds 15 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.datasets.synthetic import SyntheticDataset
from bench.interface import RunContext
from bench.methods import registry
from bench.methods.radar.detector import Radar

VARIANTS: dict[str, dict[str, object]] = {
    "plain (fp32, eager)": {},
    "bf16 autocast": {"infer_precision": "bf16"},
    "channels_last": {"channels_last": True},
    "128 patches per pass (not 256)": {"infer_batch": 128},
    "full: whole image, fp32": {"inference": "full"},
    "full: whole image, bf16": {"inference": "full", "infer_precision": "bf16"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    base = registry.build_params("radar", "quick")
    data = SyntheticDataset("brick", n_train=30, n_test_good=8, n_test_anomalous=8)
    spec = Radar(base).input_spec
    train, test = data.load("train", spec, 0), data.load("test", spec, 0)
    with tempfile.TemporaryDirectory() as tmp:
        cpu = torch.device("cpu")
        ctx = RunContext(seed=0, device=cpu, work_dir=Path(tmp), cache_dir=Path(tmp) / "cache")
        detectors = {
            name: Radar(dataclasses.replace(base, **changes)).fit(train, ctx)
            for name, changes in VARIANTS.items()
        }
    sets = {b: test.subset([i % len(test) for i in range(b)]) for b in batches}
    for detector in detectors.values():  # warm-up
        for images in sets.values():
            detector.predict(images)
    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in detectors for b in batches}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(times)
        rng.shuffle(order)
        for name, b in order:
            start = time.perf_counter()
            detectors[name].predict(sets[b])
            times[name, b].append((time.perf_counter() - start) * 1000 / b)
    print(f"RADAR quick preset, 100 px, CPU, {args.threads} thread(s), {args.rounds} rounds")
    print(f"{'variant':32s}" + "".join(f" | ms/img b={b} | vs plain" for b in batches))
    plain = next(iter(VARIANTS))
    for name in detectors:
        row = f"{name:32s}"
        for b in batches:
            ms = statistics.median(times[name, b])
            row += f" | {ms:11.1f} | {statistics.median(times[plain, b]) / ms:7.2f}x"
        print(row)


if __name__ == "__main__":
    main()
