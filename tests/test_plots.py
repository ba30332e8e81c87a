"""Plot functions: ax in -> same ax out, figures saved as PNG (>= 150 dpi) + SVG, CJK glyphs."""

import struct
import warnings

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from test_report import write_history

from zhbert import plots
from zhbert.analysis import correlate, detect, fit_curve, load_history, predict_steps
from zhbert.fonts import cjk_font_path, setup_cjk_font


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return load_history(write_history(tmp_path_factory.mktemp("h") / "history.jsonl", n=80))


@pytest.fixture(scope="module")
def fitted(history):
    s = history.metric("mlm_acc")
    return s, fit_curve(s.step, s.y, n_boot=10), correlate(s.step, s.y, n_boot=50)


def test_axes_functions_draw_on_the_given_ax_and_return_it(history, fitted):
    s, fits, corr = fitted
    pred = predict_steps(history, 0.7, metric="mlm_acc", n_boot=10)
    anomalies = detect(history)
    calls = [lambda ax: plots.plot_metric(s, ax), lambda ax: plots.plot_loss(history, ax, log_x=True),
             lambda ax: plots.plot_accuracy(history, ax, anomalies=anomalies),
             lambda ax: plots.plot_binary_tasks(history, ax, anomalies=anomalies),
             lambda ax: plots.plot_lr(history, ax), lambda ax: plots.plot_fit(s, fits, ax, corr=corr),
             lambda ax: plots.plot_residuals(s, fits, ax),
             lambda ax: plots.plot_prediction(s, fits[0], pred, ax),
             lambda ax: plots.plot_comparison([("a", s), ("b", s)], ax, common=(100, 8000)),
             lambda ax: plots.plot_difference([("a", s), ("b", s)], ax, common=(100, 8000))]
    for call in calls:
        ax = Figure().subplots()
        assert call(ax) is ax and (ax.lines or ax.collections)
        assert isinstance(call(None), Axes)  # ax=None makes its own figure


def test_chance_line_and_anomaly_marks(history):
    ax = plots.plot_binary_tasks(history, anomalies=detect(history))
    labels = ax.get_legend_handles_labels()[1]
    assert "chance (50%)" in labels and "anomaly: chance" in labels
    assert any(line.get_ydata()[0] == 0.5 for line in ax.lines if line.get_label() == "chance (50%)")


def test_prediction_shows_interval_when_reachable(history, fitted):
    s, fits, _ = fitted
    pred = predict_steps(history, 0.62, metric="mlm_acc", n_boot=10)
    labels = plots.plot_prediction(s, [f for f in fits if f.name == pred.model][0], pred).get_legend_handles_labels()[1]
    if pred.reachable:
        assert any(lbl.startswith("80% interval") for lbl in labels)
    else:
        assert any(lbl.startswith("fitted ceiling") for lbl in labels)


def _png_size(path):
    head = path.read_bytes()[:24]
    return struct.unpack(">II", head[16:24])


def test_figures_saved_as_png_and_svg(tmp_path, history, fitted):
    s, fits, corr = fitted
    figs = {"tc": plots.training_curves(history, anomalies=detect(history), subtitle="训练曲线"),
            "ca": plots.correlation_analysis(s, fits, corr), "la": plots.loss_analysis(history),
            "cmp": plots.comparison_figure([("a", s), ("b", s)], common=(100, 8000))}
    for name, fig in figs.items():
        assert isinstance(fig, Figure)
        png, svg = plots.save_figure(fig, tmp_path, name)
        w, h = _png_size(png)
        assert (w, h) == tuple(round(v * plots.DPI) for v in fig.get_size_inches())
        assert svg.read_text().count("<svg") == 1


def test_correlation_figure_when_the_corrected_interval_is_undefined(fitted):
    # a 500-step `make demo` run gave 10 evaluations with n_eff 2.9: the corrected CI is
    # undefined there, and the figure crashed `zhbert analyze` asking for it
    from dataclasses import replace
    s, fits, corr = fitted
    few = replace(corr, n_eff=2.9, pearson_neff=replace(corr.pearson_neff, ci95=None))
    fig = plots.correlation_analysis(s, fits, few)
    assert "corrected 95% CI undefined, n_eff = 2.9" in fig.get_suptitle()


def test_empty_panels_say_why(tmp_path):
    csv = tmp_path / "h.csv"
    csv.write_text("step,mlm_acc\n" + "".join(f"{i},{i / 100}\n" for i in range(1, 8)))
    fig = plots.training_curves(load_history(csv))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert {"no loss recorded", "no NSP/SOP accuracy recorded", "no learning rate recorded"} <= set(texts)


def _glyph_warnings(draw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


@pytest.mark.skipif(cjk_font_path() is None, reason="cvttf-NotoSansCJK-Regular not installed")
def test_chinese_renders_without_missing_glyphs(tmp_path):
    assert setup_cjk_font() == matplotlib.rcParams["font.sans-serif"][0]

    def draw():
        fig = Figure()
        ax = fig.subplots()
        ax.plot(np.arange(3), [-1, 0, 1])
        ax.set_title("掩码语言模型准确率 MLM accuracy")
        ax.set_xlabel("训练步数 step")
        fig.savefig(tmp_path / "zh.png")
        fig.savefig(tmp_path / "zh.svg")

    assert _glyph_warnings(draw) == []
    # the check can fail: without the CJK font the same drawing warns about every character
    with matplotlib.rc_context({"font.sans-serif": ["DejaVu Sans"]}):
        assert _glyph_warnings(draw)


def test_a_straight_line_fit_of_an_accuracy_stays_under_100_percent(history, fitted):
    """The demo's analysis drew its linear fit of mlm accuracy up to ~1.8 (band to 2.3): an
    accuracy's fit and band are drawn within its bounds (zhbert.metrics: 0..1)."""
    s, fits, _ = fitted
    linear = [f for f in fits if f.name == "linear"][0]
    pred = predict_steps(history, 0.99, metric="mlm_acc", n_boot=10)
    ax = plots.plot_prediction(s, linear, pred)
    fit_line = [line for line in ax.lines if line.get_label() == "linear fit"][0]
    assert np.max(fit_line.get_ydata()) <= 1.0
    band = [c for c in ax.collections if c.get_label() == "95% band of the fit"][0]
    assert np.max(band.get_paths()[0].vertices[:, 1]) <= 1.0
    assert "\n" in ax.get_title() or len(ax.get_title()) <= 90  # wrapped, not cut off


def test_a_fit_after_the_length_switch_is_drawn_after_it():
    """The families fit the points after the switch (History.curve_part); drawn over the whole
    run, a power fit read -0.99 accuracy at step 25 and stretched the axis to -1.5."""
    from zhbert.analysis.history import Series

    steps = np.arange(25, 1025, 25.0)
    y = np.where(steps <= 200, 0.06, 0.40 - 0.3 * np.exp(-(steps - 200) / 200))
    s = Series("eval_mlm_acc", steps, y + np.random.default_rng(0).normal(0, 0.003, len(y)))
    part = s.select(steps > 200)
    fits = fit_curve(part.step, part.y, n_boot=20, metric=s.name)
    ax = plots.plot_fit(s, fits)
    drawn = [ln.get_xdata() for ln in ax.get_lines()]
    assert drawn and all(np.min(x) > 200 for x in drawn)
    ax = plots.plot_residuals(s, fits)
    assert all(np.min(ln.get_xdata()) > 200 for ln in ax.get_lines() if len(ln.get_xdata()) > 2)
