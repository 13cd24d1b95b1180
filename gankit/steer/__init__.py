"""Steering a trained generator: truncation (:mod:`.truncation`), style mixing (:mod:`.mixing`),
projecting images into its latent space and editing along directions in it.

Submodules are imported by their users; this package imports none of them."""
