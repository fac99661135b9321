"""Training recipe for the cinesep separation network (see training/README.md)."""
