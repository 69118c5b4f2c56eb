"""Handing a job to spark-submit: the command line, and the packed environment it ships."""
