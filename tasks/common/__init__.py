"""Everything the four tasks share: config schemas, the training loop, checkpoints, data, results."""
