"""The tiny demo world (`demo.world`) and its printout (`python -m demo`); the library never
imports it."""
