"""RADAR at any patch size: patches the U-Net cannot halve evenly are reflect-padded up to a
multiple it can and the predicted noise cropped back, in training and at test time; and the
GPU reference study's ablation grid (results/reference/gpu/reproduce.sh), as written there, runs
on the CPU with tiny settings."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import CpuContext, RandomImages, TinyUNet
from helpers import bench_output as bench

from bench.datasets.synthetic import SyntheticDataset
from bench.execution import runner
from bench.methods.diffusion.ddpm import padded_unet, padding_to_multiple
from bench.methods.radar.detector import Radar, RadarParams

REPRODUCE = Path(__file__).resolve().parents[1] / "results/reference/gpu/reproduce.sh"

# A 3-level U-Net (inputs must be multiples of 4) small enough to fit in a second or two.
THREE_LEVELS = dict(
    image_size=48,
    block_out_channels=(8, 8, 8),
    norm_num_groups=8,
    train_steps=2,
    batch_size=4,
    infer_batch=64,
    n_estimators=10,
)


pytestmark = pytest.mark.threads(1)


@pytest.fixture(scope="module")
def unet(tiny_unet: TinyUNet) -> torch.nn.Module:
    return tiny_unet(16, (8, 8, 8))


def test_padded_unet_is_the_plain_unet_where_the_size_fits(unet: torch.nn.Module) -> None:
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([1, 1])
    with torch.no_grad():
        assert torch.equal(padded_unet(unet, x, t, 4), unet(x, t).sample)


@pytest.mark.parametrize("size", [14, 42, 9])
def test_padded_unet_reflect_pads_and_crops_back(unet: torch.nn.Module, size: int) -> None:
    x, t = torch.randn(2, 1, size, size), torch.tensor([1, 1])
    before, after = padding_to_multiple(size, 4)
    assert (size + before + after) % 4 == 0 and 0 <= after - before <= 1
    with torch.no_grad():
        got = padded_unet(unet, x, t, 4)
        padded = F.pad(x, (before, after, before, after), mode="reflect")
        full = unet(padded, t).sample
    assert got.shape == x.shape
    torch.testing.assert_close(got, full[..., before : before + size, before : before + size])
    with pytest.raises(RuntimeError), torch.no_grad():  # unpadded, this U-Net refuses the size
        unet(x, t)


@pytest.mark.parametrize("patch_size", [12, 14, 20, 42])
def test_radar_trains_and_predicts_at_patch_sizes_the_unet_cannot_halve(
    patch_size: int, random_images: RandomImages, cpu_ctx: CpuContext
) -> None:
    params = RadarParams(**THREE_LEVELS, patch_size=patch_size, infer_stride=min(patch_size, 12))
    name = "good/{seed}-{i}.png"
    radar = Radar(params).fit(random_images(6, 48, 0, name=name), cpu_ctx(0))
    pred = radar.predict(random_images(3, 48, 1, name=name))
    assert pred.scores.shape == (3,) and pred.scores.isfinite().all()
    info = radar.inference_info
    side = patch_size + sum(padding_to_multiple(patch_size, 4))
    assert info["unet_input"] == radar.fit_info_["train_unet_input"] == side
    assert info["patch_padding"] == ("none" if patch_size % 4 == 0 else "reflect")
    assert radar.gflops_per_image() > 0


def _bash_array(text: str, name: str) -> list[str]:
    """The words of ``NAME=(...)`` in a bash snippet (the assignment must be there once)."""
    found = re.findall(rf"^\s*{name}=\((.*?)\)\s*$", text, flags=re.M | re.S)
    assert len(found) == 1, f"expected one {name}=(...) in the snippet, found {len(found)}"
    return shlex.split(found[0], comments=True)


def _reproduce_ablation() -> tuple[list[str], list[str]]:
    """(the GPU run's --grid words, the ablation chunk's command words), read from the script."""
    script = REPRODUCE.read_text(encoding="utf-8")
    _, sep, rest = script.partition('if [ "${SMOKE:-0}" = 1 ]; then')
    assert sep, "reproduce.sh: the SMOKE switch moved; update this test"
    real = rest.partition("\nelse\n")[2].partition("\nfi\n")[0]
    chunk = re.search(r"^\s*ablation\)\s*\n(.*?);;", script, flags=re.M | re.S)
    assert chunk, "reproduce.sh: no ablation) chunk"
    return _bash_array(real, "ABLATION"), shlex.split(chunk.group(1).replace("\\\n", " "))


@pytest.fixture
def data_48px(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few 48 px synthetic images wherever the runner asks for a dataset."""

    def make(spec: str, root: object) -> SyntheticDataset:
        return SyntheticDataset("brick", n_train=10, n_test_good=2, n_test_anomalous=2, size=48)

    monkeypatch.setattr(runner, "make_dataset", make)


def test_the_reference_ablation_grid_runs_on_the_cpu_as_written(
    data_48px: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rule for scripts with a SMOKE mode: what the GPU will run is checked with the same
    grid VALUES (parsed from reproduce.sh, not copied) and the same chunk structure (one at a
    time, seed 0), only with a smaller model and fewer steps. Patch sizes 14 and 42 once
    stopped the whole grid before its first job because nobody had run them."""
    grid, chunk = _reproduce_ablation()
    assert grid.count("--grid") >= 1 and "--one-at-a-time" in chunk and "${ABLATION[@]}" in chunk
    values = {w.partition("=")[0]: w.partition("=")[2].split(",") for w in grid if "=" in w}
    assert "patch_size" in values
    largest = max(int(v) for v in values["patch_size"])
    small = {**THREE_LEVELS, "image_size": max(48, largest), "infer_stride": 12}
    sets = [f"--set=radar.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in small.items()]  # fmt: skip
    code, _, err = bench(
        ["ablate", "--method", "radar", "--datasets", "synthetic", "--preset", "paper",
         "--device", "cpu", "--seeds", "0", "--one-at-a-time", "--threads", "1",
         "--timing-repeats", "1", "--results-dir", str(tmp_path), "--run-id", "ref-ablation",
         *sets, *grid],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in (tmp_path / "ref-ablation/jobs").glob("*.json")]
    assert records and all(r["status"] == "ok" for r in records)
    # One at a time: the base point plus every value that differs from the base.
    expected = 1 + sum(
        sum(1 for v in vs if str(v) != str(records[0]["ablation"]["base"][p]))
        for p, vs in values.items()
    )
    assert len(records) == expected
    seen = {str(r["varied"]["patch_size"]) for r in records}
    assert seen == set(values["patch_size"])
