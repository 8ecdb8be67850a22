"""dfdx-flows against the tutorial's PyTorch code, same machine, same threads, same batch, one run.

    python benches/reference/side_by_side.py [--threads 2] [--batch 128] [--repeats 3]
        [--rounds 1] [--models simple,vardeq,multiscale,glow] [--peak-rss] [--markdown]
        [--python /work/torch-venv/bin/python]

Runs `cargo bench --bench step -- --json` (release build, RAYON_NUM_THREADS=threads) and
`bench_torch.py` (torch.set_num_threads(threads), denormals flushed) one model at a time,
alternating, so that both see the same machine state; then prints one table with the ratio
PyTorch time / our time per figure (> 1: we are faster) and, with --peak-rss, the peak
resident memory of a training step of each. Run it on a quiet machine: only the ratios of one
run are evidence.

With --rounds N the alternation (ours, PyTorch) is repeated N times per model: each figure is
then the median over the rounds of each round's median, and the table adds the lowest and
highest ratio of a single round. On a shared machine a burst of load during one side's turn
skews that round's ratio; more rounds make it one vote of N instead of the result.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_lines(cmd, env, cwd):
    out = subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.PIPE, text=True)
    rows = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="alternations (ours, PyTorch) per model")
    ap.add_argument("--models", default="simple,vardeq,multiscale,glow")
    ap.add_argument("--peak-rss", action="store_true")
    ap.add_argument("--python", default=os.environ.get("TORCH_PYTHON", "/work/torch-venv/bin/python"))
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    # Build first so that compilation does not overlap with any measurement.
    subprocess.run(["cargo", "bench", "--bench", "step", "--no-run"], cwd=ROOT, env=env, check=True)

    results = []
    for model in args.models.split(","):
        for round_ in range(args.rounds):
            ours = ["cargo", "bench", "--quiet", "--bench", "step", "--", model, "--json",
                    "--batch", str(args.batch), "--reps", str(args.repeats)]
            torch = [args.python, os.path.join(HERE, "bench_torch.py"), "--models", model,
                     "--batch", str(args.batch), "--repeats", str(args.repeats),
                     "--threads", str(args.threads)]
            if args.peak_rss and round_ == 0:
                ours.append("--peak-rss")
                torch.append("--peak-rss")
            print(f"measuring {model}, round {round_ + 1} of {args.rounds} ...", file=sys.stderr,
                  flush=True)
            for impl_rows in (run_lines(ours, env, ROOT), run_lines(torch, env, HERE)):
                for r in impl_rows:
                    r["round"] = round_
                results += impl_rows

    def find(impl, model, figure):
        return [r for r in results
                if r.get("impl", "").startswith(impl) and r["model"] == model and r["figure"] == figure]

    def median(values):
        values = sorted(values)
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    figures = [f"train_step_b{args.batch}", "bpd_64", "sample_64"]
    rows = []
    for model in args.models.split(","):
        for figure in figures:
            a, b = find("dfdx", model, figure), find("pytorch", model, figure)
            if a and b:
                ours_s, torch_s = median([r["seconds"] for r in a]), median([r["seconds"] for r in b])
                row = [model, figure, f"{ours_s:.3f} s", f"{torch_s:.3f} s", f"{torch_s / ours_s:.2f}x"]
                if args.rounds > 1:
                    per_round = [rb["seconds"] / ra["seconds"] for ra in a for rb in b
                                 if ra["round"] == rb["round"]]
                    row.append(f"{min(per_round):.2f}x – {max(per_round):.2f}x")
                rows.append(tuple(row))
        if args.peak_rss:
            a, b = find("dfdx", model, "peak_rss_train_step"), find("pytorch", model, "peak_rss_train_step")
            if a and b:
                a, b = a[0]["bytes"], b[0]["bytes"]
                row = [model, "peak RSS, train step", f"{a / 1e9:.2f} GB", f"{b / 1e9:.2f} GB",
                       f"{b / a:.2f}x"]
                if args.rounds > 1:
                    row.append("(round 1)")
                rows.append(tuple(row))
    header = ("model", "figure", "dfdx-flows", "PyTorch", "PyTorch / ours")
    if args.rounds > 1:
        header += ("single rounds",)
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"threads {args.threads}, batch {args.batch}, median of {args.repeats}{rounds}")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in [header] + rows:
            print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    main()
