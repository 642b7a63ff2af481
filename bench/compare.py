#!/usr/bin/env python3
"""Side by side: ExecuTorch + XNNPACK against Ferrite, same model, same machine, one run.

For each model and variant it times ExecuTorch's runtime on the fixture's XNNPACK program (in
this process, through the pip runtime) and Ferrite on the same model's undelegated program
lowered by `ferrite lower` (through `ferrite bench --json`), alternating rounds so both see the
same machine state, at 1 and 2 threads. Variants: `float` (`xnnpack.pte` against
`portable.pte`), `q8` (`q8_xnnpack.pte` against `q8.pte`), `qd8` (`qd8_xnnpack.pte` against
`qd8.pte`); a model without the variant is skipped. It prints median latencies and the ratio Ferrite/XNNPACK
(below 1.0: Ferrite is faster).

Not part of CI. Needs a venv with `pip install executorch==1.5.1 torch==2.14.1 numpy`:

    cargo build --release
    /path/to/venv/bin/python bench/compare.py [--fixtures ../shared/fixtures] [--models mobilenet_v2,tiny_gpt] [--variants float,q8]
"""
import argparse
import json
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


def ferrite_median_ms(ferrite, pte, inputs, threads, iters):
    cmd = [str(ferrite), "bench", str(pte), "--json", "--threads", str(threads), "--warmup", "3", "--iters", str(iters)]
    for i in inputs:
        cmd += ["-i", str(i)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_ms"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures"))
    ap.add_argument("--models", default="mobilenet_v2,tiny_gpt,tiny_transformer,digits_cnn")
    ap.add_argument("--variants", default="float")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--ferrite", default=str(ROOT / "target" / "release" / "ferrite"))
    args = ap.parse_args()
    fixtures = Path(args.fixtures)
    ferrite = Path(args.ferrite)
    if not ferrite.exists():
        print(f"{ferrite} not found: run `cargo build --release` first", file=sys.stderr)
        return 2
    manifest = json.loads((fixtures / "manifest.json").read_text())
    entries = {f["name"]: f for f in manifest["fixtures"]}
    runtime = Runtime.get()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, variant in [(m, v) for m in args.models.split(",") for v in args.variants.split(",")]:
            xnn_variant, source = VARIANTS[variant]
            entry = entries.get(name)
            if entry is None or xnn_variant not in entry["variants"] or source not in entry["variants"]:
                print(f"skipping {name}/{variant}: no {xnn_variant} or {source} variant", file=sys.stderr)
                continue
            d = fixtures / name
            input_files = [d / i["file"] for i in entry["inputs"]]
            inputs = [torch.from_numpy(np.load(f)) for f in input_files]
            lowered = Path(tmp) / f"{name}.{variant}.ferrite.pte"
            subprocess.run([str(ferrite), "lower", str(d / f"{source}.pte"), "-o", str(lowered)], check=True, capture_output=True)
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
                rows.append((f"{name}/{variant}", threads, e, f, f / e))
    print(f"{'model':<24} {'threads':>7} {'XNNPACK ms':>11} {'Ferrite ms':>11} {'Ferrite/XNNPACK':>16}")
    for name, threads, e, f, r in rows:
        print(f"{name:<24} {threads:>7} {e:>11.3f} {f:>11.3f} {r:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
