"""``python -m harness.study``: lever studies. An entry point above the layers; its logic is in harness.outputs."""
