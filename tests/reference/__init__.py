"""Independent re-implementations of what the C core computes: the oracle the
tests check csrc/ against.  They import nothing from aslnet and restate each
rule (TF 'same' padding, output sizes, the layers' arithmetic) from its
definition, so that a mistake in the engine is not copied into its check;
tests/core/test_rules.py checks the shape and padding rules against the
engine over a grid of cases."""
