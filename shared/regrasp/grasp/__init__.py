"""Grasps as geometry, with no I/O: rectangles, the Jacquard metric, training maps, images.

- `rectangles`: the grasp convention, parsing and writing label files, rectangle corners;
- `metrics`: rotated-rectangle IoU and the Jacquard success criterion, vectorised;
- `maps`: grasps to and from the network's quality/angle/width maps;
- `imaging`: decoding RGB and depth files, resizing with their grasps;
- `drawing`: grasps drawn on an image (the review screen, reports).
"""
