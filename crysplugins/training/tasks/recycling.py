"""Training task for a RecCrysFormer *recycling* run (paper 000, section 4).

``crysplugins train reccrysformer --recycle-from RUN_DIR [--templates NAME] [--refined-prob 1/6]
[--template-noise 0.05] [--transfer-noise 0.01] [--no-transfer] [--first-conv patterson|half-filters]``
builds this task (the task registry hands over when ``config["recycling"]`` names a previous run).  It
is the reccrysformer task with:

* the previous run's architecture (``RUN_DIR/checkpoint.pt``) with ``in_channels = 2``;
* weights transferred from the previous run + slight noise (:func:`crysplugins.training.recycling.transfer_weights`),
  unless ``transfer`` is false (the paper's first "Recycling" run trained from scratch);
* a template channel per example from ``<data>/templates/<NAME>/`` (``crysplugins dataset templates``):
  the previous prediction, or with probability ``refined_prob`` the appendix E refined template when the
  example was refined, plus Gaussian noise (training only).  Examples without templates are left out.
* evaluation as in section 5: refined template wherever the example was refined, no noise; the test
  Pearson is also reported for the examples that were *not* refined after the previous run.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crysplugins.datasets.template_store import TemplateStore
from crysplugins.errors import CrysError
from crysplugins.training.batching import EXAMPLE_KEYS, BatchList, ShapeBins, plan_batches
from crysplugins.training.checkpoint import load_checkpoint
from crysplugins.training.losses import pearson_per_example
from crysplugins.training.nets.reccrysformer import RecCrysFormer, model_config
from crysplugins.training.recycling import RecyclingSettings, recycled_model_config, template_inputs, transfer_weights
from crysplugins.training.tasks.reccrysformer import RecCrysFormerTask, checkpoint_model_settings


def _template_input(b: dict[str, np.ndarray], idx: np.ndarray, refined_prob: float, noise: float,
                    rng: np.random.Generator | None, hand_flip: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    return template_inputs(b["patterson"][idx], {"prediction": b["tpl_prediction"][idx],
                                                 "refined": b["tpl_refined"][idx],
                                                 "is_refined": b["tpl_is_refined"][idx]},
                           refined_prob, noise, rng, hand_flip=hand_flip)


class _RecyclingBatchList(BatchList):
    """Batches with the two-channel input; the template choice and noise depend on (seed, epoch, batch)
    only, so a resumed epoch sees the same batches."""

    def __init__(self, bins: ShapeBins, plan, refined_prob: float, noise: float, seed: int, epoch: int,
                 train: bool, hand_flip: float = 0.0) -> None:
        super().__init__(bins, plan)
        self.refined_prob, self.noise, self.seed, self.epoch, self.train = refined_prob, noise, seed, epoch, train
        self.hand_flip = hand_flip

    def make(self, b: dict[str, np.ndarray], idx: np.ndarray, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i, 7]) if self.train else None
        x, used = _template_input(b, idx, self.refined_prob, self.noise, rng, self.hand_flip)
        return {"patterson": torch.from_numpy(x),
                "density": torch.from_numpy(b["density"][idx].astype(np.float32)).unsqueeze(1),
                "sequence": torch.from_numpy(b["sequence_index"][idx].astype(np.int64)),
                "refined_template": torch.from_numpy(used.astype(np.float32))}


class RecyclingTask(RecCrysFormerTask):
    """A recycling run of RecCrysFormer (see the module docstring)."""

    name = "reccrysformer"

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        r = RecyclingSettings.from_dict(config.get("recycling") or {})
        self.prev_dir = Path(r.recycle_from)
        if not (self.prev_dir / "checkpoint.pt").is_file():
            raise CrysError(f"{self.prev_dir} is not a training run folder (no checkpoint.pt).")
        self.prev = load_checkpoint(self.prev_dir)
        r.templates = r.templates or self.prev_dir.resolve().name
        self.recycling = r
        self.store = TemplateStore(self.ds.root, r.templates)
        self.transfer_report: dict[str, Any] = {}
        config["recycling"] = asdict(r)  # recorded in config.json / the checkpoint

    # ------------------------------------------------------------------------------------ model
    def model_settings(self) -> dict[str, Any]:
        """The previous run's architecture with a template channel; "model" keys of this run's config
        (e.g. use_fft, dropout) override, but must not change the shapes."""
        prev = checkpoint_model_settings(self.prev)
        prev.update({k: v for k, v in (self.config.get("model") or {}).items() if k != "in_channels"})
        return model_config(recycled_model_config(prev))

    def build_model(self, config: dict[str, Any] | None = None) -> RecCrysFormer:
        torch.manual_seed(self.seed)
        model = RecCrysFormer(self.model_settings())
        if model.config["partial"]:
            model.set_residue_boxes(torch.from_numpy(self.residue_boxes()))
        r = self.recycling
        if r.transfer:
            boxes = model.residue_boxes.clone() if model.config["partial"] else None
            rep = transfer_weights(model, self.prev.model, noise_std=float(r.transfer_noise),
                                   first_conv=str(r.first_conv), seed=self.seed)
            if boxes is not None:  # the residue boxes belong to this dataset, not to the previous run
                model.residue_boxes.copy_(boxes)
            self.transfer_report = rep.as_dict()
        else:
            self.transfer_report = {"transfer": False}
        return model

    # ------------------------------------------------------------------------------------- data
    def split(self, name: str) -> ShapeBins:
        if name not in self._splits:
            shards = []
            missing = 0
            for shard in self.ds.shards(name):
                arrays = shard.load()
                tpl = self.store.shard(shard.path.name)
                if tpl is None:
                    missing += shard.n
                    continue
                rows = np.asarray(tpl["rows"], dtype=np.int64)
                missing += shard.n - len(rows)
                part = {k: arrays[k][rows] for k in EXAMPLE_KEYS}
                part.update({"tpl_prediction": tpl["prediction"], "tpl_refined": tpl["refined"],
                             "tpl_is_refined": np.asarray(tpl["is_refined"], bool)})
                shards.append(part)
            if not shards:
                raise CrysError(f"No '{name}' example of {self.ds.root} has a template in "
                                f"templates/{self.recycling.templates} (run 'crysplugins dataset templates').")
            bins = ShapeBins(shards)
            if name == "train" and self.config.get("max_train_examples"):
                bins.truncate(int(self.config["max_train_examples"]), np.random.default_rng(self.seed))
            self._splits[name] = bins
            self.missing_templates = getattr(self, "missing_templates", {})
            self.missing_templates[name] = missing
        return self._splits[name]

    def batches(self, split: str = "train", epoch: int = 0, rank: int = 0, world_size: int = 1):
        bins = self.split(split)
        shuffle = np.random.default_rng([self.seed, epoch]) if split == "train" else None
        plan = plan_batches(bins, self.batch_size, int(self.config["min_batch"]), shuffle, rank, world_size)
        r = self.recycling
        return _RecyclingBatchList(bins, plan, float(r.refined_prob), float(r.template_noise), self.seed, epoch,
                                   split == "train", hand_flip=float(r.template_hand_flip))

    def eval_batches(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Test batches with the evaluation template (refined wherever refined; no noise)."""
        test = self.split("test")
        out = []
        for batch in super().eval_batches(limit):
            b = test.bins[batch["shape"]]
            pos = {str(i): k for k, i in enumerate(b["ids"])}
            idx = np.array([pos[str(i)] for i in batch["ids"]])
            x, used = _template_input(b, idx, 1.0, 0.0, None)
            batch["patterson"] = torch.from_numpy(x)
            batch["was_refined"] = b["tpl_is_refined"][idx]
            out.append(batch)
        return out

    def evaluate(self, model: torch.nn.Module, limit: int | None = None) -> dict[str, float]:
        """Mean test Pearson (eq. 7) overall, for examples refined / not refined after the previous run,
        and the mean-map baseline."""
        device = next(model.parameters()).device
        pcs, refined, base = [], [], []
        for batch in self.eval_batches(limit):
            pred = model(batch["patterson"].to(device), batch["sequence"].to(device)).float().cpu()
            pcs += pearson_per_example(pred, batch["density"]).tolist()
            refined += [bool(v) for v in batch["was_refined"]]
            base += self.baseline_pearsons(batch)
        pcs_a, ref_a = np.array(pcs), np.array(refined, bool)
        return {"test_pearson": float(pcs_a.mean()),
                "test_pearson_not_refined": float(pcs_a[~ref_a].mean()) if (~ref_a).any() else float("nan"),
                "test_pearson_refined": float(pcs_a[ref_a].mean()) if ref_a.any() else float("nan"),
                "test_percent_refined_before": float(100 * ref_a.mean()),
                "test_baseline_pearson": float(np.mean(base)) if base else float("nan"), "test_n": len(pcs)}

    def export_example(self) -> dict[str, torch.Tensor]:
        train = self.split("train")
        b = train.bins[train.largest_shape()]
        idx = np.array([0, 1]) if len(b["ids"]) >= 2 else np.array([0, 0])
        x, _ = _template_input(b, idx, 1.0, 0.0, None)
        return {"patterson": torch.from_numpy(x),
                "sequence": torch.from_numpy(b["sequence_index"][idx].astype(np.int64))}

    def state(self) -> dict[str, Any]:
        st = super().state()
        st["model_settings"] = self.model_settings()
        st["recycling"] = {**asdict(self.recycling), "recycle_from": str(self.prev_dir.resolve()),
                           "template_info": self.store.info.get("settings"), "transfer_report": self.transfer_report,
                           "missing_templates": getattr(self, "missing_templates", {})}
        return st
