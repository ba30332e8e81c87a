"""zhbert monitor's inputs: the --port option and the API's query strings. A bad value is
one readable message naming it (exit 2 on the command line, 400 from the API), never a
traceback and never a 200 with the error inside."""

import pytest
from starlette.testclient import TestClient

from test_monitor import write_run
from zhbert.cli import main
from zhbert.errors import UserError
from zhbert.monitor.server import bind, create_app


@pytest.mark.parametrize("port", [99999, 65536, -1])
def test_a_port_out_of_range_is_one_line_naming_the_option(tmp_path, capsys, port):
    """--port 99999 ended in `OverflowError: bind(): port must be 0-65535`, rc 1."""
    with pytest.raises(UserError, match=r"--port must be 0-65535 \(0: any free port.*got " + str(port)):
        bind("127.0.0.1", port)
    write_run(tmp_path / "runs" / "a", n=3)
    assert main(["monitor", str(tmp_path / "runs"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--port" in err and "0-65535" in err and "Traceback" not in err


def test_port_0_takes_a_free_port_and_a_busy_port_is_still_named():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port} .*--port"):
            bind("127.0.0.1", port)
    finally:
        sock.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_run(root / "a")
    return TestClient(create_app([root]))


@pytest.mark.parametrize("url, names", [
    ("/api/runs/a/study?x=bogus", ["x must be one of step, tokens", "'bogus'"]),
    ("/api/runs/a/study?target=abc", ["target must be a finite number", "'abc'"]),
    ("/api/runs/a/study?target=nan", ["target must be a finite number", "'nan'"]),
    ("/api/runs/a/study?target=inf", ["target must be a finite number", "'inf'"]),
    ("/api/runs/a/study?targt=0.5", ["unknown query parameter 'targt'", "metric, x, target"]),
    ("/api/runs/a/history?offset=abc", ["offset must be an integer", "'abc'"]),
    ("/api/runs/a/history?offset=0&gen=x", ["gen must be an integer", "'x'"]),
    ("/api/runs/a/history?ofset=10", ["unknown query parameter 'ofset'", "offset, gen"]),
    ("/api/runs/a/checkpoints?step=3", ["unknown query parameter 'step'", "takes none"]),
    ("/api/runs?x=1", ["unknown query parameter 'x'", "takes none"]),
])
def test_a_bad_query_value_is_a_400_naming_it(client, url, names):
    """?x=bogus was a 200 with the error buried in "fit", while ?target=abc was a 400."""
    r = client.get(url)
    assert r.status_code == 400, (url, r.text)
    assert all(n in r.json()["error"] for n in names), r.json()


def test_good_and_empty_query_values_still_answer(client):
    s = client.get("/api/runs/a/study?x=tokens&target=0.5&metric=")
    assert s.status_code == 200 and s.json()["x"] == "tokens" and "error" not in s.json()["fit"]
    assert client.get("/api/runs/a/study?x=").json()["x"] == "step"  # empty: the default
    assert client.get("/api/runs/a/history?offset=0&gen=").status_code == 200  # the page's first ask
    assert client.get("/api/runs/a/study?metric=nope").status_code == 422  # not in this run


@pytest.fixture(scope="module")
def tiny2000(tmp_path_factory):
    """A finished run the trainer wrote, with a learning rate: the law answers for it."""
    import shutil
    from pathlib import Path
    root = tmp_path_factory.mktemp("law")
    shutil.copytree(Path(__file__).parent / "data" / "tiny-2000", root / "r")
    return TestClient(create_app([root]))


def test_steps_to_target_of_a_loss_is_no_accuracy_answer(tiny2000):
    """metric=eval_mlm_loss&target=0.5: the law's line read "eval_mlm_acc ... does not reach
    0.5", an accuracy answer to a loss question; it forecasts accuracy only."""
    o = tiny2000.get("/api/runs/r/study?metric=eval_mlm_loss&target=0.5").json()["outlook"]
    assert "summary" not in o and o["note"].startswith("answers for accuracy only (the first of eval_mlm_acc")
    assert "not eval_mlm_loss" in o["note"]


def test_steps_to_target_of_another_accuracy_names_the_one_the_law_forecasts(tiny2000):
    o = tiny2000.get("/api/runs/r/study?metric=mlm_acc&target=0.4").json()["outlook"]
    assert o == {"note": "answers for eval_mlm_acc only on this run, not mlm_acc: pick it for its steps to target"}


@pytest.mark.parametrize("target", ["5", "-1e308", "1"])
def test_steps_to_target_refuses_an_accuracy_out_of_range(tiny2000, target):
    """target=5: "... maps to accuracy 0.9980, below 5", where `zhbert predict --target 5`
    exits 2; target=-1e308: "reaches -1e+308 with a run of <= 81 steps". The CLI's check
    (predict.check_target) now answers, as the prediction's does."""
    o = tiny2000.get(f"/api/runs/r/study?metric=eval_mlm_acc&target={target}").json()["outlook"]
    assert "summary" not in o and "reach" not in o
    assert o["error"].startswith(f"target {float(target):g}: eval_mlm_acc is an accuracy") \
        and "between 0 and 1" in o["error"]
