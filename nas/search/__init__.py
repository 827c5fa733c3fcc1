"""Search: spaces (space), samplers, the objective of a trial, early stopping, the request and
its settings (request), creating or resuming a study (resume), and the search as work for the
worker pool (work: `search`). Confirmation of a search's front: confirm."""
