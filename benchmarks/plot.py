"""Draw bench_speed.py's results (matplotlib, PNG).

    python benchmarks/bench_speed.py --json > benchmarks/results.json
    python benchmarks/plot.py benchmarks/results.json -o benchmarks/speed.png

Bars are the fastest round of each configuration (rounds are interleaved;
this machine's speed varies between rounds); titles give the ratios as
"fastest / median of per-round ratios".
"""

from __future__ import annotations

import argparse
import json


def _fastest(v):
    return v["fastest"] if isinstance(v, dict) else v


def _ratio(v):
    return f"{v['fastest']:.2f} / {v['median']:.2f}" if isinstance(v, dict) else f"{v:.2f}"


def _bars(ax, labels, values, colors, unit="s"):
    bars = ax.bar(labels, values, color=colors)
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.3f}{unit}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                    fontsize=8)
    ax.set_ylim(0, max(values) * 1.25)
    ax.tick_params(axis="x", labelsize=8)


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
    panels = [k for k in ("compute", "overhead", "padded", "slow_input_overhead", "slow_input_compute")
              if k in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    titles = {"compute": "compute-bound: CNN 32×32×3, batch 250",
              "overhead": "overhead-bound: MLP, batch 32",
              "padded": "padded sequences, per-token classifier"}
    for ax, key in zip(axes[0], panels):
        r = rows[key]
        if key.startswith("slow_input"):
            values = [_fastest(r["load_s"]), _fastest(r["compute_s"]), _fastest(r["runner_s"])]
            _bars(ax, ["input alone", "compute alone", "InferenceRunner"], values, ["#bbbbbb", "#999999", "#1f77b4"])
            model = "MLP" if key.endswith("overhead") else "CNN"
            ax.set_title(f"slow Python input ({model}), {r['batches']} × {r['delay_ms_per_batch']:.0f} ms\n"
                         f"max(input, compute) ÷ runner: {_ratio(r['max_load_compute_over_runner'])}",
                         fontsize=9)
            continue
        labels, values, colors = ["in-graph loop", "InferenceRunner"], [_fastest(r["in_graph_s"]),
                                                                          _fastest(r["runner_s"])], ["#999999", "#1f77b4"]
        if "evaluate_s" in r:
            labels.append("Model.evaluate")
            values.append(_fastest(r["evaluate_s"]))
            colors.append("#ff7f0e")
        _bars(ax, labels, values, colors)
        ax.set_title(f"{titles[key]}\n{r['batches']} batches; runner ÷ in-graph {_ratio(r['runner_over_in_graph'])}",
                     fontsize=9)
        ax.set_ylabel("seconds per validation pass (fastest round)")
    m = data["machine"]
    fig.suptitle(f"infer_callbacks validation speed — {m['cpus']} CPU cores, TF {m['tensorflow']}, "
                 f"Keras {m['keras']}, {m.get('rounds', '?')} interleaved rounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
