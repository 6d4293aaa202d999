"""``bench data`` (download or generate a dataset), ``bench prepare`` (fetch what a grid needs)
and ``bench list`` (the registered methods and datasets)."""

from __future__ import annotations

from pathlib import Path

import typer

from bench.cli import options
from bench.reports import console


def download(
    name: str = typer.Argument(..., help="Dataset to download: mvtec."),
    category: str | None = typer.Option(None, "--category", help="One MVTec category."),
    data_root: Path | None = options.data_root("Where to put it."),
    url: str | None = typer.Option(None, "--url", help="Mirror URL of the archive."),
    checksum: str | None = typer.Option(None, "--checksum", help="Expected checksum."),
) -> None:
    """Download and checksum an official dataset archive (needs internet)."""
    from bench.datasets.download import download_mvtec
    from bench.util.errors import ConfigError

    if name != "mvtec":
        raise ConfigError(f"bench data download {name!r}: only 'mvtec' can be downloaded")
    root = options.data_root_or_env(data_root)
    if root is None:
        raise ConfigError("--data-root (or BENCH_DATA) is required: where to put MVTec AD")
    path = download_mvtec(root, category, url=url, checksum=checksum)
    console.show(f"MVTec AD ready at {path}")


def synthetic(
    out: Path = typer.Option(..., "--out", help="Folder to write the MVTec-layout copy into."),
    texture: str = typer.Option("brick", "--texture", help="brick, grass or gravel."),
    seed: int = options.seed(),
) -> None:
    """Write the synthetic set to disk in the MVTec folder layout."""
    from bench.datasets.synthetic import SyntheticDataset
    from bench.execution.config import check_seed

    path = SyntheticDataset(texture=texture).write_mvtec_layout(out, check_seed(seed))
    console.show(f"synthetic:{texture} (seed {seed}) written to {path}")


def prepare(
    methods: str = options.methods(),
    datasets: str = options.datasets(options.AS_FOR_RUN),
    preset: str = options.preset(
        "paper | quick | cpu | auto (auto: paper and quick, the nodes may have GPUs)."
    ),
    sets: list[str] = options.sets("METHOD.PARAM=VALUE, as for bench run."),
    data_root: Path | None = options.data_root("Datasets folder."),
    fetch: bool = typer.Option(
        True, "--fetch/--check-only", help="Download what is missing, or only check."
    ),
) -> None:
    """Fetch the datasets and pretrained weights a grid needs (run where there is internet).
    Exit 1 when something is still missing."""
    from bench.execution import policy
    from bench.execution.config import split_names
    from bench.execution.prepare import check_assets
    from bench.methods import registry

    method_list = split_names(methods, "--methods")
    assets = check_assets(
        method_list,
        split_names(datasets, "--datasets"),
        preset=preset,
        sets=registry.parse_sets(sets, method_list),
        data_root=options.data_root_or_env(data_root),
        fetch=fetch,
    )
    console.show(console.assets_table(assets))
    missing = [a for a in assets if a.missing]
    if missing:
        console.say(
            f"missing: {len(missing)} asset(s); the jobs that need them will fail offline",
            err=True,
        )
    code = policy.prepare_exit_code(missing)
    if code:
        raise typer.Exit(code)


def list_() -> None:
    """Registered methods (parameters, defaults, presets, where each default comes from) and
    datasets."""
    from bench.datasets import DATASET_FAMILIES
    from bench.methods import registry
    from bench.util.sources import describe_source

    for name, entry in registry.methods().items():
        rows = [
            [
                field_name,
                registry.describe_type(tp),
                str(default),
                *(str(p.get(field_name, "")) for p in entry.presets.values()),
                describe_source(entry.params_cls, field_name),
            ]
            for field_name, (tp, default) in registry.param_fields(entry.params_cls).items()
        ]
        console.show(console.method_table(f"{name}: {entry.summary}", list(entry.presets), rows))
    console.show(console.datasets_table(DATASET_FAMILIES))
