"""The YAML configs, shipped inside the package as makemore.configs (`fit` without --config reads mlp.yaml)."""
