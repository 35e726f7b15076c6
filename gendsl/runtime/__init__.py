"""What runs compiled programs: the training loop, parameter files, data preparation."""
