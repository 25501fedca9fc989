"""Summaries of an experiment: mean and 95% confidence interval per method and checkpoint, the check of the
paper's qualitative claims, the curve rows and the paper-style plot."""

from __future__ import annotations


import numpy as np

from reproductions.core.recording import figure_png, mean_ci95

from .experiment import HIGHER_IS_BETTER, METHODS, MethodRun

LABELS = {"online_ltl": "online LTL", "batch_ltl": "batch LTL", "itl": "ITL (ridge per task)"}
METRIC_LABELS = {"mse": "test MSE on new tasks", "explained_variance": "explained variance on new tasks (%)"}


def summarise(runs: list[dict[str, MethodRun]]) -> dict[str, dict[str, list[float]]]:
    """``{method: {"mean": [...], "ci95": [...], "seconds": mean seconds}}`` over seeds, per checkpoint."""
    out = {}
    for method in METHODS:
        scores = np.array([run[method].test for run in runs])  # seeds x checkpoints
        stats = [mean_ci95(scores[:, i]) for i in range(scores.shape[1])]
        out[method] = {
            "mean": [m for m, _ in stats],
            "ci95": [h for _, h in stats],
            "seconds": float(np.mean([run[method].seconds for run in runs])),
        }
    return out


def curve_rows(checkpoints: list[int], summary: dict) -> list[dict[str, float]]:
    """One row per checkpoint; ``iteration`` is the number of training tasks observed (one meta-step each)."""
    rows = []
    for i, T in enumerate(checkpoints):
        row: dict[str, float] = {"iteration": T}
        for method in METHODS:
            row[method] = round(summary[method]["mean"][i], 6)
            row[f"{method}_ci95"] = round(summary[method]["ci95"][i], 6)
        rows.append(row)
    return rows


def claims(runs: list[dict[str, MethodRun]], checkpoints: list[int], metric: str) -> list[str]:
    """Check the paper's qualitative claims on paired per-seed differences at the last checkpoint, and say from
    which checkpoint on each LTL method beats ITL on average."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0  # positive advantage = better
    last = len(checkpoints) - 1
    T = checkpoints[last]
    lines = []

    def paired(a: str, b: str, i: int) -> tuple[float, float]:
        return mean_ci95([sign * (run[a].test[i] - run[b].test[i]) for run in runs])

    for method in ("online_ltl", "batch_ltl"):
        adv, ci = paired(method, "itl", last)
        verdict = "better than" if adv - ci > 0 else ("worse than" if adv + ci < 0 else "not distinguishable from")
        first = next((checkpoints[i] for i in range(len(checkpoints))
                      if all(paired(method, "itl", j)[0] > 0 for j in range(i, len(checkpoints)))), None)
        since = f"; ahead on average from T={first} on" if first is not None else "; never ahead for good"
        lines.append(f"{LABELS[method]} vs ITL at T={T}: advantage {adv:+.4f} ± {ci:.4f} -> {verdict} ITL{since}.")
    adv, ci = paired("online_ltl", "batch_ltl", last)
    batch_gain = paired("batch_ltl", "itl", last)[0]
    share = f" (online keeps {100 * (1 + adv / batch_gain):.0f}% of batch LTL's gain over ITL)" if batch_gain > 0 else ""
    lines.append(f"online LTL vs batch LTL at T={T}: difference {adv:+.4f} ± {ci:.4f}{share}.")
    return lines


def plot_png(checkpoints: list[int], summary: dict, metric: str, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    x = np.array(checkpoints)
    for method, style in zip(METHODS, ("o-", "s-", "--")):
        mean = np.array(summary[method]["mean"])
        ci = np.array(summary[method]["ci95"])
        ax.plot(x, mean, style, label=LABELS[method], markersize=4)
        ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
    ax.set_xlabel("number of training tasks observed (T)")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return figure_png(fig)
