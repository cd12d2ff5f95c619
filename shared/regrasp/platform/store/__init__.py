"""Storage: the database (labels, jobs, reviews) and the object store (images, weights)."""
