"""Write a labelled folder of concept-world PNGs (an "own data" set with known labels).

    python scripts/world_folder.py --n 400 --seed 7000 --size 64 --out runs/world_pngs

writes ``OUT/img_00000.png ...`` and ``OUT/labels.csv`` (columns ``image, smile, skin_tone``: the
task's class and protected attribute), for trying ``img2tab evaluate --data OUT --labels
OUT/labels.csv --label-column smile``.
"""

from __future__ import annotations

import argparse

from img2tab.io import save_image_folder
from img2tab.world import make_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="images")
    ap.add_argument("--seed", type=int, default=7000, help="seed of the task (default model: seed 0)")
    ap.add_argument("--size", type=int, default=64, help="image side")
    ap.add_argument("--out", required=True, help="output folder")
    a = ap.parse_args()
    task = make_task(a.n, seed=a.seed, size=a.size)
    save_image_folder(task.images, a.out, columns={"smile": task.y, "skin_tone": task.protected})


if __name__ == "__main__":
    main()
