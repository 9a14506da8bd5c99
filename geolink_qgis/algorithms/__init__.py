"""One module per Processing algorithm; ALGORITHMS lists what the provider offers."""

from .batch import BatchAlgorithm
from .check_backend import CheckBackendAlgorithm
from .classify import ClassifyAlgorithm
from .cluster import ClusterAlgorithm
from .embed import EmbedAlgorithm
from .finetune import FinetuneAlgorithm
from .import_checkpoint import ImportCheckpointAlgorithm
from .similar import SimilarAlgorithm
from .train_from_osm import TrainFromOsmAlgorithm
from .zones import ZonesAlgorithm

ALGORITHMS = [ClassifyAlgorithm, ZonesAlgorithm, EmbedAlgorithm, SimilarAlgorithm, ClusterAlgorithm, BatchAlgorithm,
              FinetuneAlgorithm, TrainFromOsmAlgorithm, ImportCheckpointAlgorithm, CheckBackendAlgorithm]
