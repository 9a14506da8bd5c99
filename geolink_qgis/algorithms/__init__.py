"""One module per Processing algorithm; ALGORITHMS lists what the provider offers."""

from .batch import BatchAlgorithm
from .check_backend import CheckBackendAlgorithm
from .classify import ClassifyAlgorithm
from .embed import EmbedAlgorithm
from .finetune import FinetuneAlgorithm
from .import_checkpoint import ImportCheckpointAlgorithm
from .zones import ZonesAlgorithm

ALGORITHMS = [ClassifyAlgorithm, ZonesAlgorithm, EmbedAlgorithm, BatchAlgorithm, FinetuneAlgorithm,
              ImportCheckpointAlgorithm, CheckBackendAlgorithm]
