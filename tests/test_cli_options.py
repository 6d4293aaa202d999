"""The command line's own machinery: shared options, the launcher flag group, the policy the
commands pass on, and a ``bench --help`` that imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from bench import cli
from bench.cli import options
from bench.execution import policy
from bench.execution.config import RunConfig
from bench.execution.launchers import LauncherOptions
from bench.util.errors import ConfigError


def test_help_imports_no_torch_nor_pandas():
    code = "import sys, bench.cli; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    ).stdout
    assert out.strip() == "[]"


def test_launcher_flags_arrive_as_launcher_options():
    seen: dict[str, Any] = {}

    @options.launcher_flags
    def command(name: str = typer.Option("x", "--name"), *, launch: dict[str, Any]) -> None:
        seen.update(launch, name=name)

    app = typer.Typer()
    app.command()(command)
    app.command("other")(lambda: None)  # two commands: the first one is called by name
    args = ["command", "--workers", "3", "--slurm-setup", "a", "--slurm-setup", "b", "--no-wait"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    name = seen.pop("name")
    assert name == "x"
    assert LauncherOptions(**seen) == LauncherOptions(workers=3, slurm_setup=("a", "b"), wait=False)


def test_run_and_ablate_share_every_option_but_their_own():
    group = typer.main.get_command(cli.app)
    flags = {
        name: {o for p in group.commands[name].params for o in p.opts}  # type: ignore[attr-defined]
        for name in ("run", "ablate", "speed")
    }
    launcher = {o for _, _, opt in options.LAUNCHER_FLAGS for o in opt.param_decls if "-" in o}
    assert launcher - {"--wait/--no-wait"} <= flags["run"] & flags["ablate"]
    assert flags["run"] - flags["ablate"] == {
        "--methods", "--name", "--threshold", "--calibration-fraction", "--target-fpr"
    }  # fmt: skip
    assert {"--preset", "--device", "--set", "--data-root", "--results-dir"} <= flags["speed"]


def test_data_root_falls_back_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(options.DATA_ENV, raising=False)
    assert options.data_root_or_env(None) is None
    monkeypatch.setenv(options.DATA_ENV, str(tmp_path))
    assert options.data_root_or_env(None) == tmp_path
    assert options.data_root_or_env(Path("x")) == Path("x")


def test_threads_are_checked_or_shared_out(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    cfg = RunConfig(methods=["pca"])
    default = cfg.threads
    policy.apply_job_limits(cfg, None, 1)
    assert cfg.threads == default
    policy.apply_job_limits(cfg, None, 4)
    assert cfg.threads == 4
    policy.apply_job_limits(cfg, None, 1)
    assert cfg.threads == 4  # one worker: left as it is
    policy.apply_job_limits(cfg, 3, 4)
    assert cfg.threads == 3
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    policy.apply_job_limits(cfg, None, 2)
    assert cfg.threads == policy.MAX_SHARED_THREADS
    with pytest.raises(ConfigError, match="--threads 0"):
        policy.apply_job_limits(cfg, 0, 1)
    with pytest.raises(ConfigError, match="--timing-repeats 0"):
        policy.apply_job_limits(RunConfig(methods=["pca"], timing_repeats=0), None, 1)


def test_exit_codes_of_failed_jobs():
    crash, bad_input = {"error_kind": "crash"}, {"error_kind": "input"}
    assert policy.run_exit_code([crash]) == 1
    assert policy.run_exit_code([crash, bad_input]) == 2
    assert policy.ablate_exit_code([bad_input]) == 1 and policy.ablate_exit_code([]) == 0
    assert policy.speed_exit_code([bad_input]) == 2
    assert policy.speed_exit_code([crash, bad_input]) == 1 and policy.speed_exit_code([]) == 0
    assert policy.prepare_exit_code(["an asset"]) == 1 and policy.prepare_exit_code([]) == 0
