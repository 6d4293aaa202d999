"""How the flags of a record are spelled: marks that every table shows beside the numbers.

Methods set some (random-init or substitute backbones), the job pipeline the rest; both import
this torch-free module (the methods may not import the store), and
:mod:`bench.store.schema`, the one place readers look, re-exports it with the record's fields.
"""

from __future__ import annotations


class Flag:
    """Marks in :attr:`Field.FLAGS` that every table shows beside the numbers (never silently
    mixed), and how each is spelled."""

    #: A backbone initialised at random: no pretrained weights were available.
    RANDOM_WEIGHTS = "weights:random"
    #: ``backbone:<timm name> (ImageNet)``: a pretrained backbone that is not the paper's.
    BACKBONE_PREFIX = "backbone:"
    #: ``preset:<name>``: a preset other than the paper's.
    PRESET_PREFIX = "preset:"
    #: The method's own decision without a hold-out: comparable with the paper's numbers.
    PROTOCOL_PAPER = "protocol:paper"
    #: ``threshold:<rule>``: a threshold rule other than the calibrated one (e.g. oracle).
    THRESHOLD_PREFIX = "threshold:"
    #: ``calibration:n=<n>``: fewer held-out normal images than the fraction asked for.
    CALIBRATION_PREFIX = "calibration:n="
    #: Headline metrics undefined on the test set (null in the record, never 0).
    UNDEFINED = "metrics:undefined"
    #: ``eval:subset=<scored>/<total>``: `bench speed` scored a label-stratified subset.
    EVAL_SUBSET_PREFIX = "eval:subset="

    @staticmethod
    def of(prefix: str, *values: object) -> str:
        """A flag with values: ``Flag.of(Flag.PRESET_PREFIX, "quick")`` is ``preset:quick``,
        ``Flag.of(Flag.EVAL_SUBSET_PREFIX, 20, 83)`` is ``eval:subset=20/83``."""
        return prefix + "/".join(str(v) for v in values)

    @staticmethod
    def backbones(flags: list[str]) -> list[str]:
        """The ``backbone:...`` flags among ``flags``."""
        return [f for f in flags if f.startswith(Flag.BACKBONE_PREFIX)]
