"""Data in: sample sources for batch scoring, dataset readers and synthetic request generators."""
from .chunk import SampleChunk
from .criteo import CriteoTsvSamples
from .sources import ArraySamples, open_samples

__all__ = ["ArraySamples", "CriteoTsvSamples", "SampleChunk", "open_samples"]
