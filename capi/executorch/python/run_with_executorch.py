#!/usr/bin/env python3
"""Runs a Ferrite-lowered program with ExecuTorch's Python runtime, through the FerriteBackend
plugin, and compares the outputs with `ferrite run`'s. Not run in CI (it needs torch: the full
`pip install executorch==1.5.1 torch`); the C++ route (scripts/capi-check.sh) is.

    python run_with_executorch.py PLUGIN.so MODEL.pte INPUT.npy [--expect OUTPUT_0.npy]

Loading the plugin with RTLD_GLOBAL before ExecuTorch's runtime registers FerriteBackend in the
registry `executorch.runtime` uses (both link the same libexecutorch.so).
"""
import argparse
import ctypes
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plugin")
    ap.add_argument("model")
    ap.add_argument("inputs", nargs="*")
    ap.add_argument("--expect", nargs="*", default=[], help="output_<i>.npy files to compare with, in order")
    ap.add_argument("--tolerance", type=float, default=0.0)
    args = ap.parse_args()

    plugin = ctypes.CDLL(args.plugin, mode=ctypes.RTLD_GLOBAL)
    status = plugin.ferrite_executorch_registration_status()
    if status != 0:
        print(f"FerriteBackend did not register (ExecuTorch error {status})", file=sys.stderr)
        return 1

    import torch
    from executorch.runtime import Runtime

    runtime = Runtime.get()
    if not runtime.backend_registry.is_available("FerriteBackend"):
        print("FerriteBackend is not in ExecuTorch's backend registry", file=sys.stderr)
        return 1
    method = runtime.load_program(args.model).load_method("forward")
    inputs = [torch.from_numpy(np.load(p)) for p in args.inputs]
    outputs = method.execute(inputs)
    worst = 0.0
    for i, out in enumerate(outputs):
        got = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
        line = f"output {i}: {got.dtype} {list(got.shape)}"
        if i < len(args.expect):
            want = np.load(args.expect[i])
            diff = np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.maximum(1.0, np.abs(want))
            d = float(diff.max()) if diff.size else 0.0
            worst = max(worst, d)
            line += f", largest difference from {args.expect[i]}: {d:g}"
        print(line)
    if worst > args.tolerance:
        print(f"MISMATCH: {worst:g} > {args.tolerance:g}", file=sys.stderr)
        return 1
    print("FerriteBackend ran the program through ExecuTorch's Python runtime; outputs match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
