#!/usr/bin/env python3
"""Ferrite-quantized programs in stock ExecuTorch: every float fixture (the `portable` variant),
quantized by `ferrite quantize --emit qdq`, must load in ExecuTorch's own runtime and return what
Ferrite's portable kernels return for the same file (up to float summation order), and stay
close to eager PyTorch.

Static int8 calibrates on the fixture's calibration.npy, or on its saved inputs (one sample)
when it has none. int4 schemes are skipped: ExecuTorch has no kernel for
dequantize_per_channel_group. Not part of CI; run through scripts/et_quantized.sh.

    python et_quantized.py FERRITE FIXTURES_DIR WORK_DIR
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import executorch.kernels.quantized  # noqa: F401 - registers quantized_decomposed kernels
import torch
from executorch.runtime import Runtime

SCHEMES = ["static-int8", "dynamic-int8", "int8-weight-only", "fp16-weights"]


def sqnr(ref, x):
    noise = ((ref - x) ** 2).sum()
    return float("inf") if noise == 0 else 10 * np.log10((ref ** 2).sum() / noise)


def main() -> int:
    ferrite, fixtures, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((fixtures / "manifest.json").read_text())
    runtime = Runtime.get()
    failures, rows = 0, []
    for fx in manifest["fixtures"]:
        name = fx["name"]
        if "portable" not in fx["variants"] or len(fx["inputs"]) != 1:
            continue
        d = fixtures / name
        inp = d / fx["inputs"][0]["file"]
        calib = d / "calibration.npy"
        if not calib.exists():
            calib = work / f"{name}.calibration.npy"
            np.save(calib, np.load(inp)[None])
        eager = d / "eager.output_0.npy"
        for scheme in SCHEMES:
            out = work / f"{name}.{scheme}.pte"
            cmd = [str(ferrite), "quantize", str(d / "portable.pte"), "-o", str(out), "--emit", "qdq", "--scheme", scheme]
            if scheme == "static-int8":
                cmd += ["--calibration", str(calib)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                errors = [line for line in r.stderr.splitlines() if line.startswith("error")] or r.stderr.splitlines()[-1:]
                rows.append((f"{name}/{scheme}", f"quantize failed: {' '.join(errors)}"))
                failures += 1
                continue
            odir = work / f"{name}.{scheme}.out"
            subprocess.run([str(ferrite), "run", str(out), "-i", str(inp), "-o", str(odir)], check=True, capture_output=True)
            ours = np.load(odir / "output_0.npy")
            try:
                got = runtime.load_program(str(out)).load_method("forward").execute([torch.from_numpy(np.load(inp))])[0].numpy()
                diff = float(np.abs(got.astype(np.float64) - ours.astype(np.float64)).max(initial=0.0))
                vs_eager = sqnr(np.load(eager).astype(np.float64), got.astype(np.float64)) if eager.exists() else float("nan")
                ok = diff <= 1e-5 * max(1.0, float(np.abs(ours).max(initial=0.0)))
                status = ("ok" if ok else "DIFFERS") + f"  max |ExecuTorch - Ferrite| {diff:g}  SQNR vs eager {vs_eager:.2f} dB"
                failures += 0 if ok else 1
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                status, failures = f"FAIL {e}", failures + 1
            rows.append((f"{name}/{scheme}", status))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]}")
    print(f"{len(rows) - failures}/{len(rows)} quantized programs run in stock ExecuTorch as in Ferrite")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
