"""The reproduction: data sets, corruption, running DIP over sets, baselines, evaluation, CLI."""
