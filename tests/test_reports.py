"""bench report: table content (mean/std, bold on the true best), LaTeX that compiles, figures
that open, the index page, and the run-time arrays (maps, latency repeats) reports read."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import bench_exit_code
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score

from bench.evaluation.examples import example_maps, pick_examples
from bench.interface import ImageSet, Prediction
from bench.methods.registry import MethodEntry, register_method
from bench.reports import latex, markdown
from bench.reports.build import write_report
from bench.reports.load import ablations, load_run, reference_variants
from bench.reports.table_model import DAGGER, FLAGGED, REFERENCE, SUBSTITUTE, Note
from bench.reports.tables import (
    ablation_table,
    main_table,
    timing_table,
    timing_tables,
)
from bench.store.runs import RunStore

PDFLATEX = shutil.which("pdflatex")
NEEDS_PDFLATEX = pytest.mark.skipif(
    PDFLATEX is None,
    reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)",
)


# ---------------------------------------------------------------- hand-written records


_CLOCK = itertools.count()


def _rec(job, method, seed, metrics, *, dataset="synthetic", flags=(), params=None, run="r"):
    params = params or {"k": 1}
    return {
        "job_id": job,
        "run_id": run,
        "method": method,
        "params": params,
        "params_hash": f"{method}-{sorted(params.items())}",
        "preset": "quick",
        "dataset": dataset,
        "seed": seed,
        "device_name": "Test CPU",
        "status": "ok",
        "flags": ["preset:quick", *flags],
        "metrics": metrics,
        "timing": {
            "fit_s": 1.0 + seed,
            "ms_per_image": 2.0,
            "images_per_s": 500.0,
            "peak_mem_mb": 100.0,
            "latency_ms": [2.0, 2.5, 1.5],
        },
        "started_at": f"2026-01-01T{next(_CLOCK):08d}",  # in write order
        "finished_at": f"2026-01-01T00:01:0{seed}",
    }


F1 = {  # method -> F1 per seed; best = "b" (0.80 +- 0.02), second = "c", then "a"
    "a": [0.50, 0.60],
    "b": [0.78, 0.82],
    "c": [0.70, 0.70],
}


@pytest.fixture
def handmade(tmp_path) -> Path:
    store = RunStore(tmp_path / "run")
    for method, values in F1.items():
        for seed, f1 in enumerate(values):
            metrics = {"f1": f1, "auroc": 0.9 - 0.1 * seed, "pixel_auroc": 0.8}
            if method == "c":  # no pixel maps
                metrics.pop("pixel_auroc")
            flags = ["weights:random"] if method == "a" else []
            store.write_record(_rec(f"{method}{seed}", method, seed, metrics, flags=flags))
    # a single-seed method: no std shown
    store.write_record(_rec("d0", "d", 0, {"f1": 0.1, "auroc": 0.5, "pixel_auroc": 0.5}))
    # a failed job is reported but in no table
    failed = _rec("e0", "e", 0, {})
    failed.update(status="failed", error="RuntimeError: boom")
    store.write_record(failed)
    return tmp_path / "run"


def test_main_table_mean_std_and_ranks(handmade):
    table = main_table(load_run(handmade))
    assert list(table.mean.index) == ["a", "b", "c", "d"]  # failed "e" left out
    col = ("synthetic", "F1")
    for method, values in F1.items():
        assert table.mean.at[method, col] == pytest.approx(np.mean(values))
        assert table.std.at[method, col] == pytest.approx(np.std(values, ddof=1))
        assert table.n.at[method, col] == 2
    assert table.n.at["d", col] == 1 and np.isnan(table.std.at["d", col])
    ranks = table.ranks()[col]
    assert ranks.to_dict() == {"a": 0, "b": 1, "c": 2, "d": 0}
    # AUROC: a, b, c tie at 0.85 (as displayed): all bold; d is the next distinct value
    assert table.ranks()[("synthetic", "AUROC")].to_dict() == {"a": 1, "b": 1, "c": 1, "d": 2}
    assert np.isnan(table.mean.at["c", ("synthetic", "P-AUROC")])
    assert table.row_markers == {"a": [DAGGER]}


def test_latex_cells_bold_underline_dash_dagger(handmade):
    tex = latex.to_latex(main_table(load_run(handmade)))
    lines = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line}
    assert "{\\boldmath $0.80\\pm0.03$}" in lines["b"]  # std of (0.78, 0.82) = 0.028
    assert "\\underline{$0.70\\pm0.00$}" in lines["c"]
    assert "$0.55\\pm0.07$" in lines["a$^{\\dagger}$"]
    assert "$0.10$" in lines["d"] and "\\pm" not in lines["d"]  # one seed: no std
    assert lines["c"].count("--") == 1  # no pixel map
    for needle in ("\\toprule", "\\midrule", "\\bottomrule", "\\caption{", "\\label{tab:main}"):
        assert needle in tex
    assert "randomly initialised" in tex and "--~not available" in tex
    assert "preset:quick" in tex  # shared flags are stated, never silently mixed


def test_markdown_and_csv_agree_with_latex(handmade, tmp_path):
    table = main_table(load_run(handmade))
    md = markdown.to_markdown(table)
    assert "**0.80 ± 0.03**" in md and "*0.70 ± 0.00*" in md and "| a† |" in md
    from bench.reports.csv_out import write_csv

    csv = pd.read_csv(write_csv(table, tmp_path))
    best = csv[(csv["column"] == "F1") & (csv["rank"] == 1)]
    assert best["row"].tolist() == ["b"] and best["mean"].iloc[0] == pytest.approx(0.80)


def test_substitute_backbone_is_marked_apart_from_random_init(tmp_path):
    store = RunStore(tmp_path / "run")
    lite = ["backbone:efficientnet_lite0 (ImageNet)"]
    for seed in (0, 1):
        store.write_record(_rec(f"p{seed}", "patchcore", seed, {"auroc": 0.85}, flags=lite))
        store.write_record(
            _rec(f"q{seed}", "padim", seed, {"auroc": 0.6}, flags=["weights:random"])
        )
        store.write_record(_rec(f"r{seed}", "radar", seed, {"auroc": 0.6}))
    data = load_run(tmp_path / "run")
    for table in (main_table(data), timing_table(data)):
        assert table.row_markers == {"patchcore": [SUBSTITUTE], "padim": [DAGGER]}
        (note,) = [n for n in table.notes if n.marker == SUBSTITUTE]
        assert "efficientnet_lite0 (ImageNet)" in note.text
        assert "not the published configuration" in note.text
    table = main_table(data)
    assert "| patchcore§ |" in markdown.to_markdown(table)
    tex = latex.to_latex(table)
    assert "patchcore$^{\\S}$" in tex and "efficientnet\\_lite0" in tex
    # one-method runs: the backbone has its footnote, not a second "All runs flagged" line
    only = RunStore(tmp_path / "only")
    only.write_record(_rec("p0", "patchcore", 0, {"auroc": 0.85}, flags=lite))
    notes = main_table(load_run(tmp_path / "only")).notes
    assert not any("All runs flagged backbone" in n.text for n in notes)


def test_significance_hook_marks_cells(handmade):
    table = main_table(load_run(handmade))
    table.cell_markers = pd.DataFrame("", index=table.mean.index, columns=table.mean.columns)
    table.cell_markers.loc["b", ("synthetic", "F1")] = "*"
    table.notes.append(Note("", "* significantly better than the runner-up (paired bootstrap)."))
    assert "$0.80\\pm0.03^{*}$" in latex.to_latex(table)
    assert "0.80 ± 0.03<sup>*</sup>" in markdown.to_markdown(table)


def test_timing_table_lower_is_better(handmade):
    table = timing_table(load_run(handmade))
    col = ("synthetic", "Fit (s)")
    assert table.mean.at["a", col] == pytest.approx(1.5)  # seeds 0, 1 -> 1.0, 2.0
    assert table.ranks().at["d", col] == 1  # one seed at 1.0 s: the fastest fit
    assert "Test CPU" in table.caption


def test_reference_variant_and_ablation_from_params(tmp_path):
    store = RunStore(tmp_path / "run")
    for value in (8, 2, 4):
        for seed in (0, 1):
            rec = _rec(f"m{value}{seed}", "m", seed, {"f1": value / 10}, params={"k": value})
            store.write_record(rec)
    data = load_run(tmp_path / "run")
    # no manifest: the reference is the variant that started first (all have two jobs)
    refs = reference_variants(data.ok)
    (sweep,) = ablations(data.ok, refs)
    assert (
        sweep.param == "k" and sweep.numeric and sorted(sweep.rows["value"]) == [2, 2, 4, 4, 8, 8]
    )
    assert refs["m"] == data.ok.loc[data.ok["params.k"] == 8, "params_hash"].iloc[0]
    table = ablation_table(sweep)
    assert list(table.mean.index) == ["2", "4", "8"] and table.row_markers == {"8": [REFERENCE]}
    assert table.ranks()[("synthetic", "F1")].tolist() == [0, 2, 1]
    # the run manifests name the reference: the run without --set for "m" (here k=4)
    store4 = RunStore(tmp_path / "run4")
    for seed in (0, 1):
        rec = _rec(f"n{seed}", "m", seed, {"f1": 0.4}, params={"k": 4}, run="r4")
        store4.write_record(rec)
    manifest = {"run_id": "r4", "config_hash": "h4", "config": {"methods": ["m"], "sets": {}}}
    store4.write_manifest(manifest)
    (tmp_path / "run" / "jobs" / "m40.json").unlink()  # k=4 now lives in run r4 only
    (tmp_path / "run" / "jobs" / "m41.json").unlink()
    data = load_run(tmp_path)
    refs = reference_variants(data.ok, data.manifests)
    assert refs["m"] == data.ok.loc[data.ok["params.k"] == 4, "params_hash"].iloc[0]


def test_every_variant_of_a_method_is_a_row_of_its_variants_table(tmp_path):
    """The main table shows a method's reference only; its variants table shows each grid
    point, named by the parameters that differ (not those all variants share)."""
    from bench.reports.tables import variants_table

    store = RunStore(tmp_path / "run")
    for scorer in ("iforest", "irf"):
        for inference in ("full", "patches"):
            for seed in (0, 1):
                f1 = 0.2 + 0.3 * (scorer == "irf") + 0.01 * seed
                params = {"scorer": scorer, "inference": inference, "t": 1}
                rec = _rec(f"{scorer}{inference}{seed}", "radar", seed, {"f1": f1}, params=params)
                store.write_record(rec)
    store.write_record(_rec("a0", "other", 0, {"f1": 0.9}))
    data = load_run(tmp_path / "run")
    table = variants_table(data, "radar", caption="RADAR's variants")
    assert list(table.mean.index) == [
        "radar [inference=full, scorer=iforest]",
        "radar [inference=patches, scorer=iforest]",
        "radar [inference=full, scorer=irf]",
        "radar [inference=patches, scorer=irf]",
    ]
    assert table.caption.startswith("RADAR's variants; mean ± std over 2 seeds (0, 1).")
    assert table.mean.iloc[:, 0].round(3).tolist() == [0.205, 0.205, 0.505, 0.505]
    assert variants_table(data, "other") is None  # one configuration: nothing to list


def test_list_valued_parameter_ablation(tmp_path):
    store = RunStore(tmp_path / "run")
    for i, channels in enumerate(([1, 2], [0])):
        for seed in (0, 1):
            params = {"channels": channels}
            store.write_record(_rec(f"c{i}{seed}", "m", seed, {"f1": 0.5 + i / 10}, params=params))
    data = load_run(tmp_path / "run")
    (sweep,) = ablations(data.ok, reference_variants(data.ok))
    table = ablation_table(sweep)
    assert list(table.mean.index) == ["(1, 2)", "(0)"]
    assert table.row_markers == {"(1, 2)": [REFERENCE]}


def test_ablations_are_the_sweeps_the_records_ran(tmp_path):
    """A report over two `bench ablate` runs at different bases (a quick sweep of k, a study
    of s at another w) shows each sweep around its own base, and no 'ablation' of w, which
    only differs between the runs."""

    def swept(job, run, params, varied, base, f1):
        rec = _rec(job, "m", 0, {"f1": f1}, params=params, run=run)
        return {**rec, "varied": varied, "ablation": {"base": base, "mode": "cartesian"}}

    sweep = RunStore(tmp_path / "sweep")
    for k in (1, 2, 4):
        params = {"k": k, "s": "a", "w": 8}
        sweep.write_record(swept(f"k{k}", "sweep", params, {"k": k}, {"k": 1}, k / 10))
    study = RunStore(tmp_path / "study")
    for s_value in ("a", "b"):
        params = {"k": 2, "s": s_value, "w": 16}
        study.write_record(swept(f"s{s_value}", "study", params, {"s": s_value}, {"s": "a"}, 0.5))
    manifest = {"run_id": "study", "config_hash": "h", "config": {"methods": ["m"], "sets": {}}}
    study.write_manifest(manifest)
    data = load_run(tmp_path)
    refs = reference_variants(data.ok, data.manifests)
    found = {a.param: a for a in ablations(data.ok, refs)}
    assert sorted(found) == ["k", "s"]  # w differs between the runs only: not a sweep
    k, s = found["k"], found["s"]
    assert sorted(k.rows["value"]) == [1, 2, 4] and k.reference == 1
    assert "base of its ablation (preset quick)" in k.fixed_at
    assert sorted(s.rows["value"]) == ["a", "b"] and s.fixed_at == "its main-table setting"
    table = ablation_table(k)
    assert table.row_markers == {"1": [REFERENCE]}
    assert "every other parameter at the base of its ablation (preset quick)" in table.caption


def test_a_job_stored_by_a_sweep_and_a_study_is_a_point_of_both(tmp_path):
    """The sweep's k=2 grid point and the study's preset job are one job (same configuration,
    dataset, seed): one row in the tables, still on the sweep's line, still the study's preset
    point (before, the study's copy replaced the sweep's and the sweep lost its point)."""
    from bench.reports.load import preset_variants

    def rec(run, k, seed):
        return _rec(f"k{k}-{seed}", "m", seed, {"f1": k / 10}, params={"k": k}, run=run)

    sweep = RunStore(tmp_path / "sweep")
    for k in (1, 2):
        sweep.write_record(
            {**rec("sweep", k, 0), "varied": {"k": k}, "ablation": {"base": {"k": 4}}}
        )
    study = RunStore(tmp_path / "study")
    for seed in (0, 1, 2):  # seed 0: the same job as the sweep's k=2, finished earlier
        r = rec("study", 2, seed)
        study.write_record({**r, "finished_at": f"2025-12-31T00:00:0{seed}", "preset": "cpu"})
    for store, run in ((sweep, "sweep"), (study, "study")):
        config = {"methods": ["m"], "sets": {}}
        store.write_manifest({"run_id": run, "config_hash": run, "config": config})
    data = load_run(tmp_path)
    assert len(data.ok) == 4  # k=1, and k=2 for seeds 0, 1, 2
    shared = data.ok.set_index("job_id").loc["k2-0"]
    assert shared["run_id"] == "study" and shared["preset"] == "cpu"  # the plain run's copy
    refs = reference_variants(data.ok, data.manifests)
    k2 = data.ok.loc[data.ok["params.k"] == 2, "params_hash"].iloc[0]
    assert refs["m"] == k2 and preset_variants(data.ok, data.manifests)["m"] == {k2}
    (sweep_k,) = ablations(data.ok, refs)
    assert sorted(set(sweep_k.rows["value"])) == [1, 2]
    assert sweep_k.fixed_at == "its main-table setting" and sweep_k.reference == 2


def test_a_sweeps_base_point_computed_by_another_run_is_on_its_line(tmp_path):
    """`bench ablate --grid size=64` around a base of 128 runs only the 64 point; the 128 point
    an earlier run computed (same parameters) is the sweep's base, marked; a job that differs
    in another parameter as well is not."""

    def rec(run, size, epochs, f1, **extra):
        params = {"size": size, "epochs": epochs}
        return {
            **_rec(f"{run}-{size}-{epochs}", "m", 0, {"f1": f1}, params=params, run=run),
            **extra,
        }

    size = RunStore(tmp_path / "size")
    size.write_record(
        rec("size", 64, 1, 0.4, varied={"size": 64}, ablation={"base": {"size": 128}})
    )
    epochs = RunStore(tmp_path / "epochs")
    epochs.write_record(
        rec("epochs", 128, 1, 0.5, varied={"epochs": 1}, ablation={"base": {"epochs": 2}})
    )
    plain = RunStore(tmp_path / "plain")
    plain.write_record(rec("plain", 128, 4, 0.6))  # 128 px but 4 epochs: not the size sweep's base
    other = _rec("other-128-1", "m", 1, {"f1": 0.9}, params={"size": 128, "epochs": 1}, run="plain")
    plain.write_record(other)  # the base, but a seed the sweep did not run: not like for like
    for store, run in ((size, "size"), (epochs, "epochs"), (plain, "plain")):
        config = {"methods": ["m"], "sets": {}}
        store.write_manifest({"run_id": run, "config_hash": run, "config": config})
    data = load_run(tmp_path)
    found = {a.param: a for a in ablations(data.ok, reference_variants(data.ok, data.manifests))}
    by_size = found["size"]
    assert sorted(by_size.rows["value"]) == [64, 128] and by_size.reference == 128
    assert dict(zip(by_size.rows["value"], by_size.rows["metrics.f1"], strict=True)) == {
        64: 0.4,
        128: 0.5,
    }
    assert ablation_table(by_size).row_markers == {"128": [REFERENCE]}


# ---------------------------------------------------------------- run-time side


def test_examples_are_chosen_by_name_and_keep_thin_defects():
    names = ["test/scratch/001.png", "test/good/000.png", "test/scratch/000.png", "test/good/1"]
    types = ["scratch", "good", "scratch", "good"]
    assert pick_examples(names, types, per_type=1) == [2, 1]
    masks = torch.zeros(4, 128, 128, dtype=torch.bool)
    masks[2, 10:100, 64] = True  # a one-pixel-wide scratch
    test = ImageSet(torch.rand(4, 3, 128, 128), torch.tensor([1, 0, 1, 0]), masks, names, types)
    out = example_maps(test, Prediction(scores=torch.rand(4), maps=None))
    assert out["images"].shape == (4, 3, 64, 64) and out["images"].dtype == np.uint8
    assert out["masks"][0].sum() > 0  # survived the 2x downsampling
    assert "maps" not in out


# ---------------------------------------------------------------- end to end


class _RandomInit:
    flags: ClassVar[list[str]] = ["weights:random"]


def _register_test_methods() -> None:
    from helpers import MeanDiff, MeanDiffParams, register_meandiff

    class RandomMean(_RandomInit, MeanDiff):
        name = "randmean"

    class NoMaps(MeanDiff):
        name = "nomaps"

        def predict(self, test):
            pred = super().predict(test)
            return Prediction(scores=pred.scores, decisions=None, maps=None)

    register_meandiff()
    register_method(
        MethodEntry("randmean", MeanDiffParams, RandomMean, "test", {"quick": {"image_size": 16}})
    )
    register_method(
        MethodEntry("nomaps", MeanDiffParams, NoMaps, "test", {"quick": {"image_size": 16}})
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Three methods x 2 seeds on the synthetic set, plus a meandiff.image_size ablation."""
    _register_test_methods()
    root = tmp_path_factory.mktemp("h6")
    common = ["--datasets", "synthetic", "--seeds", "0,1", "--results-dir", str(root / "runs")]
    common += ["--timing-repeats", "3", "--preset", "quick"]
    assert bench_exit_code(["run", "--methods", "meandiff,randmean,nomaps", *common]) == 0
    assert (
        bench_exit_code(
            ["run", "--methods", "meandiff", "--set", "meandiff.image_size=16", *common]
        )
        == 0
    )
    out = root / "report"
    assert bench_exit_code(["report", str(root / "runs"), "--out", str(out)]) == 0
    return root / "runs", out


