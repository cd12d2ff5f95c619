"""Robot-side client of the inference service: send a depth frame, get the best grasp.

    python examples/robot_client.py frame.tiff --url http://127.0.0.1:3000 --key rgk_... \\
        --fx 615.0 --fy 615.0 --cx 320.0 --cy 240.0

Two ways to call the service, same result: `predict_httpx` (plain multipart over httpx,
what any language can do) and `predict_bentoml` (BentoML's `SyncHTTPClient`).

From pixels to the camera frame
-------------------------------
The service answers in the pixels of the frame you sent: centre (x, y) with x right and y
down, `theta` in degrees in that y-down frame, `opening` and `jaw` in pixels. With the
depth camera's pinhole intrinsics fx, fy (focal lengths, pixels) and cx, cy (principal
point, pixels), and the depth d (metres) at the grasp centre (take the median of a small
window: single pixels can be holes),

    X = (x - cx) · d / fx        Y = (y - cy) · d / fy        Z = d

is the grasp centre in the camera's optical frame (X right, Y down, Z forward). Because
image y points down like the optical Y axis, `theta` is directly the gripper's rotation
about the optical axis Z (yaw, measured from X towards Y); a parallel gripper is
symmetric, so θ and θ + 180° are the same grasp. The jaw opening in metres at that depth
is `opening · d / fx` (use fx for a grasp along x, fy along y; for square pixels they are
equal), and likewise the jaw size. Approach along +Z (top-down when the camera looks down),
then transform (X, Y, Z, yaw) by the camera-to-base calibration into the robot's frame.
Send the depth frame as captured (registered to the camera whose intrinsics you use), in
metres as float32; the service handles any resolution.
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CameraGrasp:
    """A grasp in the camera's optical frame: centre in metres, yaw in radians, widths in m."""

    x: float
    y: float
    z: float
    yaw: float
    opening_m: float
    jaw_m: float
    quality: float


def predict_httpx(
    url: str, key: str, depth_tiff: bytes, *, k: int = 1, timeout: float = 10.0
) -> dict[str, Any]:
    """POST /predict with httpx; returns the JSON answer (raises on an error status)."""
    import httpx

    response = httpx.post(
        f"{url.rstrip('/')}/predict",
        headers={"Authorization": f"Bearer {key}"},
        files={"depth": ("frame.tiff", depth_tiff, "image/tiff")},
        data={"k": str(k)},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise RuntimeError(f"inference answered {response.status_code}: {response.text}")
    return response.json()


def predict_bentoml(url: str, key: str, depth_path: Path, *, k: int = 1) -> dict[str, Any]:
    """The same call through BentoML's `SyncHTTPClient` (uploads by path)."""
    import bentoml

    with bentoml.SyncHTTPClient(url, token=key) as client:
        answer = client.predict(depth=Path(depth_path), k=k)
    return answer if isinstance(answer, dict) else dict(answer)


def to_camera(
    grasp: dict[str, float], depth: np.ndarray, *, fx: float, fy: float, cx: float, cy: float
) -> CameraGrasp:
    """Back-project one grasp (image px, as the service returns it) with depth (H, W) metres."""
    h, w = depth.shape
    col = int(np.clip(round(grasp["x"]), 0, w - 1))
    row = int(np.clip(round(grasp["y"]), 0, h - 1))
    window = depth[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3]
    valid = window[np.isfinite(window) & (window > 0)]
    if valid.size == 0:
        raise ValueError(f"no valid depth around pixel ({col}, {row})")
    d = float(np.median(valid))
    return CameraGrasp(
        x=(grasp["x"] - cx) * d / fx,
        y=(grasp["y"] - cy) * d / fy,
        z=d,
        yaw=float(np.deg2rad(grasp["theta"])),
        opening_m=grasp["opening"] * d / fx,
        jaw_m=grasp["jaw"] * d / fx,
        quality=grasp["quality"],
    )


def read_depth(path: Path) -> np.ndarray:
    """A float TIFF depth frame (metres) as an (H, W) float32 array."""
    import cv2

    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 2:
        raise ValueError(f"{path} is not a single-channel depth TIFF")
    return image.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("depth", type=Path, help="float32 TIFF depth frame, metres")
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--key", required=True, help="API key (rgk_...)")
    parser.add_argument("--client", choices=("httpx", "bentoml"), default="httpx")
    for name, default in (("fx", 615.0), ("fy", 615.0), ("cx", 320.0), ("cy", 240.0)):
        parser.add_argument(f"--{name}", type=float, default=default)
    args = parser.parse_args(argv)
    if args.client == "httpx":
        answer = predict_httpx(args.url, args.key, args.depth.read_bytes())
    else:
        answer = predict_bentoml(args.url, args.key, args.depth)
    if not answer["grasps"]:
        print(f"model {answer['model_id']} ({answer['model_name']}): no grasp found")
        return 1
    best = answer["grasps"][0]
    cam = to_camera(best, read_depth(args.depth), fx=args.fx, fy=args.fy, cx=args.cx, cy=args.cy)
    out = io.StringIO()
    model = f"{answer['model_id']} ({answer['model_name']})"
    print(f"model {model}, {answer['timings']['total_ms']:.1f} ms", file=out)
    print(
        f"best grasp (px): x={best['x']:.1f} y={best['y']:.1f} theta={best['theta']:.1f}° "
        f"opening={best['opening']:.1f} quality={best['quality']:.3f}",
        file=out,
    )
    print(
        f"camera frame: X={cam.x:.4f} Y={cam.y:.4f} Z={cam.z:.4f} m, "
        f"yaw={np.rad2deg(cam.yaw):.1f}°, opening={cam.opening_m * 1000:.1f} mm",
        file=out,
    )
    print(out.getvalue(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
