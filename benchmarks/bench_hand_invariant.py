"""Hand (chirality) benchmark for a hand-invariant RecCrysFormer.

Reads a dataset built from ../shared/corpus by ``crysplugins dataset build`` (e.g. data_build/dipeptide).

    python benchmarks/bench_hand_invariant.py --model models/NAME.json --data data_build/dipeptide \
        [--split test] [--fraction 0.1] [--hand-model HAND] [--save-predictions FILE.npz] [--json OUT.json]

For each example of the split (a ``--fraction`` of every shard, the first rows): the model's prediction
(ONNX), the Pearson (eq. 7) with the true density and with the truth inverted through the cell centre, and
which of the two hands the prediction matches (by the truth); and the Pearson of the truth with the
average of its two hands, the ceiling of any predictor that cannot tell the hands apart.  With ``--hand-model`` (a hand-classifier
card) it also reports the classifier's accuracy on these predictions and the mean Pearson after its choice.
``--save-predictions`` writes ids, predictions (float16) and the matching hand, the input of
``crysplugins train hand-classifier --set predictions=FILE`` (use a *train* split for that).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from crysplugins.crystal.maps import invert_grid
from crysplugins.datasets.store import open_dataset
from crysplugins.runtime.hand import hand_logits
from crysplugins.runtime.models import ENV_MODELS

REPO = Path(__file__).resolve().parents[1]


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="RecCrysFormer card (JSON next to its ONNX file)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--fraction", type=float, default=1.0, help="fraction of each shard (first rows)")
    ap.add_argument("--hand-model", help="hand-classifier card JSON (next to its ONNX file)")
    ap.add_argument("--save-predictions")
    ap.add_argument("--json")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    card = json.loads(Path(args.model).read_text())
    sess = ort.InferenceSession(str(Path(args.model).parent / card["onnx"]), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    hand_name = None
    if args.hand_model:  # run through the runtime (runtime.hand), found beside its card

        os.environ[ENV_MODELS] = str(Path(args.hand_model).resolve().parent)
        hand_name = json.loads(Path(args.hand_model).read_text()).get("name", Path(args.hand_model).stem)
    ds = open_dataset(args.data)
    ids, preds, pc_t, pc_i, logits, cap = [], [], [], [], [], []
    t0 = time.monotonic()
    for shard in ds.shards(args.split):
        arrays = shard.load()
        n = max(1, int(round(args.fraction * len(arrays["ids"]))))
        for start in range(0, n, args.batch):
            sl = slice(start, min(n, start + args.batch))
            feeds = {"patterson": arrays["patterson"][sl].astype(np.float32)[:, None],
                     "sequence": arrays["sequence_index"][sl].astype(np.int64)}
            pred = sess.run(None, {k: feeds[k] for k in names})[0][:, 0]
            true = arrays["density"][sl].astype(np.float32)
            pc_t += pearson_rows(pred, true).tolist()
            pc_i += pearson_rows(pred, invert_grid(true)).tolist()
            # the best any hand-blind predictor can do: the average of both hands of the truth
            cap += pearson_rows(0.5 * (true + invert_grid(true)), true).tolist()
            ids += [str(i) for i in arrays["ids"][sl]]
            if args.save_predictions:
                preds.append(pred.astype(np.float16))
            if hand_name:
                logits += hand_logits(pred, hand_name, threads=1, cells=arrays["cell"][sl]).tolist()
        sys.stderr.write(f"\r{len(ids)} examples, {len(ids) / (time.monotonic() - t0):.1f}/s")
    sys.stderr.write("\n")
    pc_t, pc_i = np.array(pc_t), np.array(pc_i)
    inverted = pc_i > pc_t
    out = {"model": card.get("name"), "data": args.data, "split": args.split, "n": len(ids),
           "mean_pearson_as_predicted": float(pc_t.mean()),
           "mean_pearson_better_hand": float(np.maximum(pc_t, pc_i).mean()),
           "mean_pearson_worse_hand": float(np.minimum(pc_t, pc_i).mean()),
           "fraction_prediction_is_inverted": float(inverted.mean()),
           "mean_pearson_two_hand_average_of_truth": float(np.mean(cap)),
           "mean_abs_hand_difference": float(np.abs(pc_t - pc_i).mean()),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if hand_name:
        lg = np.array(logits)
        call = lg > 0
        chosen = np.where(call, pc_i, pc_t)
        out.update({"hand_model": args.hand_model, "hand_accuracy": float((call == inverted).mean()),
                    "mean_pearson_after_hand_choice": float(chosen.mean()),
                    "hand_accuracy_where_hands_differ_by_0.1": float((call == inverted)[np.abs(pc_t - pc_i) > 0.1].mean())
                    if (np.abs(pc_t - pc_i) > 0.1).any() else None})
    if args.save_predictions:
        shapes = np.array([p.shape[1:] for p in preds for _ in range(len(p))], dtype=np.int32)
        np.savez(args.save_predictions, ids=np.array(ids), shapes=shapes, inverted=inverted,
                 pred_flat=np.concatenate([p.reshape(-1) for p in preds]))
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
