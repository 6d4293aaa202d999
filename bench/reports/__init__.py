"""Paper-ready reports from stored run records: LaTeX, Markdown and CSV tables, figures, HTML.

Everything here reads a results folder (``bench.store.runs``) and never reruns a model. One module
per output kind: ``load`` (records -> tidy frames), ``tables`` (what each table holds),
``latex`` / ``markdown`` / ``csv`` / ``html`` (how it is written), ``charts`` and
``qualitative`` (figures: a DataFrame in, a matplotlib Figure out) and ``build`` (all of it
into one folder, which ``bench report`` calls). ``examples`` is the run-time side: what a job
keeps for the qualitative grid. This package's import is kept light because the runner imports
``examples``; import the submodules you need.
"""
