"""Storage: the database (versioned labels, jobs, reviews) and the object store (images, caches, weights)."""
