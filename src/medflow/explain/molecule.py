"""Explanations of graph models: atom attributions by Integrated Gradients, drawn on the 2-D structure.

Integrated Gradients (Sundararajan et al. 2017) over the three inputs of a `MolGraphs` batch at once (atom
features, bond features, molecule descriptors), from an all-zero baseline, by the trapezoid rule. Each atom
gets its own features' attribution plus half of each bond touching it (a directed bond's share goes to its two
atoms), so the atoms' and descriptors' attributions add up to f(molecule) - f(baseline), which the tests check.
The graph batch cannot be expanded along the batch axis as Captum's IG does (its index tensors point into
one batch), so the path is walked here, one forward and backward per step.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch

__all__ = ["atom_attributions", "explain_molecules", "draw_attributions"]


def atom_attributions(est: Any, x: Any, idx: np.ndarray, steps: int = 32) -> dict[str, Any]:
    """Per-molecule atom attributions (list of arrays), descriptor attributions (n x d), the model outputs and
    the baseline outputs for molecules `idx` of `x` (the explained output: the logit / value / risk; multiclass:
    the predicted class)."""
    module = est.explain_module().eval()
    b = x.batch(np.asarray(idx))
    keys = ("atoms", "bonds", "descriptors")
    inputs = {k: b[k].float() for k in keys}
    grads = {k: torch.zeros_like(v) for k, v in inputs.items()}
    with torch.no_grad():
        full = module(b)
    target = full.argmax(dim=1) if full.ndim == 2 and full.shape[1] > 1 else None

    def pick(out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 1:
            return out
        return out[torch.arange(len(out)), target] if target is not None else out[:, 0]

    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] = 0.5 / steps  # trapezoid rule
    base_out = None
    for a, w in zip(alphas, weights, strict=True):
        scaled = {k: (v * float(a)).requires_grad_(True) for k, v in inputs.items()}
        out = pick(module({**b, **scaled}))
        if a == 0.0:
            base_out = out.detach()
        g = torch.autograd.grad(out.sum(), [scaled[k] for k in keys], allow_unused=True)
        for k, gk in zip(keys, g, strict=True):
            if gk is not None:
                grads[k] += float(w) * gk
    atom, bond = ((inputs[k] * grads[k]).sum(dim=-1).detach().numpy() for k in ("atoms", "bonds"))
    desc = (inputs["descriptors"] * grads["descriptors"]).detach().numpy()
    np.add.at(atom, b["src"].numpy(), 0.5 * bond)
    np.add.at(atom, b["dst"].numpy(), 0.5 * bond)
    starts = np.concatenate([[0], np.cumsum(b["n_atoms"].numpy())])
    return {"atoms": [atom[starts[i]:starts[i + 1]] for i in range(len(idx))], "descriptors": desc,
            "output": pick(full).numpy(), "baseline": base_out.numpy()}


def draw_attributions(smiles: list[str], weights: list[np.ndarray], titles: list[str], cols: int = 3) -> str:
    """Structures with each atom shaded by its attribution (red raises the output, blue lowers it), as one
    base64 PNG grid."""
    from PIL import Image
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    tiles = []
    for s, w, title in zip(smiles, weights, titles, strict=True):
        mol = Chem.MolFromSmiles(s)
        d = rdMolDraw2D.MolDraw2DCairo(300, 260)
        top = float(np.abs(w).max()) or 1.0
        colors = {i: ((1.0, 1 - v / top, 1 - v / top) if v >= 0 else (1 + v / top, 1 + v / top, 1.0))
                  for i, v in enumerate(map(float, w))}
        d.drawOptions().legendFontSize = 14
        rdMolDraw2D.PrepareAndDrawMolecule(d, mol, legend=title[:60], highlightAtoms=list(colors),
                                           highlightAtomColors=colors, highlightBonds=[])
        d.FinishDrawing()
        tiles.append(Image.open(io.BytesIO(d.GetDrawingText())).convert("RGB"))
    rows = max(1, (len(tiles) + cols - 1) // cols)
    grid = Image.new("RGB", (300 * cols, 260 * rows), "white")
    for k, t in enumerate(tiles):
        grid.paste(t, (300 * (k % cols), 260 * (k // cols)))
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def explain_molecules(est: Any, x: Any, y: np.ndarray, smiles: list[str], max_records: int, examples: int,
                      top: int = 15) -> dict[str, Any]:
    """explanations.json entry of a graph model: example molecules with atom attributions drawn, and the mean
    |attribution| of each descriptor over up to `max_records` test molecules."""
    from medflow.features.molecule import descriptor_names

    n = min(max_records, len(x))
    pred = np.asarray(est.predict(x))[:n]
    y = np.asarray(y[:n])
    if est.task.kind == "regression":
        err = np.abs(pred - y)
        order = np.argsort(err)
        rows = sorted({int(order[0]), int(order[len(order) // 2]), int(order[-1])})[:examples]
        label = [f"true {y[i]:.2f}, predicted {pred[i]:.2f}" for i in range(n)]
    else:
        p = pred if pred.ndim == 1 else pred.max(axis=1)
        rows = [int(i) for i in np.argsort(-p)[: max(1, examples // 2)]] + \
               [int(i) for i in np.argsort(p)[: max(1, examples - examples // 2)]]
        rows = list(dict.fromkeys(rows))
        label = [f"true {y[i]}, score {p[i]:.2f}" for i in range(n)]
    attr = atom_attributions(est, x, np.arange(n))
    names = descriptor_names()
    net = est.module.members[0] if hasattr(est.module, "members") else est.module  # an ensemble: its members'
    uses_desc = bool(getattr(net, "use_descriptors", False))
    mean_abs = np.abs(attr["descriptors"]).mean(axis=0) if uses_desc else np.zeros(len(names))
    order = np.argsort(-mean_abs)[:top] if uses_desc else []
    shown = [{"row": i, "smiles": smiles[i], "label": label[i],
              "atoms": [round(float(v), 5) for v in attr["atoms"][i]],
              "atom_total": float(attr["atoms"][i].sum()), "descriptor_total": float(attr["descriptors"][i].sum()),
              "output": float(attr["output"][i]), "baseline": float(attr["baseline"][i])} for i in rows]
    return {"method": "atom_integrated_gradients", "examples": shown,
            "mean_abs_attribution": {names[j]: float(mean_abs[j]) for j in order},
            "figure": draw_attributions([e["smiles"] for e in shown], [np.array(e["atoms"]) for e in shown],
                                        [f"{e['label']}" for e in shown])}

