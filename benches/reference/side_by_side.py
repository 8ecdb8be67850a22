"""dfdx-flows against the tutorial's PyTorch code, same machine, same threads, same batch, one run.

    python benches/reference/side_by_side.py [--threads 2] [--batch 128] [--repeats 3]
        [--models simple,vardeq,multiscale] [--peak-rss] [--python /work/torch-venv/bin/python]

Runs `cargo bench --bench step -- --json` (release build, RAYON_NUM_THREADS=threads) and
`bench_torch.py` (torch.set_num_threads(threads), denormals flushed) one model at a time,
alternating, so that both see the same machine state; then prints one table with the ratio
PyTorch time / our time per figure (> 1: we are faster) and, with --peak-rss, the peak
resident memory of a training step of each. Run it on a quiet machine: only the ratios of one
run are evidence.
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
    ap.add_argument("--models", default="simple,vardeq,multiscale")
    ap.add_argument("--peak-rss", action="store_true")
    ap.add_argument("--python", default=os.environ.get("TORCH_PYTHON", "/work/torch-venv/bin/python"))
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    # Build first so that compilation does not overlap with any measurement.
    subprocess.run(["cargo", "bench", "--bench", "step", "--no-run"], cwd=ROOT, env=env, check=True)

    results = []
    for model in args.models.split(","):
        ours = ["cargo", "bench", "--quiet", "--bench", "step", "--", model, "--json",
                "--batch", str(args.batch), "--reps", str(args.repeats)]
        torch = [args.python, os.path.join(HERE, "bench_torch.py"), "--models", model,
                 "--batch", str(args.batch), "--repeats", str(args.repeats),
                 "--threads", str(args.threads)]
        if args.peak_rss:
            ours.append("--peak-rss")
            torch.append("--peak-rss")
        print(f"measuring {model} ...", file=sys.stderr, flush=True)
        results += run_lines(ours, env, ROOT)
        results += run_lines(torch, env, HERE)

    def find(impl, model, figure):
        for r in results:
            if r.get("impl", "").startswith(impl) and r["model"] == model and r["figure"] == figure:
                return r
        return None

    figures = [f"train_step_b{args.batch}", "bpd_64", "sample_64"]
    rows = []
    for model in args.models.split(","):
        for figure in figures:
            a, b = find("dfdx", model, figure), find("pytorch", model, figure)
            if a and b:
                rows.append((model, figure, f"{a['seconds']:.3f} s", f"{b['seconds']:.3f} s",
                             f"{b['seconds'] / a['seconds']:.2f}x"))
        if args.peak_rss:
            a, b = find("dfdx", model, "peak_rss_train_step"), find("pytorch", model, "peak_rss_train_step")
            if a and b:
                rows.append((model, "peak RSS, train step", f"{a['bytes'] / 1e9:.2f} GB",
                             f"{b['bytes'] / 1e9:.2f} GB", f"{b['bytes'] / a['bytes']:.2f}x"))
    header = ("model", "figure", "dfdx-flows", "PyTorch", "PyTorch / ours")
    print(f"threads {args.threads}, batch {args.batch}, median of {args.repeats}")
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
