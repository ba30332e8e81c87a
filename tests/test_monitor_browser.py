"""zhbert monitor in a real headless Chromium, watching a tiny run while it trains."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                 "(pip install playwright); the browser test needs it")
if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed (apt-get install -y chromium)", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SMALL = ["model.hidden_size=64", "model.num_layers=2", "model.num_heads=2",
         "model.intermediate_size=128", "data.max_len=64", "data.eval_sequences=64",
         "train.batch_size=8", "train.lr=2e-3", "train.warmup_steps=5", "train.precision=fp32",
         "train.steps=1000", "train.log_every=5", "train.eval_every=20", "train.checkpoint_every=100"]
TRAIN = """
import sys, torch
torch.set_num_threads(1)
from zhbert.config import load_config
from zhbert.train import main
main(load_config("tiny", sys.argv[3:]), sys.argv[1], sys.argv[2], progress=False)
"""


def _train_records(run: Path) -> int:
    try:
        text = (run / "history.jsonl").read_text()
    except FileNotFoundError:
        return 0
    return sum(line.startswith('{"type": "train"') for line in text.splitlines())


def _wait(cond, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(tmp_path):
    import uvicorn

    from zhbert.monitor.server import bind, create_app
    sock = bind("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(create_app([tmp_path / "runs"]), log_level="warning"))
    t = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    _wait(lambda: srv.started, 20, "the server to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    t.join(10)


# ~1.5 min on a loaded 2-core machine: in the default run. It waits for a live run to
# add points, so the timeouts are generous (minutes, not seconds).
def test_dashboard_follows_a_training_run(synthetic_data, tmp_path, server):
    run = tmp_path / "runs" / "tiny"
    (tmp_path / "runs").mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", TRAIN, str(synthetic_data), str(run)] + SMALL,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = Path("test-output")
    out.mkdir(exist_ok=True)
    try:
        _wait(lambda: _train_records(run) >= 3, 180, "the run's first train records")
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1500})
            page.goto(server)
            # the run appears (it was found in the parent dir) and its points are charted
            page.wait_for_selector('#runs tr[data-run="tiny"]', timeout=60000)
            n_loss = lambda: page.evaluate(  # noqa: E731
                "() => { const c = monitor.charts['loss']; return c ? c.plot.data[1].filter(v => v != null).length : 0 }")
            page.wait_for_function("() => monitor.charts['loss'] && monitor.charts['loss'].plot.data[1].length >= 3",
                                   timeout=60000)
            first = n_loss()
            assert first >= 3 and page.locator("#charts canvas").count() == 4
            # the points shown are the run's own: the chart's last loss is in the file
            recs = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()
                    if line.endswith("}")]
            losses = {r["loss"] for r in recs if r["type"] == "train"}
            shown = page.evaluate("() => monitor.charts['loss'].plot.data[1].filter(v => v != null)")
            assert set(shown[:first]) <= losses
            # new points appear as the run advances
            _wait(lambda: n_loss() >= first + 2, 120, "new points on the loss chart")
            proc.kill()  # enough: free the CPU for the curve fits
            # axis ticks keep enough digits to tell a cosine schedule's learning rates apart
            ticks = page.evaluate("() => monitor.charts['learning rate'].plot.axes[1]._values")
            assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks
            # a typed target gives a prediction
            page.wait_for_function("() => monitor.study !== null", timeout=90000)
            page.fill("#target", "0.12")
            page.click("#predict")
            page.wait_for_function("() => monitor.study && monitor.study.prediction", timeout=120000)
            text = page.inner_text("#prediction")
            assert text and "Type a target" not in text and "0.12" in text, text
            # files outside the runs are refused
            for url in ["/api/..%2F..%2Fetc%2Fpasswd", "/api/runs/..%2F..%2Fetc%2Fpasswd/history",
                        "/static/..%2F..%2F..%2Fpyproject.toml"]:
                assert page.request.get(server + url).status == 404, url
            page.screenshot(path=str(out / "monitor.png"), full_page=True)
            browser.close()
    finally:
        proc.kill()
        proc.wait()


def test_each_run_has_one_colour_on_every_chart(tmp_path, server):
    # 4 runs, two of them nested (ids with "/", so the page's encoded URLs go through
    # uvicorn for real). The lr chart has one series per run, the others two: a colour
    # taken from the series index gave run/run2 one colour there and sweep/run3 run2's.
    from test_monitor import write_run
    for name in ["run", "run2", "sweep/run3", "sweep/run4"]:
        write_run(tmp_path / "runs" / name, n=10)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        page.goto(server)
        page.wait_for_function("() => ['loss', 'learning rate'].every(t => monitor.charts[t] && "
                               "monitor.charts[t].plot.series.length === "
                               "(t === 'loss' ? 9 : 5))", timeout=30000)
        colours = page.evaluate("""() => Object.fromEntries(Object.entries(monitor.charts).map(
            ([t, c]) => [t, c.plot.series.slice(1).map((s, i) => [s.label, s.stroke(c.plot, i + 1)])]))""")
        browser.close()
    runs = ["run", "run2", "sweep/run3", "sweep/run4"]
    by_run = {}  # chart -> run -> set of colours of its series
    for title, series in colours.items():
        if title != "study":
            for label, colour in series:
                by_run.setdefault(title, {}).setdefault(label.split(" ")[0], set()).add(colour)
    assert set(by_run) == {"loss", "MLM accuracy", "NSP accuracy", "learning rate"}
    want = by_run["learning rate"]
    assert sorted(want) == runs and len({c for s in want.values() for c in s}) == 4, want
    for title, got in by_run.items():
        assert got == want, (title, got, want)
