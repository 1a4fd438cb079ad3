"""The run dir's names on disk are a protocol: earlier run dirs, sweep summaries and resume all
read them. RunDir may be refactored; these names must not move."""

import json

from r1exp.rundir import RunDir, write_json_atomically


def test_the_run_dir_keeps_its_names_on_disk(tmp_path):
    run = RunDir(tmp_path)
    names = {
        run.resolved_config: "resolved.yaml", run.fingerprint_file: "fingerprint",
        run.lock_file: ".r1exp.lock", run.status_file: "status",
        run.metrics_file: "metrics.json", run.mlflow_run_id_file: "mlflow_run_id",
        run.pending_metrics_file: "mlflow_pending.jsonl", run.resumed_in_file: "resumed_in",
        run.error_file: "error.txt", run.worker_log: "worker.log",
        run.node_log(2): "worker-node2.log", run.checkpoints_dir: "checkpoints",
        run.model_dir: "model", run.eval_dir: "eval", run.eval_results: "eval/results.json",
    }
    for path, name in names.items():
        assert path == tmp_path / name


def test_status_and_metrics_round_trip_and_leave_no_temporary_file(tmp_path):
    run = RunDir(tmp_path)
    assert run.status() is None and run.metrics() == {}
    run.write_status("FINISHED")
    write_json_atomically(run.metrics_file, {"b": 1, "a": 2.5})
    assert run.status_file.read_text() == "FINISHED\n" and run.status() == "FINISHED"
    assert run.metrics_file.read_text() == json.dumps({"a": 2.5, "b": 1}, indent=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "status"]


def test_resumed_in_points_at_the_earlier_dir(tmp_path):
    run = RunDir(tmp_path / "now")
    run.path.mkdir()
    assert run.resumed_in() is None
    run.write_resumed_in(tmp_path / "earlier")
    assert run.resumed_in() == tmp_path / "earlier"
