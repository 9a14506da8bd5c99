"""Scores from a confusion matrix: per-class precision, recall, IoU; overall and balanced accuracy."""

from __future__ import annotations

from typing import List, Sequence

import numpy as np


def confusion(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[n, n] counts, rows = reference class, columns = predicted class; negative truth is ignored."""
    truth = np.asarray(truth).reshape(-1)
    pred = np.asarray(pred).reshape(-1)
    keep = truth >= 0
    idx = truth[keep].astype(np.int64) * n_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores(cm: np.ndarray, names: Sequence[str]) -> dict:
    """Metrics of a confusion matrix. Means are over the classes with reference pixels."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    ref, predicted = cm.sum(1), cm.sum(0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, ref)
    iou = _ratio(tp, ref + predicted - tp)
    present = ref > 0
    total = cm.sum()
    per_class: List[dict] = [
        {"name": n, "pixels": int(ref[i]), "precision": _num(precision[i]), "recall": _num(recall[i]),
         "iou": _num(iou[i])} for i, n in enumerate(names)]
    return {
        "overall_accuracy": _num(tp.sum() / total) if total else None,
        "balanced_accuracy": _num(np.nanmean(recall[present])) if present.any() else None,
        "mean_iou": _num(iou[present].mean()) if present.any() else None,
        "pixels": int(total),
        "classes": per_class,
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


def _num(value: float):
    return None if value is None or not np.isfinite(value) else round(float(value), 4)
