"""Search: spaces (space), the objective of a trial, the trial loop, samplers, early stopping,
and the search runner with its worker processes (run, workers)."""
