"""The study: load histories, correlate, fit learning curves, predict, backtest, find anomalies.

    from zhbert.analysis import load_history, correlate, fit_curve, predict_steps
    h = load_history("runs/base")              # any supported format (history.py)
    s = h.metric()                             # eval_mlm_acc if present, else mlm_acc
    r = correlate(s.step, s.y)                 # naive and autocorrelation-aware
    fits = fit_curve(s.step, s.y)              # sorted by AIC
    p = predict_steps(h, 0.60)                 # steps / tokens / hours with intervals
    f = forecast_final("runs/base", 8000)      # schedule-aware: accuracy at the end of 8K steps

Every result has ``.to_json()`` for reports and plots.
"""

from zhbert.analysis.anomalies import Anomaly, detect
from zhbert.analysis.curves import CurveFit, fit_curve
from zhbert.analysis.history import History, Meta, Series, load_history
from zhbert.analysis.backtest import BacktestResult, backtest
from zhbert.analysis.forecast import Forecast, forecast_final, plan
from zhbert.analysis.predict import Prediction, Throughput, predict_steps
from zhbert.analysis.stats import CorrelationResult, Estimate, correlate, smooth, summary

__all__ = ["Anomaly", "BacktestResult", "CorrelationResult", "CurveFit", "Estimate", "Forecast",
           "History", "Meta", "Prediction", "Series", "Throughput", "backtest", "correlate", "detect",
           "fit_curve", "forecast_final", "load_history", "plan", "predict_steps", "smooth", "summary"]
