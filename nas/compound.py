"""EfficientNet's compound-scaling constants (Tan & Le 2019, section 4: found by a small grid
search on B0 at phi = 1), apart from nas.families.scaling so that the command line can show
them as defaults without importing every family."""

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15

__all__ = ["ALPHA", "BETA", "GAMMA"]
