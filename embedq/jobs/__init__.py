"""The job ledger: schema, migrations, guarded state transitions, progress counters, leases."""
