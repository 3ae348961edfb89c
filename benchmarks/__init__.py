"""makemore's benchmarks, a package so that they import what they share (benchmarks.common) and the CLI imports their
callbacks by class path (benchmarks.common.StepTimer). Run each from the checkout's root: python -m benchmarks.NAME."""
