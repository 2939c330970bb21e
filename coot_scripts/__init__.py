"""Scripts loaded by Coot (standard library + Coot modules only); see docs/coot.md."""
