#!/usr/bin/env python3
"""Side by side: ExecuTorch + XNNPACK against Ferrite, same model, same machine, one run.

For each model and variant it times ExecuTorch's runtime on the fixture's XNNPACK program (in
this process, through the pip runtime) and Ferrite on the same model's undelegated program
lowered by `ferrite lower` (through `ferrite bench --json`), alternating rounds so both see the
same machine state, at 1 and 2 threads. Variants: `float` (`xnnpack.pte` against
`portable.pte`), `q8` (`q8_xnnpack.pte` against `q8.pte`), `qd8` (`qd8_xnnpack.pte` against
`qd8.pte`); a model without the variant is skipped. It prints median latencies and the ratio Ferrite/XNNPACK
(below 1.0: Ferrite is faster), with two checks of the lowered program: the operator calls left
outside Ferrite's delegates (`left`: 0 means all delegated) and the largest difference between
Ferrite's outputs and ExecuTorch's own outputs of the undelegated program (`max|diff|`).

A roofline view: each model's arithmetic (`ferrite profile`'s count of the convolutions' and
matrix products' floating-point operations) over Ferrite's median time gives its GFLOP/s, shown
against the peak this machine reaches at that thread count — measured first on one large matrix
product (a 512 × 1024 by 1024 × 1024 linear layer, exported here) — as `% peak`.

`--fixtures` also takes the directory `bench/models.py` writes (resnet18, mobilenet_v3_small,
efficientnet_b0, vit_tiny, bert_128/512, audio_cnn, unet).

Load time and memory: with `--et-runner target/et_runner` (built by `bench/et_runner.sh build`,
a C++ program over the wheel's `libexecutorch.so` and XNNPACK delegate, no Python or PyTorch in
the process) it also prints, per model and thread count, each side's load + init time and peak
resident memory (`VmHWM`) of a process that loads the model and runs it.

Not part of CI. Needs a venv with `pip install executorch==1.5.1 torch==2.14.1 numpy`:

    cargo build --release
    /path/to/venv/bin/python bench/compare.py [--fixtures ../shared/fixtures] [--models mobilenet_v2,tiny_gpt] [--variants float,q8]
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from executorch.extension.pybindings import portable_lib
from executorch.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


# variant -> (the XNNPACK program, the undelegated program Ferrite lowers)
VARIANTS = {"float": ("xnnpack", "portable"), "q8": ("q8_xnnpack", "q8"), "qd8": ("qd8_xnnpack", "qd8")}


def et_median_ms(method, inputs, iters):
    for _ in range(3):
        method.execute(inputs)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        method.execute(inputs)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def ferrite_bench(ferrite, pte, inputs, threads, iters):
    """`ferrite bench --json`: load_ms, median_ms, peak_rss_kib, ..."""
    cmd = [str(ferrite), "bench", str(pte), "--json", "--threads", str(threads), "--warmup", "3", "--iters", str(iters)]
    for i in inputs:
        cmd += ["-i", str(i)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def ferrite_median_ms(ferrite, pte, inputs, threads, iters):
    return ferrite_bench(ferrite, pte, inputs, threads, iters)["median_ms"]


def et_runner(runner, pte, threads, iters, inputs):
    """The C++ runner's load_ms, median_ms, peak_rss_kib on the same inputs as Ferrite."""
    cmd = [str(runner), str(pte), str(threads), str(iters)] + [str(i) for i in inputs]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def lowered_calls_left(report):
    """Operator calls outside Ferrite's delegates, from `ferrite lower`'s "kernel calls: A -> B"."""
    m = re.search(r"kernel calls: \d+ -> (\d+)", report)
    return int(m.group(1)) if m else -1


def max_diff(ferrite, pte, inputs, expected, tmp):
    """The largest |Ferrite - ExecuTorch| over the outputs, or NaN when there is no reference."""
    if not expected:
        return float("nan")
    out = Path(tmp) / "outputs"
    out.mkdir(exist_ok=True)
    cmd = [str(ferrite), "run", str(pte), "-o", str(out)]
    for i in inputs:
        cmd += ["-i", str(i)]
    subprocess.run(cmd, check=True, capture_output=True)
    worst = 0.0
    for k, e in enumerate(expected):
        got, want = np.load(out / f"output_{k}.npy"), np.load(e)
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
    return worst


def model_flops(ferrite, pte):
    """Floating-point operations per run of the lowered program, as `ferrite profile` counts them."""
    out = subprocess.run([str(ferrite), "profile", str(pte), "--json", "--iters", "1", "--threads", "1"],
                         check=True, capture_output=True, text=True).stdout
    return sum(r["flops"] or 0 for r in json.loads(out)["rows"])


