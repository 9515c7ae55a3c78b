"""Data: the synthetic TrueFace-like generator, the social-platform simulator, TrueFace download and
ingestion, Parquet manifests with leakage-free splits, and the decoded image cache."""
