"""Datasets: reading them in, versioning them, writing them out, making synthetic ones.

- `formats`: Jacquard and Cornell layouts, sources (folders, zips), header checks;
- `ingest`: the one-pass importer and the import job;
- `versions`: dataset versions as change sets over version 0 (images, grasps, decisions);
- `export`: a version back out as a Jacquard-layout archive;
- `synthetic`: generated scenes with known corruptions and a simulated reviewer;
- `gc`: removing stored files that nothing refers to.
"""
