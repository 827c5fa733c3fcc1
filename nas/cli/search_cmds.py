"""Search commands (search, spaces, dashboard, report, compare, export): see issue 4."""
