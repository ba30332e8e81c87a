"""`zhbert sweep`: hyper-parameter search on Optuna, pruned by zhbert's own forecasts.

space     the TOML search space -> Optuna distributions, checked with config.py's own
          `--set` validation before any trial starts
forecast  one function, ``forecast_final(run_dir, total_steps)``: the trial's final
          held-out metric with an 80% interval (the schedule-aware law of
          zhbert.analysis.forecast, the curve families until the law can fit)
pruner    the forecast pruner (an ``optuna.pruners.BasePruner``) and the --pruner choices
study     the sweep's spec (sweep.json), its storage (a JournalStorage file in SWEEP_DIR
          by default, or an RDB URL) and the refusal of a SWEEP_DIR holding another space
journal   the journal file's guards: a half-written last record cut aside, damage one line
worker    the loop: ask Optuna, run an ordinary `zhbert train` in trials/NNNN, report
          every held-out eval, prune, tell
outcome   how a trial's end is told to Optuna (complete, pruned, failed, retried)
liveness  heartbeats: which trials' workers are alive; dead workers' trials failed and retried
spawn     a sweep's K workers on one machine, signals forwarded to them
command   the `zhbert sweep` command; report: `zhbert sweep report`
"""
