"""The core: the op registry, the graph IR, the parser, shapes, and the numpy engine
(forward, reverse sweep, dual numbers). It imports nothing from the layers above it."""
