"""One file per dataset: its descriptor and its tfds builder. segjax.data imports every file here."""
