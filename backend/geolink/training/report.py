"""The training report: JSON (all numbers), HTML (tables, confusion matrix, loss curve) and, when
matplotlib is installed (it comes with QGIS), a PNG figure of the confusion matrix and the curves."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Dict

import numpy as np

from ..atomic import atomic_output


def report_paths(package: Path) -> Dict[str, Path]:
    stem = package.with_suffix("")
    return {"report_json": Path(f"{stem}.report.json"), "report_html": Path(f"{stem}.report.html"),
            "report_png": Path(f"{stem}.report.png")}


def write_report(report: dict, package: Path) -> Dict[str, str]:
    """Write the report files beside the package; return {name: path} of those written."""
    paths = report_paths(Path(package))
    written = {}
    with atomic_output(paths["report_json"]) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    written["report_json"] = str(paths["report_json"])
    with atomic_output(paths["report_html"]) as tmp:
        tmp.write_text(render_html(report), encoding="utf-8")
    written["report_html"] = str(paths["report_html"])
    try:
        import matplotlib
    except ImportError:
        return written
    matplotlib.use("Agg", force=False)
    with atomic_output(paths["report_png"]) as tmp:
        render_png(report, tmp)
    written["report_png"] = str(paths["report_png"])
    return written


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_html(report: dict) -> str:
    info = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in report.get("summary", {}).items())
    hist = "".join(f"<tr><td>{h['epoch']}</td><td>{_fmt(h['loss'])}</td><td>{_fmt(h.get('val_mean_iou'))}</td>"
                   f"<td>{_fmt(h.get('val_balanced_accuracy'))}</td></tr>" for h in report.get("history", []))
    blocks = "".join(_scores_html(title, report[key], report["classes"]) for key, title in (
        ("test", "Test polygons (never used for training or model choice)"),
        ("validation", "Validation polygons (early stopping)")) if report.get(key))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>GeoLink fine-tuning report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}</style></head><body>
<h1>GeoLink fine-tuning report</h1><table>{info}</table>{blocks}
<h2>Training</h2><table><tr><th>epoch</th><th>loss</th><th>val mean IoU</th><th>val balanced acc.</th></tr>
{hist}</table></body></html>
"""


def _scores_html(title: str, m: dict, classes: list) -> str:
    names = [c["name"] for c in m["classes"]]
    colors = {c["name"]: c["color"] for c in classes}
    rows = "".join(
        f"<tr><td><span style='background:{colors.get(c['name'], '#ccc')}'>&nbsp;&nbsp;&nbsp;</span> "
        f"{html.escape(c['name'])}</td><td>{c['pixels']}</td><td>{_fmt(c['precision'])}</td>"
        f"<td>{_fmt(c['recall'])}</td><td>{_fmt(c['iou'])}</td></tr>" for c in m["classes"])
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{html.escape(n)}</th>" + "".join(
            f"<td style='background:rgba(31,119,180,{norm[i, j]:.2f})'>{int(cm[i, j])}</td>"
            for j in range(len(names))) + "</tr>" for i, n in enumerate(names))
    return f"""<h2>{html.escape(title)}: {m['pixels']} pixels</h2>
<p>Overall accuracy {_fmt(m['overall_accuracy'])}, balanced accuracy {_fmt(m['balanced_accuracy'])},
mean IoU {_fmt(m['mean_iou'])}.</p>
<table><tr><th>class</th><th>pixels</th><th>precision</th><th>recall</th><th>IoU</th></tr>{rows}</table>
<h3>Confusion matrix (rows: reference, columns: predicted)</h3><table><tr><th></th>{head}</tr>{body}</table>
"""


def render_png(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    key = "test" if report.get("test") else "validation"
    m = report[key]
    names = [c["name"] for c in m["classes"]]
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    ax1.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax1.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                     color="white" if norm[i, j] > 0.5 else "black")
    ax1.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax1.set_yticks(range(len(names)), names)
    ax1.set_xlabel("predicted")
    ax1.set_ylabel("reference")
    ax1.set_title(f"{key}: OA {_fmt(m['overall_accuracy'])}  bal. acc. {_fmt(m['balanced_accuracy'])}  "
                  f"mIoU {_fmt(m['mean_iou'])}")
    hist = report.get("history", [])
    if hist:
        epochs = [h["epoch"] for h in hist]
        ax2.plot(epochs, [h["loss"] for h in hist], label="training loss")
        val = [h.get("val_mean_iou") for h in hist]
        if any(v is not None for v in val):
            ax2.plot(epochs, [np.nan if v is None else v for v in val], label="validation mean IoU")
        ax2.set_xlabel("epoch")
        ax2.legend()
    ax2.set_title("training")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
