"""Data sources: THINGS-fMRI files, THINGS-layout stimulus images, the bundled demo images, the simulated brain."""
