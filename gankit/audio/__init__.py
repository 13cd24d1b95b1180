"""Audio as images: a spoken-digit corpus made offline, log-mel spectrograms and their inversion."""
