"""Configuration: the typed settings loaded from conf/base.yaml, an environment overlay and flags."""
