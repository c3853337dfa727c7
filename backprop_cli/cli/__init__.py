"""The command line: one module per command over the library, errors turned into
one-line messages and exit codes at one boundary."""
