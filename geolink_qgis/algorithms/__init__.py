"""One module per Processing algorithm; ALGORITHMS lists what the provider offers."""

from .check_backend import CheckBackendAlgorithm

ALGORITHMS = [CheckBackendAlgorithm]
