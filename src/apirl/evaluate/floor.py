"""The floor a fine-tuned model must beat: a bag-of-words classifier that names the gold domain.

Gorilla's AST accuracy counts any real API of the gold domain as correct, so it is mostly a test of whether the
model knows which kind of model a request needs. TF-IDF features of the request and a logistic regression
(scikit-learn: the standard baseline, nothing to write ourselves) trained on the training requests name the
gold domain of a large share of the test questions; a model below that has not learned the mapping. Reported
twice: trained on the eval questions of the train split only, and on the whole train split (synthesized
requests included), the data M_SFT sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from apirl.data.dataset import PROVENANCE_SYNTH, Example
from apirl.models.generation import request_of
from apirl.stats import bootstrap_ci


def domain_floor(train: Sequence[Example], test: Sequence[Example], *, samples: int = 1000, seed: int = 0
                 ) -> dict[str, Any]:
    """Domain accuracy on `test` of TF-IDF (word 1-2 grams, sublinear tf) + logistic regression fitted on
    `train`, with a bootstrap 95% interval and the per-question hits (question_id -> 0/1)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    classifier = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                               LogisticRegression(C=10.0, max_iter=5000))
    classifier.fit([request_of(ex.prompt) for ex in train], [ex.domain for ex in train])
    predicted = classifier.predict([request_of(ex.prompt) for ex in test])
    hits = np.array([p == ex.domain for p, ex in zip(predicted, test, strict=True)], dtype=float)
    low, high = bootstrap_ci(hits, samples=samples, seed=seed)
    return {"train_examples": len(train), "test_questions": len(test), "domain_accuracy": float(hits.mean()),
            "ci": [low, high],
            "hits": {str(ex.question_id): int(h) for ex, h in zip(test, hits, strict=True)}}


def domain_floors(train: Sequence[Example], test: Sequence[Example], *, samples: int = 1000, seed: int = 0
                  ) -> dict[str, Any]:
    """The floor fitted on the train split's eval questions only and on the whole train split."""
    questions = [ex for ex in train if ex.provenance != PROVENANCE_SYNTH]
    floors = {"eval_questions": domain_floor(questions, test, samples=samples, seed=seed)}
    if len(questions) < len(train):
        floors["whole_train_split"] = domain_floor(train, test, samples=samples, seed=seed)
    return floors
