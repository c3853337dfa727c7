"""backprop-cli: the terminal's backpropagation workbench."""

__version__ = "0.1.0"
