"""bench/protocol.py end to end on Graph Reach at a tiny setting: real collects, trainings and
closed-loop evaluations in a temporary work folder; the report's numbers are the cells' own
evaluation files, and a second call resumes without retraining."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DRAWS = """
graph_reach:
  eval_seed: {tuning: 1000, evaluation: 5000}
  demos:
    suboptimal:
      operator: suboptimal
      flags: []
      episodes: 12
      tuning: [0]
      evaluation: [7, 8]
"""


def load_protocol():
    spec = importlib.util.spec_from_file_location("bench_protocol", ROOT / "bench" / "protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def protocol():
    return load_protocol()


def tiny(tmp: Path) -> list[str]:
    """2 draws of 12 demos, BC on 2 seeds for 40 steps, the last 2 checkpoints on 2 short episodes."""
    return ["graph_reach", "--draws-file", str(tmp / "draws.yaml"), "--algos", "bc", "--seeds", "2", "--steps", "40",
            "--last", "2", "--episodes", "2", "--work", str(tmp / "work"), "--json", str(tmp / "out.json"),
            "--set", "train.threads=1", "--set", "eval.horizon=40"]


def run_protocol(protocol, tmp: Path) -> dict:
    assert protocol.main(tiny(tmp)) == 0
    return json.loads((tmp / "out.json").read_text())


def cell_files(work: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (work / "cells").rglob("*") if p.is_file() and p.name != ".lock"}


def test_protocol_runs_reports_and_resumes(protocol, tmp_path, capsys):
    (tmp_path / "draws.yaml").write_text(DRAWS)
    first = run_protocol(protocol, tmp_path)
    # 2 evaluation draws x 1 algorithm x 2 seeds, every one trained
    assert first["draw_set"] == "evaluation" and first["trained_cells"] == 4 and first["reused_cells"] == 0
    assert sorted((c["draw"], c["seed"]) for c in first["cells"]) == [(7, 0), (7, 1), (8, 0), (8, 1)]
    assert [d["fingerprint"]["seed"] for d in first["draws"]["suboptimal"]] == [7, 8]
    assert all(d["attempted"] == 12 and 0 < d["success_rate"] <= 1 for d in first["draws"]["suboptimal"])
    for cell in first["cells"]:
        # checkpoint spacing 40 / (2 x 2) = 10: the last two saved are steps 30 and 40
        assert [c["step"] for c in cell["checkpoints"]] == [30, 40] and cell["final"]["step"] == 40
        assert cell["evaluation"] == {"episodes": 2, "seed": 5000 + cell["seed"], "last_k": 2}
        for ev in cell["checkpoints"]:
            written = json.loads(Path(ev["eval_json"]).read_text())
            assert written["success_rate"] == ev["success_rate"] and written["mean_length"] == ev["mean_length"]
            assert written["episodes"] == 2 and written["seed"] == cell["evaluation"]["seed"]
            assert Path(written["checkpoint"]).parent == Path(cell["run_dir"]) / "checkpoints"
        assert cell["last_k_mean"] == pytest.approx(sum(c["success_rate"] for c in cell["checkpoints"]) / 2)
        kept = sorted(p.name for p in (Path(cell["run_dir"]) / "checkpoints").glob("step_*"))
        assert kept == ["step_0000030", "step_0000040"]  # older checkpoints pruned
    # different seeds trained different weights
    weights = {(Path(c["run_dir"]) / "checkpoints" / "step_0000040" / "model.safetensors").read_bytes()
               for c in first["cells"]}
    assert len(weights) == 4
    (row,) = first["table"]
    finals = [c["final"]["success_rate"] for c in first["cells"]]
    assert row["cells"] == 4 and row["final_mean"] == pytest.approx(sum(finals) / 4)
    assert row["worst"]["success_rate"] == min(finals)
    assert (row["worst"]["draw"], row["worst"]["seed"]) in {(c["draw"], c["seed"]) for c in first["cells"]}
    assert row["demo_median_length"] > 0 and row["train_wall_s"] > 0
    assert "| suboptimal | bc |" in first["markdown"] and "| suboptimal | bc |" in capsys.readouterr().out

    before = cell_files(tmp_path / "work")
    second = run_protocol(protocol, tmp_path)
    assert second["trained_cells"] == 0 and second["reused_cells"] == 4
    assert cell_files(tmp_path / "work") == before
    assert second["table"] == first["table"]

    # a crash mid-cell (training finished, its evaluation and result not written): only that cell is redone
    victim = Path(first["cells"][1]["run_dir"]).parent
    (victim / "result.json").unlink()
    (victim / "run" / "train_summary.json").unlink()
    third = run_protocol(protocol, tmp_path)
    assert third["trained_cells"] == 1 and third["reused_cells"] == 3

    # another --steps for the same work folder is refused, naming the cell's file and field
    code = protocol.main(tiny(tmp_path) + ["--seeds", "1", "--draws", "1", "--steps", "30"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "result.json" in err and ("train.checkpoint_every" in err or "train.steps" in err)


@pytest.mark.parametrize("text, field", [
    (DRAWS.replace("evaluation: [7, 8]", "evaluation: [0, 8]"), "graph_reach.demos.suboptimal.evaluation"),
    (DRAWS.replace("episodes: 12", "episodes: true"), "graph_reach.demos.suboptimal.episodes"),
    (DRAWS.replace("evaluation: 5000", "evaluation: 1500"), "graph_reach.eval_seed"),
    (DRAWS.replace("flags: []", "flags: [--seed, 3]"), "graph_reach.demos.suboptimal.flags"),
    (DRAWS.replace("tuning: [0]", "tuning: [0, 0]"), "graph_reach.demos.suboptimal.tuning"),
])
def test_bad_draws_file_is_one_line(protocol, tmp_path, capsys, text, field):
    (tmp_path / "draws.yaml").write_text(text)
    code = protocol.main(["graph_reach", "--draws-file", str(tmp_path / "draws.yaml"), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert str(tmp_path / "draws.yaml") in err and f"'{field}'" in err
    assert not (tmp_path / "w").exists()


def test_checked_in_draws_keep_evaluation_apart_from_tuning():
    sys.path.insert(0, str(ROOT / "bench"))
    from protocol_draws import load_draws

    for task in ("graph_reach", "lift", "can"):
        sets = load_draws(ROOT / "bench" / "draws.yaml", task)
        tuning = {s for d in sets for s in d.seeds["tuning"]}
        assert sets and all(not tuning & set(d.seeds["evaluation"]) for d in sets)
        assert all(len(d.seeds["evaluation"]) >= 3 for d in sets)


def test_demo_set_needing_a_collect_flag_it_lacks_is_skipped_or_refused(protocol, tmp_path, capsys):
    (tmp_path / "draws.yaml").write_text(DRAWS.replace("flags: []", "flags: [--no-such-collect-flag, 0.3]"))
    args = ["graph_reach", "--draws-file", str(tmp_path / "draws.yaml"), "--work", str(tmp_path / "w")]
    assert protocol.main(args) == 2  # skipped by default, which leaves no demo set
    out, err = capsys.readouterr()
    assert "[note] skipping demo set suboptimal: robolearn collect has no option --no-such-collect-flag" in out
    assert "no demo set robolearn collect can make" in err and len(err.strip().splitlines()) == 1
    assert protocol.main(args + ["--demos", "suboptimal"]) == 2  # named: an error naming the field
    err = capsys.readouterr().err.strip()
    assert "'graph_reach.demos.suboptimal.flags'" in err and "--no-such-collect-flag" in err
