"""Fine-tuning task heads on labelled polygons: labels, windows, feature cache, loss, metrics, report."""
