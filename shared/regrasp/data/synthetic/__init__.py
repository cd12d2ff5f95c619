"""Synthetic Jacquard-like data with exact truth, label corruption and a simulated reviewer.

Jacquard cannot be downloaded here, so the whole human-in-the-loop cycle runs on data
whose truth is known: `scenes` renders objects with exact grasps, `generate` writes them
in the Jacquard layout with a truth manifest, `corruption` damages a chosen fraction of
the labels the ways the paper found, and `reviewer` answers the review queue as a careful
person would (with a configurable error rate). Import the submodules directly; this
package imports nothing heavy on its own.
"""
