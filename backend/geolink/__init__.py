"""GeoLink backend."""
__version__ = "0.1.0"


def load_model(path, layers=()):
    """An official GeoLink checkpoint (.pth) or a model package (.safetensors) as a torch module (eval mode).

    Imported lazily so that `import geolink` stays free of torch.
    """
    from .models import load_model as _load

    return _load(path, layers)
