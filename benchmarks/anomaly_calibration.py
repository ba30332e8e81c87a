"""How often ``analysis.anomalies.plateaus`` calls a held-out accuracy a plateau, on curves
made with a held-out set's noise.

    python -m benchmarks.anomaly_calibration [--seeds 200] [--noise 0.008]

Each seed draws 51 evaluations (every 50 steps to 2,550, the demo's count) with normal
noise of ``--noise`` (0.008: ~4,000 masked slots at ~36%) at a constant lr, of two curves:
a flat one at 0.36 (a plateau: the share of its points flagged is the coverage) and one
rising 0.8 points per 500 steps (still learning: the share of seeds with any plateau is the
false-flag rate). Prints the machine line and both, and writes JSON to benchmarks/out/.
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks import common
from zhbert.analysis.anomalies import plateaus
from zhbert.analysis.history import Series

STEPS = np.arange(50, 2600, 50.0)


def flagged(y: np.ndarray) -> np.ndarray:
    lr = Series("lr", STEPS, np.full(len(STEPS), 1e-3))
    covered = np.zeros(len(STEPS), bool)
    for a in plateaus(Series("eval_mlm_acc", STEPS, y), lr):
        covered |= (STEPS >= a.start) & (STEPS <= a.end)
    return covered


@common.entry("anomaly_calibration")
def main(argv: list[str] | None = None) -> int:
    from zhbert import argtypes

    p = common.Parser("anomaly_calibration", __doc__)
    p.add_argument("--seeds", type=argtypes.count(1), default=200)
    p.add_argument("--noise", type=argtypes.non_negative, default=0.008)
    args = p.parse_args(argv)
    coverage, false_flags = [], 0
    for seed in range(args.seeds):
        e = np.random.default_rng(seed).normal(0, args.noise, len(STEPS))
        coverage.append(flagged(0.36 + e).mean())
        false_flags += bool(flagged(0.30 + 0.08 * STEPS / STEPS[-1] + e).any())
    got = {"flat_coverage_mean": float(np.mean(coverage)), "flat_coverage_min": float(np.min(coverage)),
           "rising_false_flag_rate": false_flags / args.seeds}
    line = (f"flat curve: {got['flat_coverage_mean']:.0%} of its points flagged (lowest seed "
            f"{got['flat_coverage_min']:.0%}); rising curve: flagged in "
            f"{got['rising_false_flag_rate']:.0%} of {args.seeds} seeds")
    common.finish("anomaly_calibration", common.machine(), [line], {"args": vars(args), **got})
    return 0


if __name__ == "__main__":
    sys.exit(main())
