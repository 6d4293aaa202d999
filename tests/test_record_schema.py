"""The record's field and flag names (bench.store.schema) are the ones its writers write."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from helpers import bench_output as bench

from bench.evaluation.protocol import ThresholdProtocol
from bench.execution import job
from bench.methods.anomalib import imagenet_lite
from bench.store import schema
from bench.store.schema import Field, Flag, Timing, flat


def _names() -> set[str]:
    """Every field or key name the schema module spells."""
    spaces = [v for v in vars(schema).values() if getattr(v, "__module__", "") == schema.__name__]
    names = [(k, v) for space in spaces if isinstance(space, type) for k, v in vars(space).items()]
    return {v for k, v in names if k.isupper() and isinstance(v, str)}


def test_every_field_a_run_writes_is_named_in_the_schema(tmp_path: Path, capsys, meandiff):
    args = ["run", "--methods", meandiff, "--seeds", "0", "--timing-repeats", "1"]
    code, _, err = bench([*args, "--results-dir", str(tmp_path)], capsys)
    assert code == 0, err
    (path,) = tmp_path.glob("*/jobs/*.json")
    record = json.loads(path.read_text())
    assert set(record) - _names() == set()
    assert set(record[Field.TIMING]) - _names() == set()
    (manifest,) = tmp_path.glob("*/manifest.json")
    assert set(json.loads(manifest.read_text())) - _names() == set()
    assert set(schema.RECORD_SCHEMA["properties"]) <= _names()


@dataclass
class _Job:
    preset: str
    threshold: ThresholdProtocol


class _Detector:
    flags = ("weights:random",)


class _Bare:
    flags = ()  # what the method base class gives a method without flags


def test_flag_builders_spell_what_the_runner_writes():
    flags = job.job_flags(_Job("quick", ThresholdProtocol("oracle")), _Detector())
    preset, rule = Flag.of(Flag.PRESET_PREFIX, "quick"), Flag.of(Flag.THRESHOLD_PREFIX, "oracle")
    assert flags == [preset, rule, Flag.RANDOM_WEIGHTS]
    own = ThresholdProtocol("own", calibration_fraction=0.0)
    assert job.job_flags(_Job("paper", own), _Bare()) == [Flag.PROTOCOL_PAPER]
    assert job.UNDEFINED_FLAG == Flag.UNDEFINED
    lite = imagenet_lite.variant_of("imagenet:lite0")
    assert lite is not None
    assert lite.flag == Flag.of(Flag.BACKBONE_PREFIX, f"{lite.timm_name} (ImageNet)")
    assert Flag.backbones([lite.flag, "preset:quick"]) == [lite.flag]
    assert Flag.of(Flag.CALIBRATION_PREFIX, 7) == "calibration:n=7"
    assert Flag.of(Flag.EVAL_SUBSET_PREFIX, 20, 83) == "eval:subset=20/83"


def test_flat_names_the_records_frame_column():
    from bench.store.runs import records_frame

    frame = records_frame([{Field.TIMING: {Timing.FIT_S: 1.0}, Field.METRICS: {"f1": 0.5}}])
    assert set(frame.columns) == {flat(Field.TIMING, Timing.FIT_S), flat(Field.METRICS, "f1")}
