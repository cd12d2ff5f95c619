"""Screenshot the review UI in headless Chromium on real Jacquard images (the README's).

A command line over `tests.harness.browser`: an orchestrator and the review UI on
127.0.0.1 (SQLite + file store in a temporary folder), the sample image with the most
labels imported and opened for review, prediction 1 accepted and two labels marked wrong
by clicking their dots. Needs Debian's Chromium (`apt-get install -y chromium`).

    python scripts/screenshot_review.py [--out docs/review-screen.png] [--samples DIR]
        [--width 1440 --height 900]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.browser import INSTALL_HINT, find_chromium, screenshot_jacquard  # noqa: E402
from tests.harness.samples import jacquard_samples_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "review-screen.png")
    parser.add_argument("--samples", type=Path, default=None, help="Jacquard samples folder.")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    path = find_chromium()
    if path is None:
        sys.exit(f"Chromium not found; install it with: {INSTALL_HINT}")
    samples = args.samples or jacquard_samples_dir()
    if samples is None:
        sys.exit("Jacquard samples not found: pass --samples or set REGRASP_JACQUARD_SAMPLES")
    with tempfile.TemporaryDirectory(prefix="regrasp-shot-") as tmp:
        png = screenshot_jacquard(
            Path(tmp), samples, chromium_path=path, viewport=(args.width, args.height)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(png)
    print(f"saved {args.out} ({len(png)} bytes)")


if __name__ == "__main__":
    main()
