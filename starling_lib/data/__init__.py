"""Data stage: the Nectar schema and loaders, chat templates, and the synthetic tiny world."""
