"""The shipped example's figures: ``patterson-density`` on the held-out dipeptide shipped with the package.

The card's ``example`` names a held-out test dipeptide shipped in ``crysplugins/data/examples/`` (amplitudes
MTZ, true-phase MTZ, sequence).  This script runs ``patterson-density`` on it exactly as
``crysplugins predict`` does (the card's defaults, then ``cycles = 0``) and records the map Pearson (paper
000, eq. 7) of every map the plugin returns against the true-phase map on the same grid, and the
amplitude-weighted phase error of ``density``.  ``tests/test_patterson_plugin.py`` checks that the plugin
reproduces these figures.  Reads only the shipped files (no ``../shared``).  Writes the figure
``benchmarks/out/shipped_example.json`` and, unless ``--dry-run``, the card's ``example``.

    python benchmarks/card_example.py            # prints the figures and rewrites the card's "example"
    python benchmarks/card_example.py --dry-run  # prints and writes the figure only
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from crysplugins.crystal import io
from crysplugins.crystal.fourier import FourierGrid
from crysplugins.crystal.metrics import pearson, phase_error
from crysplugins.interface import Request
from crysplugins.plugins.patterson_density import PattersonDensityPredictor
from figure_output import write_figure

CARD = Path(__file__).resolve().parents[1] / "models" / "reccrysformer_dipeptide.json"
EXAMPLES = Path(__file__).resolve().parents[1] / "crysplugins" / "data" / "examples" / "patterson_density"


def figures(prediction, truth) -> dict:
    """Pearson of each returned map with the true-phase map; phase error of ``density``."""
    hkl = truth.miller_array()
    out = {}
    for name, cmap in prediction.maps.items():
        fg = FourierGrid(hkl, cmap.shape, float(truth.cell.volume))
        true_map = fg.to_map(truth.values("F") * np.exp(1j * np.radians(truth.values("PHI"))))
        out[name] = pearson(true_map, cmap.array)
        if name == "density":
            f_pred, _ = fg.from_map(np.asarray(cmap.array, dtype=np.float64))
            out["phase_error"] = phase_error(hkl, truth.values("PHI"), np.degrees(np.angle(f_pred)),
                                             weights=truth.values("F"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    card = json.loads(CARD.read_text())
    ex = card["example"]
    predictor = PattersonDensityPredictor()
    inputs = predictor.example_inputs()
    truth = io.read_mtz(str(EXAMPLES / ex["phases"]), need=("F", "PHI"))
    default = predictor.predict(Request(inputs))
    first = predictor.predict(Request({**inputs, "cycles": 0}))
    got, got0 = figures(default, truth), figures(first, truth)
    ex.update(pearson=got["density"], phase_error=got["phase_error"], pearson_other_hand=got["density_other_hand"],
              hand_model=default.meta["hand_model"], hand_inverted=default.meta["hand_inverted"],
              hand_logit=default.meta["hand_logit"], output=default.meta.get("output"))
    if "density_prediction" in got:
        ex["pearson_prediction"] = got["density_prediction"]
    right = got["density"] >= got["density_other_hand"]
    ex["note"] = (f"on this example the hand model {ex['hand_model']} calls the {'right' if right else 'wrong'} hand: "
                  f"the rejected map, density_other_hand, has Pearson {got['density_other_hand']:.3f} "
                  "(its accuracy on held-out maps: BENCHMARKS.md, section 9)")
    ex["first_model"].update(pearson=got0["density"], phase_error=got0["phase_error"])
    ex["first_model"].pop("pearson_other_hand", None)  # the first model has no hand model: no other hand map
    ex["how"] = ("python benchmarks/card_example.py: crysplugins predict patterson-density on the amplitudes MTZ "
                 "with the card's defaults (default_cycles recycling cycle(s), final_dm_cycles of density "
                 "modification, the recycled model's hand model, centring, output = default_output); Pearson "
                 "(eq. 7) of each returned map with the true-phase map on the same grid; amplitude-weighted "
                 "phase error of 'density'")
    shown = {k: ex[k] for k in ("id", "pearson", "phase_error", "pearson_other_hand", "pearson_prediction",
                                "hand_inverted", "hand_logit", "first_model") if k in ex}
    print(json.dumps(shown, indent=1))
    write_figure("shipped_example", {"example": shown})
    if not args.dry_run:
        CARD.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
