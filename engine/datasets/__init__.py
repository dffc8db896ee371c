"""Data in: sample sources for batch scoring, dataset readers and synthetic request generators."""
from .chunk import SampleChunk
from .criteo import CriteoReader, CriteoTsvSamples
from ..errors import DatasetError
from .movielens import MovieLensCTR, load_movielens_100k
from .sources import ArraySamples, open_samples

__all__ = ["ArraySamples", "CriteoReader", "CriteoTsvSamples", "DatasetError", "MovieLensCTR", "SampleChunk",
           "load_movielens_100k", "open_samples"]
