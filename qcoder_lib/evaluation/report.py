"""Results as the course shows them: a table per model, the report's published numbers beside
them for scale, a plot, and a failure analysis (what went wrong, how often, an example each).

:data:`PUBLISHED` holds the Qwen2.5-Coder report's numbers for the 0.5B and 1.5B models
(arXiv 2409.12186; the course's facts file). They are measured on the full benchmarks with
models trained on trillions of tokens: the course's models are not expected to approach them;
they are printed to give a scale, and the course's task sets (CRUX-style tasks from HumanEval
functions, direct answers rather than chain of thought) are not the report's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from qcoder_lib.evaluation.results import OUTCOMES

# benchmark -> {model: published score in %} (report; HumanEval-FIM EM is single-line exact match)
PUBLISHED: dict[str, dict[str, float]] = {
    "humaneval": {"Qwen2.5-Coder-0.5B": 28.0, "Qwen2.5-Coder-1.5B": 43.9,
                  "Qwen2.5-Coder-0.5B-Instruct": 61.6, "Qwen2.5-Coder-1.5B-Instruct": 70.7},
    "humanevalplus": {"Qwen2.5-Coder-0.5B": 23.8, "Qwen2.5-Coder-1.5B": 36.6,
                      "Qwen2.5-Coder-0.5B-Instruct": 57.3, "Qwen2.5-Coder-1.5B-Instruct": 66.5},
    "mbpp": {"Qwen2.5-Coder-0.5B": 52.9, "Qwen2.5-Coder-1.5B": 69.2,
             "Qwen2.5-Coder-0.5B-Instruct": 52.4, "Qwen2.5-Coder-1.5B-Instruct": 69.2},
    "mbppplus": {"Qwen2.5-Coder-0.5B": 47.1, "Qwen2.5-Coder-1.5B": 58.6,
                 "Qwen2.5-Coder-0.5B-Instruct": 43.7, "Qwen2.5-Coder-1.5B-Instruct": 59.4},
    "humaneval-infill-single-line": {"Qwen2.5-Coder-0.5B": 70.3, "Qwen2.5-Coder-1.5B": 77.0},
    "crux-input": {"Qwen2.5-Coder-0.5B": 35.2, "Qwen2.5-Coder-1.5B": 43.8,
                   "Qwen2.5-Coder-0.5B-Instruct": 33.9, "Qwen2.5-Coder-1.5B-Instruct": 45.4},
    "crux-output": {"Qwen2.5-Coder-0.5B": 23.0, "Qwen2.5-Coder-1.5B": 34.6,
                    "Qwen2.5-Coder-0.5B-Instruct": 27.8, "Qwen2.5-Coder-1.5B-Instruct": 37.5},
}
PUBLISHED_METRIC = {  # what the published number measures, where it is not pass@1
    "humaneval-infill-single-line": "exact_match",
    "crux-input": "pass@1 (CoT)",
    "crux-output": "pass@1 (CoT)",
}


def headline(summary) -> float:
    """The one number of a benchmark summary, in %: exact match for single-line infilling
    (as the report gives HumanEval-FIM), pass@1 otherwise."""
    if summary.benchmark == "humaneval-infill-single-line":
        return 100.0 * summary.extra.get("exact_match", 0.0)
    return 100.0 * summary.pass_at.get(1, 0.0)


def results_table(runs) -> str:
    """A markdown table: one row per benchmark, one column per run (headline score in %),
    then the published Qwen2.5-Coder numbers where the report has that benchmark."""
    benches = list(dict.fromkeys(b for r in runs for b in r.summaries))
    pub_models = list(dict.fromkeys(m for b in benches for m in PUBLISHED.get(b, {})))
    head = ["benchmark", "tasks", *[r.model for r in runs], *[f"{m} (report)" for m in pub_models]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in benches:
        n = next(r.summaries[b].n_tasks for r in runs if b in r.summaries)
        cells = [b + (f" ({PUBLISHED_METRIC[b]})" if b in PUBLISHED_METRIC else ""), str(n)]
        cells += [f"{headline(r.summaries[b]):.1f}" if b in r.summaries else "" for r in runs]
        cells += [f"{PUBLISHED.get(b, {})[m]:.1f}" if m in PUBLISHED.get(b, {}) else ""
                  for m in pub_models]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def failure_counts(run) -> dict[str, dict[str, int]]:
    """``{benchmark: {outcome: count}}`` of one run, outcomes in :data:`OUTCOMES` order."""
    out = {}
    for b, samples in run.samples.items():
        c = Counter(s.outcome for s in samples)
        out[b] = {o: c[o] for o in OUTCOMES if c[o]}
    return out


def failure_table(run) -> str:
    """A markdown table of outcomes per benchmark for one run, with one example detail of the
    most common failure."""
    counts = failure_counts(run)
    used = [o for o in OUTCOMES if any(o in c for c in counts.values())]
    lines = ["| benchmark | " + " | ".join(used) + " | most common failure, e.g. |",
             "|" + "---|" * (len(used) + 2)]
    for b, c in counts.items():
        fails = [(n, o) for o, n in c.items() if o != "passed"]
        example = ""
        if fails:
            top = max(fails)[1]
            s = next(s for s in run.samples[b] if s.outcome == top)
            example = f"{top}: {s.detail[:60]}".replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {b} | " + " | ".join(str(c.get(o, 0)) for o in used) + f" | {example} |")
    return "\n".join(lines) + "\n"


def plot_results(runs, path=None):
    """A grouped bar chart of headline scores per benchmark (runs as bars, published numbers as
    markers); saved to ``path`` when given. Returns the matplotlib figure."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    benches = list(dict.fromkeys(b for r in runs for b in r.summaries))
    fig, ax = plt.subplots(figsize=(1.4 * len(benches) + 3, 4))
    width = 0.8 / max(1, len(runs))
    for i, r in enumerate(runs):
        xs = [j + i * width for j, b in enumerate(benches) if b in r.summaries]
        ys = [headline(r.summaries[b]) for b in benches if b in r.summaries]
        ax.bar(xs, ys, width, label=r.model)
    markers = ["o", "s", "^", "v"]
    pub_models = list(dict.fromkeys(m for b in benches for m in PUBLISHED.get(b, {})))
    for k, m in enumerate(pub_models):
        pts = [(j + 0.4 - width / 2, PUBLISHED[b][m]) for j, b in enumerate(benches)
               if m in PUBLISHED.get(b, {})]
        if pts:
            ax.scatter(*zip(*pts), marker=markers[k % 4], color="k", s=18,
                       label=f"{m} (report)", zorder=3)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(benches))])
    ax.set_xticklabels(benches, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def write_report(runs, folder) -> Path:
    """Write ``report.md`` (results table, a failure table per run), ``results.png`` and one
    ``<model>.json`` per run into ``folder``; return the report's path."""
    from qcoder_lib.io import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    intro = ("Headline score in % (pass@1 unless noted); the report's numbers are for the "
             "published models on the full benchmarks, for scale.\n")
    parts = ["# Evaluation\n", intro,
             results_table(runs), "![results](results.png)\n"]
    for r in runs:
        parts += [f"\n## Failures: {r.model}\n", failure_table(r)]
        r.save(folder / f"{_safe(r.model)}.json")
    import matplotlib.pyplot as plt

    plt.close(plot_results(runs, folder / "results.png"))
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"