def test_runner_stores_what_reports_need(report):
    runs, _ = report
    data = load_run(runs)
    assert len(data.ok) == 8
    for _, rec in data.ok.iterrows():
        assert len(rec["timing.latency_ms"]) == 3
        arrays = data.maps(rec["job_id"])
        # 2 per defect type (4 defect kinds + good), the same names for every method
        assert len(arrays["names"]) == 10 and arrays["images"].shape[-1] <= 64
        assert ("maps" in arrays) == (rec["method"] != "nomaps")
    names = {tuple(data.maps(j)["names"]) for j in data.ok["job_id"]}
    assert len(names) == 1


def test_report_writes_every_output(report):
    runs, out = report
    tables = {p.name for p in (out / "tables").iterdir()}
    stems = ["main", "timing", "ablation_meandiff_image_size"]
    assert {f"{s}.{ext}" for s in stems for ext in ("tex", "md", "csv")} <= tables
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert figures == {
        "latency",
        "fit_time",
        "frontier",
        "roc_synthetic",
        "qualitative_synthetic",
        "ablation_meandiff_image_size",
    }
    for png in (out / "figures").glob("*.png"):
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.size[0] >= 600 and im.info["dpi"][0] == pytest.approx(300, abs=1)
            assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
        pdf = png.with_suffix(".pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-64:] and len(pdf) > 2000
    # main table: reference variant (quick preset, 24 px), not the 16 px ablation variant
    main = pd.read_csv(out / "tables" / "main.csv")
    data = load_run(runs)
    md = data.ok[(data.ok["method"] == "meandiff") & (data.ok["params.image_size"] == 24)]
    got = main[(main["row"] == "meandiff") & (main["column"] == "AUROC")]["mean"].iloc[0]
    assert got == pytest.approx(md["metrics.auroc"].mean())
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(figures)
    assert 'href="tables/main.tex"' in page
    assert data.manifests[0]["device_name"] in page
    for needle in ("meandiff", "randmean†", "git", "seeds", "torch"):
        assert needle in page


def _mixed_presets(folder: Path) -> Path:
    """Methods a and b at the cpu preset over two seeds, c at the quick preset."""
    store = RunStore(folder / "run")
    for method, preset in (("a", "cpu"), ("b", "cpu"), ("c", "quick")):
        for seed in (0, 1):
            rec = _rec(f"{method}{seed}", method, seed, {"f1": 0.5, "auroc": 0.6})
            store.write_record({**rec, "preset": preset, "flags": [f"preset:{preset}"]})
    return folder / "run"


def test_rows_flagged_unlike_the_others_are_marked(tmp_path):
    """A quick-preset row among cpu-preset rows is never silently mixed: the usual flags are a
    note, the odd row is marked and its flags named."""
    table = main_table(load_run(_mixed_presets(tmp_path)))
    assert table.row_markers == {"c": [FLAGGED]}
    notes = [n.text for n in table.notes]
    assert "Unmarked rows flagged preset:cpu." in notes
    assert "flagged unlike the other rows: c: preset:quick." in notes
    text = markdown.to_markdown(table)
    assert "| c¶ |" in text and "| a |" in text
    assert "\\P" in latex.to_latex(table)


@NEEDS_PDFLATEX
def test_every_tex_compiles(report, handmade, tmp_path):
    _, out = report
    tex_files = sorted((out / "tables").glob("*.tex"))
    tex_files.append(latex.write_latex(main_table(load_run(handmade)), tmp_path / "hand"))
    mixed = main_table(load_run(_mixed_presets(tmp_path)))
    tex_files.append(latex.write_latex(mixed, tmp_path / "mixed"))
    doc = tmp_path / "doc.tex"
    doc.write_text(latex.standalone_document(tex_files))
    proc = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_report_of_nothing_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert bench_exit_code(["report", str(tmp_path / "empty")]) == 2
    assert "no job records" in capsys.readouterr().err
    assert bench_exit_code(["report", "no-such-run", "--results-dir", str(tmp_path)]) == 2


# ---------------------------------------------------------------- significance (paired bootstrap)


def _scored_run(tmp_path: Path, gap: float) -> Path:
    """Methods "good" and "near" (``gap`` less separable) plus "poor", 2 seeds, 60 images."""
    rng = np.random.default_rng(0)
    store = RunStore(tmp_path / "sig")
    labels = np.r_[np.zeros(30, int), np.ones(30, int)]
    names = [f"img{i:02d}" for i in range(60)]
    for seed in (0, 1):
        base = rng.normal(size=60)
        for method, shift in (("good", 2.0), ("near", 2.0 - gap), ("poor", 0.3)):
            scores = base * 0.5 + rng.normal(size=60) + shift * labels
            auroc = float(roc_auc_score(labels, scores))
            threshold = float(np.quantile(scores[:30], 0.95))
            f1 = float(f1_score(labels, scores > threshold))
            rec = _rec(f"{method}{seed}", method, seed, {"auroc": auroc, "f1": f1})
            rec.update(threshold_rule="calibrated", threshold=threshold)
            store.write_record(rec)
            frame = pd.DataFrame(
                {"name": names, "defect_type": "x", "label": labels, "score": scores}
            )
            store.write_scores(f"{method}{seed}", frame)
    return tmp_path / "sig"


def test_significance_marks_a_clear_lead_and_reports_every_p_value(tmp_path) -> None:
    from bench.reports.significance import SIGNIFICANT

    table = main_table(load_run(_scored_run(tmp_path, gap=1.7)))
    auroc = table.cell_markers[("synthetic", "AUROC")]
    assert auroc["good"] == SIGNIFICANT and auroc["near"] == "" and auroc["poor"] == ""
    note = next(n.text for n in table.notes if "paired bootstrap" in n.text)
    assert "AUROC on synthetic: good vs near p=" in note and "F1 on synthetic" in note
    assert "calibrated on held-out normal" in table.caption
    assert SIGNIFICANT in latex.to_latex(table)


def test_significance_leaves_a_lead_within_noise_unmarked(tmp_path) -> None:
    table = main_table(load_run(_scored_run(tmp_path, gap=0.05)))
    # AUROC only: each method's F1 uses its own calibrated threshold, which is fixed in the
    # bootstrap, so two equally separable methods can still differ in F1 for real.
    auroc = table.cell_markers[("synthetic", "AUROC")]  # tested...
    assert (auroc == "").all()  # ...and not marked


def test_bootstrap_interval_replaces_std_where_records_have_one(tmp_path) -> None:
    store = RunStore(tmp_path / "ci")
    for seed, ci in ((0, [0.70, 0.90]), (1, [0.74, 0.94])):
        rec = _rec(f"m{seed}", "m", seed, {"auroc": 0.8 + 0.02 * seed, "pixel_auroc": 0.6})
        rec["metrics_ci"] = {"auroc": ci}
        store.write_record(rec)
    table = main_table(load_run(tmp_path / "ci"), interval="bootstrap", significance=False)
    col = ("synthetic", "AUROC")
    assert table.low.at["m", col] == pytest.approx(0.72)
    assert table.high.at["m", col] == pytest.approx(0.92)
    md = markdown.to_markdown(table)
    assert "0.81 [0.72, 0.92]" in md  # the interval, not ± std
    assert "0.60" in md and "bootstrap interval" in table.caption  # pixel cell: no interval
    assert "0.81\\,[0.72,0.92]" in latex.to_latex(table)
    assert "0.81 ± " in markdown.to_markdown(main_table(load_run(tmp_path / "ci")))  # default


def test_a_method_on_two_kinds_of_weights_is_two_rows(tmp_path):
    """PatchCore on random-init and on ImageNet-Lite weights in one study: two rows, each
    with its own mark, never one row averaging them; padim with one kind keeps its name."""
    store = RunStore(tmp_path / "run")
    lite = "backbone:efficientnet_lite0 (ImageNet)"
    for seed in (0, 1):
        for kind, flags, auroc in (("r", ["weights:random"], 0.6), ("l", [lite], 0.8)):
            params = {"weights": kind}
            store.write_record(
                _rec(f"p{kind}{seed}", "patchcore", seed, {"auroc": auroc}, flags=flags,
                     params=params)
            )  # fmt: skip
        store.write_record(_rec(f"d{seed}", "padim", seed, {"auroc": 0.7}, flags=[lite]))
    table = main_table(load_run(tmp_path / "run"), significance=False)
    auroc = table.mean.xs("AUROC", axis=1, level=1).iloc[:, 0].to_dict()
    assert auroc == {
        "patchcore (random init)": pytest.approx(0.6),
        "patchcore (efficientnet_lite0 (ImageNet))": pytest.approx(0.8),
        "padim": pytest.approx(0.7),
    }
    assert table.row_markers["patchcore (random init)"] == [DAGGER]
    assert table.row_markers["patchcore (efficientnet_lite0 (ImageNet))"] == [SUBSTITUTE]


# ---------------------------------------------------------------- quality against compute


def test_quality_against_compute_points_and_figures(tmp_path):
    from bench.reports import charts

    store = RunStore(tmp_path / "run")
    # radar at 3 training lengths (the 100-step one is its reference, written first and most
    # often), 2 seeds each; iforest has no training compute at all.
    for steps, auroc in ((100, 0.6), (1000, 0.7), (10000, 0.72)):
        for seed in (0, 1):
            rec = _rec(f"r{steps}-{seed}", "radar", seed, {"auroc": auroc + 0.02 * seed},
                       params={"train_steps": steps})  # fmt: skip
            rec["fit_info"] = {"train_gflops": 3.0 * steps}
            rec["gflops_per_image"] = 7.0
            store.write_record(rec)
    store.write_record(_rec("i0", "iforest", 0, {"auroc": 0.55}))
    ok = load_run(tmp_path / "run").ok

    points = charts.compute_points(ok, "fit_info.train_gflops", "auroc")
    assert list(points["x"]) == [300.0, 3000.0, 30000.0]
    assert list(points["y"]) == pytest.approx([0.61, 0.71, 0.73])
    assert list(points["std"]) == pytest.approx([0.02**0.5 * 0.1] * 3)
    assert set(points["seeds"]) == {2} and set(points["method"]) == {"radar"}
    assert charts.compute_points(ok, "fit_info.train_gflops", "pixel_auroc").empty

    out = write_report(tmp_path / "run", tmp_path / "report")
    figures = {p.stem for p in (tmp_path / "report" / "figures").glob("*.png")}
    assert {"compute_train", "compute_inference"} <= figures
    assert not any("compute" in s for s in out.skipped)
    for name in ("compute_train", "compute_inference"):
        with Image.open(tmp_path / "report" / "figures" / f"{name}.png") as im:
            assert np.asarray(im.convert("L")).std() > 5


def test_no_two_of_many_methods_look_alike():
    from bench.reports import charts

    looks = charts.styles([f"m{i}" for i in range(20)]).values()
    assert len({(s["color"], s["marker"]) for s in looks}) == 20


def test_a_methods_weight_variants_share_its_colour_and_methods_do_not():
    """The study's nine method names (PatchCore and PaDiM on two backbones each) are seven
    methods: RADAR must not wrap around the eight colours onto another method's."""
    from bench.reports import charts

    names = [
        "ddpm_recon", "diffusionad", "draem", "fastflow",
        "padim (efficientnet_lite0 (ImageNet))", "padim (random init)",
        "patchcore (efficientnet_lite0 (ImageNet))", "patchcore (random init)", "radar",
    ]  # fmt: skip
    looks = charts.method_styles(names)
    bases = {n.split(" (")[0] for n in names}
    assert len({looks[n]["color"] for n in names}) == len(bases) == 7
    assert (
        looks["padim (random init)"]["color"]
        == looks["padim (efficientnet_lite0 (ImageNet))"]["color"]
    )
    assert len({(s["color"], s["marker"], s["linestyle"]) for s in looks.values()}) == 9
    assert looks["radar"]["color"] != looks["ddpm_recon"]["color"]  # with styles() they clash


def test_compute_lines_carry_the_tables_weights_marks(tmp_path):
    """A random-init or substitute-backbone method is named as the tables name it (†, §), and
    a panel without points (pixel AUROC where no dataset has masks) says so."""
    from bench.reports import charts

    store = RunStore(tmp_path / "run")
    lite = ["backbone:efficientnet_lite0 (ImageNet)"]
    for method, flags, gflops in (("patchcore", lite, 5.0), ("fastflow", ["weights:random"], 9.0)):
        for seed in (0, 1):
            rec = _rec(f"{method}{seed}", method, seed, {"auroc": 0.7, "pixel_auroc": 0.8},
                       flags=flags)  # fmt: skip
            rec["fit_info"] = {"train_gflops": gflops}
            store.write_record(rec)
    rec = _rec("r0", "radar", 0, {"auroc": 0.6}, dataset="prints3d")
    rec["fit_info"] = {"train_gflops": 7.0}
    store.write_record(rec)
    ok = load_run(tmp_path / "run").ok
    fig = charts.compute_figure(ok, "fit_info.train_gflops")
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert labels == {"patchcore§", "fastflow†", "radar"}
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert "no pixel AUROC here" in texts  # prints3d has no masks


def test_each_sweep_is_its_own_compute_line_and_only_presets_are_named(tmp_path):
    """Two ablations of radar around the same base (steps, image size): the base job, stored in
    both run folders, is one measurement in the tables but lies on both lines; a run with
    --set has no preset point, a run without one has its base grid point ringed."""
    from bench.reports import charts
    from bench.reports.load import AXES, preset_variants

    def sweep(run, param, values, sets):
        store = RunStore(tmp_path / "sweeps" / run)
        for value in values:
            params = {"train_steps": 100, "image_size": 100, param: value}
            job = f"j-{params['train_steps']}-{params['image_size']}"
            rec = _rec(job, "radar", 0, {"auroc": 0.5 + value / 1e5}, params=params, run=run)
            rec["varied"], rec["ablation"] = {param: value}, {"base": {param: 100}}
            rec["fit_info"] = {"train_gflops": 3.0 * params["train_steps"]}
            store.write_record(rec)
        config = {"methods": ["radar"], "sets": sets}
        store.write_manifest({"run_id": run, "config_hash": run, "config": config})

    sweep("steps", "train_steps", [100, 1000, 10000], {})
    sweep("size", "image_size", [100, 200], {"radar": {"inference": "full"}})
    data = load_run(tmp_path)  # runs two levels down, as results/reference/cpu/{sweep,study}/
    ok = data.ok
    assert len(ok) == 4  # the shared base job once
    assert ok.set_index("job_id").at["j-100-100", AXES] == "image_size|train_steps"

    points = charts.compute_points(ok, "fit_info.train_gflops", "auroc")
    lines = {a: sorted(p["x"]) for a, p in points.groupby("axis")}
    assert lines == {"image_size": [300.0, 300.0], "train_steps": [300.0, 3000.0, 30000.0]}
    assert preset_variants(ok, data.manifests)["radar"] == {
        "radar-[('image_size', 100), ('train_steps', 100)]"
    }


# ---------------------------------------------------------------- the page a person opens


class _Page(HTMLParser):
    """The page's structure: ids of sections, the TOC's links, figures, tables, details."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.toc: list[str] = []
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.figcaptions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "a" and "nav" in self.stack and str(a.get("href", "")).startswith("#"):
            self.toc.append(str(a["href"])[1:])
        if tag == "figcaption":
            self._in_caption = True
            self.figcaptions.append("")
        if tag not in ("img", "meta", "br", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "figcaption":
            self._in_caption = False
        if tag in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        if self._in_caption:
            self.figcaptions[-1] += data


def test_report_page_is_navigable_and_self_contained(report):
    _, out = report
    page_text = (out / "index.html").read_text()
    page = _Page()
    page.feed(page_text)
    assert not page.stack, f"unclosed tags: {page.stack}"
    # every entry of the table of contents leads to a section of the page, and back
    assert page.toc and set(page.toc) <= set(page.ids)
    for section in ("results", "cost", "datasets", "dataset-synthetic", "ablations", "run"):
        assert section in page.toc
    # every figure embedded, sized by the stylesheet, with a caption
    assert page.counts["figure"] == page.counts["figcaption"] == page.counts["img"]
    assert all(caption.strip() for caption in page.figcaptions)
    assert "data:image/png;base64," in page_text and '<img src="figures/' not in page_text
    # readable tables: sticky header, numbers right-aligned, print rules
    assert "position: sticky" in page_text and "text-align: right" in page_text
    assert "@media print" in page_text
    # the manifest is folded away; the random-init marker is explained under its table
    assert page.counts["details"] == 1
    assert "† randomly initialised backbone" in page_text.replace("</span> ", " ")


def _device_run(tmp_path: Path) -> Path:
    store = RunStore(tmp_path / "two-devices")
    for device, ms in (("Test CPU", 40.0), ("NVIDIA H200", 0.4)):
        for seed in (0, 1):
            rec = _rec(f"{device[:4]}{seed}", "m", seed, {"f1": 0.5, "auroc": 0.7})
            rec["device_name"] = device
            rec["timing"]["ms_per_image"] = ms
            rec["gflops_per_image"] = 7.0
            rec["inference"] = {"unet_forward_passes": 1}
            store.write_record(rec)
    return tmp_path / "two-devices"


def test_cpu_and_gpu_times_never_share_a_table(tmp_path):
    tables = timing_tables(load_run(_device_run(tmp_path)))
    by_name = {t.name: t for t in tables}
    assert set(by_name) == {"timing_test_cpu", "timing_nvidia_h200"}
    for name, ms in (("timing_test_cpu", 40.0), ("timing_nvidia_h200", 0.4)):
        table = by_name[name]
        assert table.mean[("synthetic", "ms/image")].tolist() == [ms]
        # cost beside speed: GFLOP/image and U-Net passes per image
        assert table.mean[("synthetic", "GFLOP/image")].tolist() == [7.0]
        assert table.mean[("synthetic", "U-Net passes")].tolist() == [1.0]
    cpu = by_name["timing_test_cpu"].caption
    assert "Test CPU" in cpu and "H200" not in cpu
    out = write_report(_device_run(tmp_path), tmp_path / "report")
    page = _Page()
    page.feed(out.index.read_text())
    assert {"cost-test_cpu", "cost-nvidia_h200"} <= set(page.ids)
    assert {"latency_test_cpu", "latency_nvidia_h200"} <= {
        p.stem for p in (tmp_path / "report" / "figures").glob("latency*.png")
    }


def test_one_device_keeps_the_plain_timing_table(handmade):
    assert [t.name for t in timing_tables(load_run(handmade))] == ["timing"]
