"""sfcleanup: clean up failed Salesforce Billing invoice runs from outside the org."""

__version__ = "0.1.0"
