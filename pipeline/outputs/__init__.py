"""What a run is turned into for readers: the report against the paper, published bundles."""
