"""The data layer: corpora of Megatron indexed datasets, a deterministic blending engine, PyTorch datasets.

```python
from trainers.data import Corpus, BlendedSequenceDataset, ValidationSet

corpus = Corpus.load("runs/data/demo")            # prepared corpus, or a folder of Megatron datasets
ds = BlendedSequenceDataset(corpus, mixture, seq_len=256, num_samples=10_000, seed=0)
ds[i]  # {"tokens": LongTensor[257], "domain": int index into corpus.domains}
val = ValidationSet(corpus, seq_len=256, max_windows_per_domain=16)
```
"""

from trainers.data.corpus import Corpus
from trainers.data.dataset import BlendedSequenceDataset, GlobalBatchSampler, ValidationSet
from trainers.data.errors import DataError
from trainers.data.schedule import WeightSchedule

__all__ = ["BlendedSequenceDataset", "Corpus", "DataError", "GlobalBatchSampler", "ValidationSet", "WeightSchedule"]
