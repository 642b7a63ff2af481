#!/usr/bin/env python3
"""int4-weight linears side by side: torchao's 8da4w on XNNPACK against Ferrite, same weights.

torchao's 8da4w scheme (int8 per-token dynamic activations, int4 weights in groups of 32) exists
in ExecuTorch only delegated to XNNPACK (`tiny_gpt_int4/8da4w_xnnpack` in the fixtures): torchao's
affine operators have no out variants. Its `quantized_decomposed` form (per-token choose /
quantize / dequantize, `dequantize_per_channel_group`) does serialize, and Ferrite lowers it to
its groupwise dense kernel. This script builds one model (`tiny_gpt_int4`'s architecture, or an
MLP of bigger linears), writes both programs from the same float weights —
`8da4w_xnnpack.pte` with torchao + XnnpackPartitioner, `8da4w.pte` in the decomposed form with
the same int4 values and scales — then prints the SQNR of each against the float model and their
median latencies at 1 and 2 threads (alternating rounds, as `compare.py` does).

Not part of CI. Needs the ExecuTorch venv of `compare.py` plus `../shared/fixtures/generate.py`
(for the model definitions and torchao's configuration):

    cargo build --release
    /path/to/venv/bin/python bench/int4.py [--model tiny_gpt|mlp] [--rounds 5]
"""
import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def replace_linears(model, make):
    for name, child in list(model.named_children()):
        if isinstance(child, torch.nn.Linear):
            setattr(model, name, make(child))
        else:
            replace_linears(child, make)
    return model


class Mlp(torch.nn.Module):
    def __init__(self, d=512, hidden=2048, layers=2):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, d))
            for _ in range(layers)
        )

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x


def sqnr(reference, x):
    reference, x = np.asarray(reference, np.float64), np.asarray(x, np.float64)
    return 10 * np.log10((reference**2).sum() / ((reference - x) ** 2).sum())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny_gpt", choices=["tiny_gpt", "mlp"])
    ap.add_argument("--fixtures", default=str(ROOT.parent / "shared" / "fixtures"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--ferrite", default=str(ROOT / "target" / "release" / "ferrite"))
    args = ap.parse_args()

    fixtures = load_module("fixtures_generate", Path(args.fixtures) / "generate.py")
    groupwise = load_module("groupwise_generate", ROOT / "tests" / "fixtures" / "groupwise" / "generate.py")
    from compare import et_median_ms, ferrite_median_ms
    from executorch.exir import to_edge
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    torch.manual_seed(0)
    if args.model == "tiny_gpt":
        model, inputs = fixtures.TinyGPT().eval(), (torch.randint(0, 256, (1, 16)),)
    else:
        model, inputs = Mlp().eval(), (torch.randn(8, 512),)
    with torch.no_grad():
        float_out = model(*inputs).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        xnn = fixtures.lower(torch.export.export(fixtures.quantize_8da4w(model, inputs), inputs), partition=True)
        (tmp / "8da4w_xnnpack.pte").write_bytes(xnn.buffer)
        import copy

        decomposed = replace_linears(copy.deepcopy(model), groupwise.Linear8da4w).eval()
        program = to_edge(torch.export.export(decomposed, inputs)).to_executorch()
        (tmp / "8da4w.pte").write_bytes(program.buffer)
        input_files = []
        for i, t in enumerate(inputs):
            input_files.append(tmp / f"input_{i}.npy")
            np.save(input_files[-1], t.numpy())
        lowered = tmp / "8da4w.ferrite.pte"
        subprocess.run([args.ferrite, "lower", str(tmp / "8da4w.pte"), "-o", str(lowered)], check=True)
        out_dir = tmp / "ferrite_out"
        subprocess.run([args.ferrite, "run", str(lowered), "-o", str(out_dir)] + sum([["-i", str(f)] for f in input_files], []),
                       check=True, capture_output=True)
        ferrite_out = np.load(out_dir / "output_0.npy")
        runtime = Runtime.get()
        xnn_out = runtime.load_program(str(tmp / "8da4w_xnnpack.pte")).load_method("forward").execute(list(inputs))[0]
        with torch.no_grad():
            eager_q = decomposed(*inputs).numpy()
        print(f"SQNR against the float model ({args.model}): Ferrite lowered {sqnr(float_out, ferrite_out):.2f} dB, "
              f"XNNPACK 8da4w {sqnr(float_out, xnn_out.numpy()):.2f} dB, eager decomposed {sqnr(float_out, eager_q):.2f} dB")

        print(f"{'model':<16} {'threads':>7} {'XNNPACK ms':>11} {'Ferrite ms':>11} {'Ferrite/XNNPACK':>16}")
        for threads in [int(t) for t in args.threads.split(",")]:
            if portable_lib._threadpool_get_thread_count() != threads:
                portable_lib._unsafe_reset_threadpool(threads)
            method = runtime.load_program(str(tmp / "8da4w_xnnpack.pte")).load_method("forward")
            et, fe = [], []
            for _ in range(args.rounds):
                et.append(et_median_ms(method, list(inputs), args.iters))
                fe.append(ferrite_median_ms(args.ferrite, lowered, input_files, threads, args.iters))
            e, f = statistics.median(et), statistics.median(fe)
            print(f"{args.model + '/8da4w':<16} {threads:>7} {e:>11.3f} {f:>11.3f} {f / e:>16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
