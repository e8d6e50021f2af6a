"""brainalign: how the learning rule that trains a network shapes its alignment with the brain, and when.

Train a small CNN with several learning rules (seeds vmapped), checkpoint at milestone epochs,
extract features for the THINGS stimuli at several resolutions, and score representational
similarity (RSA) against THINGS-fMRI ROIs (or a simulated brain written in the same format).
"""

__version__ = "0.1.0"
