"""The independent checks of the engine: tolerances, finite differences, torch autograd,
and SymPy (run in a bounded child process)."""
