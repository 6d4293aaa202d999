"""radar-bench: RADAR beside anomalib and diffusion-reconstruction baselines, one interface."""

__version__ = "0.1.0"
