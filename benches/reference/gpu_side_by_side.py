"""The GPU comparison table of scripts/gpu-check.sh: our gpu_check results next to PyTorch's.

    python gpu_side_by_side.py OURS.jsonl TORCH.jsonl

OURS.jsonl: examples/gpu_check.rs --json (one object per model, then the --probe lines);
TORCH.jsonl: bench_torch.py --device cuda (one object per model and figure).
Prints a markdown table per figure: seconds of each side and the ratio PyTorch / ours
(> 1: we are faster), and the peak GPU memory of a training step of each side.
"""

import json
import sys

sys.dont_write_bytecode = True


def read_lines(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def table(ours, torch_rows):
    by_torch = {}
    for r in torch_rows:
        by_torch[(r["model"], r["figure"])] = r
    out = ["| model | figure | ours [s] | PyTorch [s] | PyTorch / ours |", "|---|---|---|---|---|"]
    for r in ours:
        if "model" not in r:
            continue
        model, batch = r["model"], r["batch"]
        pairs = [
            (f"train_step_b{batch}", r["train_step_seconds"]),
            ("bpd_64", r["bpd_64_seconds"]),
            ("sample_64", r["sample_64_seconds"]),
        ]
        for figure, mine in pairs:
            t = by_torch.get((model, figure))
            theirs = t["seconds"] if t else None
            ratio = f"{theirs / mine:.2f}x" if theirs and mine > 0 else "-"
            shown = "-" if theirs is None else f"{theirs:.4f}"
            out.append(f"| {model} | {figure} | {mine:.4f} | {shown} | {ratio} |")
        t = by_torch.get((model, f"train_step_b{batch}"))
        if t and "host_seconds" in t:
            out.append(f"| {model} | host time per step (queueing) | {r['train_step_host_seconds']:.4f} | {t['host_seconds']:.4f} | - |")
        m = by_torch.get((model, "peak_gpu_memory_train_step"))
        mine = r.get("device_memory_used_bytes")
        out.append(
            f"| {model} | GPU memory of training [GB] | {mine / 1e9 if mine else float('nan'):.2f} (in use after) "
            f"| {m['allocated_bytes'] / 1e9 if m else float('nan'):.2f} allocated, "
            f"{m['reserved_bytes'] / 1e9 if m else float('nan'):.2f} reserved (peak) | - |"
        )
    return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    ours, theirs = read_lines(sys.argv[1]), read_lines(sys.argv[2])
    print(table(ours, theirs))


if __name__ == "__main__":
    main()
