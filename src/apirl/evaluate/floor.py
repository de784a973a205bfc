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


def _hits(train: Sequence[Example], test: Sequence[Example]) -> np.ndarray:
    """1/0 per test example: does TF-IDF (word 1-2 grams, sublinear tf) + logistic regression fitted on `train`
    name its domain."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    classifier = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                               LogisticRegression(C=10.0, max_iter=5000))
    classifier.fit([request_of(ex.prompt) for ex in train], [ex.domain for ex in train])
    predicted = classifier.predict([request_of(ex.prompt) for ex in test])
    return np.array([p == ex.domain for p, ex in zip(predicted, test, strict=True)], dtype=float)


def domain_floor(train: Sequence[Example], test: Sequence[Example], *, samples: int = 1000, seed: int = 0
                 ) -> dict[str, Any]:
    """Domain accuracy on `test` of the classifier fitted on `train`, with a bootstrap 95% interval and the
    per-question hits (question_id -> 0/1)."""
    hits = _hits(train, test)
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


def cross_validated_floor(train: Sequence[Example], *, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """How far the labels themselves let a classifier go, without touching test: the train split's eval
    questions in `folds` seeded folds, each predicted from the other folds' questions, then from those plus every
    synthesized request. Gorilla's domains overlap ("Multimodal Feature Extraction" for a text embedder), so
    this stays well below 100% whatever the data volume."""
    questions = [ex for ex in train if ex.provenance != PROVENANCE_SYNTH]
    synthesized = [ex for ex in train if ex.provenance == PROVENANCE_SYNTH]
    order = np.random.default_rng(seed).permutation(len(questions))
    hits: dict[str, list[float]] = {"questions_only": [], "with_synthesized": []}
    for part in np.array_split(order, folds):
        held = set(part.tolist())
        fit = [ex for i, ex in enumerate(questions) if i not in held]
        tested = [questions[i] for i in sorted(held)]
        hits["questions_only"] += _hits(fit, tested).tolist()
        if synthesized:
            hits["with_synthesized"] += _hits(fit + synthesized, tested).tolist()
    return {"folds": folds, "questions": len(questions), "synthesized": len(synthesized),
            **{name: float(np.mean(values)) for name, values in hits.items() if values}}
