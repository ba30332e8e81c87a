"""The sweep's summary after a Ctrl-C and a resume: "3 of 3 trials finished (3 complete, ...,
1 interrupted, 0 waiting)" read as if a fourth trial were still to come."""

from test_sweep import _args, _space, _study
from zhbert.sweep import command, outcome
from zhbert.sweep.worker import claim


def test_an_interrupted_attempt_whose_retry_finished_is_told_as_resumed(tmp_path, synthetic_data):
    sweep_dir, spec = command.prepare(_args(_space(tmp_path), synthetic_data, tmp_path / "s",
                                            trials=2, steps=4))
    _, study = _study(sweep_dir)
    first = claim(study, spec, sweep_dir)
    first.set_user_attr("trial_dir", "trials/0000")
    outcome.tell_failed(study, first, "interrupted", "Ctrl-C", retry=True)
    line = command.summary(sweep_dir, spec)  # not resumed yet: interrupted, its retry waiting
    assert "0 failed attempts, 1 interrupted, 1 waiting)" in line
    retry = claim(study, spec, sweep_dir)
    outcome.tell_failed(study, retry, "interrupted", "Ctrl-C", retry=True)  # twice
    retry = claim(study, spec, sweep_dir)
    other = claim(study, spec, sweep_dir)
    study.tell(retry, 0.5)
    study.tell(other, 0.4)
    line = command.summary(sweep_dir, spec)
    assert "2 of 2 trials finished (2 complete, 0 pruned, 0 failed attempts, 2 interrupted and " \
           "resumed, 0 waiting)" in line
    assert ", 2 interrupted," not in line
