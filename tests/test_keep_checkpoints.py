"""train.keep_checkpoints=false: a finished run keeps its final model, not its checkpoints."""

from __future__ import annotations

from r1exp.rundir import RunDir
from r1exp.stages.training import drop_checkpoints


def test_dropping_checkpoints_keeps_the_completions_tables(tmp_path):
    for step in (6, 12):
        checkpoint = tmp_path / "checkpoints" / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "optimizer.pt").write_bytes(b"0" * 1024)
        (checkpoint / "trainer_state.json").write_text("{}")
    completions = tmp_path / "checkpoints" / "completions" / "completions_00004.parquet"
    completions.parent.mkdir()
    completions.write_bytes(b"table")
    assert RunDir(tmp_path).last_complete_checkpoint().name == "checkpoint-12"

    drop_checkpoints(tmp_path)
    assert RunDir(tmp_path).last_complete_checkpoint() is None and completions.is_file()


def test_the_quickstart_keeps_one_checkpoint_while_it_runs_and_none_once_done():
    from hydra import compose, initialize_config_dir

    from r1exp.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        quickstart = compose(config_name="config").train
        full_run = compose(config_name="config", overrides=["~experiment"]).train
    assert (quickstart.save_total_limit, quickstart.keep_checkpoints) == (1, False)
    assert full_run.keep_checkpoints is True


def test_no_checkpoint_is_written_at_the_last_step_only_to_be_deleted():
    from types import SimpleNamespace

    from transformers import TrainerControl

    from r1exp.stages.training import checkpoint_callbacks

    def cfg(keep: bool):
        return SimpleNamespace(train=SimpleNamespace(keep_checkpoints=keep))

    assert checkpoint_callbacks(cfg(True)) == []
    (callback,) = checkpoint_callbacks(cfg(False))
    for step, saved in ((6, True), (12, False)):
        control = TrainerControl(should_save=True)
        callback.on_step_end(None, SimpleNamespace(global_step=step, max_steps=12), control)
        assert control.should_save is saved
