"""RADAR's inference fast-path ladder: each rung one change, measured against the best so far.

Issue #8's order: plain fp32 -> (CUDA) TF32 -> bf16 autocast -> channels_last -> automatic batch
(all patches of several images per pass, as many as fit) -> (CUDA) ``torch.compile`` -> (CUDA)
CUDA graphs (``compile=reduce-overhead``) -> the whole image in one pass (``inference=full``).
The ladder is greedy: a rung applies its change on top of the fastest configuration measured so
far, and is kept only if it is faster, so a change that slows the GPU down (channels_last in
bf16 did on an H100) does not drag the later rungs with it. "Faster" compares ms per image at
the largest batch size both were measured at (a slow configuration may have skipped the larger
batches, :mod:`bench.execution.speed`).
``full`` changes what is computed, not only how fast: it is measured last, on the best patch
configuration, and its quality is in its record beside its speed.

``torch.compile`` is left out on a CPU: compiling the U-Net there takes minutes (it needs a C
compiler), longer than the benchmark itself; ``--set radar.compile=default`` still asks for it.
``--variants ladder:bf16,cuda_graphs,full`` runs only the rungs named (``plain`` always first).

>>> [r.name for r in radar_ladder("cpu")]
['plain', 'bf16', 'channels_last', 'auto_batch', 'full']
>>> [r.name for r in radar_ladder("cuda")][1:3], radar_ladder("cuda")[-2].changes
(['tf32', 'bf16'], {'compile': 'reduce-overhead'})
>>> [r.name for r in rungs_for("radar", "ladder:bf16,full", "cuda")]
['plain', 'bf16', 'full']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.util.errors import ConfigError

VARIANT_SETS = ("none", "ladder")


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: parameter changes on top of the best configuration so far."""

    name: str
    changes: dict[str, object] = field(default_factory=dict)
    speed_only: bool = True  # False: changes the output too (never becomes the ladder's base)


def radar_ladder(device_type: str) -> list[Rung]:
    cuda = device_type == "cuda"
    rungs = [Rung("plain")]
    if cuda:
        rungs.append(Rung("tf32", {"infer_precision": "tf32"}))
    rungs += [
        Rung("bf16", {"infer_precision": "bf16"}),
        Rung("channels_last", {"channels_last": True}),
        Rung("auto_batch", {"infer_batch": 0}),
    ]
    if cuda:
        rungs += [
            Rung("compile", {"compile": "default"}),
            Rung("cuda_graphs", {"compile": "reduce-overhead"}),
        ]
    rungs.append(Rung("full", {"inference": "full"}, speed_only=False))
    return rungs


def check_variants(variants: str) -> None:
    """``none``, ``ladder`` or ``ladder:RUNG,RUNG,...``; a one-line error otherwise."""
    kind, _, names = variants.partition(":")
    known = [r.name for r in radar_ladder("cuda")]
    unknown = [n for n in names.split(",") if n.strip() and n.strip() not in known]
    if kind not in VARIANT_SETS or (names and kind != "ladder") or unknown:
        raise ConfigError(
            f"--variants {variants!r}: expected none, ladder or ladder:RUNG,... with rungs from "
            f"{', '.join(known)}"
        )


def rungs_for(method: str, variants: str, device_type: str) -> list[Rung]:
    """The variants of one method: RADAR's ladder when asked for, else just the method."""
    check_variants(variants)
    kind, _, names = variants.partition(":")
    if kind != "ladder" or method != "radar":
        return [Rung("base")]
    rungs = radar_ladder(device_type)
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    return [r for r in rungs if not wanted or r.name == "plain" or r.name in wanted]


class Ladder:
    """Greedy bookkeeping: which changes the next rung builds on."""

    def __init__(self) -> None:
        self.best_changes: dict[str, object] = {}
        self.best_name: str | None = None
        self.best_ms: dict[int, float] | None = None  # batch size -> ms per image

    def changes_for(self, rung: Rung) -> dict[str, object]:
        return {**self.best_changes, **rung.changes}

    def record(
        self, rung: Rung, changes: dict[str, object], ms: dict[int, float] | None
    ) -> dict[str, object]:
        """Note a measured rung (``ms``: ms per image by batch size; None if it failed);
        returns what its record says about it."""
        info: dict[str, object] = {
            "rung": rung.name,
            "changes": dict(rung.changes),
            "builds_on": self.best_name,
            "compared_at_batch": None,
            "speedup_vs_builds_on": None,
            "kept": False,
        }
        if not ms:
            return info
        faster = self.best_ms is None
        common = sorted(set(ms) & set(self.best_ms or {}))
        if common:
            batch = common[-1]
            speedup = self.best_ms[batch] / ms[batch]
            info.update(compared_at_batch=batch, speedup_vs_builds_on=speedup)
            faster = speedup > 1.0
        if rung.speed_only and faster:
            self.best_changes, self.best_name, self.best_ms = changes, rung.name, dict(ms)
            info["kept"] = True
        return info
