"""Experiment configs (ml_collections). `common.base_config` declares every key; the others override it."""
