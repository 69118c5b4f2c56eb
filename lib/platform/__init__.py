"""What every job stands on: configuration and its typed settings, errors and exit
codes, logs, progress, signals, secrets, facts of the machine, and the storage layer."""
