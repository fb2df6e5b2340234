"""An embedded, Salesforce-compatible Billing org: real HTTP semantics over real SQLite state.

Used by `sfcleanup demo`, the tests and the benchmarks, and by admins to rehearse a clean-up.
"""
