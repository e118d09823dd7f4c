"""The data layer: corpora of Megatron indexed datasets, a deterministic blending engine, PyTorch datasets.

```python
from trainers.data import Corpus, BlendedSequenceDataset, ValidationSet

corpus = Corpus.load("runs/data/demo")            # prepared corpus, or a folder of Megatron datasets
ds = BlendedSequenceDataset(corpus, mixture, seq_len=256, num_samples=10_000, seed=0)
ds[i]  # {"tokens": LongTensor[257], "domain": int index into corpus.domains}
val = ValidationSet(corpus, seq_len=256, max_windows_per_domain=16)
```
"""

from typing import TYPE_CHECKING, Any

from trainers.data.corpus import Corpus
from trainers.data.errors import DataError
from trainers.data.schedule import WeightSchedule

if TYPE_CHECKING:
    from trainers.data.dataset import BlendedSequenceDataset, GlobalBatchSampler, ValidationSet

_TORCH_NAMES = frozenset({"BlendedSequenceDataset", "GlobalBatchSampler", "ValidationSet"})


def __getattr__(name: str) -> Any:
    """The PyTorch datasets load on first use: a process that only reads or checks a corpus (the
    sweep's driver, the CLI) does not pay torch's import (~2 s)."""
    if name in _TORCH_NAMES:
        from trainers.data import dataset  # lazy: imports torch

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BlendedSequenceDataset", "Corpus", "DataError", "GlobalBatchSampler", "ValidationSet", "WeightSchedule"]
