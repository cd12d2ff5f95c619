"""The review UI in a real browser: headless Chromium signs in, decides by key press.

Runs the orchestrator and the review UI as processes and drives Debian's Chromium over
the DevTools protocol (`scripts/screenshot_review.py`). Needs Chromium installed:
`apt-get update && apt-get install -y chromium` (no browser is downloaded by the tests).
"""

from __future__ import annotations

import pytest

from scripts.screenshot_review import INSTALL_HINT, find_chromium, review_in_browser


def test_one_decision_by_key_press_in_chromium(tmp_path):
    path = find_chromium()
    if path is None:
        pytest.fail(f"Chromium is required for the browser test: {INSTALL_HINT}", pytrace=False)
    outcome = review_in_browser(tmp_path, chromium_path=path, image_size=256)
    assert "decided this session 0" in outcome.before
    assert "True negative" in outcome.before and "Missing label" in outcome.before
    # The key presses reached the app: one decision made, the next item already on screen.
    assert "decided this session 1" in outcome.after
    assert "Unzoom" in outcome.after and "✓ 1" in outcome.after
    assert outcome.screenshot.startswith(b"\x89PNG")
    (tmp_path / "review-screen.png").write_bytes(outcome.screenshot)
