"""One-class scorers: fitted on the features of normal images, they score and flag new ones.

Every scorer has the same three calls, so a method can swap one for another (:class:`Scorer`):
``fit(features) -> self`` on normal images only, ``score(features)`` (higher = more anomalous)
and ``decide(features)`` (1 = anomalous, 0 = normal) with the scorer's own threshold.

>>> import torch
>>> normal = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
>>> scorer = IsolationForestScorer(contamination=0.05, seed=0).fit(normal)
>>> scorer.decide(torch.tensor([[0.0, 0.0], [8.0, -8.0]])).tolist()
[0, 1]
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler
from torch import Tensor

Features = Tensor | np.ndarray


@runtime_checkable
class Scorer(Protocol):
    """Fits on (N, D) features of normal images; scores and flags (M, D) features."""

    def fit(self, features: Features) -> Scorer: ...

    def score(self, features: Features) -> Tensor: ...

    def decide(self, features: Features) -> Tensor: ...


def _as_numpy(features: Features) -> np.ndarray:
    if isinstance(features, Tensor):
        features = features.detach().cpu().double().numpy()
    return np.asarray(features, dtype=np.float64)


class IsolationForestScorer:
    """StandardScaler, then scikit-learn's IsolationForest (RADAR's image-level classifier).

    ``contamination`` is the share of the training images the forest's threshold treats as
    outliers, i.e. the expected false-positive rate on normal images; it sets ``decide`` and
    leaves ``score`` unchanged.
    """

    def __init__(self, contamination: float = 0.05, n_estimators: int = 100, seed: int = 0):
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.seed = seed

    def fit(self, features: Features) -> IsolationForestScorer:
        x = _as_numpy(features)
        self.scaler_ = StandardScaler().fit(x)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            contamination=self.contamination,
            random_state=self.seed,
        ).fit(self.scaler_.transform(x))
        return self

    def score(self, features: Features) -> Tensor:
        """Minus the forest's ``score_samples``: a short average isolation path scores high."""
        z = self.scaler_.transform(_as_numpy(features))
        return torch.from_numpy(-self.forest_.score_samples(z))

    def decide(self, features: Features) -> Tensor:
        z = self.scaler_.transform(_as_numpy(features))
        return torch.from_numpy((self.forest_.predict(z) == -1).astype(np.int64))
