"""The FLOP floor: the time an image would take if the device did nothing but its arithmetic.

``floor_ms = GFLOP per image / peak TFLOP/s`` (a GFLOP over a TFLOP/s is a millisecond). The peak
is the device's dense bf16 tensor-core rate, the fastest arithmetic it has, so the ratio
``measured / floor`` says how far an implementation is from the hardware whatever precision it
runs in (issue #8: RADAR's 2.93 TFLOP per 100 x 100 image in patch mode is 3.7 ms on an H100).

Peaks are measured values where this workplace has them (KINDS.md of the device tool: an
8192^3 bf16 matrix product ran at 769-798 TFLOP/s on an H100 and an H200), else the vendor's
dense figure; ``--peak-tflops`` overrides them. A CPU has no entry: its floor is left out
unless a peak is given.

>>> round(floor_ms(2935.0, 790.0), 2)
3.72
>>> peak_for("NVIDIA H100 80GB HBM3")
(790.0, 'NVIDIA H100, dense bf16 (measured 769-798 TFLOP/s)')
>>> peak_for("AMD EPYC 7763 64-Core Processor (2 threads)") == (None, None)
True
"""

from __future__ import annotations

# Substring of torch.cuda.get_device_name -> (dense bf16 TFLOP/s, where the number comes from).
PEAK_TFLOPS: dict[str, tuple[float, str]] = {
    "H100": (790.0, "NVIDIA H100, dense bf16 (measured 769-798 TFLOP/s)"),
    "H200": (790.0, "NVIDIA H200, dense bf16 (measured 769-798 TFLOP/s)"),
    "A100": (312.0, "NVIDIA A100, dense bf16 (datasheet)"),
    "L4": (121.0, "NVIDIA L4, dense bf16 (datasheet)"),
}


def peak_for(device_name: str) -> tuple[float | None, str | None]:
    """(peak TFLOP/s, its source) of a device by name; (None, None) when unknown."""
    for key, (peak, source) in PEAK_TFLOPS.items():
        if key in device_name:
            return peak, source
    return None, None


def floor_ms(gflops_per_image: float | None, peak_tflops: float | None) -> float | None:
    """Milliseconds per image at the peak rate; None when either number is unknown."""
    if not gflops_per_image or not peak_tflops:
        return None
    return gflops_per_image / peak_tflops
