"""The DVC stages: one module per stage, one ``stage()`` entry point each."""
