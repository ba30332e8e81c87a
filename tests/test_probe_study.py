"""The study `zhbert probe` writes (zhbert.probe_study): one per probe setting, holding every
checkpoint probed with it, and MLM accuracies from one `zhbert eval` setting (a tester's
findings: each call replaced RUN/probe/probe_vs_mlm.* with its own points only, and the
correlation mixed MLM figures over 12,724 and 465 masked tokens without a word)."""

import json
import shutil

import pytest

from test_probe import _data, _hao_task, _vocab
from trained_run import trained_run  # noqa: F401  (session fixture)
from zhbert.checkpoint import list_checkpoints
from zhbert.cli import main as cli_main
from zhbert.probe import RESULTS, ProbeSettings, builtin_task, load_task_file, result_key
from zhbert.probe_study import DEFAULT_NAME, choose_eval_setting, study_name
from zhbert.run import EVAL_RESULTS, append_result, read_results


@pytest.fixture()
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def _probed(run, key, steps=(10, 20, 30)):
    """probe.jsonl results of ``key`` at ``steps`` as `zhbert probe` writes them (no training:
    a probe call then finds them done and only writes the study)."""
    for i, step in enumerate(steps):
        acc = 0.6 + 0.1 * i
        append_result(run / RESULTS, {"step": step, "tokens": None, **key, "accuracy": acc,
                                      "ci95": [acc - 0.05, acc + 0.05], "n_test": 100,
                                      "n_train": key["n_train"]})


def _study(run, name):
    return json.loads((run / "probe" / f"{name}.json").read_text())


def _only_study(run):
    """The one study a test of the MLM figures writes (found by name, whatever it is named)."""
    found, = (run / "probe").glob("probe_vs_mlm*.json")
    return json.loads(found.read_text())


def _eval(run, *args):
    assert cli_main(["eval", str(run), *args]) == 0


def test_other_settings_keep_the_default_study_and_each_study_holds_all_its_checkpoints(run, tmp_path, capsys):
    default = result_key(builtin_task("sentiment", _data(run)), ProbeSettings())
    _probed(run, default)
    assert cli_main(["probe", str(run), "--task", "sentiment"]) == 0  # step 30 is done: no training
    assert _study(run, DEFAULT_NAME)["n"] == 3 and (run / "probe" / f"{DEFAULT_NAME}.png").exists()
    hao = _hao_task(_vocab(run), tmp_path / "hao.jsonl")
    linear = ["probe", str(run), "--task-file", str(hao), "--linear"]
    assert cli_main(linear + ["--all-checkpoints"]) == 0
    assert cli_main(linear + ["--checkpoint", "30", "--max-train", "100"]) == 0
    assert cli_main(linear + ["--checkpoint", "20"]) == 0  # done: the study is still all three
    out = capsys.readouterr().out
    kept = _study(run, DEFAULT_NAME)
    assert (kept["task"], kept["mode"], kept["n"]) == ("sentiment", "finetune", 3)
    assert kept["study"] == DEFAULT_NAME and [p["probe_acc"] for p in kept["points"]] == [0.6, 0.7, 0.8]
    task = load_task_file(hao)
    three = study_name(result_key(task, ProbeSettings(linear=True)))
    one = study_name(result_key(task, ProbeSettings(linear=True, max_train=100)))
    assert three.startswith("probe_vs_mlm-hao.jsonl-linear-") and three != one
    assert [p["step"] for p in _study(run, three)["points"]] == [10, 20, 30]
    assert _study(run, one)["n"] == 1 and (run / "probe" / f"{three}.png").exists()
    assert f"plot: {run / 'probe' / three}.png (the study of these settings" in out


def test_every_point_takes_its_mlm_accuracy_from_one_eval_setting(run, tmp_path, capsys):
    """Each step's largest eval was taken: step 10's over 64 sequences beside 20's and 30's
    over 16. The cap that covers every probed step is used for all, and named."""
    _eval(run, "--all-checkpoints", "--max-sequences", "16")
    _eval(run, "--checkpoint", "10")  # the run's data.eval_sequences: 64
    small = {r["step"]: r for r in read_results(run / EVAL_RESULTS) if r["max_sequences"] == 16}
    assert small[10]["eval_masked"] < read_results(run / EVAL_RESULTS)[-1]["eval_masked"]
    key = result_key(load_task_file(_hao_task(_vocab(run), tmp_path / "hao.jsonl")),
                     ProbeSettings(linear=True))
    _probed(run, key)
    assert cli_main(["probe", str(run), "--all-checkpoints", "--task-file", str(tmp_path / "hao.jsonl"),
                     "--linear"]) == 0
    study = _only_study(run)
    assert [p["mlm_acc"] for p in study["points"]] == [small[s]["eval_mlm_acc"] for s in (10, 20, 30)]
    assert study.get("mlm_eval") == {"split": "validation", "max_sequences": 16,
                                 "eval_masked": small[10]["eval_masked"], "left_out": []}
    assert (f"validation, --max-sequences 16 ({small[10]['eval_masked']:,} masked tokens)"
            in capsys.readouterr().out)


def test_a_step_the_chosen_setting_lacks_is_evaluated_at_it_or_named_as_left_out(run, tmp_path, capsys):
    _eval(run, "--checkpoint", "10", "--max-sequences", "16")
    _eval(run, "--checkpoint", "20")
    _eval(run, "--checkpoint", "30")
    key = result_key(load_task_file(_hao_task(_vocab(run), tmp_path / "hao.jsonl")),
                     ProbeSettings(linear=True))
    _probed(run, key)
    argv = ["probe", str(run), "--checkpoint", "30", "--task-file", str(tmp_path / "hao.jsonl"), "--linear"]
    assert cli_main(argv) == 0  # 64 covers two steps: step 10 is evaluated at 64 too
    assert {(r["step"], r["max_sequences"]) for r in read_results(run / EVAL_RESULTS)} == {
        (10, 16), (10, 64), (20, 64), (30, 64)}
    assert _only_study(run)["mlm_eval"]["max_sequences"] == 64
    # a checkpoint deleted since it was probed cannot be evaluated: left out, and said so
    (run / EVAL_RESULTS).write_text("".join(json.dumps(r) + "\n" for r in read_results(run / EVAL_RESULTS)
                                            if (r["step"], r["max_sequences"]) != (10, 64)))
    shutil.rmtree(next(c.path for c in list_checkpoints(run) if c.step == 10))
    capsys.readouterr()
    assert cli_main(argv) == 0
    study = _only_study(run)
    assert study["n"] == 2 and study["mlm_eval"]["left_out"] == [10]
    assert "step(s) 10 left out" in capsys.readouterr().out


def test_the_setting_covering_most_steps_wins_and_the_larger_on_a_tie():
    by_cap = {16: {10: {}, 20: {}, 30: {}}, 64: {10: {}}, 1000: {10: {}, 20: {}, 30: {}}}
    assert choose_eval_setting(by_cap, {10, 20, 30}, 64) == 1000
    assert choose_eval_setting({16: by_cap[16], 64: by_cap[64]}, {10, 20, 30}, 64) == 16
    assert choose_eval_setting({}, {10}, 64) == 64
