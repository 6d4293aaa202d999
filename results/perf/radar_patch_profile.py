"""Where RADAR's paper-size patch-mode time goes on the CPU (results/perf/README.md, issue #22).

    python results/perf/radar_patch_profile.py [--threads 1]

Fits the paper U-Net for one step on two synthetic images (speed does not depend on training),
then profiles one test image's ``predict`` at stride 1 (5,329 patches of 28 px) with
torch.profiler and prints the operators by their own CPU time: the U-Net's convolutions,
normalisation and elementwise operators against patch extraction (unfold) and stitching (fold).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench.datasets.synthetic import SyntheticDataset
from bench.interface import RunContext
from bench.methods import registry
from bench.methods.radar.detector import Radar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    sets = {"train_steps": "1", "batch_size": "64", "scorer_images": "2"}
    detector = Radar(registry.build_params("radar", "paper", sets))
    data = SyntheticDataset("brick", n_train=2, n_test_good=1, n_test_anomalous=1, size=100)
    train = data.load("train", detector.input_spec, 0)
    test = data.load("test", detector.input_spec, 0)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(seed=0, device=torch.device("cpu"), work_dir=Path(tmp))
        detector.fit(train, ctx)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        detector.predict(test.subset([0]))
    print(f"predict, one image, {args.threads} thread(s): {time.perf_counter() - start:.1f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
