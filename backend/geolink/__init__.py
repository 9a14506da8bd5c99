"""GeoLink backend."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """`geolink.load_model` is models.load_model, imported on first use so that `import geolink` stays free of torch."""
    if name == "load_model":
        from .models import load_model

        return load_model
    raise AttributeError(f"module 'geolink' has no attribute {name!r}")
