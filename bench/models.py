#!/usr/bin/env python3
"""Exports the model families users run most, for `compare.py`: each as an undelegated program
(`portable.pte`, what `ferrite lower` takes) and an XNNPACK one (`xnnpack.pte`), with its input
and ExecuTorch's own outputs, in the layout and manifest format of `../shared/fixtures` — so
`compare.py --fixtures DIR` times them and `ferrite run` output can be checked against them.

Random weights (seed 0; batch norms settled on random data so activations keep their scale):
the speed of a network does not depend on its weights.

| name | family | what it exercises |
|---|---|---|
| resnet18 | torchvision resnet18, 224×224 | 3×3 stride-1 convolutions, residual adds |
| mobilenet_v3_small | torchvision, 224×224 | hard-swish, squeeze-excitation (mean, hardsigmoid, mul) |
| efficientnet_b0 | torchvision, 224×224 | SiLU, squeeze-excitation, depthwise 5×5 |
| vit_tiny | ViT-Tiny-shaped encoder (patch 16, d 192, 3 heads, 12 layers), 224×224 | attention at seq 197 |
| bert_128, bert_512 | BERT-mini-shaped encoder (d 256, 4 heads, 4 layers) at seq 128 and 512 | long-sequence attention |
| audio_cnn | M5-style 1-D conv net on 1 s of 16 kHz audio | conv1d, max_pool1d |
| unet | small U-Net, 128×128 | upsampling, concatenation |

Not part of CI (it needs the ExecuTorch venv of `compare.py`, ~1 minute a model):

    /path/to/venv/bin/python bench/models.py target/bench-models [--only resnet18 unet]
    /path/to/venv/bin/python bench/compare.py --fixtures target/bench-models --models resnet18,unet
"""
import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def load_generate(shared):
    """`../shared/fixtures/generate.py`: its `emit` writes a model's programs, inputs and outputs."""
    path = Path(shared) / "generate.py"
    spec = importlib.util.spec_from_file_location("generate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Encoder(nn.Module):
    """Pre-norm transformer encoder (bidirectional attention), the shape of ViT and BERT."""

    def __init__(self, d, heads, layers, mlp=4):
        super().__init__()
        self.heads = heads
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"ln1": nn.LayerNorm(d), "qkv": nn.Linear(d, 3 * d), "proj": nn.Linear(d, d),
                           "ln2": nn.LayerNorm(d), "fc": nn.Linear(d, mlp * d), "out": nn.Linear(mlp * d, d)})
            for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        b, t, d = x.shape
        for blk in self.blocks:
            q, k, v = blk["qkv"](blk["ln1"](x)).split(d, dim=-1)
            q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v)
            x = x + blk["proj"](a.transpose(1, 2).reshape(b, t, d))
            x = x + blk["out"](F.gelu(blk["fc"](blk["ln2"](x))))
        return self.ln(x)


class ViT(nn.Module):
    def __init__(self, d=192, heads=3, layers=12, patch=16, image=224, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, d) * 0.02)
        self.enc = Encoder(d, heads, layers)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.enc(x)[:, 0])


class Bert(nn.Module):
    def __init__(self, seq, vocab=8192, d=256, heads=4, layers=4):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Parameter(torch.randn(1, seq, d) * 0.02)
        self.enc = Encoder(d, heads, layers)

    def forward(self, ids):
        return self.enc(self.tok(ids) + self.pos)


class AudioCNN(nn.Module):
    """M5 (Dai et al. 2017): 1-D convolutions straight on the waveform."""

    def __init__(self, classes=35, width=64):
        super().__init__()
        chans = [1, width, width, 2 * width, 2 * width]
        self.convs = nn.ModuleList(
            nn.Conv1d(chans[i], chans[i + 1], 80 if i == 0 else 3, stride=16 if i == 0 else 1, padding=0 if i == 0 else 1)
            for i in range(4))
        self.bns = nn.ModuleList(nn.BatchNorm1d(c) for c in chans[1:])
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns):
            x = F.max_pool1d(F.relu(bn(conv(x))), 4)
        return self.fc(x.mean(dim=-1))


class UNet(nn.Module):
    def __init__(self, chans=(16, 32, 64, 128), classes=2):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        self.down = nn.ModuleList(block(i, o) for i, o in zip((3,) + chans[:-1], chans))
        self.up = nn.ModuleList(block(chans[i] + chans[i + 1], chans[i]) for i in reversed(range(len(chans) - 1)))
        self.head = nn.Conv2d(chans[0], classes, 1)

    def forward(self, x):
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for blk, skip in zip(self.up, reversed(skips[:-1])):
            x = blk(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear"), skip], dim=1))
        return self.head(x)


def build(gen, out, only):
    import torchvision
    torch.manual_seed(0)
    variants = ["portable", "xnnpack"]
    entries = []

    def want(n):
        return not only or n in only

    def image_net(name, model, size=224, note=""):
        m = gen.settle_batchnorm(model, lambda: torch.randn(4, 3, size, size))
        entries.append(gen.emit(out, name, m, (torch.randn(1, 3, size, size),), variants, note=note))

    if want("resnet18"):
        image_net("resnet18", torchvision.models.resnet18(weights=None), note="torchvision resnet18, random init")
    if want("mobilenet_v3_small"):
        image_net("mobilenet_v3_small", torchvision.models.mobilenet_v3_small(weights=None),
                  note="torchvision mobilenet_v3_small, random init")
    if want("efficientnet_b0"):
        image_net("efficientnet_b0", torchvision.models.efficientnet_b0(weights=None),
                  note="torchvision efficientnet_b0, random init")
    if want("vit_tiny"):
        entries.append(gen.emit(out, "vit_tiny", ViT().eval(), (torch.randn(1, 3, 224, 224),), variants,
                                note="ViT-Tiny-shaped encoder, random init"))
    for seq in (128, 512):
        if want(f"bert_{seq}"):
            entries.append(gen.emit(out, f"bert_{seq}", Bert(seq).eval(), (torch.randint(0, 8192, (1, seq)),),
                                    variants, note=f"BERT-mini-shaped encoder at sequence length {seq}, random init"))
    if want("audio_cnn"):
        m = gen.settle_batchnorm(AudioCNN(), lambda: torch.randn(4, 1, 16000))
        entries.append(gen.emit(out, "audio_cnn", m, (torch.randn(1, 1, 16000),), variants,
                                note="M5-style 1-D conv net on 16000 samples, random init"))
    if want("unet"):
        m = gen.settle_batchnorm(UNet(), lambda: torch.randn(4, 3, 128, 128))
        entries.append(gen.emit(out, "unet", m, (torch.randn(1, 3, 128, 128),), variants,
                                note="small U-Net (16-128 channels, bilinear upsampling), random init"))
    return entries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "fixtures"))
    a = ap.parse_args()
    gen = load_generate(a.shared)
    os.makedirs(a.out, exist_ok=True)
    entries = build(gen, a.out, a.only)
    mpath = os.path.join(a.out, "manifest.json")
    old = json.load(open(mpath)) if os.path.exists(mpath) else {"fixtures": []}
    keep = [e for e in old["fixtures"] if e["name"] not in {x["name"] for x in entries}]
    from executorch.version import __version__ as et_version
    json.dump({"generator": "bench/models.py", "executorch": et_version, "torch": torch.__version__,
               "fixtures": keep + entries}, open(mpath, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
