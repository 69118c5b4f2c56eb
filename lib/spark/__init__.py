"""Spark itself: the one session of a run, the jars it starts with, what the JVM prints,
and what a run cost."""
