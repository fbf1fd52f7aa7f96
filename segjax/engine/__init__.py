"""The engine: the train step and loop, eval, the one inference function, checkpoints, devices,
preemption and what a run writes. It asks the head and the dataset the config names, and names
neither."""
