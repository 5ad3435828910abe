"""The generator run's HTML page: what it learned from, the sample's metrics with 95% intervals, property
distributions against the training set, steering rounds, and drawn examples. Generated molecules are labelled as
generated, never as measured."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medflow.report.elements import ci, escape, html_table, img

__all__ = ["generator_report", "metric_rows"]

_NAMES = {"validity": "validity (valid / sampled)", "uniqueness": "uniqueness (distinct / valid)",
          "novelty": "novelty (not in training / distinct)",
          "scaffold_novelty": "scaffold novelty (new Bemis-Murcko scaffolds / scaffolds)",
          "internal_diversity": "internal diversity (1 - mean Tanimoto, Morgan r=2)"}


def metric_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """(measure, value with 95% CI, n) rows, as HTML cells."""
    return [[escape(label), ci(metrics[k]), str(metrics[k]["n"])] for k, label in _NAMES.items()]


def _property_plot(frame: pd.DataFrame, training: list[str]) -> str:
    from medflow.molgen.metrics import properties
    from medflow.report.plots import _encode, _figure

    gen = frame[frame["valid"] & ~frame["duplicate"]]
    train = properties(training)
    plt, fig, ax = _figure(10.0, 3.0)
    fig.clf()
    for i, (k, label) in enumerate((("qed", "QED"), ("logp", "Crippen logP"), ("mw", "molecular weight"))):
        a = fig.add_subplot(1, 3, i + 1)
        both = np.concatenate([train[k], gen[k].to_numpy()])
        bins = np.linspace(np.nanpercentile(both, 0.5), np.nanpercentile(both, 99.5), 30)
        a.hist(train[k], bins=bins, density=True, alpha=0.5, label="training", color="#4c72b0")
        a.hist(gen[k], bins=bins, density=True, alpha=0.5, label="generated", color="#dd8452")
        a.set(xlabel=label, yticks=[])
        if i == 0:
            a.legend(fontsize=8)
    return _encode(plt, fig)


def generator_report(manifest: dict[str, Any], metrics: dict[str, Any], frame: pd.DataFrame,
                     training: list[str]) -> str:
    from medflow.explain.molecule import draw_attributions

    props = metrics.get("properties", {})
    prop_rows = [[k, f"{v['training_mean']:.2f} &plusmn; {v['training_sd']:.2f}",
                  f"{v['generated_mean']:.2f} &plusmn; {v['generated_sd']:.2f}", f"{v['wasserstein']:.3f}",
                  f"{v['wasserstein_training_halves']:.3f}"] for k, v in props.items()]
    steer = ""
    if "steering" in metrics:
        s = metrics["steering"]
        steer = (f"<h2>Steering</h2><p>Hill-climbing toward {'high' if s['goal'] == 'max' else 'low'} scores of "
                 f"run <code>{escape(s['run'])}</code>: each round fine-tunes on the best {s['keep']:.0%} of the "
                 "round's distinct valid molecules. Round 0 is the generator before steering.</p>"
                 + html_table(["round", "valid", "distinct", "mean score", "best decile's mean score"],
                              [[str(h["round"]), f"{h['valid']:.3f}", str(h["distinct"]), f"{h['mean_score']:.3f}",
                                f"{h['best_decile_score']:.3f}"] for h in s["history"]]))
    novel = frame[frame["novel"] & ~frame["duplicate"]].head(9)
    from rdkit import Chem

    blank = [np.zeros(Chem.MolFromSmiles(s).GetNumAtoms()) for s in novel["canonical_smiles"]]  # no shading
    grid = img(draw_attributions(novel["canonical_smiles"].tolist(), blank,
                                 [f"QED {q:.2f}, logP {lp:.1f}" for q, lp in zip(novel["qed"], novel["logp"],
                                                                                  strict=True)]),
               "generated molecules") if len(novel) else "<p>No novel valid molecules in this sample.</p>"
    banner = ("<div class='banner'>GENERATED MOLECULES: proposed by a model, not measured; properties are "
              "computed, not experimental</div>")
    synthetic = " The training molecules were themselves from a SYNTHETIC set." if manifest.get(
        "source_synthetic") else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{escape(manifest['name'])}: molecule
generator</title><style>body{{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
.muted{{color:#777}}.banner{{background:#6a1b9a;color:#fff;padding:.6rem 1rem;font-weight:bold}}</style></head>
<body>{banner}
<h1>{escape(manifest['name'])}: SMILES language model</h1>
<p>A {manifest['config']['generator']['layers']}-layer {manifest['config']['generator']['cell'].upper()}
({manifest['config']['generator']['hidden']} units) trained on {manifest['training_molecules']} distinct molecules
of <code>{escape(manifest['source'])}</code> ({manifest['training']['sequences']} SMILES with randomized forms;
{manifest['training']['skipped']} molecules not tokenizable; {manifest['invalid_left_out']} invalid rows left out)
in {manifest['fit_seconds']:.0f} s, seed {manifest['seed']}.{synthetic}</p>
<h2>Sample of {metrics['sampled']}</h2>
{html_table(["measure", "value (95% CI)", "n"], metric_rows(metrics))}
<p class="muted">Training set's own internal diversity: {metrics['training_internal_diversity']:.3f}. Intervals:
Wilson for shares, bootstrap over molecules for diversity.</p>
<h2>Properties, distinct valid molecules against training</h2>
{html_table(["property", "training mean &plusmn; sd", "generated mean &plusmn; sd", "Wasserstein distance",
             "distance between two halves of training"], prop_rows)}
{img(_property_plot(frame, training), "property distributions") if props else ""}
{steer}
<h2>Examples (novel, valid)</h2>{grid}
</body></html>"""
