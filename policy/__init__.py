"""The ray-platform CrossGuard policy pack: storage, identity and Ray safety rules.

`policy/__main__.py` serves the pack to the Pulumi engine; the rule modules are plain Python so
tests run them offline (tests/policy/harness.py).
"""
