"""Draw bench_speed.py's results (matplotlib, PNG).

    python benchmarks/bench_speed.py --json > benchmarks/results.json
    python benchmarks/plot.py benchmarks/results.json -o benchmarks/speed.png
"""

from __future__ import annotations

import argparse
import json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a file holding bench_speed.py --json output")
    parser.add_argument("-o", "--output", default="benchmarks/speed.png")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.results) as f:
        data = json.loads(f.read().strip().splitlines()[-1])
    rows = {r["workload"]: r for r in data["results"]}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = {"compute": "compute-bound\nCNN 32×32×3, batch 250", "overhead": "overhead-bound\nMLP, batch 32"}
    colors = {"in-graph loop": "#999999", "InferenceRunner": "#1f77b4", "Model.evaluate": "#ff7f0e"}
    for ax, key in zip(axes[:2], ("compute", "overhead")):
        r = rows[key]
        values = [r["in_graph_s"], r["runner_s"], r["evaluate_s"]]
        bars = ax.bar(list(colors), values, color=list(colors.values()))
        for bar, v in zip(bars, values):
            ax.annotate(f"{v:.3f}s", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom")
        ax.set_title(f"{labels[key]}\n({r['samples']:,} samples, medians)")
        ax.set_ylabel("seconds per validation pass")
        ax.set_ylim(0, max(values) * 1.2)
    s = rows["slow_input"]
    values = [s["load_s"], s["compute_s"], s["runner_s"]]
    bars = axes[2].bar(["input alone", "compute alone", "InferenceRunner"], values,
                       color=["#bbbbbb", "#999999", "#1f77b4"])
    for bar, v in zip(bars, values):
        axes[2].annotate(f"{v:.2f}s", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom")
    axes[2].set_title(f"slow Python input, {s['delay_ms_per_batch']:.0f} ms/batch\n"
                      f"runner / max(input, compute): median of rounds {s['runner_over_max_load_compute']:.2f}")
    axes[2].set_ylim(0, max(values) * 1.2)
    m = data["machine"]
    fig.suptitle(f"infer_callbacks validation speed — {m['cpus']} CPU cores, TF {m['tensorflow']}, "
                 f"Keras {m['keras']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
