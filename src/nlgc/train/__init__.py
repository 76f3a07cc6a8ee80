"""Training and evaluation with Lightning: the module, the data module, the runs, the demo."""