def gemm_peak(ferrite, tmp, threads, iters):
    """GFLOP/s of Ferrite's packed GEMM on one large product: the machine's practical peak."""
    from executorch.exir import to_edge_transform_and_lower
    pte, lowered = Path(tmp) / "peak.pte", Path(tmp) / "peak.ferrite.pte"
    if not lowered.exists():
        x = torch.randn(512, 1024)
        program = to_edge_transform_and_lower(torch.export.export(torch.nn.Linear(1024, 1024).eval(), (x,))).to_executorch()
        pte.write_bytes(program.buffer)
        subprocess.run([str(ferrite), "lower", str(pte), "-o", str(lowered)], check=True, capture_output=True)
    ms = ferrite_median_ms(ferrite, lowered, [], threads, iters)
    return 2 * 512 * 1024 * 1024 / (ms * 1e6)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures"))
    ap.add_argument("--models", default="mobilenet_v2,tiny_gpt,tiny_transformer,digits_cnn",
                    help="comma-separated, or `all` for every model in the manifest")
    ap.add_argument("--variants", default="float")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--ferrite", default=str(ROOT / "target" / "release" / "ferrite"))
    ap.add_argument("--et-runner", help="bench/et_runner.sh's binary: adds load time and peak RSS")
    args = ap.parse_args()
    fixtures = Path(args.fixtures)
    ferrite = Path(args.ferrite)
    if not ferrite.exists():
        print(f"{ferrite} not found: run `cargo build --release` first", file=sys.stderr)
        return 2
    manifest = json.loads((fixtures / "manifest.json").read_text())
    entries = {f["name"]: f for f in manifest["fixtures"]}
    models = list(entries) if args.models == "all" else args.models.split(",")
    runtime = Runtime.get()
    rows, peaks, memory = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for name, variant in [(m, v) for m in models for v in args.variants.split(",")]:
            xnn_variant, source = VARIANTS[variant]
            entry = entries.get(name)
            if entry is None or xnn_variant not in entry["variants"] or source not in entry["variants"]:
                print(f"skipping {name}/{variant}: no {xnn_variant} or {source} variant", file=sys.stderr)
                continue
            d = fixtures / name
            input_files = [d / i["file"] for i in entry["inputs"]]
            inputs = [torch.from_numpy(np.load(f)) for f in input_files]
            lowered = Path(tmp) / f"{name}.{variant}.ferrite.pte"
            report = subprocess.run([str(ferrite), "lower", str(d / f"{source}.pte"), "-o", str(lowered)],
                                    check=True, capture_output=True, text=True).stdout
            left = lowered_calls_left(report)
            expected = [d / o for o in entry["variants"][source].get("outputs", [])]
            diff = max_diff(ferrite, lowered, input_files, expected, tmp)
            flops = model_flops(ferrite, lowered)
            for threads in [int(t) for t in args.threads.split(",")]:
                # XNNPACK takes its threads from ExecuTorch's pool; reset it before loading.
                if portable_lib._threadpool_get_thread_count() != threads:
                    portable_lib._unsafe_reset_threadpool(threads)
                method = runtime.load_program(str(d / f"{xnn_variant}.pte")).load_method("forward")
                et, fe = [], []
                for _ in range(args.rounds):
                    et.append(et_median_ms(method, inputs, args.iters))
                    fe.append(ferrite_median_ms(ferrite, lowered, input_files, threads, args.iters))
                e, f = statistics.median(et), statistics.median(fe)
                if threads not in peaks:
                    peaks[threads] = gemm_peak(ferrite, tmp, threads, args.iters)
                gflops = flops / (f * 1e6)
                rows.append((f"{name}/{variant}", threads, e, f, f / e, left, diff, gflops, 100 * gflops / peaks[threads]))
                if args.et_runner:
                    # Each in a fresh process, loading then running: what a deployed app holds.
                    x = et_runner(args.et_runner, d / f"{xnn_variant}.pte", threads, args.iters, input_files)
                    fb = ferrite_bench(ferrite, lowered, input_files, threads, args.iters)
                    memory.append((f"{name}/{variant}", threads, x["load_ms"], fb["load_ms"],
                                   x["peak_rss_kib"] / 1024, (fb.get("peak_rss_kib") or 0) / 1024))
    print("GEMM peak (GFLOP/s): " + ", ".join(f"{t} thread(s) {p:.1f}" for t, p in sorted(peaks.items())))
    print(f"{'model':<26} {'threads':>7} {'XNNPACK ms':>11} {'Ferrite ms':>11} {'Ferrite/XNNPACK':>16} {'left':>5} "
          f"{'max|diff|':>10} {'GFLOP/s':>8} {'% peak':>7}")
    for name, threads, e, f, r, left, diff, gflops, share in rows:
        print(f"{name:<26} {threads:>7} {e:>11.3f} {f:>11.3f} {r:>16.2f} {left:>5} {diff:>10.2g} {gflops:>8.1f} {share:>7.0f}")
    if memory:
        print(f"\n{'model':<26} {'threads':>7} {'XNNPACK load ms':>16} {'Ferrite load ms':>16} "
              f"{'XNNPACK peak MiB':>17} {'Ferrite peak MiB':>17}")
        for name, threads, el, fl, er, fr in memory:
            print(f"{name:<26} {threads:>7} {el:>16.1f} {fl:>16.1f} {er:>17.1f} {fr:>17.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
