"""Training commands (train, bench): see issue 3."""
