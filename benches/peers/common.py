"""Shared helpers for the peer scripts: the exported splits, curvature's model files, the
thread limit, and a median that says what it is a median of."""

import json
import os
import platform
import struct
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
EXPORT = TARGET / "release" / "examples" / "export_split"


def limit_threads(n):
    """Limit BLAS/OpenMP pools to n threads (threadpoolctl), for numpy/scipy/sklearn."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def export_split(data, seed, out_dir, test_fraction=None, validation_fraction=None):
    """Runs `examples/export_split` (built with `cargo build --release --example export_split`)
    and returns the directory it wrote."""
    out_dir = Path(out_dir)
    if (out_dir / "split.json").is_file():
        meta = json.loads((out_dir / "split.json").read_text())
        if meta["seed"] == seed and meta["data"] == data:
            return out_dir
    cmd = [str(EXPORT), data, str(out_dir), f"--seed={seed}"]
    if test_fraction is not None:
        cmd.append(f"--test-fraction={test_fraction}")
    if validation_fraction is not None:
        cmd.append(f"--validation-fraction={validation_fraction}")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out_dir


def load_split(split_dir):
    """{part: (x float32 (N, D), y int64 (N,))} for every part in the directory, and its
    split.json."""
    split_dir = Path(split_dir)
    meta = json.loads((split_dir / "split.json").read_text())
    parts = {}
    for part in ("train", "val", "trainval", "test"):
        x = split_dir / f"x_{part}.npy"
        if x.is_file():
            parts[part] = (np.load(x), np.load(split_dir / f"y_{part}.npy"))
    return parts, meta


def load_safetensors(path):
    """{name: array} and the metadata of a safetensors file (no `safetensors` package needed)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    dtypes = {"F32": np.float32, "F64": np.float64}
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        tensors[name] = np.frombuffer(body[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors, meta


def forward(tensors, meta, x):
    """Class probabilities of a curvature model on x, in f64 (hidden activations from the
    model's metadata; sigmoid and tanh handled, the output a softmax)."""
    acts = meta["activations"].split(",")
    a = x.astype(np.float64)
    for l, act in enumerate(acts):
        w = tensors[f"layers.{l}.weight"].astype(np.float64)
        b = tensors[f"layers.{l}.bias"].astype(np.float64)
        z = a @ w.T + b
        if act == "sigmoid":
            a = 1.0 / (1.0 + np.exp(-z))
        elif act == "tanh":
            a = np.tanh(z)
        elif act == "relu":
            a = np.maximum(z, 0.0)
        elif act == "softmax":
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            a = e / e.sum(axis=1, keepdims=True)
        else:
            raise ValueError(f"activation {act} not handled here")
    return a


def ce_loss(p, y, tensors=None, l2=0.0):
    """Mean cross-entropy, plus (l2/2)·Σ‖W‖² over the weights (not biases) when given."""
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    if tensors is not None and l2:
        loss += 0.5 * l2 * sum(
            float(np.sum(v.astype(np.float64) ** 2)) for k, v in tensors.items() if k.endswith("weight")
        )
    return loss


def median(xs):
    return float(np.median(np.asarray(xs, dtype=float)))


def machine():
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus_visible": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }
