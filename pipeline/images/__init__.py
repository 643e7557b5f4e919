"""The image sets: the manifest of checksummed sources and the tool that makes it."""
