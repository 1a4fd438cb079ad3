"""A typo on the command line gets one message, exit status 2 and no traceback: a group choice
names the group and its options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def r1exp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1exp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def refused(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("r1exp: config error: "), out.stderr
    return out.stderr


@pytest.mark.parametrize("args,group,bad", [
    (["hardware=3060"], "hardware", "3060 (int)"),  # Hydra: "Got int" and a traceback
    (["reward=[accuracy,nonexistent]"], "reward", "'nonexistent'"),
    (["reward=[accuracy,7]"], "reward", "7 (int)"),
    (["+reward=nope"], "reward", "'nope'"),
    (["model=null"], "model", "null"),
    (["-m", "hardware=cpu,3060"], "hardware", "3060 (int)"),
    (["-m", "reward=[accuracy],[format,nope]"], "reward", "'nope'"),
    (["stage=range(1,3)"], "stage", "numeric sweep"),
])
def test_bad_group_choice_names_the_group_and_lists_its_options(tmp_path, args, group, bad):
    message = refused(r1exp(*args, "dry_run=true", cwd=tmp_path))
    assert f"config group '{group}'" in message and bad in message
    assert f"options: {', '.join(options(group))}" in message


def test_int_choice_suggests_the_option_it_is_part_of(tmp_path):
    assert "did you mean rtx3060-12g?" in refused(r1exp("hardware=3060", cwd=tmp_path))


def test_nested_group_lists_options_from_conf_hydra_and_plugins(tmp_path):
    message = refused(r1exp("hydra/launcher=slurm", cwd=tmp_path))
    # conf/hydra/launcher/*.yaml, Hydra's own default and the submitit plugin's
    assert "config group 'hydra/launcher'" in message
    assert all(name in message for name in (*options("hydra/launcher"), "basic",
                                            "submitit_slurm"))


def test_misspelt_group_lists_the_groups(tmp_path):
    message = refused(r1exp("hardwre=cpu", "hydra/launchr=local", cwd=tmp_path))
    assert "'hardwre' is neither a config group nor a config key" in message
    assert "hardware" in message and "reward" in message
    assert "'hydra/launchr' is not a config group; groups under 'hydra':" in message
    assert "launcher" in message


def test_good_group_choices_still_compose(tmp_path):
    out = r1exp("--cfg", "job", "~experiment", "reward=tag_count", "hardware='cpu'",
                "hydra/launcher=local", "seed=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "tag_count:" in out.stdout and "seed: 3" in out.stdout
