"""Check curvature's figures with numpy alone (pip install numpy safetensors).

Usage, after `curvature train` wrote runs/X/model.safetensors:

    python3 examples/check_with_numpy.py runs/X/model.safetensors

It writes a random vector v, runs `curvature compute grad` and `compute hvp` on
the digits data (all rows, file order), and compares them with a gradient
written here in numpy (sigmoid hidden layers, softmax + mean cross-entropy +
(λ/2)·Σ‖W‖²) and with central differences of that gradient along v,
(g(θ+εv) − g(θ−εv)) / 2ε (PRML 5.91).
"""
import gzip, subprocess, sys, tempfile, os
import numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

model_path = sys.argv[1]
binary = os.environ.get("CURVATURE", "target/release/curvature")
with safe_open(model_path, "np") as f:
    meta = f.metadata()
assert meta["activations"].split(",")[:-1] == ["sigmoid"] * (len(meta["activations"].split(",")) - 1)
assert meta["loss"] == "ce", "this script writes the ce loss only"
lam = float(meta["l2"])
m = load_file(model_path)
L = len(meta["sizes"].split(",")) - 1
shapes = [(m[f"layers.{l}.weight"].shape, m[f"layers.{l}.bias"].shape) for l in range(L)]
theta = np.concatenate([np.concatenate([m[f"layers.{l}.weight"].ravel(), m[f"layers.{l}.bias"]]) for l in range(L)]).astype(np.float64)

rows = np.loadtxt(gzip.open("data/digits.csv.gz", "rt"), delimiter=",")
X, labels = rows[:, :64] / 16.0, rows[:, 64].astype(int)
T = np.eye(10)[labels]

def unpack(th):
    out, i = [], 0
    for (wo, wi), (b,) in shapes:
        W = th[i:i + wo * wi].reshape(wo, wi); i += wo * wi
        out.append((W, th[i:i + b])); i += b
    return out

def grad(th):
    layers, z, zs = unpack(th), X, [X]
    for l, (W, b) in enumerate(layers):
        a = z @ W.T + b
        z = 1 / (1 + np.exp(-a)) if l < L - 1 else a
        zs.append(z)
    a = zs[-1] - zs[-1].max(1, keepdims=True)
    p = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    delta = (p - T) / len(X)                      # mean over the batch
    g = []
    for l in reversed(range(L)):
        W, _ = layers[l]
        g = [(delta.T @ zs[l] + lam * W).ravel(), delta.sum(0)] + g
        if l > 0:
            delta = (delta @ W) * zs[l] * (1 - zs[l])
    return np.concatenate(g)

rng = np.random.default_rng(0)
v = rng.standard_normal(theta.size)
with tempfile.TemporaryDirectory() as d:
    save_file({"v": v}, f"{d}/v.safetensors")
    for q, extra in [("grad", []), ("hvp", ["--vectors", f"{d}/v.safetensors"])]:
        subprocess.run([binary, "compute", q, "--model", model_path, "--data", "digits", "--device", "cpu",
                        "--out", f"{d}/{q}.safetensors", *extra], check=True, stdout=subprocess.DEVNULL)
    ours_g = load_file(f"{d}/grad.safetensors")["grad"]
    ours_hv = load_file(f"{d}/hvp.safetensors")["hvp"]
eps = 1e-5
fd_hv = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)
print("gradient: max |ours − numpy| / max |numpy| =", np.abs(ours_g - grad(theta)).max() / np.abs(grad(theta)).max())
print("Hv:       max |ours − finite differences| / max |fd| =", np.abs(ours_hv - fd_hv).max() / np.abs(fd_hv).max())
