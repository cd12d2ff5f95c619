"""The human-in-the-loop domain: what a round decides, how people review, what it gained.

- `rounds`: a round's options (`config`) and applying its decisions as a new version
  (`applying`);
- `review`: the review queue (items, leases, decisions, double review, statistics);
- `campaigns`: a benchmark campaign's options (`config`) and its report (`report`);
- `label_quality`: the grasp label-quality score of an image and of each grasp;
- `refinement_stats`: what each round found and fixed, and the advice to stop.

Nothing here calls another service: the workflows (`regrasp.workflows`) do.
"""
