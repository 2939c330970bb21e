"""A small synthetic dataset in the ``crysplugins-patterson-v1`` format, for tests and smoke runs.

Each example is a few point "atoms" near the cell centre (as in the real data, whose fragments are
centred on their centre of mass, appendix B), blurred by a Gaussian on a periodic grid; the Patterson map
is Re(F^-1(|F(e)|^2)) (eq. 4).  Both maps are normalised to [-1, 1] with constants measured on the train
split, exactly like the real builder.  No crystallography beyond that: cells are cubic-ish boxes with a
0.5 Å grid, and nothing here should be used to measure accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from crysplugins.datasets.store import write_index

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def _blur(points: np.ndarray, shape: tuple[int, int, int], sigma: float = 1.2) -> np.ndarray:
    grid = np.zeros(shape, dtype=np.float64)
    for p in points:
        grid[tuple(np.round(p).astype(int) % np.array(shape))] += 1.0
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:2]], np.fft.rfftfreq(shape[2]), indexing="ij")
    g = np.exp(-2 * (np.pi * sigma) ** 2 * sum(f ** 2 for f in freqs))
    return np.fft.irfftn(np.fft.rfftn(grid) * g, s=shape, axes=(0, 1, 2))


def _patterson(density: np.ndarray) -> np.ndarray:
    f = np.fft.rfftn(density)
    return np.fft.irfftn(np.abs(f) ** 2, s=density.shape, axes=(0, 1, 2))


def make_synthetic_dataset(root: str | Path, shapes=((16, 16, 16), (16, 16, 24)), n_train: int = 24,
                           n_test: int = 8, n_residues: int = 2, box: int = 8, seed: int = 0) -> Path:
    """Write a tiny dataset folder (meta.json, index.tsv, shards/, partial.npz) and return its path."""
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # residue "templates": each residue type is a fixed small constellation of atoms (in voxels)
    templates = [rng.normal(scale=1.5, size=(3 + i % 4, 3)) for i in range(20)]
    raw: dict[tuple[str, tuple], list] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            shape = tuple(shapes[i % len(shapes)])
            seq = rng.integers(0, 20, size=n_residues)
            centre = np.array(shape) / 2.0
            pts = []
            for j, r in enumerate(seq):
                offset = np.array([(j - (n_residues - 1) / 2) * 3.0, 0, 0]) + rng.normal(scale=0.7, size=3)
                pts.append(templates[r] + offset)
            pts = np.concatenate(pts)
            pts = pts - pts.mean(axis=0) + centre
            dens = _blur(pts, shape)
            raw.setdefault((split, shape), []).append((f"SYN{split[:2].upper()}_{i}_0", seq, dens, _patterson(dens)))
    train_d = np.concatenate([e[2].ravel() for (s, _), v in raw.items() if s == "train" for e in v])
    train_p = np.concatenate([e[3].ravel() for (s, _), v in raw.items() if s == "train" for e in v])
    norm = {"density": {"offset": float((train_d.max() + train_d.min()) / 2), "scale": float((train_d.max() - train_d.min()) / 2)},
            "patterson": {"offset": float((train_p.max() + train_p.min()) / 2), "scale": float((train_p.max() - train_p.min()) / 2)}}
    boxes = np.stack([_blur(t + box / 2.0, (box, box, box)) for t in templates])
    norm["partial"] = {"offset": float((boxes.max() + boxes.min()) / 2), "scale": float((boxes.max() - boxes.min()) / 2)}

    def nz(x, kind):
        c = norm[kind]
        return np.clip((x - c["offset"]) / c["scale"], -1, 1)

    rows = []
    for (split, shape), items in sorted(raw.items()):
        name = f"{split}-{shape[0]}x{shape[1]}x{shape[2]}-0.npz"
        cell = np.array([[shape[0] * 0.5, shape[1] * 0.5, shape[2] * 0.5, 90.0, 90.0, 90.0]] * len(items))
        np.savez(root / "shards" / name,
                 patterson=np.stack([nz(e[3], "patterson") for e in items]).astype(np.float16),
                 density=np.stack([nz(e[2], "density") for e in items]).astype(np.float16),
                 ids=np.array([e[0] for e in items]),
                 sequence_index=np.stack([e[1] for e in items]).astype(np.int8),
                 cell=cell.astype(np.float32), d_min=np.full(len(items), 1.5, dtype=np.float32))
        for row, e in enumerate(items):
            rows.append({"id": e[0], "split": split, "shard": name, "row": row, "source": "synthetic",
                         "family": "S1" if split == "train" else "S2",
                         "sequence": "".join(RESIDUES[k] for k in e[1]),
                         "a": shape[0] * 0.5, "b": shape[1] * 0.5, "c": shape[2] * 0.5,
                         "alpha": 90.0, "beta": 90.0, "gamma": 90.0,
                         "nu": shape[0], "nv": shape[1], "nw": shape[2], "d_min": 1.5})
    np.savez(root / "partial.npz", boxes=nz(boxes, "partial").astype(np.float32), residue_types=np.array(list(RESIDUES)))
    write_index(root / "index.tsv", rows)
    meta = {"format": "crysplugins-patterson-v1", "n_residues": n_residues, "d_min": 1.5, "sampling_rate": 3.0,
            "fixed_cell": None, "normalisation": norm, "partial_box": box, "residue_types": RESIDUES,
            "splits": {"train": n_train, "test": n_test}, "families": {"train": ["S1"], "test": ["S2"]},
            "build": {"synthetic": True, "seed": seed}}
    (root / "meta.json").write_text(json.dumps(meta, indent=2))
    return root
