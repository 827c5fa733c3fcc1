"""Study commands: dashboard, report, compare, export."""
