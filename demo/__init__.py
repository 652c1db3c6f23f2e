"""The tiny demo world (`demo.world`), its printout (`python -m demo`) and the smoke setting's
world on disk (`python -m demo.build`, read by `configs/smoke/`); the library never imports it."""
