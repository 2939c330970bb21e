"""The PyTorch training backend (optional extra ``crysplugins[train]``).

* :mod:`crysplugins.training.nets` — networks (RecCrysFormer, circular convolutions, the solvent U-net);
* :mod:`crysplugins.training.losses` — eq. 7/8 of the RecCrysFormer paper;
* :mod:`crysplugins.training.loop` — the generic :class:`~crysplugins.training.loop.Trainer`;
* :mod:`crysplugins.training.tasks` — the task registry behind ``crysplugins train TASK``;
* :mod:`crysplugins.training.export` — ``crysplugins export RUN_DIR`` (ONNX + model card);
* :mod:`crysplugins.training.evaluate_dataset` — test-split evaluation of an exported model.

Nothing on the inference path imports this package.
"""
