#!/usr/bin/env python3
"""Stock-ExecuTorch round trip: every fixture variant, rewritten by Ferrite's writer, must load in
ExecuTorch's own runtime and return exactly what the original file returns there (and, up to the
reference machine's float noise, the saved reference outputs).

Not part of CI (it needs the ExecuTorch pip runtime). Run through scripts/et_roundtrip.sh, which
builds the rewriter and passes its path:

    python et_roundtrip.py REWRITER FIXTURES_DIR WORK_DIR
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import executorch.kernels.quantized  # noqa: F401 - registers quantized_decomposed kernels
import torch
from executorch.runtime import Runtime


def main() -> int:
    rewriter, fixtures, work = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((fixtures / "manifest.json").read_text())
    runtime = Runtime.get()
    failures = 0
    rows = []
    for fx in manifest["fixtures"]:
        name = fx["name"]
        inputs = [torch.from_numpy(np.load(fixtures / name / i["file"])) for i in fx["inputs"]]
        for vname, variant in fx["variants"].items():
            src = fixtures / name / variant["file"]
            dst = work / f"{name}.{vname}.pte"
            subprocess.run([str(rewriter), str(src), str(dst)], check=True, capture_output=True)
            same_bytes = src.read_bytes() == dst.read_bytes()
            methods = {"forward": variant["outputs"]}
            methods.update(variant.get("method_outputs", {}))
            worst = 0.0
            try:
                original = runtime.load_program(str(src))
                program = runtime.load_program(str(dst))
                identical = True
                for mname, outs in methods.items():
                    want_here = original.load_method(mname).execute(inputs)
                    got = program.load_method(mname).execute(inputs)
                    for g, w, ref in zip(got, want_here, outs):
                        identical &= np.array_equal(g.numpy(), w.numpy())
                        want = np.load(fixtures / name / ref)
                        worst = max(worst, float(np.abs(g.numpy().astype(np.float64) - want.astype(np.float64)).max(initial=0.0)))
                status = ("ok" if identical else "DIFFERS from the original") + f" (max |diff| vs reference {worst:g})"
            except Exception as e:  # noqa: BLE001 - report every failure, keep going
                status = f"FAIL {e}"
            if not status.startswith("ok"):
                failures += 1
            rows.append((f"{name}/{vname}", "identical" if same_bytes else "rewritten", status))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<9}  {r[2]}")
    print(f"{len(rows) - failures}/{len(rows)} variants: rewritten file gives stock ExecuTorch the same outputs as the original")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
