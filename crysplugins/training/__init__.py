"""The PyTorch training backend (optional extra ``crysplugins[train]``).

* :mod:`crysplugins.training.nets` — networks (RecCrysFormer, circular convolutions, the solvent U-net);
* :mod:`crysplugins.training.losses` — eq. 7/8 of the RecCrysFormer paper;
* :mod:`crysplugins.training.loop` — the generic :class:`~crysplugins.training.loop.Trainer`;
* :mod:`crysplugins.training.config` — the Trainer's settings (:class:`~crysplugins.training.config.TrainConfig`);
* :mod:`crysplugins.training.checkpoint` — the one checkpoint format (weights only, metadata as JSON);
* :mod:`crysplugins.training.batching` — same-shape batches of a Patterson dataset;
* :mod:`crysplugins.training.tasks` — one module per task and the registry behind ``crysplugins train TASK``;
* :mod:`crysplugins.training.export` — ``crysplugins export RUN_DIR`` (ONNX + model card), driven by the task.

Nothing on the inference path imports this package.
"""
