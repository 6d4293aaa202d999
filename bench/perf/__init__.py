"""``bench speed``: every method timed side by side on one device, in one process.

* :mod:`bench.perf.speed` fits each method (timed), scores the test set (quality under the run's
  threshold protocol), then times ``predict`` at several batch sizes with synchronised clocks
  after warm-up, and writes one record per (method, variant, dataset) into the results store
  (``kind: "speed"``, the runner's record shape plus a ``speed`` block);
* :mod:`bench.perf.ladder` expands RADAR's inference fast-path ladder (fp32 -> bf16 ->
  channels_last -> automatic batch -> torch.compile -> CUDA graphs -> whole image), each rung
  measured against the fastest configuration so far;
* :mod:`bench.perf.floor` turns GFLOP per image into the hardware's FLOP floor;
* :mod:`bench.perf.report` is the speed table and figures of ``bench report``;
* :mod:`bench.perf.command` is the ``bench speed`` command line.
"""
