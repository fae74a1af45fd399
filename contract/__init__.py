"""What the Pulumi program promises the `ray-platform` command, defined once for both sides.

The program (infra/) exports it and the command (cli/) reads it; neither imports the other, so
this package sits beneath both: standard library only, no Pulumi, shipped in the command's wheel
(tests/unit/test_import_layers.py holds it to that).
"""
