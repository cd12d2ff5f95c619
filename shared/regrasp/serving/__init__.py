"""What the inference service does, without BentoML or torch: the HTTP service is a shell.

- `models`: which models a replica holds (a bounded LRU cache, the production model
  pinned) and the follower that tracks the `production` alias in the database;
- `batching`: network inputs parked under tickets so concurrent requests share one
  forward pass, and the batch-size history that proves they do;
- `stored`: stored images of a dataset version read and prepared for a round;
- `replica`: one replica's state (database, store, models, tickets, credential cache) and
  the two prediction paths (an upload for robots, stored images for rounds);
- `gate`: the ASGI gate in front of every route (auth, key scopes, body limits, one error
  shape).
"""
